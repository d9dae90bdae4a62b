"""Hydration free energy of a small molecule (MM): decoupling in water and in vacuum.

SMILES -> GAFF2/AM1-BCC with TIP3P (:func:`atomml.mm.solvated_molecule`) -> the solute
decoupled in water (PME) and in vacuum through the same alchemical states
(:mod:`atomml.fe.alchemy`) -> independent windows or Hamiltonian replica exchange
(:mod:`atomml.fe.sampling`, resumable; the protocol's ``sampler``) -> MBAR per leg with
diagnostics and plots. dG_hyd = dF_decouple(vacuum) - dF_decouple(water), the latter with the
solute's long-range dispersion correction (:func:`solute_dispersion_correction`).

Before MBAR every state's samples are cut to the equilibrated part and subsampled to
uncorrelated ones (pymbar's timeseries on the state's own reduced potential); a state left with
fewer than ``MIN_UNCORRELATED`` is flagged. The legs can run separately (:func:`run_leg`, on
another machine or platform, with a wall-clock budget) and :func:`summarise` reads whatever
samples they stored; :func:`hydration_free_energy` does both.

The protocol (temperature, states, sampling lengths) is a YAML file; the defaults are
``md/protocols/hydration.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_text

SAMPLERS = ("windows", "replica_exchange")
LEGS = ("solvent", "vacuum")
# neighbouring states that swap less often than this are flagged: replicas barely travel
MIN_ACCEPTANCE = 0.1


@dataclasses.dataclass(frozen=True)
class HydrationProtocol:
    temperature: float = 298.15
    padding: float = 10.0  # Å of water around the solute
    cutoff_nm: float = 0.9
    hydrogen_mass_amu: float = 1.5
    electrostatics: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)
    sterics: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.3, 0.2, 0.1, 0.0)
    samples: int = 500
    steps_per_sample: int = 500
    equilibration_steps: int = 5000
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    seed: int = 0
    sampler: str = "windows"  # or "replica_exchange"; samples = iterations for replica exchange
    # NPT MD of the fully coupled solvated system before any window starts: tleap's box is at
    # ~0.6 g/cm3 and shrinks by a third within ~10 ps, far more than one window equilibrates
    density_equilibration_ps: float = 50.0
    force_field: str = "gaff2"  # or "gaff" (GAFF 1.x, as FreeSolv's calculated values); AM1-BCC either way

    def __post_init__(self) -> None:
        from ..mm import FORCE_FIELDS

        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.force_field not in FORCE_FIELDS:
            raise ValueError(f"force_field must be one of {FORCE_FIELDS}, got {self.force_field!r}")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> HydrationProtocol:
        import yaml

        values = yaml.safe_load(Path(path).read_text()) or {}
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown protocol keys {unknown}")
        for key in ("electrostatics", "sterics"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


def default_protocol() -> HydrationProtocol:
    from ..resources import resource_folder

    return HydrationProtocol.from_yaml(resource_folder("md") / "protocols" / "hydration.yaml")


def leg_system(setup: Any, protocol: HydrationProtocol, solvent: bool) -> tuple[Any, Any, Any]:
    """(System, positions, box) of one leg before alchemical modification: PME and a Monte Carlo
    barostat in water, no cutoff in vacuum (box None)."""
    import openmm
    from openmm import app, unit

    prmtop, inpcrd = app.AmberPrmtopFile(str(setup.prmtop)), app.AmberInpcrdFile(str(setup.inpcrd))
    system = prmtop.createSystem(
        nonbondedMethod=app.PME if solvent else app.NoCutoff, nonbondedCutoff=protocol.cutoff_nm * unit.nanometer,
        constraints=app.HBonds, rigidWater=True, hydrogenMass=protocol.hydrogen_mass_amu * unit.amu,
    )  # fmt: skip
    if solvent:
        barostat = openmm.MonteCarloBarostat(1 * unit.bar, protocol.temperature * unit.kelvin)
        # OpenMM's default seed 0 draws a new one for every Context: a rerun would differ
        barostat.setRandomNumberSeed(protocol.seed + 7907)
        system.addForce(barostat)
        # NPT sampling, but u_kn is evaluated without pV: the volume changes with the state only
        # through the solute, whose pV difference is negligible next to kT at 1 bar
    return system, inpcrd.positions, inpcrd.boxVectors if solvent else None


def leg_setups(smiles: str, folder: Path, protocol: HydrationProtocol) -> tuple[Any, Any]:
    """The (solvated, vacuum) set-ups of ``smiles`` under ``protocol`` in ``folder/setup``,
    made once and reused by every leg and summary."""
    from ..mm import solvated_molecule

    return solvated_molecule(smiles, Path(folder) / "setup", padding=protocol.padding, seed=protocol.seed,
                             force_field=protocol.force_field)  # fmt: skip


def npt_state_path(setup: Any, protocol: HydrationProtocol) -> Path:
    """Where the equilibrated solvent box of ``setup`` under ``protocol``'s settings is kept."""
    tag = f"{protocol.density_equilibration_ps:g}ps_{protocol.temperature:g}K_{protocol.timestep_fs:g}fs_seed{protocol.seed}"
    return Path(setup.prmtop).with_name(f"solvent_npt_{tag}.xml")


