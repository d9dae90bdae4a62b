"""Hydration free energy of a small molecule (MM): decoupling in water and in vacuum.

SMILES -> GAFF2/AM1-BCC with TIP3P (:func:`atomml.mm.solvated_molecule`) -> the solute
decoupled in water (PME) and in vacuum through the same alchemical states
(:mod:`atomml.fe.alchemy`) -> independent windows or Hamiltonian replica exchange
(:mod:`atomml.fe.sampling`, resumable; the protocol's ``sampler``) -> MBAR per leg with
diagnostics and plots (:mod:`atomml.fe.analysis`). dG_hyd = dF_decouple(vacuum) -
dF_decouple(water), the latter with the solute's long-range dispersion correction
(:func:`solute_dispersion_correction`).

The legs can run separately (:func:`run_leg`, on another machine or platform, with a
wall-clock budget) and :func:`summarise` reads whatever samples they stored;
:func:`hydration_free_energy` does both. Each leg records what defines its samples (the
molecule and the protocol, :func:`leg_identity`) and holds its folder's lock while it samples:
a second process on one leg, and resuming or summarising a leg as another run, are refused.
Legs side by side take turns at the set-up they share (:func:`setup_lock`). A ``log`` callable
(:func:`announce` in the ``atomml`` command) is told each set-up stage and, after a leg's first
samples, the time it still needs (:mod:`atomml.fe.cost`, which also times a leg before it
starts: :func:`leg_seconds`); dynamics runs in short bursts that a Ctrl-C stops at a point
from which the leg resumes (:mod:`atomml.fe.interrupt`).

The protocol (temperature, states, sampling lengths) is a YAML file. Its defaults, the
decoupling schedule among them, are written in one place: the shipped
``md/protocols/hydration.yaml`` (:meth:`HydrationProtocol.default`); a protocol file gives only
the values it changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import units
from ..errors import OutputInUseError, ResumeMismatchError
from ..files import write_json, write_text
from ..locks import output_lock
from . import interrupt

SAMPLERS = ("windows", "replica_exchange")
LEGS = ("solvent", "vacuum")
ML_SECTION = "mm_to_ml"  # a protocol file's settings of the MM->ML legs (atomml.fe.mlmm.EndStateProtocol)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HydrationProtocol:
    """Set-up and sampling of both decoupling legs. No field has a default here: they come
    from ``md/protocols/hydration.yaml`` (:meth:`default`, :meth:`from_yaml`)."""

    temperature: float  # K
    padding: float  # Å of water around the solute
    cutoff_nm: float
    hydrogen_mass_amu: float
    electrostatics: tuple[float, ...]  # coupling of the solute's charges, from 1 to 0
    sterics: tuple[float, ...]  # then of its Lennard-Jones, from 1 to 0
    samples: int  # per state (iterations for replica exchange)
    steps_per_sample: int
    equilibration_steps: int
    timestep_fs: float
    friction_per_ps: float
    seed: int
    sampler: str  # "windows" or "replica_exchange"
    # NPT MD of the fully coupled solvated system before any window starts: tleap's box is at
    # ~0.6 g/cm3 and shrinks by a third within ~10 ps, far more than one window equilibrates
    density_equilibration_ps: float
    force_field: str  # "gaff2" or "gaff" (GAFF 1.x, as FreeSolv's calculated values); AM1-BCC either way
    # said at the start of a run and flagged in its summary (e.g. "not converged" for a short preset)
    warning: str

    def __post_init__(self) -> None:
        from ..mm import FORCE_FIELDS

        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.force_field not in FORCE_FIELDS:
            raise ValueError(f"force_field must be one of {FORCE_FIELDS}, got {self.force_field!r}")
        for key in ("electrostatics", "sterics"):  # YAML gives lists; a frozen protocol keeps tuples
            object.__setattr__(self, key, tuple(float(v) for v in getattr(self, key)))

    @property
    def schedule(self) -> Any:
        """The decoupling states (:class:`atomml.fe.alchemy.Schedule`)."""
        from .alchemy import Schedule

        return Schedule.decoupling(self.electrostatics, self.sterics)

    @classmethod
    def default(cls, **changes: Any) -> HydrationProtocol:
        """The shipped protocol (``md/protocols/hydration.yaml``) with ``changes``."""
        return cls(**{**_read_yaml(_default_path()), **changes})

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> HydrationProtocol:
        """The protocol of the YAML file ``path`` (or a shipped protocol's name, see
        :func:`protocol_path`): its values over the shipped defaults. Its ``mm_to_ml`` section,
        if any, is for :meth:`atomml.fe.mlmm.EndStateProtocol.from_yaml`."""
        values = _read_yaml(protocol_path(path))
        values.pop(ML_SECTION, None)
        return cls.default(**values)


def protocol_path(name: str | os.PathLike[str]) -> Path:
    """The protocol file ``name``: a path, or the name of a shipped protocol in
    ``md/protocols`` ("hydration", "freesolv")."""
    from ..resources import resource_folder

    path = Path(name)
    if path.is_file():
        return path
    shipped = resource_folder("md") / "protocols" / f"{name}.yaml"
    if path.suffix or not shipped.is_file():
        names = sorted(p.stem for p in shipped.parent.glob("*.yaml"))
        raise FileNotFoundError(f"no protocol file {name}: give a YAML file or one of the shipped protocols {names}")
    return shipped


def _default_path() -> Path:
    return protocol_path("hydration")


def _read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    import yaml

    values = yaml.safe_load(Path(path).read_text()) or {}
    known = {f.name for f in dataclasses.fields(HydrationProtocol)} | {ML_SECTION}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown protocol keys {unknown}; the keys are those of {_default_path()}")
    return values


def default_protocol() -> HydrationProtocol:
    """The shipped protocol, ``md/protocols/hydration.yaml``."""
    return HydrationProtocol.default()


def leg_identity(smiles: str, protocol: HydrationProtocol) -> dict:
    """What defines a decoupling leg's samples besides the sampler's own settings, recorded in
    its ``run.json``: the molecule and every protocol value but ``samples`` (a larger number
    extends a run) and ``warning`` (text only). Resuming or summarising a leg with another is refused."""
    return {"smiles": smiles,
            "protocol": {k: v for k, v in dataclasses.asdict(protocol).items() if k not in ("samples", "warning")}}


def announce(message: str) -> None:
    """A line of a run's progress on stderr (stdout carries the result), above any progress bar."""
    from tqdm import tqdm

    tqdm.write(f"[atomml fe] {message}", file=sys.stderr)


