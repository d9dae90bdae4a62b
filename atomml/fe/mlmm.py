"""MM → ML end-state correction: from a GAFF solute to an ML solute in MM surroundings.

ML/MM free energies in the usual indirect way (as QuantumBind-RBFE and openmm-ml users treat
ligands): the alchemical legs run with the cheap MM solute, and the change of the solute's
internal energy from MM to an atomml potential is added per leg afterwards. openmm-ml's mixed
system with ``interpolate=True`` gives the path

    U(λ) = U_MM(everything but the solute's internal terms) + (1 - λ) U_MM,internal + λ U_ML,

where the solute's interactions with the water stay MM (GAFF2 Lennard-Jones, AM1-BCC charges)
at every λ. The states at ``lambdas`` (sampled by the hydration protocol's sampler,
resumable) and MBAR give ΔG(MM→ML) in water and in vacuum; the correction to a hydration free
energy is

    ΔΔG = ΔG_water(MM→ML) − ΔG_vacuum(MM→ML),  ΔG_hyd(ML/MM) = ΔG_hyd(MM) + ΔΔG.

Each leg's ΔG contains the (arbitrary) difference of the ML and MM energy zeros, the same in
both legs; only the difference between the legs means anything. Bonds to hydrogen stay
constrained at their MM lengths in every state (as in the MM legs), so the correction does not
include X–H stretching.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_json
from .hydration import (
    ML_SECTION,
    HydrationProtocol,
    default_protocol,
    leg_identity,
    leg_system,
    protocol_path,
)

LAMBDA = "lambda_interpolate"  # openmm-ml's global parameter for interpolate=True
SPEED_ONLY = ("samples", "compile", "batched")  # EndStateProtocol settings that do not change what is sampled


@dataclasses.dataclass(frozen=True)
class EndStateProtocol:
    """Sampling of the MM→ML path (the system set-up comes from a :class:`HydrationProtocol`)."""

    lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    samples: int = 100
    steps_per_sample: int = 250
    equilibration_steps: int = 2500
    timestep_fs: float = 2.0
    precision: str = "single"
    compile: bool = False  # torch.compile the ML architecture: speed only (see AtomMLCalculator)
    # the states side by side, every state's ML solute in one call per step (atomml.lockstep):
    # speed only (methane, 1 thread: 2.1x the ns/day of the states in turn in vacuum, 1.3x in water)
    batched: bool = True

    def __post_init__(self) -> None:
        if len(self.lambdas) < 2 or self.lambdas[0] != 0.0 or self.lambdas[-1] != 1.0:
            raise ValueError(f"lambdas must run from 0 (MM) to 1 (ML), got {self.lambdas}")
        if any(b <= a for a, b in zip(self.lambdas, self.lambdas[1:])):
            raise ValueError(f"lambdas must increase, got {self.lambdas}")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> EndStateProtocol:
        """The ``mm_to_ml`` section of the protocol file ``path`` (or a shipped protocol's name)
        over these defaults (all defaults when the file has none)."""
        import yaml

        values = (yaml.safe_load(protocol_path(path).read_text()) or {}).get(ML_SECTION) or {}
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown} in {ML_SECTION}; the keys are those of EndStateProtocol")
        if "lambdas" in values:
            values["lambdas"] = tuple(float(v) for v in values["lambdas"])
        return cls(**values)


def potential_sha256(name: str) -> str:
    """SHA-256 of the potential file ``name`` (a path or a shipped name): which weights gave a row."""
    from ..potential_file import resolve

    return hashlib.sha256(Path(resolve(name)).read_bytes()).hexdigest()


def ml_leg_identity(smiles: str, potential: str, protocol: HydrationProtocol, path: EndStateProtocol) -> dict:
    """What defines an MM→ML leg's samples besides the sampler's settings (see
    :func:`atomml.fe.hydration.leg_identity`): also the potential's weights (the file's hash,
    whatever its name) and the path's settings but :data:`SPEED_ONLY` (``samples`` sets how long
    it runs, ``compile`` and ``batched`` how fast)."""
    return {
        **leg_identity(smiles, protocol), "potential_sha256": potential_sha256(potential),
        "mm_to_ml": {k: v for k, v in dataclasses.asdict(path).items() if k not in SPEED_ONLY},
    }  # fmt: skip


def _set_lambda(context: Any, value: float) -> None:
    context.setParameter(LAMBDA, float(value))


def _solute_charge(system: Any, atoms: Any) -> float:
    """The total charge (e) of ``atoms`` in ``system``: their AM1-BCC charges summed and
    rounded, the formal charge."""
    import openmm

    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    total = sum(nonbonded.getParticleParameters(i)[0].value_in_unit(openmm.unit.elementary_charge) for i in atoms)
    return float(round(total))


def mixed_system(setup: Any, potential: str, protocol: HydrationProtocol, path: EndStateProtocol, solvent: bool,
                 device: str | None = None) -> Any:  # fmt: skip
    """The leg's MM system with the solute's internal energy interpolated to ``potential``
    (global ``lambda_interpolate``). The solute's X–H constraints stay: openmm-ml removes the
    ML atoms' constraints by default, and with the protocol's 2 fs step and 1.5 amu hydrogens
    unconstrained X–H bonds blow up (a methane shed its hydrogens at λ = 0)."""
    from openmm import app
    from openmmml import MLPotential

    from ..interfaces.openmm_plugin import ensure_registered

    system, _, _ = leg_system(setup, protocol, solvent)
    topology = app.AmberPrmtopFile(str(setup.prmtop)).topology
    ensure_registered()
    options = {} if device is None else {"device": device}
    charge = _solute_charge(system, setup.molecule_atoms)
    ml = MLPotential("atomml", potential=potential, charge=charge, precision=path.precision, compile=path.compile, **options)
    return ml.createMixedSystem(topology, system, list(setup.molecule_atoms), interpolate=True, removeConstraints=False)


def _ml_leg_arguments(smiles: str, potential: str, folder: Path, leg: str, protocol: HydrationProtocol,
                      path: EndStateProtocol, device: str | None, log: Callable[[str], None] | None) -> tuple[Any, ...]:  # fmt: skip
    """sample_leg's (and leg_seconds') first ten arguments and the mixed system of an MM->ML leg."""
    from .hydration import LEGS, leg_setups

    if leg not in LEGS:
        raise ValueError(f"leg must be one of {LEGS}, got {leg!r}")
    solvated, vacuum = leg_setups(smiles, folder, protocol, log)
    setup = solvated if leg == "solvent" else vacuum
    mixed = mixed_system(setup, potential, protocol, path, leg == "solvent", device)
    arguments = (setup, protocol, leg == "solvent", folder / f"ml_{leg}", list(path.lambdas), _set_lambda, path.samples,
                 path.steps_per_sample, path.equilibration_steps, path.timestep_fs)  # fmt: skip
    return arguments, mixed


def run_ml_leg(smiles: str, potential: str, folder: str | os.PathLike[str], leg: str,
               protocol: HydrationProtocol | None = None, path: EndStateProtocol | None = None,
               platform: str | None = None, max_minutes: float | None = None, progress: bool = True,
               device: str | None = None, log: Callable[[str], None] | None = None,
               later_seconds: float = 0.0) -> bool:  # fmt: skip
    """Sample (or resume) the MM→ML path of ``smiles`` in ``leg`` ("solvent" or "vacuum"),
    stored in ``folder/ml_<leg>``; True when done, False when ``max_minutes`` ran out first.
    ``device`` is the torch device of the ML solute (default CUDA if there is one).
    The sampler is the hydration protocol's; the solvent leg starts from its NPT-equilibrated
    box, as the decoupling leg does. No state is minimised: the L-BFGS line search of OpenMM's
    minimiser tries geometries far from any the ML potential was trained on (an H tried
    0.07 Å from its carbon), so every state starts from the MM coordinates and equilibrates by MD.
    A leg folder that another process samples, or that holds samples of another molecule,
    protocol or potential (:func:`ml_leg_identity`), is refused before anything is written.
    ``log``, ``later_seconds``: see :func:`atomml.fe.hydration.sample_leg`."""
    from .hydration import LEGS, sample_leg
    from .sampling import check_resumable

    if leg not in LEGS:
        raise ValueError(f"leg must be one of {LEGS}, got {leg!r}")
    protocol = protocol or default_protocol()
    path = path or EndStateProtocol()
    folder = Path(folder)
    identity = ml_leg_identity(smiles, potential, protocol, path)
    check_resumable(folder / f"ml_{leg}", identity)
    arguments, mixed = _ml_leg_arguments(smiles, potential, folder, leg, protocol, path, device, log)
    return sample_leg(*arguments, platform, max_minutes, progress, system=mixed, minimize=False, identity=identity,
                      label=f"ml-{leg} leg", log=log, later_seconds=later_seconds, batched=path.batched)  # fmt: skip


def ml_leg_seconds(smiles: str, potential: str, folder: str | os.PathLike[str], leg: str,
                   protocol: HydrationProtocol | None = None, path: EndStateProtocol | None = None,
                   platform: str | None = None, device: str | None = None, progress: bool = False,
                   log: Callable[[str], None] | None = None) -> float:  # fmt: skip
    """The wall time :func:`run_ml_leg` still needs (:func:`atomml.fe.hydration.leg_seconds`)."""
    from .hydration import leg_seconds

    arguments, mixed = _ml_leg_arguments(smiles, potential, Path(folder), leg, protocol or default_protocol(),
                                         path or EndStateProtocol(), device, log)  # fmt: skip
    return leg_seconds(*arguments, platform, system=mixed, progress=progress, log=log)


def check_potential(potential: str, smiles: str) -> None:
    """Refuse, before any set-up or sampling, an ML potential that cannot take ``smiles``'s
    solute: a file or name that does not exist (with the closest shipped names), one that
    lacks some of the molecule's elements (naming the shipped potentials that have them), or,
    for a charged molecule, one whose energy does not depend on the total charge (it would
    treat the ion as neutral). The last check evaluates the potential on one conformer at
    charge 0 and at the molecule's formal charge (a second or two)."""
    from rdkit import Chem

    from ..errors import InputError
    from ..mm import check_molecule
    from ..potential_file import read_header, shipped_potentials

    mol = check_molecule(smiles)
    header = read_header(potential)
    elements = {a.GetSymbol() for a in mol.GetAtoms()}
    missing = sorted(elements - set(header["elements"]))
    if missing:
        fits = [name for name in shipped_potentials() if elements <= set(read_header(name)["elements"])]
        hint = f"use one that has them ({', '.join(fits)})" if fits else "use a potential trained on them"
        raise InputError(f"--ml-potential {potential} knows {', '.join(header['elements'])}, not {', '.join(missing)} "
                         f"of {smiles}; {hint}")  # fmt: skip
    charge = Chem.GetFormalCharge(mol)
    if charge != 0 and not _responds_to_charge(potential, smiles, charge):
        raise InputError(f"{smiles} has a net charge of {charge:+d} but --ml-potential {potential} ignores the total "
                         "charge (its energy is the same at charge 0): use a potential that takes the charge as "
                         "input, or the molecule's neutral form")  # fmt: skip