def equilibrated(system: Any, positions: Any, box: Any, protocol: HydrationProtocol, path: Path,
                 platform: str | None = None) -> tuple[Any, Any]:  # fmt: skip
    """Positions and box after ``density_equilibration_ps`` of NPT MD (LangevinMiddle, the
    protocol's temperature and timestep), saved to ``path`` (OpenMM state XML) and reused."""
    import openmm
    from openmm import unit

    if not path.exists():
        integrator = openmm.LangevinMiddleIntegrator(
            protocol.temperature * unit.kelvin, protocol.friction_per_ps / unit.picosecond, protocol.timestep_fs * unit.femtosecond
        )
        integrator.setRandomNumberSeed(protocol.seed + 7919)
        args = () if platform is None else (openmm.Platform.getPlatformByName(platform),)
        context = openmm.Context(system, integrator, *args)
        context.setPeriodicBoxVectors(*box)
        context.setPositions(positions)
        openmm.LocalEnergyMinimizer.minimize(context, maxIterations=500)
        context.setVelocitiesToTemperature(protocol.temperature * unit.kelvin, protocol.seed)
        integrator.step(max(1, int(round(protocol.density_equilibration_ps * 1000 / protocol.timestep_fs))))
        state = context.getState(getPositions=True, getVelocities=True)
        write_text(path, openmm.XmlSerializer.serialize(state))
        del context
    state = openmm.XmlSerializer.deserialize(path.read_text())
    return state.getPositions(), state.getPeriodicBoxVectors()


def solute_dispersion_correction(setup: Any, protocol: HydrationProtocol) -> float:
    """The solute-water long-range dispersion correction of the fully coupled solvated state, in
    kT, at the density-equilibrated box (from :func:`equilibrated`; it varies as 1/V, and NPT
    volume fluctuations of a few-thousand-atom box move it by < 1 %).

    The legs sample without it (:func:`atomml.fe.alchemy.alchemical_system` default); it is a
    function of volume and ``lambda_sterics`` alone and zero when decoupled, so adding it to the
    fully coupled state's free energy (FEP, -kT ln<exp(-u)> = u for a constant) gives the
    decoupling free energy of the Hamiltonian that includes it in every state, as openmmtools and
    GROMACS' DispCorr do. 0 when the System has no dispersion correction."""
    import openmm

    from .alchemy import AlchemicalState, alchemical_system, set_state
    from .sampling import _kt_kj_per_mol

    mm, positions, box = leg_system(setup, protocol, solvent=True)
    path = npt_state_path(setup, protocol)
    if path.exists():
        state = openmm.XmlSerializer.deserialize(path.read_text())
        positions, box = state.getPositions(), state.getPeriodicBoxVectors()
    energies = []
    for correction in (False, True):
        system = alchemical_system(mm, setup.molecule_atoms, dispersion_correction=correction)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPeriodicBoxVectors(*box)
        context.setPositions(positions)
        set_state(context, AlchemicalState(1.0, 1.0))
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole))
    return float((energies[1] - energies[0]) / _kt_kj_per_mol(protocol.temperature))


