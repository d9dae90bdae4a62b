"""atomml potentials in OpenMM through openmm-ml: ``MLPotential("atomml", potential=...)``.

Registered through the ``openmmml.potentials`` entry point (:mod:`atomml.interfaces.openmm_plugin`), so
after installing atomml::

    from openmmml import MLPotential
    potential = MLPotential("atomml", potential="schnet-cu-emt-demo")   # shipped name or file
    system = potential.createSystem(topology)                          # everything ML
    system = potential.createMixedSystem(topology, mm_system, ml_atoms, interpolate=True)

A molecule's Topology and positions come from :func:`molecule_topology` (ASE Atoms, an SDF
file, an RDKit molecule or a SMILES string)::

    from atomml.interfaces.openmm import molecule_topology
    molecule = molecule_topology("CC(=O)Nc1ccc(O)cc1")   # .topology, .positions (nm), .charge (e)
    system = MLPotential("atomml", potential="tensornet-organic-gfn2").createSystem(
        molecule.topology, charge=molecule.charge)

Options (to ``MLPotential`` or to ``createSystem`` / ``createMixedSystem``): ``potential``
(required), ``precision`` ("single" or "double", default single), ``charge`` (total charge of
the ML atoms, default 0), ``device`` (torch device, default CUDA if available), ``skin``
(Verlet skin in Å, default 0.5), ``small_system`` ("auto", True or False: the compiled
fixed-shape path of :mod:`atomml.fast` for ML regions of up to 256 atoms, chosen on its own
after 200 steps with "auto"; :class:`AtomMLComputation`), ``compile`` (``torch.compile`` the
architecture with dynamic shapes on the general path, default False).

The force is an ``openmm.PythonForce`` (OpenMM >= 8.5), as openmm-ml itself runs MACE,
NequIP and TorchMD-Net today: openmm-torch's TorchForce does not work with torch >= 2.10.
Units are converted at this boundary only (nm <-> Å, kJ/mol <-> eV, :mod:`atomml.units`).
The computation keeps its evaluator and its Verlet-skin neighbour list across steps, so
neighbour search runs only when an atom has moved more than half the skin or the box has
changed.

This module imports nothing from the entry-point module: openmm-ml imports that one while
``openmmml.mlpotential`` is half-imported, so the dependency runs one way only (plugin -> here).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np

from .. import lockstep, units
from ..errors import InputError
from ..graph import _ase_charge, total_charge
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
# (batch_group, replicas) -> the evaluator of that many copies of an ML region, for atomml.lockstep
_BATCHED: dict[tuple[str, int], Any] = {}
_BATCHED_LOCK = threading.Lock()


class AtomMLComputation:
    """The PythonForce callback: OpenMM state (nm) -> (energy kJ/mol, forces kJ/mol/nm).

    Lean per step: positions in, forces out, no ASE objects. The evaluator is
    :class:`atomml.fast.GeneralPath` (a Verlet-skin neighbour list reused across steps), and
    for an ML region of at most :data:`atomml.fast.MAX_ATOMS` atoms, after
    :data:`atomml.fast.AUTO_AFTER_CALLS` steps, the compiled :class:`atomml.fast.SmallSystemPath`
    (``small_system``: "auto", True from the first step, False never)."""

    def __init__(self, potential: Any, numbers: Iterable[int], periodic: bool, charge: float = 0.0,
                 precision: str = "single", device: str | None = None, skin: float = 0.5,
                 compile: bool = False, small_system: bool | str = "auto"):  # fmt: skip
        import torch

        from .. import fast
        from ..potential_file import load_potential

        dtypes = {"single": torch.float32, "double": torch.float64}
        if precision not in dtypes:
            raise ValueError(f"precision must be 'single' or 'double', got {precision!r}")
        if not isinstance(potential, Potential):
            potential = load_potential(potential)
        fast.auto_enabled(small_system)  # a bad value is an error here, not at the first step
        self.periodic = bool(periodic)
        self.numbers = list(numbers)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.options = {"pbc": self.periodic, "charge": total_charge(charge, "the charge option of createSystem"),
                        "device": device, "dtype": dtypes[precision], "skin": skin}  # fmt: skip
        self.small_system = small_system
        self.small: fast.SmallSystemPath | None = None
        # OpenMM gives every Context a pickled copy of a force inside a CustomCVForce (openmm-ml's
        # interpolate=True): the copies share this name, and through it one batched evaluator
        self.batch_group = uuid.uuid4().hex
        self.calls = 0
        self._small_after = fast.switch_after(small_system, potential, len(self.numbers))
        # ``compile`` is for the general path, when it is the path of the whole run: a second
        # compile for the first few steps before the small-system path takes over would not pay
        compile = compile and self._small_after is None
        self.general = fast.GeneralPath(potential, self.numbers, compile=compile, **self.options)
        self.potential = self.general.potential

    def evaluator(self) -> Any:
        """The path this step takes (see the class docstring)."""
        from .. import fast

        self.calls += 1
        if self.small is None and self._small_after is not None and self.calls >= self._small_after:
            self.small = fast.SmallSystemPath(self.potential, self.numbers, **self.options)
        return self.small if self.small is not None else self.general

    def batch_evaluator(self, replicas: int) -> Any:
        """The evaluator of ``replicas`` copies of the ML region in one call, made on first use:
        the small-system path where it applies (all replicas' atoms at most
        :data:`atomml.fast.MAX_ATOMS`, ``small_system`` not False), else the general path."""
        from .. import fast

        key = (self.batch_group, replicas)
        with _BATCHED_LOCK:
            if key not in _BATCHED:
                small = self.small_system if fast.unsupported(self.potential) is None else False
                _BATCHED[key] = fast.replica_evaluator(self.potential, self.numbers, replicas=replicas,
                                                       small_system=small, **self.options)  # fmt: skip
            return _BATCHED[key]

    def __call__(self, state: Any) -> tuple[float, np.ndarray]:
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        cell = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.angstrom) if self.periodic else None
        group = lockstep.current()
        if group is not None:  # a replica stepped side by side with others: one call for all
            energy, forces = group.evaluate(self, positions, cell)
            return energy * units.EV_TO_KJ_PER_MOL, forces * FORCE_PER_EV_PER_A
        energies, forces = self.evaluator()(positions[None], cell)
        return float(energies[0]) * units.EV_TO_KJ_PER_MOL, forces[0] * FORCE_PER_EV_PER_A


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
            small_system=options.get("small_system", "auto"),
        )  # fmt: skip
        force = openmm.PythonForce(computation)
        force.setForceGroup(forceGroup)
        force.setUsesPeriodicBoundaryConditions(periodic)
        if atoms is not None:
            force.setParticles(atoms)
        system.addForce(force)



# -- molecules as OpenMM topologies ------------------------------------------------------------
RDKIT_SUFFIXES = (".sdf", ".sd", ".mol")  # read with RDKit (bonds and bond orders from the file)
STRUCTURE_SUFFIXES = (".xyz", ".extxyz", ".pdb", ".cif", ".traj", ".json", ".db")  # read with ASE


class MoleculeTopology(NamedTuple):
    """What :func:`molecule_topology` returns: ``topology`` (``openmm.app.Topology``),
    ``positions`` (an OpenMM Quantity, (N, 3) in nm, in the topology's atom order) and
    ``charge`` (the total charge in e, for ``createSystem(..., charge=...)``)."""

    topology: Any
    positions: Any
    charge: float


def molecule_topology(molecule: Any, residue_name: str = "MOL", seed: int = 0) -> MoleculeTopology:
    """An OpenMM Topology, positions and total charge for a molecule, given as

    - ASE ``Atoms``: bonds between atoms closer than 1.2 × the sum of their covalent radii
      (:mod:`atomml.analysis.bonds`' rule, minimum image along periodic axes); each bonded
      fragment is a residue when the fragments are contiguous in the atom order (waters are
      ``HOH``), else all atoms are one residue; a fully periodic cell becomes the periodic box
      (rotated into OpenMM's lower-triangular form, the positions with it); the charge is read as
      the ASE calculator reads it (``atoms.info["charge"]``, else the initial charges' sum);
    - an SDF or MOL file (path; other structure files are read with ASE as ``Atoms``), or an
      RDKit molecule with a conformer: bonds and bond orders from RDKit, formal charge as charge;
    - a SMILES string: one 3D conformer with hydrogens (RDKit ETKDG, then MMFF; ``seed``).

    Atoms keep their order and get element names numbered per residue (C1, C2, H1, ...); the
    molecule's residue is ``residue_name``. Use::

        molecule = molecule_topology("CCO")
        system = MLPotential("atomml", potential="tensornet-organic-gfn2").createSystem(
            molecule.topology, charge=molecule.charge)
        simulation = app.Simulation(molecule.topology, system, integrator)
        simulation.context.setPositions(molecule.positions)
    """
    from ase import Atoms

    if isinstance(molecule, Atoms):
        return _from_atoms(molecule, residue_name)
    if type(molecule).__module__.startswith("rdkit"):
        return _from_rdkit(molecule, residue_name, "the RDKit molecule")
    if not isinstance(molecule, (str, os.PathLike)):
        raise TypeError(f"molecule must be ASE Atoms, an RDKit molecule, a file path or a SMILES string, "
                        f"got {type(molecule).__name__}")  # fmt: skip
    path = Path(molecule)
    suffix = path.suffix.lower()
    if path.is_file() or suffix in RDKIT_SUFFIXES + STRUCTURE_SUFFIXES or isinstance(molecule, os.PathLike):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; check the path (or give a SMILES string)")
        if suffix in RDKIT_SUFFIXES:
            from rdkit import Chem

            mol = next(iter(Chem.SDMolSupplier(str(path), removeHs=False)), None)
            if mol is None:
                raise InputError(f"RDKit cannot read a molecule from {path}; check that it is an SDF/MOL file")
            return _from_rdkit(mol, residue_name, str(path))
        from ase.io import read

        return _from_atoms(read(path), residue_name)
    from ..mm import embedded_molecule

    return _from_rdkit(embedded_molecule(str(molecule), seed), residue_name, f"SMILES {molecule!r}")


def _new_topology(numbers: Iterable[int], residues: list[tuple[str, list[int]]]) -> tuple[Any, list[Any]]:
    """A Topology with one chain; ``residues`` lists (name, atom indices), in atom order."""
    from openmm import app

    numbers = list(numbers)
    top = app.Topology()
    chain = top.addChain()
    atoms: list[Any] = []
    for name, indices in residues:
        residue = top.addResidue(name, chain)
        counts: Counter[str] = Counter()
        for i in indices:
            element = app.Element.getByAtomicNumber(int(numbers[i]))
            counts[element.symbol] += 1
            atoms.append(top.addAtom(f"{element.symbol}{counts[element.symbol]}", element, residue))
    return top, atoms


def _from_rdkit(mol: Any, residue_name: str, source: str) -> MoleculeTopology:
    from openmm import app
    from rdkit import Chem

    if mol.GetNumConformers() == 0:
        raise InputError(f"{source} has no 3D coordinates; give a conformer (or a SMILES, which gets one)")
    orders = {Chem.BondType.SINGLE: (app.Single, 1), Chem.BondType.DOUBLE: (app.Double, 2),
              Chem.BondType.TRIPLE: (app.Triple, 3), Chem.BondType.AROMATIC: (app.Aromatic, None)}  # fmt: skip
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    top, atoms = _new_topology(numbers, [(residue_name, list(range(len(numbers))))])
    for bond in mol.GetBonds():
        kind, order = orders.get(bond.GetBondType(), (None, None))
        top.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()], type=kind, order=order)
    positions = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    return MoleculeTopology(top, _nm(positions), float(Chem.GetFormalCharge(mol)))


def _from_atoms(atoms: Any, residue_name: str) -> MoleculeTopology:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ..analysis.bonds import BOND_FACTOR, _pairs_within

    if atoms.pbc.any() and not atoms.pbc.all():
        raise ValueError(f"OpenMM needs a fully periodic or a non-periodic system, this one has pbc="
                         f"{atoms.pbc.tolist()}; use the ASE calculator for slabs and wires")  # fmt: skip
    n = len(atoms)
    if n == 0:
        raise InputError("the structure has no atoms: give a molecule")
    pairs, _ = _pairs_within(atoms, BOND_FACTOR)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    if len(starts) == count:  # each fragment contiguous: one residue each
        bounds = [*starts.tolist(), n]
        groups = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        groups = [list(range(n))]
    water = [1, 1, 8]
    residues = [("HOH" if sorted(atoms.numbers[g].tolist()) == water else residue_name, g) for g in groups]
    top, made = _new_topology(atoms.numbers, residues)
    for i, j in pairs.tolist():
        top.addBond(made[i], made[j])
    positions = np.array(atoms.positions, dtype=np.float64)
    if atoms.pbc.all():
        from openmm import unit

        cell, rotation = atoms.cell.standard_form()  # cell @ rotation = atoms.cell
        positions = positions @ rotation.T
        top.setPeriodicBoxVectors(np.asarray(cell) / units.NM_TO_ANGSTROM * unit.nanometer)
    return MoleculeTopology(top, _nm(positions), _ase_charge(atoms))


def _nm(positions_angstrom: np.ndarray) -> Any:
    from openmm import unit

    return unit.Quantity(positions_angstrom / units.NM_TO_ANGSTROM, unit.nanometer)
