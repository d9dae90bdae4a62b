"""Batch evaluation: energies, forces and stress of many structures at once, as NumPy.

``atomml.evaluate(structures, potential)`` takes any iterable (a list, a generator, a database
cursor) of ASE ``Atoms`` and pymatgen ``Structure``/``Molecule`` objects, mixed, and evaluates
them ``batch_size`` structures to a forward pass (:func:`~atomml.graph.batch_graphs`), which is
what a screening run needs: one calculator call per structure pays the per-call overhead for each.
Results are per structure, in the input's order, in eV, eV/Å and eV/Å³ (stress with ASE's sign,
Voigt order xx, yy, zz, yz, xz, xy). Structures without a periodic 3D cell have no stress: their
rows are NaN. Periodic and non-periodic structures go into separate batches, so that each
forward pass either computes stress for all its structures or for none.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from . import keys
from .errors import InputError
from .graph import AtomicGraph, batch_graphs, from_ase, from_pymatgen
from .potential import MIN_CELL_VOLUME, Potential, potential_on
from .potential_file import load_potential


@dataclasses.dataclass
class EvaluationResult:
    """Per-structure results of :func:`evaluate`, in the input's order.

    Attributes:
        energy: (N,) total energies, eV.
        forces: N arrays of shape (n_i, 3), eV/Å.
        stress: (N, 6) eV/Å³, ASE's sign, Voigt order; NaN rows for structures without a
            periodic 3D cell; None when ``stress=False`` was asked for.
        natoms: (N,) number of atoms of each structure.
    """

    energy: np.ndarray
    forces: list[np.ndarray]
    stress: np.ndarray | None
    natoms: np.ndarray

    def __len__(self) -> int:
        return len(self.energy)

    @property
    def energy_per_atom(self) -> np.ndarray:
        """(N,) eV/atom."""
        return self.energy / self.natoms


def evaluate(
    structures: Iterable[Any],
    potential: Potential | str | os.PathLike[str],
    *,
    batch_size: int = 32,
    stress: bool = True,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Energies, forces and stress of many structures, ``batch_size`` to a forward pass.

    Args:
        structures: ASE ``Atoms`` and/or pymatgen ``Structure``/``Molecule`` objects (any
            iterable; a total charge is read as :func:`~atomml.graph.from_ase` and
            :func:`~atomml.graph.from_pymatgen` read it).
        potential: a :class:`~atomml.potential.Potential` (never changed: copied if it needs
            another device or dtype), a file path or a shipped name.
        batch_size: structures per forward pass.
        stress: compute stress for the structures that have a periodic 3D cell.
        device: torch device; default: CUDA if available, else CPU.
        dtype: the network's dtype (torch.float32 or torch.float64); default: the potential's.
        progress: show a progress bar (tqdm).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (structures per batch), got {batch_size!r}")
    if not isinstance(potential, Potential):
        potential = load_potential(potential)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    potential = potential_on(potential, device, potential.dtype if dtype is None else dtype).eval()
    if isinstance(structures, (str, bytes)) or not isinstance(structures, Iterable) or _kind(structures):
        raise InputError(
            f"evaluate takes an iterable of structures, got {type(structures).__name__}: "
            "wrap a single structure in a list"
        )

    results: dict[int, tuple[float, np.ndarray, np.ndarray | None]] = {}
    # two queues: a forward pass computes stress for every structure of its batch or for none
    pending: dict[bool, list[tuple[int, AtomicGraph]]] = {True: [], False: []}
    run = _batch_runner(potential, torch.device(device), results)
    total = len(structures) if hasattr(structures, "__len__") else None
    from tqdm import tqdm

    with tqdm(total=total, unit="structure", disable=not progress, desc="evaluate") as bar:
        count = 0
        for index, structure in enumerate(structures):
            graph = _graph(structure, index)
            with_stress = stress and _has_volume(graph)
            pending[with_stress].append((index, graph))
            count += 1
            if len(pending[with_stress]) == batch_size:
                bar.update(run(pending[with_stress], with_stress))
                pending[with_stress] = []
        for with_stress, queue in pending.items():
            if queue:
                bar.update(run(queue, with_stress))

    nan = np.full(6, np.nan)
    rows = [results[i] for i in range(count)]
    return EvaluationResult(
        energy=np.array([r[0] for r in rows], dtype=np.float64),
        forces=[r[1] for r in rows],
        stress=np.array([nan if r[2] is None else r[2] for r in rows]).reshape(count, 6) if stress else None,
        natoms=np.array([len(r[1]) for r in rows], dtype=np.int64),
    )


def _kind(structure: Any) -> str | None:
    """"ase" or "pymatgen" for one structure, None for anything else."""
    if hasattr(structure, "get_positions") and hasattr(structure, "get_atomic_numbers"):
        return "ase"
    if hasattr(structure, "cart_coords") and hasattr(structure, "sites"):
        return "pymatgen"
    return None


def _graph(structure: Any, index: int) -> AtomicGraph:
    # float64 geometry whatever the network's dtype: see Potential.forward
    kind = _kind(structure)
    if kind == "ase":
        return from_ase(structure, dtype=torch.float64)
    if kind == "pymatgen":
        try:
            return from_pymatgen(structure, dtype=torch.float64)
        except InputError as exc:
            raise InputError(f"structure {index}: {exc}") from None
    raise InputError(
        f"structure {index} is a {type(structure).__name__}: give ASE Atoms or pymatgen Structure/Molecule objects"
    )


def _has_volume(graph: AtomicGraph) -> bool:
    """As :func:`atomml.interfaces.ase.stress_defined`: periodic along some axis, with a 3D cell."""
    return bool(graph.pbc.any()) and abs(float(torch.linalg.det(graph.cell[0]))) > MIN_CELL_VOLUME


def _batch_runner(
    potential: Potential, device: torch.device, results: dict[int, tuple[float, np.ndarray, np.ndarray | None]]
) -> Callable[[list[tuple[int, AtomicGraph]], bool], int]:
    def run(queue: list[tuple[int, AtomicGraph]], with_stress: bool) -> int:
        indices = [i for i, _ in queue]
        graph = batch_graphs([g for _, g in queue]).to(device).with_neighbors(potential.cutoff)
        try:
            out = potential(graph, compute_forces=True, compute_stress=with_stress)
        except InputError as exc:
            raise InputError(f"in the batch of structures {indices}: {exc}") from None
        energy = out[keys.ENERGY].detach().cpu().numpy()
        forces = torch.split(out[keys.FORCES].detach().cpu(), graph.atoms_per_graph().tolist())
        stress = out[keys.STRESS].detach().cpu().numpy() if with_stress else None
        for b, index in enumerate(indices):
            results[index] = (float(energy[b]), forces[b].numpy(), None if stress is None else stress[b])
        return len(queue)

    return run
