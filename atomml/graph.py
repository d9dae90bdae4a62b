"""The atomic graph: one batch of structures as flat tensors (see shared conventions).

Fields, for a batch of B structures with N atoms in total and E directed edges:

==================  ==========  =======  ===================================================
field               shape       dtype    meaning
==================  ==========  =======  ===================================================
positions           (N, 3)      float    Cartesian coordinates, Å
atomic_numbers      (N,)        int64    Z
batch               (N,)        int64    structure index of each atom, sorted ascending
cell                (B, 3, 3)   float    rows are lattice vectors a, b, c (Å); zero if unused
pbc                 (B, 3)      bool     periodic along a, b, c, each axis on its own
total_charge        (B,)        float    elementary charges
edge_index          (2, E)      int64    row 0: receiving atom i, row 1: neighbour j
cell_shift          (E, 3)      int64    S with r_ij = r_j - r_i + S @ cell[batch[i]]
partial_charges     (N,)        float    optional per-atom charges (e), for energy terms
==================  ==========  =======  ===================================================

Edge vectors are never stored: they are recomputed from positions, cell and shifts inside the
potential so that autograd gives forces and stress.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import InputError
from .neighbors import check_cells, neighbor_list


@dataclasses.dataclass
class AtomicGraph:
    positions: Tensor
    atomic_numbers: Tensor
    batch: Tensor
    cell: Tensor
    pbc: Tensor
    total_charge: Tensor
    edge_index: Tensor | None = None
    cell_shift: Tensor | None = None
    partial_charges: Tensor | None = None

    @property
    def num_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_graphs(self) -> int:
        return int(self.cell.shape[0])

    @property
    def num_edges(self) -> int:
        return 0 if self.edge_index is None else int(self.edge_index.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def atoms_per_graph(self) -> Tensor:
        """(B,) number of atoms in each structure."""
        return torch.bincount(self.batch, minlength=self.num_graphs)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> AtomicGraph:
        """Move to a device; ``dtype`` changes the floating fields (positions, cell, charge)."""

        def move(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return AtomicGraph(**{f.name: move(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def replace(self, **changes: Any) -> AtomicGraph:
        return dataclasses.replace(self, **changes)

    def with_neighbors(self, cutoff: float, backend: str = "auto") -> AtomicGraph:
        """Return a copy with ``edge_index`` and ``cell_shift`` for ``cutoff`` (Å)."""

        edge_index, cell_shift = neighbor_list(
            self.positions, self.cell, self.pbc, cutoff, batch=self.batch, backend=backend
        )
        return self.replace(edge_index=edge_index, cell_shift=cell_shift)

    def split(self) -> list[AtomicGraph]:
        """The structures of the batch as separate graphs, without edges."""
        counts = self.atoms_per_graph().tolist()
        pos = torch.split(self.positions, counts)
        z = torch.split(self.atomic_numbers, counts)
        return [
            AtomicGraph(
                positions=pos[b],
                atomic_numbers=z[b],
                batch=torch.zeros(counts[b], dtype=torch.long, device=self.device),
                cell=self.cell[b : b + 1],
                pbc=self.pbc[b : b + 1],
                total_charge=self.total_charge[b : b + 1],
                partial_charges=None if self.partial_charges is None else torch.split(self.partial_charges, counts)[b],
            )
            for b in range(self.num_graphs)
        ]


def _float_dtype(dtype: torch.dtype | None) -> torch.dtype:
    return torch.float64 if dtype is None else dtype


def _single(
    positions: np.ndarray,
    numbers: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    charge: float,
    dtype: torch.dtype,
    partial_charges: np.ndarray | None = None,
) -> AtomicGraph:
    n = len(numbers)
    return AtomicGraph(
        positions=torch.tensor(np.array(positions, dtype=np.float64), dtype=dtype).reshape(n, 3),
        atomic_numbers=torch.tensor(np.array(numbers, dtype=np.int64)),
        batch=torch.zeros(n, dtype=torch.long),
        cell=torch.tensor(np.array(cell, dtype=np.float64), dtype=dtype).reshape(1, 3, 3),
        pbc=torch.tensor(np.array(pbc, dtype=bool)).reshape(1, 3),
        total_charge=torch.tensor([float(charge)], dtype=dtype),
        partial_charges=None if partial_charges is None else torch.tensor(np.array(partial_charges, dtype=np.float64), dtype=dtype).reshape(n),
    )


def total_charge(value: Any, source: str = "the total charge") -> float:
    """``value`` as a total charge (e): a finite real number, else :class:`InputError` naming
    ``source`` (where the value came from, e.g. ``atoms.info["charge"]``).

    A fractional charge is accepted with a warning: atomml's potentials are trained on
    molecules and ions, whose total charges are integers, so a fractional one lies outside
    every training set (it is legitimate in, e.g., a fractional-charge alchemical path).
    """
    import numbers
    import warnings

    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(
            f"{source} must be a number of elementary charges, got {value!r} ({type(value).__name__}); "
            "give an integer such as 0, 1 or -1"
        )
    charge = float(value)
    if not np.isfinite(charge):
        raise InputError(f"{source} is {charge}: give a finite total charge such as 0, 1 or -1")
    if abs(charge - round(charge)) > 1e-6:  # not the round-off of a sum of partial charges
        warnings.warn(
            f"{source} is {charge}, not an integer: potentials are trained on integer total charges, "
            "so this is outside the training data",
            stacklevel=3,
        )
    return charge


def _ase_charge(atoms: Any) -> float:
    if "charge" in atoms.info:
        return total_charge(atoms.info["charge"], 'atoms.info["charge"]')
    if atoms.has("initial_charges"):
        return total_charge(float(atoms.get_initial_charges().sum()), "the sum of the initial charges")
    return 0.0


def from_ase(atoms: Any, dtype: torch.dtype | None = None) -> AtomicGraph:
    """Graph from one ASE ``Atoms`` or a sequence of them (batched).

    The total charge is read from ``atoms.info["charge"]`` if present, else from the sum of the
    initial charges, else 0. Initial charges, where the atoms have them, are also the per-atom
    ``partial_charges`` (for energy terms such as Coulomb with given charges).
    """
    if isinstance(atoms, Iterable) and not hasattr(atoms, "get_positions"):
        return batch_graphs([from_ase(a, dtype) for a in atoms])
    return _single(
        atoms.get_positions(),
        atoms.get_atomic_numbers(),
        np.asarray(atoms.get_cell()),
        np.asarray(atoms.get_pbc()),
        _ase_charge(atoms),
        _float_dtype(dtype),
        atoms.get_initial_charges() if atoms.has("initial_charges") else None,
    )


def from_pymatgen(structure: Any, dtype: torch.dtype | None = None) -> AtomicGraph:
    """Graph from a pymatgen ``Structure`` (periodic in 3D) or ``Molecule`` (no cell), or any
    iterable of them, a generator included (batched).

    A disordered structure (partial occupancies) is refused with :class:`InputError`: a
    potential needs one element on each site.
    """
    if not hasattr(structure, "cart_coords"):  # not one structure: a list, a generator, ...
        if not isinstance(structure, Iterable) or isinstance(structure, (str, bytes)):
            raise InputError(
                f"from_pymatgen takes a pymatgen Structure or Molecule or an iterable of them, got "
                f"{type(structure).__name__}: convert the input with pymatgen first"
            )
        return batch_graphs([from_pymatgen(s, dtype) for s in structure])
    _check_ordered(structure)
    numbers = np.array([site.specie.Z for site in structure])
    charge = total_charge(getattr(structure, "charge", 0.0) or 0.0, "the structure's charge")
    if hasattr(structure, "lattice"):
        cell = structure.lattice.matrix
        pbc = np.asarray(getattr(structure.lattice, "pbc", (True, True, True)), dtype=bool)
    else:
        cell, pbc = np.zeros((3, 3)), np.zeros(3, dtype=bool)
    return _single(structure.cart_coords, numbers, cell, pbc, charge, _float_dtype(dtype))


def _check_ordered(structure: Any) -> None:
    """:class:`InputError` naming the first site with partial occupancies (or a vacancy)."""
    if getattr(structure, "is_ordered", True):
        return
    index, site = next((i, s) for i, s in enumerate(structure) if not s.is_ordered)
    raise InputError(
        f"site {index} of {structure.composition.reduced_formula} is disordered (occupancy {site.species}): "
        "a potential needs one element per site; order the structure first, e.g. with pymatgen's "
        "OrderDisorderedStructureTransformation, or build a supercell with explicit species on each site"
    )


def batch_graphs(graphs: Sequence[AtomicGraph]) -> AtomicGraph:
    """Concatenate graphs into one batch; edges, if all graphs have them, are offset."""
    if len(graphs) == 0:
        raise InputError("cannot batch an empty list of structures: pass at least one structure")
    offsets = np.cumsum([0] + [g.num_atoms for g in graphs[:-1]]).tolist()
    graph_offsets = np.cumsum([0] + [g.num_graphs for g in graphs[:-1]]).tolist()
    with_edges = all(g.edge_index is not None for g in graphs)
    with_charges = all(g.partial_charges is not None for g in graphs)
    return AtomicGraph(
        positions=torch.cat([g.positions for g in graphs]),
        atomic_numbers=torch.cat([g.atomic_numbers for g in graphs]),
        batch=torch.cat([g.batch + o for g, o in zip(graphs, graph_offsets)]),
        cell=torch.cat([g.cell for g in graphs]),
        pbc=torch.cat([g.pbc for g in graphs]),
        total_charge=torch.cat([g.total_charge for g in graphs]),
        edge_index=torch.cat([g.edge_index + o for g, o in zip(graphs, offsets)], dim=1) if with_edges else None,
        cell_shift=torch.cat([g.cell_shift for g in graphs]) if with_edges else None,
        partial_charges=torch.cat([g.partial_charges for g in graphs]) if with_charges else None,  # type: ignore[misc]
    )


def check_graph(graph: AtomicGraph) -> None:
    """Raise :class:`InputError` for inputs no potential can evaluate.

    Checks: empty structures, non-finite coordinates or cells, and singular cells along
    periodic axes.
    """
    counts = graph.atoms_per_graph()
    if graph.num_atoms == 0 or bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist() if graph.num_atoms else [0]
        raise InputError(f"structure(s) {empty} contain no atoms: remove empty structures before evaluating")
    bad = ~torch.isfinite(graph.positions).all(dim=1)
    if bool(bad.any()):
        atoms = torch.nonzero(bad).flatten()[:10].tolist()
        raise InputError(
            f"non-finite (NaN or inf) coordinates for atom(s) {atoms}: check the structure file or "
            "the simulation that produced it (an exploding MD run gives NaN positions)"
        )
    if not bool(torch.isfinite(graph.cell).all()):
        raise InputError("the cell contains NaN or inf: give finite lattice vectors")
    if graph.partial_charges is not None:
        if tuple(graph.partial_charges.shape) != (graph.num_atoms,):
            raise InputError(f"partial charges have shape {tuple(graph.partial_charges.shape)}: give one charge per atom")
        if not bool(torch.isfinite(graph.partial_charges).all()):
            raise InputError("the partial (initial) charges contain NaN or inf: give finite per-atom charges")
    check_cells(graph.cell, graph.pbc)
