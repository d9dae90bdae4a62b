"""atomml potentials in OpenMM through openmm-ml: ``MLPotential("atomml", potential=...)``.

Registered through the ``openmmml.potentials`` entry point (:mod:`atomml.interfaces.openmm_plugin`), so
after installing atomml::

    from openmmml import MLPotential
    potential = MLPotential("atomml", potential="schnet-cu-emt-demo")   # shipped name or file
    system = potential.createSystem(topology)                          # everything ML
    system = potential.createMixedSystem(topology, mm_system, ml_atoms, interpolate=True)

Options (to ``MLPotential`` or to ``createSystem`` / ``createMixedSystem``): ``potential``
(required), ``precision`` ("single" or "double", default single), ``charge`` (total charge of
the ML atoms, default 0), ``device`` (torch device, default CUDA if available), ``skin``
(Verlet skin in Å, default 0.5), ``compile`` (``torch.compile`` the architecture, default
False; see :class:`~atomml.interfaces.ase.AtomMLCalculator`: it pays for small ML regions only).

The force is an ``openmm.PythonForce`` (OpenMM >= 8.5), as openmm-ml itself runs MACE,
NequIP and TorchMD-Net today: openmm-torch's TorchForce does not work with torch >= 2.10.
Units are converted at this boundary only (nm <-> Å, kJ/mol <-> eV, :mod:`atomml.units`).
The computation keeps an :class:`~atomml.interfaces.ase.AtomMLCalculator` and its Verlet-skin
neighbour list across steps, so neighbour search runs only when an atom has moved more than
half the skin or the box has changed.

This module imports nothing from the entry-point module: openmm-ml imports that one while
``openmmml.mlpotential`` is half-imported, so the dependency runs one way only (plugin -> here).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .. import units
from ..graph import total_charge
from ..potential import Potential
from ..potential_file import is_long_range, read_header

try:
    import openmm
    from openmm import unit
    from openmmml.mlpotential import MLPotentialImpl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "atomml.interfaces.openmm needs OpenMM >= 8.5 and openmm-ml: pip install 'atomml[openmm]'"
    ) from exc

FORCE_PER_EV_PER_A = units.EV_TO_KJ_PER_MOL * units.NM_TO_ANGSTROM  # eV/Å -> kJ/mol/nm


class AtomMLComputation:
    """The PythonForce callback: OpenMM state (nm) -> (energy kJ/mol, forces kJ/mol/nm)."""

    def __init__(self, potential: Any, numbers: Iterable[int], periodic: bool, charge: float = 0.0,
                 precision: str = "single", device: str | None = None, skin: float = 0.5,
                 compile: bool = False):  # fmt: skip
        import ase
        import torch

        from .ase import AtomMLCalculator

        dtypes = {"single": torch.float32, "double": torch.float64}
        if precision not in dtypes:
            raise ValueError(f"precision must be 'single' or 'double', got {precision!r}")
        self.periodic = bool(periodic)
        self.atoms = ase.Atoms(numbers=list(numbers), pbc=self.periodic)
        self.atoms.info["charge"] = total_charge(charge, "the charge option of createSystem")
        self.calculator = AtomMLCalculator(potential, device=device, dtype=dtypes[precision], skin=skin, compile=compile)
        self.atoms.calc = self.calculator

    def __call__(self, state: Any) -> tuple[float, np.ndarray]:
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        self.atoms.set_positions(positions)
        if self.periodic:
            self.atoms.set_cell(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.angstrom))
        energy = self.atoms.get_potential_energy()
        forces = self.atoms.get_forces()
        return energy * units.EV_TO_KJ_PER_MOL, forces * FORCE_PER_EV_PER_A


class AtomMLPotentialImpl(MLPotentialImpl):
    """openmm-ml's implementation of ``MLPotential("atomml", ...)``: adds the atomml force."""

    def __init__(self, name: str, **args: Any):
        self.name = name
        self.defaults = args

    def getMLLongRange(self) -> bool | None:
        """Whether the potential has a long-range energy term (e.g. Coulomb): openmm-ml's
        mechanical embedding then leaves the ML atoms' long-range electrostatics to it. None
        (unknown: openmm-ml asks for its ``mlLongRange`` option) when the potential is named only
        in ``createSystem``'s arguments."""
        potential = self.defaults.get("potential")
        if potential is None:
            return None
        if isinstance(potential, Potential):
            return potential.long_range
        return is_long_range(read_header(potential))

    def addForces(self, topology: Any, system: Any, atoms: Iterable[int] | None, forceGroup: int, **args: Any) -> None:
        options = {**self.defaults, **args}
        if "potential" not in options:
            raise ValueError("MLPotential('atomml') needs potential=<a shipped name or a potential file>")
        included = list(topology.atoms())
        if atoms is not None:
            atoms = list(atoms)
            included = [included[i] for i in atoms]
        missing = [a.index for a in included if a.element is None]
        if missing:
            raise ValueError(f"atoms {missing[:10]} of the Topology have no element; the ML potential needs elements")
        periodic = topology.getPeriodicBoxVectors() is not None
        computation = AtomMLComputation(
            options["potential"], [a.element.atomic_number for a in included], periodic,
            charge=options.get("charge", 0.0), precision=options.get("precision", "single"),
            device=options.get("device"), skin=options.get("skin", 0.5), compile=bool(options.get("compile", False)),
        )  # fmt: skip
        force = openmm.PythonForce(computation)
        force.setForceGroup(forceGroup)
        force.setUsesPeriodicBoundaryConditions(periodic)
        if atoms is not None:
            force.setParticles(atoms)
        system.addForce(force)