def decorrelate(u_kn: np.ndarray, n_k: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Each state's equilibrated, uncorrelated samples: pymbar's equilibration detection and
    subsampling on the state's own reduced potential (the samples are grouped by state).
    Returns (u_kn, n_k) of the kept samples and, per state, t0, g and the number kept."""
    from .estimators import decorrelated_indices, equilibrated

    keep, info, start = [], [], 0
    for k, n in enumerate(np.asarray(n_k, dtype=int)):
        series = u_kn[k, start : start + n]
        if n < 3:  # too short to analyse; kept as they are, and flagged by the count below
            idx, t0, g = np.arange(n), 0, 1.0
        else:
            t0, g, _ = equilibrated(series)
            idx = decorrelated_indices(series, t0, g)
        keep.append(start + idx)
        info.append({"t0": int(t0), "g": float(g), "uncorrelated": int(len(idx))})
        start += n
    columns = np.concatenate(keep)
    return u_kn[:, columns], np.array([len(i) for i in keep]), info


def analyse_leg(folder: Path, temperature: float) -> dict:
    """MBAR on the equilibrated, uncorrelated samples (:func:`decorrelate`), forward/reverse
    convergence, overlap and convergence PNGs and ns/day per state of one sampled leg (any
    sampler's folder)."""
    from . import diagnostics
    from .estimators import MIN_UNCORRELATED, EstimatorError, mbar
    from .sampling import read_u_kn, sampling_speed

    u_all, n_all = read_u_kn(folder)
    if n_all.min() < 2:
        raise EstimatorError(f"{folder}: state {int(n_all.argmin())} has {int(n_all.min())} samples; run the leg (longer)")
    u_kn, n_k, series = decorrelate(u_all, n_all)
    result = mbar(u_kn, n_k, temperature)
    few = [k for k, n in enumerate(n_k) if n < MIN_UNCORRELATED]
    if few:
        flag = f"states {few} keep fewer than {MIN_UNCORRELATED} uncorrelated samples: sample longer"
        result = dataclasses.replace(result, result=dataclasses.replace(result.result, flags=result.result.flags + (flag,)))
    convergence = diagnostics.forward_reverse(u_kn, n_k, temperature)
    diagnostics.plot_overlap(result, folder / "overlap.png")
    diagnostics.plot_convergence(convergence, folder / "convergence.png", temperature)
    speed = sampling_speed(folder)
    return {"result": result.result, "neighbour_overlaps": result.neighbour_overlaps.tolist(),
            "convergence": convergence, "samples_per_state": n_all.tolist(),
            "uncorrelated_per_state": n_k.tolist(), "equilibration": series,
            "ns_per_day_per_state": [None if np.isnan(v) else float(v) for v in speed]}  # fmt: skip


def leg_flags(water: dict, gas: dict) -> list[str]:
    """The estimators' flags of both legs and their failed convergence checks, named by leg."""
    flags = [f"solvent: {f}" for f in water["result"].flags] + [f"vacuum: {f}" for f in gas["result"].flags]
    for name, leg in (("solvent", water), ("vacuum", gas)):
        if not leg["convergence"]["converged"]:
            flags.append(f"{name}: {leg['convergence']['why']}")
    return flags


class _BudgetSpent(Exception):
    """Raised from a sampler's callback when a leg's wall-clock budget is spent."""


def _budget(max_minutes: float | None) -> Any:
    if max_minutes is None:
        return None
    end = time.monotonic() + 60.0 * max_minutes

    def check(done: int) -> None:
        if time.monotonic() > end:
            raise _BudgetSpent(done)

    return check


def sample_leg(setup: Any, protocol: HydrationProtocol, solvent: bool, folder: Path, states: Any, set_state: Any,
               samples: int, steps_per_sample: int, equilibration_steps: int, timestep_fs: float,
               platform: str | None = None, max_minutes: float | None = None, progress: bool = True,
               system: Any = None, minimize: bool = True) -> bool:  # fmt: skip
    """Sample ``states`` of one leg (``system``, default the leg's MM system made alchemical)
    with the protocol's sampler; stop after ``max_minutes`` (at an iteration's checkpoint for
    replica exchange, a sample's for windows). True if all ``samples`` are done. ``minimize``:
    minimise in every state before its equilibration (the sampler's option)."""
    from .alchemy import alchemical_system
    from .sampling import sample_replica_exchange, sample_windows

    mm, positions, box = leg_system(setup, protocol, solvent)
    if solvent:
        positions, box = equilibrated(mm, positions, box, protocol, npt_state_path(setup, protocol), platform)
    if system is None:
        system = alchemical_system(mm, setup.molecule_atoms)
    sampler = sample_replica_exchange if protocol.sampler == "replica_exchange" else sample_windows
    try:
        sampler(
            system, positions, states, set_state, folder, temperature=protocol.temperature, samples=samples,
            steps_per_sample=steps_per_sample, equilibration_steps=equilibration_steps, timestep_fs=timestep_fs,
            friction_per_ps=protocol.friction_per_ps, box=box, seed=protocol.seed, progress=progress,
            platform=platform, callback=_budget(max_minutes), minimize=minimize,
        )  # fmt: skip
    except _BudgetSpent:
        return False
    return True


def run_leg(smiles: str, folder: str | os.PathLike[str], leg: str, protocol: HydrationProtocol | None = None,
            platform: str | None = None, max_minutes: float | None = None, progress: bool = True) -> bool:  # fmt: skip
    """Sample (or resume) the ``leg`` ("solvent" or "vacuum") of ``smiles``'s decoupling in
    ``folder``; True when the protocol's samples are all done, False when ``max_minutes`` ran
    out first (run again to go on). ``platform`` names the OpenMM platform (default: fastest)."""
    from .alchemy import Schedule, set_state

    if leg not in LEGS:
        raise ValueError(f"leg must be one of {LEGS}, got {leg!r}")
    protocol = protocol or default_protocol()
    folder = Path(folder)
    solvated, vacuum = leg_setups(smiles, folder, protocol)
    schedule = Schedule.decoupling(protocol.electrostatics, protocol.sterics)
    solvent = leg == "solvent"
    return sample_leg(
        solvated if solvent else vacuum, protocol, solvent, folder / leg, schedule.states, set_state,
        protocol.samples, protocol.steps_per_sample, protocol.equilibration_steps, protocol.timestep_fs,
        platform, max_minutes, progress,
    )  # fmt: skip


def _analyse(protocol: HydrationProtocol, folder: Path) -> dict:
    from .sampling import replica_exchange_statistics

    leg = analyse_leg(folder, protocol.temperature)
    if protocol.sampler == "replica_exchange":
        stats = replica_exchange_statistics(folder)
        leg["replica_exchange"] = {"acceptance": [None if np.isnan(a) else float(a) for a in stats["acceptance"]],
                                   "round_trips": stats["round_trips"]}  # fmt: skip
    return leg


def sampling_lengths(legs: dict[str, dict], n_states: int, samples: int, steps_per_sample: int,
                     equilibration_steps: int, timestep_fs: float) -> tuple[dict[str, float], list[str]]:
    """Simulated ns of each analysed leg (its states' equilibration plus the samples every state
    has) and a flag for each leg stopped before ``samples`` per state."""
    from ..units import NS_PER_FS

    ns, flags = {}, []
    for name, leg in legs.items():
        done = min(leg["samples_per_state"])
        ns[name] = n_states * (done * steps_per_sample + equilibration_steps) * timestep_fs * NS_PER_FS
        if done < samples:
            flags.append(f"{name}: {done} of the protocol's {samples} samples per state (stopped early)")
    return ns, flags


def summarise(smiles: str, folder: str | os.PathLike[str], protocol: HydrationProtocol | None = None) -> dict:
    """ΔG_hyd from the samples both legs stored so far (complete or not: the summary says how
    many each state has and how long was simulated); written to ``folder/summary.json``."""
    from ..units import KCAL_TO_KJ
    from .alchemy import Schedule

    protocol = protocol or default_protocol()
    folder = Path(folder)
    schedule = Schedule.decoupling(protocol.electrostatics, protocol.sterics)
    water, gas = _analyse(protocol, folder / "solvent"), _analyse(protocol, folder / "vacuum")
    fw, fv = water["result"], gas["result"]
    solvated, _ = leg_setups(smiles, folder, protocol)
    dispersion = solute_dispersion_correction(solvated, protocol)
    # decoupling removes the (negative) correction of the coupled state: dF_decouple rises by -u
    decouple_solvent = fw.value_kt - dispersion
    value = fv.value_kt - decouple_solvent
    error = float(np.hypot(fv.error_kt, fw.error_kt))
    kt_kcal = fw.kt_in_kj_per_mol / KCAL_TO_KJ
    flags = leg_flags(water, gas)
    for name, leg in (("solvent", water), ("vacuum", gas)):
        for k, a in enumerate(leg.get("replica_exchange", {}).get("acceptance", [])):
            if a is not None and a < MIN_ACCEPTANCE:
                flags.append(f"{name}: replica exchange between states {k} and {k + 1} accepted {a:.1%} of swaps "
                             f"(< {MIN_ACCEPTANCE:.0%}): add states between them")  # fmt: skip
    ns, stopped = sampling_lengths({"solvent": water, "vacuum": gas}, len(schedule), protocol.samples,
                                   protocol.steps_per_sample, protocol.equilibration_steps, protocol.timestep_fs)  # fmt: skip
    flags += stopped
    summary = {
        "smiles": smiles, "temperature_K": protocol.temperature,
        "dG_hydration_kt": value, "dG_hydration_error_kt": error,
        "dG_hydration_kcal_per_mol": value * kt_kcal, "dG_hydration_error_kcal_per_mol": error * kt_kcal,
        "dF_decouple_solvent_kt": decouple_solvent, "dF_decouple_vacuum_kt": fv.value_kt,
        "dF_decouple_solvent_sampled_kt": fw.value_kt, "solute_dispersion_correction_kt": dispersion,
        "states": [s.name for s in schedule.states],
        "samples_per_state": {"solvent": water["samples_per_state"], "vacuum": gas["samples_per_state"]},
        "uncorrelated_per_state": {"solvent": water["uncorrelated_per_state"], "vacuum": gas["uncorrelated_per_state"]},
        "sample_interval_ps": protocol.steps_per_sample * protocol.timestep_fs / 1000.0,
        "simulated_ns_per_leg": ns, "sampler": protocol.sampler,
        "ns_per_day_per_state": {"solvent": water["ns_per_day_per_state"], "vacuum": gas["ns_per_day_per_state"]},
        "neighbour_overlaps": {"solvent": water["neighbour_overlaps"], "vacuum": gas["neighbour_overlaps"]},
        "flags": flags, "protocol": dataclasses.asdict(protocol),
    }  # fmt: skip
    if protocol.sampler == "replica_exchange":
        summary["replica_exchange"] = {"solvent": water["replica_exchange"], "vacuum": gas["replica_exchange"]}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def hydration_free_energy(smiles: str, folder: str | os.PathLike[str], protocol: HydrationProtocol | None = None,
                          progress: bool = True, platform: str | None = None) -> dict:  # fmt: skip
    """Run (or resume) both legs and return the summary (also written to ``summary.json``)."""
    for leg in LEGS:
        run_leg(smiles, folder, leg, protocol, platform=platform, progress=progress)
    return summarise(smiles, folder, protocol)
