"""Relax a structure's positions and cell, pymatgen or ASE in and the same type out.

``atomml.relax(structure, potential)`` is the one-call relaxation that materials workflows
expect (as matgl's ``Relaxer``): ASE's optimisers (FIRE or BFGS) with ASE's
``FrechetCellFilter`` for the cell, on a copy of the input, so the caller's object never
changes. A pymatgen ``Structure`` or ``Molecule`` is converted with pymatgen's
``AseAtomsAdaptor`` and the results converted back.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from .errors import InputError

OPTIMIZERS = ("FIRE", "BFGS")


@dataclasses.dataclass
class RelaxResult:
    """The outcome of :func:`relax`.

    Attributes:
        final_structure: the relaxed structure, of the type given (pymatgen or ASE; an ASE
            ``Atoms`` carries its final energy, forces and stress in a SinglePointCalculator).
        energy: final energy, eV.
        forces: (n, 3) final forces, eV/Å.
        stress: (6,) final stress, eV/Å³ (ASE's sign, Voigt); None without a periodic 3D cell.
        converged: whether the largest force (and, with ``cell=True``, the stress times the
            volume per atom) fell below ``fmax`` within ``steps``.
        steps: optimiser steps taken.
        trajectory: with ``trajectory=True``, the structure at every step (the start included),
            of the type given; else None.
        trajectory_energies: with ``trajectory=True``, the energy (eV) at every step; else None.
    """

    final_structure: Any
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    converged: bool
    steps: int
    trajectory: list[Any] | None = None
    trajectory_energies: np.ndarray | None = None


def relax(
    structure: Any,
    potential_or_calculator: Any,
    *,
    fmax: float = 0.01,
    steps: int = 500,
    cell: bool = True,
    optimizer: str = "FIRE",
    trajectory: bool = False,
) -> RelaxResult:
    """Relax positions (and with ``cell=True`` the cell) of a copy of ``structure``.

    Args:
        structure: an ASE ``Atoms`` or a pymatgen ``Structure``/``Molecule``.
        potential_or_calculator: an ASE calculator (used as it is), or a
            :class:`~atomml.potential.Potential`, file path or shipped name (wrapped in an
            :class:`~atomml.interfaces.ase.AtomMLCalculator` with its defaults).
        fmax: convergence threshold on the forces, eV/Å (and, through ASE's
            ``FrechetCellFilter``, on the stress times the volume per atom, eV).
        steps: most optimiser steps.
        cell: relax the cell too (needs a periodic 3D cell).
        optimizer: "FIRE" or "BFGS" (ASE's).
        trajectory: keep the structure and energy of every step.
    """
    from ase.calculators.calculator import Calculator, PropertyNotImplementedError
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    from .interfaces.ase import AtomMLCalculator, stress_defined
    from .potential import Potential

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if not fmax > 0 or isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"fmax must be positive (eV/Å) and steps a non-negative integer, got fmax={fmax!r}, steps={steps!r}")
    atoms, back = _to_ase(structure)
    if cell and not stress_defined(atoms):
        raise InputError(
            f"cell=True relaxes the cell, but this {type(structure).__name__} has no periodic 3D cell "
            f"(pbc={atoms.pbc.tolist()}): pass cell=False to relax the positions only"
        )
    if isinstance(potential_or_calculator, Calculator):
        calculator = potential_or_calculator
    elif isinstance(potential_or_calculator, (str, os.PathLike, Potential)):
        calculator = AtomMLCalculator(potential_or_calculator)
    else:
        raise InputError(
            f"relax needs an ASE calculator or a potential (name, path or Potential), got "
            f"{type(potential_or_calculator).__name__}"
        )
    atoms.calc = calculator
    target = FrechetCellFilter(atoms) if cell else atoms
    opt = {"FIRE": FIRE, "BFGS": BFGS}[optimizer](target, logfile=None)
    frames: list[Any] = []
    energies: list[float] = []
    if trajectory:

        def record() -> None:
            frames.append(atoms.copy())
            energies.append(float(atoms.get_potential_energy()))

        opt.attach(record, interval=1)
    converged = bool(opt.run(fmax=fmax, steps=steps))

    results = {"energy": float(atoms.get_potential_energy()), "forces": atoms.get_forces().copy()}
    if stress_defined(atoms):
        try:
            results["stress"] = atoms.get_stress().copy()
        except PropertyNotImplementedError:  # a calculator without stress (possible with cell=False)
            pass
    final = atoms.copy()
    final.calc = SinglePointCalculator(final, **results)
    return RelaxResult(
        final_structure=back(final),
        energy=results["energy"],
        forces=results["forces"],
        stress=results.get("stress"),
        converged=converged,
        steps=int(opt.nsteps),
        trajectory=[back(f) for f in frames] if trajectory else None,
        trajectory_energies=np.array(energies) if trajectory else None,
    )


def _to_ase(structure: Any) -> tuple[Any, Any]:
    """(a copy of ``structure`` as ASE ``Atoms``, a function that converts ``Atoms`` back to the
    input's type)."""
    if hasattr(structure, "get_positions") and hasattr(structure, "get_atomic_numbers"):
        atoms = structure.copy()  # Atoms.copy leaves the calculator behind
        return atoms, lambda a: a

    if hasattr(structure, "cart_coords") and hasattr(structure, "sites"):
        from pymatgen.io.ase import AseAtomsAdaptor

        from .graph import _check_ordered

        _check_ordered(structure)
        atoms = AseAtomsAdaptor.get_atoms(structure, msonable=False)
        atoms.calc = None  # pymatgen may attach one for stored magnetic moments or charges
        charge = getattr(structure, "charge", 0) or 0
        if charge:
            atoms.info["charge"] = charge  # what AtomMLCalculator reads (pymatgen sets atoms.charge)
        periodic = hasattr(structure, "lattice")

        def back(a: Any) -> Any:
            plain = a.copy()
            plain.calc = None
            converted = AseAtomsAdaptor.get_structure(plain) if periodic else AseAtomsAdaptor.get_molecule(plain)
            if not periodic and charge:
                converted.set_charge_and_spin(charge)
            return converted

        return atoms, back
    raise InputError(f"relax takes ASE Atoms or a pymatgen Structure/Molecule, got {type(structure).__name__}")