def _responds_to_charge(potential: str, smiles: str, charge: int) -> bool:
    """Whether ``potential``'s energy of a conformer of ``smiles`` changes with the total charge."""
    import ase

    from ..interfaces.ase import AtomMLCalculator
    from ..mm import embedded_molecule

    mol = embedded_molecule(smiles)
    atoms = ase.Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())
    atoms.calc = AtomMLCalculator(potential, device="cpu", dtype="float64")
    energies = []
    with warnings.catch_warnings():  # e.g. an odd electron count at charge 0: this is only a probe
        warnings.simplefilter("ignore")
        for value in (0, charge):
            atoms.info["charge"] = value
            energies.append(atoms.get_potential_energy())
    return abs(energies[1] - energies[0]) > 1e-6


def summarise_ml(smiles: str, potential: str, folder: str | os.PathLike[str], protocol: HydrationProtocol | None = None,
                 path: EndStateProtocol | None = None) -> dict:  # fmt: skip
    """ΔΔG(MM→ML) from the samples both ML legs stored so far; written to
    ``folder/ml_correction.json``. Legs sampled with another molecule, protocol or potential
    are refused (:func:`ml_leg_identity`)."""
    from ..units import kt
    from .analysis import analyse_leg, by_leg, leg_flags, sampling_lengths
    from .sampling import check_identity

    protocol = protocol or default_protocol()
    path = path or EndStateProtocol()
    folder = Path(folder)
    identity = ml_leg_identity(smiles, potential, protocol, path)
    for name in ("solvent", "vacuum"):
        check_identity(folder / f"ml_{name}", identity)
    legs = {name: analyse_leg(folder / f"ml_{name}", protocol.temperature) for name in ("solvent", "vacuum")}
    fw, fv = legs["solvent"].result, legs["vacuum"].result
    value = fw.value_kt - fv.value_kt
    error = float(np.hypot(fw.error_kt, fv.error_kt))
    kt_kcal = kt(protocol.temperature, "kcal/mol")
    lengths = sampling_lengths(legs, len(path.lambdas), path.samples, path.steps_per_sample, path.equilibration_steps,
                               path.timestep_fs)  # fmt: skip
    summary = {
        "smiles": smiles, "potential": potential, "temperature_K": protocol.temperature,
        "ddG_mm_to_ml_kt": value, "ddG_mm_to_ml_error_kt": error,
        "ddG_mm_to_ml_kcal_per_mol": value * kt_kcal, "ddG_mm_to_ml_error_kcal_per_mol": error * kt_kcal,
        "dG_mm_to_ml_solvent_kt": fw.value_kt, "dG_mm_to_ml_vacuum_kt": fv.value_kt,
        "lambdas": list(path.lambdas),
        "samples_per_state": by_leg(legs, "samples_per_state"),
        "uncorrelated_per_state": by_leg(legs, "uncorrelated_per_state"),
        "simulated_ns_per_leg": lengths.ns_per_leg,
        "sampler": protocol.sampler,
        "ns_per_day_per_window": by_leg(legs, "ns_per_day_per_state"),
        "neighbour_overlaps": by_leg(legs, "neighbour_overlaps"),
        "flags": leg_flags(legs) + lengths.flags, "protocol": dataclasses.asdict(path),
    }  # fmt: skip
    write_json(folder / "ml_correction.json", summary)
    return summary


def end_state_correction(
    smiles: str,
    potential: str,
    folder: str | os.PathLike[str],
    protocol: HydrationProtocol | None = None,
    path: EndStateProtocol | None = None,
    progress: bool = True,
    platform: str | None = None,
    device: str | None = None,
) -> dict:
    """ΔΔG(MM→ML) of hydration for ``smiles`` with atomml ``potential``; resumable. The summary
    is returned and written to ``folder/ml_correction.json``. ``platform``: the OpenMM
    platform (default: the fastest); ``device``: the ML solute's torch device (default: CUDA if
    there is one)."""
    for leg in ("solvent", "vacuum"):
        run_ml_leg(smiles, potential, folder, leg, protocol, path, platform=platform, progress=progress, device=device)
    return summarise_ml(smiles, potential, folder, protocol, path)
