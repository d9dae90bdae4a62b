"""MM → ML end-state correction: from a GAFF solute to an ML solute in MM surroundings.

ML/MM free energies in the usual indirect way (as QuantumBind-RBFE and openmm-ml users treat
ligands): the alchemical legs run with the cheap MM solute, and the change of the solute's
internal energy from MM to an atomml potential is added per leg afterwards. openmm-ml's mixed
system with ``interpolate=True`` gives the path

    U(λ) = U_MM(everything but the solute's internal terms) + (1 - λ) U_MM,internal + λ U_ML,

where the solute's interactions with the water stay MM (GAFF2 Lennard-Jones, AM1-BCC charges)
at every λ. Independent windows at ``lambdas`` (:func:`atomml.fe.sampling.sample_windows`,
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
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .hydration import HydrationProtocol, analyse_leg, default_protocol, leg_flags, leg_system

LAMBDA = "lambda_interpolate"  # openmm-ml's global parameter for interpolate=True


@dataclasses.dataclass(frozen=True)
class EndStateProtocol:
    """Sampling of the MM→ML path (the system set-up comes from a :class:`HydrationProtocol`)."""

    lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    samples: int = 100
    steps_per_sample: int = 250
    equilibration_steps: int = 2500
    timestep_fs: float = 2.0
    precision: str = "single"

    def __post_init__(self) -> None:
        if len(self.lambdas) < 2 or self.lambdas[0] != 0.0 or self.lambdas[-1] != 1.0:
            raise ValueError(f"lambdas must run from 0 (MM) to 1 (ML), got {self.lambdas}")
        if any(b <= a for a, b in zip(self.lambdas, self.lambdas[1:])):
            raise ValueError(f"lambdas must increase, got {self.lambdas}")


def _set_lambda(context: Any, value: float) -> None:
    context.setParameter(LAMBDA, float(value))


def _leg(setup: Any, potential: str, charge: float, protocol: HydrationProtocol, path: EndStateProtocol, solvent: bool,
         folder: Path, progress: bool) -> dict:  # fmt: skip
    from openmm import app
    from openmmml import MLPotential

    from .sampling import sample_windows

    system, positions, box = leg_system(setup, protocol, solvent)
    topology = app.AmberPrmtopFile(str(setup.prmtop)).topology
    ml = MLPotential("atomml", potential=potential, charge=charge, precision=path.precision)
    mixed = ml.createMixedSystem(topology, system, list(setup.molecule_atoms), interpolate=True)
    sample_windows(
        mixed, positions, list(path.lambdas), _set_lambda, folder, temperature=protocol.temperature,
        samples=path.samples, steps_per_sample=path.steps_per_sample, equilibration_steps=path.equilibration_steps,
        timestep_fs=path.timestep_fs, friction_per_ps=protocol.friction_per_ps,
        box=box, seed=protocol.seed, progress=progress,
    )  # fmt: skip
    return analyse_leg(folder, protocol.temperature)


def end_state_correction(
    smiles: str,
    potential: str,
    folder: str | os.PathLike[str],
    protocol: HydrationProtocol | None = None,
    path: EndStateProtocol | None = None,
    progress: bool = True,
) -> dict:
    """ΔΔG(MM→ML) of hydration for ``smiles`` with atomml ``potential``; resumable. The summary
    is returned and written to ``folder/ml_correction.json``."""
    from ..mm import solvated_molecule
    from ..units import KCAL_TO_KJ

    protocol = protocol or default_protocol()
    path = path or EndStateProtocol()
    folder = Path(folder)
    solvated, vacuum = solvated_molecule(smiles, folder / "setup", padding=protocol.padding, seed=protocol.seed)
    from rdkit import Chem

    charge = float(Chem.GetFormalCharge(Chem.MolFromSmiles(smiles)))  # the ML solute's total charge
    water = _leg(solvated, potential, charge, protocol, path, True, folder / "ml_solvent", progress)
    gas = _leg(vacuum, potential, charge, protocol, path, False, folder / "ml_vacuum", progress)
    fw, fv = water["result"], gas["result"]
    value = fw.value_kt - fv.value_kt
    error = float(np.hypot(fw.error_kt, fv.error_kt))
    kt_kcal = fw.kt_in_kj_per_mol / KCAL_TO_KJ
    flags = leg_flags(water, gas)
    summary = {
        "smiles": smiles, "potential": potential, "temperature_K": protocol.temperature,
        "ddG_mm_to_ml_kt": value, "ddG_mm_to_ml_error_kt": error,
        "ddG_mm_to_ml_kcal_per_mol": value * kt_kcal, "ddG_mm_to_ml_error_kcal_per_mol": error * kt_kcal,
        "dG_mm_to_ml_solvent_kt": fw.value_kt, "dG_mm_to_ml_vacuum_kt": fv.value_kt,
        "lambdas": list(path.lambdas), "samples_per_state": path.samples,
        "simulated_ns_per_leg": len(path.lambdas) * (path.samples * path.steps_per_sample + path.equilibration_steps)
        * path.timestep_fs * 1e-6,
        "ns_per_day_per_window": {"solvent": water["ns_per_day_per_state"], "vacuum": gas["ns_per_day_per_state"]},
        "neighbour_overlaps": {"solvent": water["neighbour_overlaps"], "vacuum": gas["neighbour_overlaps"]},
        "flags": flags, "protocol": dataclasses.asdict(path),
    }  # fmt: skip
    (folder / "ml_correction.json").write_text(json.dumps(summary, indent=1))
    return summary