@contextlib.contextmanager
def setup_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of the set-up ``folder`` that every leg of a molecule shares, waiting while
    another leg holds it: legs started side by side take turns to make (or read) the set-up
    and its NPT box instead of writing them at once, and the later ones reuse what the first
    made."""
    with contextlib.ExitStack() as held:
        for attempt in itertools.count():
            try:
                held.enter_context(output_lock(folder, "set-up folder"))
                break
            except OutputInUseError as busy:
                if attempt == 0:
                    print(f"[atomml fe] waiting: {busy}", file=sys.stderr, flush=True)
                interrupt.check()  # a Ctrl-C while waiting stops here
                time.sleep(1.0)
        yield


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


def leg_setups(smiles: str, folder: Path, protocol: HydrationProtocol,
               log: Callable[[str], None] | None = None) -> tuple[Any, Any]:  # fmt: skip
    """The (solvated, vacuum) set-ups of ``smiles`` under ``protocol`` in ``folder/setup``,
    made once and reused by every leg and summary; ``log`` is told the set-up's stages. A
    molecule that cannot be set up (:func:`atomml.mm.check_molecule`) is refused first."""
    from ..mm import check_molecule, solvated_molecule

    check_molecule(smiles)
    _refuse_another_setup(Path(folder), smiles, protocol)
    with setup_lock(Path(folder) / "setup"):
        return solvated_molecule(smiles, Path(folder) / "setup", padding=protocol.padding, seed=protocol.seed,
                                 force_field=protocol.force_field, log=log)  # fmt: skip


SETUP_KEYS = ("padding", "seed", "force_field")  # the protocol values the set-up depends on


def _refuse_another_setup(folder: Path, smiles: str, protocol: HydrationProtocol) -> None:
    """The legs in ``folder`` share one set-up, which is made anew for another molecule or
    set-up: refuse that while legs sampled with the present one are stored beside it."""
    wanted = {"smiles": smiles, **{k: getattr(protocol, k) for k in SETUP_KEYS}}
    for record in sorted(folder.glob("*/run.json")):
        identity = json.loads(record.read_text()).get("identity") or {}
        stored = {"smiles": identity.get("smiles"), **{k: identity.get("protocol", {}).get(k) for k in SETUP_KEYS}}
        if identity and stored != wanted:
            raise ResumeMismatchError(
                f"{record.parent} holds samples of {stored}, not of {wanted}, and the legs in {folder} share one "
                "set-up: use another output folder for this molecule or set-up"
            )


def npt_state_path(setup: Any, protocol: HydrationProtocol) -> Path:
    """Where the equilibrated solvent box of ``setup`` under ``protocol``'s settings is kept."""
    tag = f"{protocol.density_equilibration_ps:g}ps_{protocol.temperature:g}K_{protocol.timestep_fs:g}fs_seed{protocol.seed}"
    return Path(setup.prmtop).with_name(f"solvent_npt_{tag}.xml")


