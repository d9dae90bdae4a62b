"""ASE calculator for any atomml potential.

The neighbour list is built with ``cutoff + skin`` and reused across MD/optimisation steps until
an atom has moved more than ``skin / 2`` (Verlet's criterion), or the cell, periodicity or
atoms change; edges beyond the cutoff are dropped inside the potential.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

from .. import keys
from ..graph import AtomicGraph, check_graph, from_ase
from ..neighbors import neighbor_list
from ..potential import MIN_CELL_VOLUME, Potential
from ..potential_file import load_potential

INFO_INPUTS = ("charge",)  # the keys of atoms.info that the calculator reads


class AtomMLCalculator(Calculator):
    """ASE calculator: energy, free_energy, energies (per atom), forces, stress (eV, Å).

    Stress (eV/Å³) is defined for structures periodic along at least one axis whose cell spans
    three dimensions; asking for it on any other structure raises ASE's
    ``PropertyNotImplementedError``, as ASE's own calculators do. One calculator may be reused
    across any mix of crystals and molecules.

    Args:
        potential: a :class:`~atomml.potential.Potential`, a file path or a shipped name.
        device: torch device ("cpu", "cuda", ...); default: CUDA if available, else CPU.
        dtype: torch.float32 (default) or torch.float64.
        skin: Verlet skin in Å for reusing the neighbour list (0 rebuilds every call).
        neighbor_backend: "auto", "vesin" or "torch" (see :mod:`atomml.neighbors`).
        compile: run the architecture through ``torch.compile`` (dynamic shapes, so a changed
            neighbour count does not recompile). The first call then takes up to a minute. It
            pays for a single small molecule, whose cost is per-operation overhead rather than
            arithmetic (an ML/MM solute), and can be slower for large or batched graphs:
            ``scripts/bench_tensornet.py --peers atomml,torchmdnet,atomml_compiled``.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        potential: Potential | str | os.PathLike[str],
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float32,
        skin: float = 0.5,
        neighbor_backend: str = "auto",
        compile: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if isinstance(dtype, str):
            dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        if not isinstance(potential, Potential):
            potential = load_potential(potential)
        self.potential = potential.to(device=device, dtype=dtype).eval()
        if compile:
            # a copy: the caller's Potential keeps its plain architecture
            self.potential = copy.deepcopy(self.potential)
            self.potential.model = torch.compile(self.potential.model, dynamic=True)
        self.device = torch.device(device)
        self.dtype = dtype
        self.skin = float(skin)
        self.neighbor_backend = neighbor_backend
        self.neighbor_list_builds = 0
        self._reference: dict[str, np.ndarray] | None = None
        self._stress_wanted = False
        self._edges: tuple[torch.Tensor, torch.Tensor] | None = None

    def check_state(self, atoms: Any, tol: float = 1e-15) -> list[str]:
        """ASE's changes plus those in ``atoms.info`` that the calculator reads (the total
        charge): ASE itself does not look at ``info``, and a changed charge must not return
        the previous energy."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and any(repr(atoms.info.get(k)) != repr(self.atoms.info.get(k)) for k in INFO_INPUTS):
            changes.append("info")
        return changes

    def _needs_rebuild(self, atoms: Any) -> bool:
        ref = self._reference
        if ref is None or self._edges is None or len(atoms) != len(ref["positions"]):
            return True
        if not (np.array_equal(atoms.numbers, ref["numbers"]) and np.array_equal(atoms.pbc, ref["pbc"])):
            return True
        if not np.array_equal(np.asarray(atoms.cell), ref["cell"]):
            return True
        displacement = np.linalg.norm(atoms.positions - ref["positions"], axis=1)
        return bool(displacement.max(initial=0.0) > 0.5 * self.skin)

    def _graph(self, atoms: Any) -> AtomicGraph:
        # float64 geometry whatever the network's dtype: see Potential.forward
        graph = from_ase(atoms, dtype=torch.float64).to(self.device)
        if self._needs_rebuild(atoms):
            check_graph(graph)  # the potential's own checks, before the neighbour list sees the input
            self._edges = neighbor_list(
                graph.positions, graph.cell, graph.pbc, self.potential.cutoff + self.skin,
                batch=graph.batch, backend=self.neighbor_backend,
            )
            self._reference = {
                "positions": atoms.positions.copy(),
                "numbers": atoms.numbers.copy(),
                "pbc": atoms.pbc.copy(),
                "cell": np.asarray(atoms.cell).copy(),
            }
            self.neighbor_list_builds += 1
        assert self._edges is not None
        return graph.replace(edge_index=self._edges[0], cell_shift=self._edges[1])

    def calculate(self, atoms: Any = None, properties: Any = None, system_changes: Any = all_changes) -> None:
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        has_volume = stress_defined(atoms)
        if "stress" in properties and not has_volume:
            raise PropertyNotImplementedError(
                f"stress is defined only for a periodic structure with a 3D cell; this one has "
                f"pbc={atoms.pbc.tolist()} and cell volume {abs(atoms.cell.volume):.3g} Å^3: ask for energy and "
                "forces only, or give it a periodic cell (atoms.cell, atoms.pbc)"
            )
        # Once stress has been asked for (cell filters, NPT), compute it with every call, so
        # that forces and stress come from one evaluation; plain MD never pays for it. Only
        # where it is defined: one calculator screens crystals and molecules alike.
        self._stress_wanted = self._stress_wanted or "stress" in properties
        want_stress = self._stress_wanted and has_volume
        out = self.potential(self._graph(atoms), compute_forces=True, compute_stress=want_stress)
        energy = float(out[keys.ENERGY].detach().sum())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out[keys.ENERGIES].detach().cpu().double().numpy(),
            "forces": out[keys.FORCES].detach().cpu().double().numpy(),
        }
        if want_stress:
            self.results["stress"] = out[keys.STRESS][0].detach().cpu().double().numpy()


def stress_defined(atoms: Any) -> bool:
    """Whether ``atoms`` has a stress: periodic along some axis, with a cell of non-zero volume."""
    return bool(atoms.pbc.any()) and abs(float(atoms.cell.volume)) > MIN_CELL_VOLUME
