"""The one wrapper that turns any architecture into a potential: energies, forces, stress.

An architecture maps a graph to per-atom energies (see :class:`Architecture`). The wrapper
adds the per-element reference energies and the energy scale/shift, sums per structure, and
takes forces (-dE/dr) and stress ((1/V) dE/dε, ASE's sign, Voigt order) by autograd from a
symmetric strain applied to positions and cell together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from . import keys
from .errors import InputError
from .graph import AtomicGraph, check_graph
from .nn.scatter import scatter_sum

MAX_Z = 118
MIN_DISTANCE = 0.1  # Å; closer atoms are overlapping (a duplicated atom, a broken structure)
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


class Architecture(Protocol):
    """What an architecture implements: per-atom energies (N,) in the model's own scale.

    ``species`` (N,) are indices into the potential's element list; ``edge_index`` and
    ``edge_vec`` (E, 3) (Å, r_j - r_i) hold only edges within the cutoff, as a full list.
    """

    def __call__(self, graph: AtomicGraph, species: Tensor, edge_index: Tensor, edge_vec: Tensor) -> Tensor: ...


class Potential(nn.Module):
    """An architecture plus everything needed to give physical energies.

    Args:
        model: the architecture (an ``nn.Module`` following :class:`Architecture`).
        architecture: registered name of the architecture (used to rebuild it on load).
        hyperparameters: the builder arguments that rebuild ``model`` (JSON-serialisable).
        elements: atomic numbers the model knows; anything else is refused.
        cutoff: interaction cutoff in Å.
        atomic_energies: reference energy per element (eV), added to each atom.
        energy_scale, energy_shift: per-atom energy = scale * model + shift + reference.
        metadata: free-form description saved with the potential (training data, ...).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        architecture: str,
        hyperparameters: Mapping[str, Any],
        elements: Sequence[int],
        cutoff: float,
        atomic_energies: Mapping[int, float] | None = None,
        energy_scale: float = 1.0,
        energy_shift: float = 0.0,
        metadata: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if len(set(elements)) != len(elements) or not all(1 <= int(z) <= MAX_Z for z in elements):
            raise ValueError(f"elements must be distinct atomic numbers in 1..{MAX_Z}, got {list(elements)}")
        self.model = model
        self.architecture = architecture
        self.hyperparameters = dict(hyperparameters)
        self.elements = [int(z) for z in elements]
        self.cutoff = float(cutoff)
        self.metadata = dict(metadata or {})
        lookup = torch.full((MAX_Z + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(self.elements)] = torch.arange(len(self.elements))
        self.register_buffer("species_of_z", lookup, persistent=False)
        dtype = next(iter(model.parameters()), torch.empty(0)).dtype
        reference = torch.zeros(len(self.elements), dtype=dtype)
        for z, e in (atomic_energies or {}).items():
            if int(z) not in self.elements:
                raise ValueError(f"atomic energy given for element Z={z}, which is not in elements {self.elements}")
            reference[self.elements.index(int(z))] = float(e)
        self.register_buffer("atomic_energies", reference)
        self.register_buffer("energy_scale", torch.tensor(float(energy_scale), dtype=dtype))
        self.register_buffer("energy_shift", torch.tensor(float(energy_shift), dtype=dtype))

    @property
    def dtype(self) -> torch.dtype:
        return self.atomic_energies.dtype

    def species(self, atomic_numbers: Tensor) -> Tensor:
        """Indices into ``elements``; unknown elements raise :class:`InputError`."""
        z = atomic_numbers.clamp(0, MAX_Z)
        species = self.species_of_z[z]
        unknown = (species < 0) | (atomic_numbers != z)
        if bool(unknown.any()):
            bad = sorted(set(atomic_numbers[unknown].tolist()))
            from ase.data import chemical_symbols

            names = [chemical_symbols[b] if 0 < b <= MAX_Z else str(b) for b in bad]
            known = [chemical_symbols[z] for z in self.elements]
            raise InputError(
                f"this potential does not know element(s) {names} (Z={bad}); it was trained for "
                f"{known}. Use a potential trained on these elements."
            )
        return species

    def atom_energies(self, raw: Tensor, species: Tensor) -> Tensor:
        """Per-atom energies (eV) from the architecture's output: scale, shift, reference."""
        dtype = raw.dtype
        return self.energy_scale.to(dtype) * raw + self.energy_shift.to(dtype) + self.atomic_energies.to(dtype)[species]

    def forward(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool = False,
    ) -> dict[str, Tensor]:
        """Energy (B,), per-atom energies (N,), forces (N, 3) and stress (B, 6) on request.

        The graph's floating fields are used in the potential's dtype; if it has no edges,
        the neighbour list is built here. ``create_graph=True`` keeps the derivative graph
        (for training on forces).
        """
        check_graph(graph)
        species = self.species(graph.atomic_numbers)
        if graph.edge_index is None or graph.cell_shift is None:
            graph = graph.with_neighbors(self.cutoff)
        dtype = self.dtype
        positions = graph.positions.to(dtype)
        cell = graph.cell.to(dtype)
        edge_index, cell_shift = graph.edge_index, graph.cell_shift
        assert edge_index is not None and cell_shift is not None

        # Edges beyond the cutoff (a neighbour list built with a skin) are dropped here, once,
        # so that no architecture spends time on them.
        with torch.no_grad():
            vec = _edge_vectors(positions, cell, graph.batch, edge_index, cell_shift)
            length = vec.norm(dim=1)
            if length.numel() and float(length.min()) < MIN_DISTANCE:
                k = int(length.argmin())
                i, j = edge_index[:, k].tolist()
                raise InputError(
                    f"atoms {i} and {j} are {float(length[k]):.3g} Å apart (overlapping atoms, "
                    f"closer than {MIN_DISTANCE} Å): remove duplicated atoms or fix the structure"
                )
            within = torch.nonzero(length < self.cutoff).squeeze(1)
        edge_index, cell_shift = edge_index[:, within], cell_shift[within]

        num_graphs = graph.num_graphs
        grad_inputs: list[Tensor] = []
        if compute_forces:
            positions = positions.detach().requires_grad_(True)
            grad_inputs.append(positions)
        strain = None
        if compute_stress:
            volume = torch.abs(torch.linalg.det(cell))
            if bool((volume < 1e-9).any()):
                raise InputError("stress needs a cell with non-zero volume: give every structure a full 3D cell")
            strain = torch.zeros((num_graphs, 3, 3), dtype=dtype, device=positions.device, requires_grad=True)
            grad_inputs.append(strain)
            symmetric = 0.5 * (strain + strain.transpose(1, 2))
            positions = positions + torch.bmm(positions.unsqueeze(1), symmetric[graph.batch]).squeeze(1)
            cell = cell + torch.bmm(cell, symmetric)

        edge_vec = _edge_vectors(positions, cell, graph.batch, edge_index, cell_shift)
        model_graph = graph.replace(positions=positions, cell=cell, edge_index=edge_index, cell_shift=cell_shift)
        raw = self.model(model_graph, species, edge_index, edge_vec)
        energies = self.atom_energies(raw, species)
        energy = scatter_sum(energies, graph.batch, num_graphs)
        out = {keys.ENERGY: energy, keys.ENERGIES: energies}
        if grad_inputs:
            grads = torch.autograd.grad(
                energy.sum(), grad_inputs, create_graph=create_graph, allow_unused=True
            )
            grads = [g if g is not None else torch.zeros_like(x) for g, x in zip(grads, grad_inputs)]
            if compute_forces:
                out[keys.FORCES] = -grads[0]
            if strain is not None:
                virial = grads[-1] / volume.view(-1, 1, 1)
                out[keys.STRESS] = torch.stack([virial[:, a, b] for a, b in VOIGT], dim=1)
        return out


def _edge_vectors(positions: Tensor, cell: Tensor, batch: Tensor, edge_index: Tensor, cell_shift: Tensor) -> Tensor:
    """r_ij = r_j - r_i + S @ cell[batch[i]] (Å)."""
    i, j = edge_index[0], edge_index[1]
    vec = positions[j] - positions[i]
    if cell_shift.numel():
        shift = cell_shift.to(positions.dtype)
        if cell.shape[0] == 1:
            vec = vec + shift @ cell[0]
        else:
            vec = vec + torch.bmm(shift.unsqueeze(1), cell[batch[i]]).squeeze(1)
    return vec