def equilibrated(system: Any, positions: Any, box: Any, protocol: HydrationProtocol, path: Path,
                 platform: str | None = None, progress: bool = False,
                 log: Callable[[str], None] | None = None) -> tuple[Any, Any]:  # fmt: skip
    """Positions and box after ``density_equilibration_ps`` of NPT MD (LangevinMiddle, the
    protocol's temperature and timestep), saved to ``path`` (OpenMM state XML) and reused.
    ``progress``: a progress bar; ``log`` is told the stage. Stops at a Ctrl-C within a
    second (:mod:`atomml.fe.interrupt`; redone on the next run)."""
    import openmm
    from openmm import unit
    from tqdm import tqdm

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
        steps = max(1, int(round(protocol.density_equilibration_ps * 1000 / protocol.timestep_fs)))
        what = f"density equilibration: {protocol.density_equilibration_ps:g} ps NPT of the solvated box"
        if log is not None:
            log(f"{what} ({system.getNumParticles():,} atoms, {steps:,} steps) ...")
        start = time.perf_counter()
        with tqdm(total=steps, unit="step", disable=not progress, desc="density equilibration") as bar:
            for begin in range(0, steps, 10 * interrupt.CHUNK_STEPS):
                burst = min(10 * interrupt.CHUNK_STEPS, steps - begin)
                interrupt.step(integrator, burst)
                bar.update(burst)
        state = context.getState(getPositions=True, getVelocities=True)
        write_text(path, openmm.XmlSerializer.serialize(state))
        if log is not None:
            log(f"density equilibration: done in {time.perf_counter() - start:.1f} s")
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

    from ..units import kt
    from .alchemy import AlchemicalState, alchemical_system, set_state

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
    return float((energies[1] - energies[0]) / kt(protocol.temperature))


def leg_start(setup: Any, protocol: HydrationProtocol, solvent: bool, platform: str | None = None,
              progress: bool = False, log: Callable[[str], None] | None = None) -> tuple[Any, Any, Any]:  # fmt: skip
    """(MM System, positions, box) a leg starts from: in water, the density-equilibrated box
    (:func:`equilibrated`, made once under the set-up's lock and shared by the legs)."""
    mm, positions, box = leg_system(setup, protocol, solvent)
    if solvent:
        with setup_lock(Path(setup.prmtop).parent):
            positions, box = equilibrated(mm, positions, box, protocol, npt_state_path(setup, protocol), platform,
                                          progress, log)  # fmt: skip
    return mm, positions, box


def sample_leg(setup: Any, protocol: HydrationProtocol, solvent: bool, folder: Path, states: Any, set_state: Any,
               samples: int, steps_per_sample: int, equilibration_steps: int, timestep_fs: float,
               platform: str | None = None, max_minutes: float | None = None, progress: bool = True,
               system: Any = None, minimize: bool = True, identity: dict | None = None, label: str | None = None,
               log: Callable[[str], None] | None = None, later_seconds: float = 0.0,
               batched: bool = False) -> bool:  # fmt: skip
    """Sample ``states`` of one leg (``system``, default the leg's MM system made alchemical)
    with the protocol's sampler; stop after ``max_minutes`` (at an iteration's checkpoint for
    replica exchange, a sample's for windows). True if all ``samples`` are done. ``minimize``:
    minimise in every state before its equilibration (the sampler's option). ``identity``:
    what defines the leg's samples (:func:`leg_identity`), recorded and checked on resume.
    ``label`` names the leg in the progress bar and in what ``log`` is told: the set-up stages
    and, after the first samples, the time this leg and the run (``later_seconds`` for the
    legs after it) still need (:class:`atomml.fe.cost.LegClock`). ``batched``: the states side
    by side with one ML call per step for all (the samplers' option; :mod:`atomml.lockstep`)."""
    from .alchemy import alchemical_system
    from .cost import LegClock, chain, remaining_work
    from .sampling import BudgetSpent, sample_replica_exchange, sample_windows, wall_clock_budget

    label = label or Path(folder).name
    mm, positions, box = leg_start(setup, protocol, solvent, platform, progress, log)
    if system is None:
        system = alchemical_system(mm, setup.molecule_atoms)
    sampler = sample_replica_exchange if protocol.sampler == "replica_exchange" else sample_windows
    work = functools.partial(remaining_work, folder, len(states), samples, steps_per_sample, equilibration_steps,
                             protocol.sampler)  # fmt: skip
    clock = None if log is None else LegClock(label, work, log, later_seconds)
    try:
        sampler(
            system, positions, states, set_state, folder, temperature=protocol.temperature, samples=samples,
            steps_per_sample=steps_per_sample, equilibration_steps=equilibration_steps, timestep_fs=timestep_fs,
            friction_per_ps=protocol.friction_per_ps, box=box, seed=protocol.seed, progress=progress,
            platform=platform, callback=chain(wall_clock_budget(max_minutes), clock), minimize=minimize,
            identity=identity, label=label, batched=batched,
        )  # fmt: skip
    except BudgetSpent:
        return False
    return True


def leg_seconds(setup: Any, protocol: HydrationProtocol, solvent: bool, folder: Path, states: Any, set_state: Any,
                samples: int, steps_per_sample: int, equilibration_steps: int, timestep_fs: float,
                platform: str | None = None, system: Any = None, progress: bool = False,
                log: Callable[[str], None] | None = None) -> float:  # fmt: skip
    """The wall time :func:`sample_leg` with these arguments still needs on this machine: the
    work left in ``folder`` at the pace of a short probe (:func:`atomml.fe.cost.probe`). Makes
    the leg's starting box first if it is missing (the density equilibration)."""
    from .alchemy import alchemical_system
    from .cost import probe, remaining_work

    work = remaining_work(folder, len(states), samples, steps_per_sample, equilibration_steps, protocol.sampler)
    if work.done:
        return 0.0
    mm, positions, box = leg_start(setup, protocol, solvent, platform, progress, log)
    if system is None:
        system = alchemical_system(mm, setup.molecule_atoms)
    speed = probe(system, positions, box, states, set_state, protocol.temperature, protocol.friction_per_ps,
                  timestep_fs, platform)  # fmt: skip
    return speed.seconds(work)


def _leg_arguments(smiles: str, folder: Path, leg: str, protocol: HydrationProtocol,
                   log: Callable[[str], None] | None) -> tuple[Any, ...]:  # fmt: skip
    """sample_leg's (and leg_seconds') first ten arguments for a decoupling leg."""
    from .alchemy import set_state

    if leg not in LEGS:
        raise ValueError(f"leg must be one of {LEGS}, got {leg!r}")
    solvated, vacuum = leg_setups(smiles, folder, protocol, log)
    solvent = leg == "solvent"
    return (solvated if solvent else vacuum, protocol, solvent, folder / leg, protocol.schedule.states, set_state,
            protocol.samples, protocol.steps_per_sample, protocol.equilibration_steps, protocol.timestep_fs)  # fmt: skip


def run_leg(smiles: str, folder: str | os.PathLike[str], leg: str, protocol: HydrationProtocol | None = None,
            platform: str | None = None, max_minutes: float | None = None, progress: bool = True,
            log: Callable[[str], None] | None = None, later_seconds: float = 0.0) -> bool:  # fmt: skip
    """Sample (or resume) the ``leg`` ("solvent" or "vacuum") of ``smiles``'s decoupling in
    ``folder``; True when the protocol's samples are all done, False when ``max_minutes`` ran
    out first (run again to go on). ``platform`` names the OpenMM platform (default: fastest).
    ``log`` (e.g. :func:`announce`) is told the set-up stages and the time left (see
    :func:`sample_leg`).

    A leg folder that another process samples (:class:`~atomml.errors.OutputInUseError`) or
    that holds samples of another molecule or protocol (:class:`~atomml.errors.ResumeMismatchError`)
    is refused before anything is written."""
    from .sampling import check_resumable

    if leg not in LEGS:
        raise ValueError(f"leg must be one of {LEGS}, got {leg!r}")
    protocol = protocol or default_protocol()
    folder = Path(folder)
    identity = leg_identity(smiles, protocol)
    check_resumable(folder / leg, identity)
    return sample_leg(*_leg_arguments(smiles, folder, leg, protocol, log), platform, max_minutes, progress,
                      identity=identity, label=f"{leg} leg", log=log, later_seconds=later_seconds)  # fmt: skip


def run_leg_seconds(smiles: str, folder: str | os.PathLike[str], leg: str, protocol: HydrationProtocol | None = None,
                    platform: str | None = None, progress: bool = False,
                    log: Callable[[str], None] | None = None) -> float:  # fmt: skip
    """The wall time :func:`run_leg` still needs (:func:`leg_seconds`); makes the set-up if missing."""
    protocol = protocol or default_protocol()
    return leg_seconds(*_leg_arguments(smiles, Path(folder), leg, protocol, log), platform, progress=progress, log=log)


def summarise(smiles: str, folder: str | os.PathLike[str], protocol: HydrationProtocol | None = None) -> dict:
    """ΔG_hyd from the samples both legs stored so far (complete or not: the summary says how
    many each state has and how long was simulated); written to ``folder/summary.json``. Legs
    sampled with another molecule or protocol are refused (:func:`leg_identity`)."""
    from ..units import kt
    from .analysis import analyse_leg, by_leg, exchange_flags, leg_flags, sampling_lengths
    from .sampling import check_identity

    protocol = protocol or default_protocol()
    folder = Path(folder)
    schedule = protocol.schedule
    for name in LEGS:
        check_identity(folder / name, leg_identity(smiles, protocol))
    legs = {name: analyse_leg(folder / name, protocol.temperature) for name in LEGS}
    water, gas = legs["solvent"], legs["vacuum"]
    fw, fv = water.result, gas.result
    solvated, _ = leg_setups(smiles, folder, protocol)
    dispersion = solute_dispersion_correction(solvated, protocol)
    # decoupling removes the (negative) correction of the coupled state: dF_decouple rises by -u
    decouple_solvent = fw.value_kt - dispersion
    value = fv.value_kt - decouple_solvent
    error = float(np.hypot(fv.error_kt, fw.error_kt))
    kt_kcal = kt(protocol.temperature, "kcal/mol")
    lengths = sampling_lengths(legs, len(schedule), protocol.samples, protocol.steps_per_sample,
                               protocol.equilibration_steps, protocol.timestep_fs)  # fmt: skip
    flags = ([protocol.warning] if protocol.warning else []) + leg_flags(legs) + exchange_flags(legs) + lengths.flags

    summary = {
        "smiles": smiles, "temperature_K": protocol.temperature,
        "dG_hydration_kt": value, "dG_hydration_error_kt": error,
        "dG_hydration_kcal_per_mol": value * kt_kcal, "dG_hydration_error_kcal_per_mol": error * kt_kcal,
        "dF_decouple_solvent_kt": decouple_solvent, "dF_decouple_vacuum_kt": fv.value_kt,
        "dF_decouple_solvent_sampled_kt": fw.value_kt, "solute_dispersion_correction_kt": dispersion,
        "states": [s.name for s in schedule.states],
        "samples_per_state": by_leg(legs, "samples_per_state"),
        "uncorrelated_per_state": by_leg(legs, "uncorrelated_per_state"),
        "sample_interval_ps": protocol.steps_per_sample * protocol.timestep_fs * units.PS_PER_FS,
        "simulated_ns_per_leg": lengths.ns_per_leg, "sampler": protocol.sampler,
        "ns_per_day_per_state": by_leg(legs, "ns_per_day_per_state"),
        "neighbour_overlaps": by_leg(legs, "neighbour_overlaps"),
        "flags": flags, "protocol": dataclasses.asdict(protocol),
    }  # fmt: skip
    if protocol.sampler == "replica_exchange":
        summary["replica_exchange"] = {name: leg.replica_exchange.to_dict() for name, leg in legs.items()}
    write_json(folder / "summary.json", summary)
    return summary


def hydration_free_energy(smiles: str, folder: str | os.PathLike[str], protocol: HydrationProtocol | None = None,
                          progress: bool = True, platform: str | None = None,
                          log: Callable[[str], None] | None = None) -> dict:  # fmt: skip
    """Run (or resume) both legs and return the summary (also written to ``summary.json``)."""
    for leg in LEGS:
        run_leg(smiles, folder, leg, protocol, platform=platform, progress=progress, log=log)
    return summarise(smiles, folder, protocol)
