"""What an architecture and an energy term receive and return.

A :class:`~atomml.potential.Potential` is an architecture plus an ordered list of energy terms.
The architecture maps a graph to an :class:`ArchitectureOutput`: per-atom energies and,
optionally, node features and per-atom charges that terms may use. Each term maps
:class:`TermInputs` to per-atom energies (eV) that the potential adds to the architecture's.
Forces and stress of both come from the one derivative wrapper in ``Potential.forward``.

Both records are NamedTuples so that ``torch.compile`` and ``torch.export`` treat them as
plain containers of tensors.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from torch import Tensor

from .graph import AtomicGraph


class ArchitectureOutput(NamedTuple):
    """An architecture's result for N atoms.

    energies: (N,) per-atom energies in the model's own scale (the potential applies its
        energy scale, shift and per-element references).
    node_features: (N, F) invariant per-atom features for add-on terms, or None.
    charges: (N,) predicted partial charges (elementary charges), or None.
    """

    energies: Tensor
    node_features: Tensor | None = None
    charges: Tensor | None = None


class Architecture(Protocol):
    """``model(graph, species, edge_index, edge_vec) -> ArchitectureOutput``.

    ``species`` (N,) are indices into the potential's element list; ``edge_index`` (2, E) and
    ``edge_vec`` (E, 3) (Å, r_j - r_i) hold only the edges within the architecture's cutoff,
    as a full list. A bare (N,) tensor of per-atom energies is accepted as the output too.
    """

    def __call__(self, graph: AtomicGraph, species: Tensor, edge_index: Tensor, edge_vec: Tensor) -> ArchitectureOutput: ...


class TermInputs(NamedTuple):
    """What an energy term sees, for a batch of B structures with N atoms and E edges.

    positions (N, 3) Å, strained when stress is asked for; atomic_numbers (N,) Z; species (N,)
    indices into the potential's elements; batch (N,); cell (B, 3, 3) Å; pbc (B, 3);
    total_charge (B,) e; partial_charges (N,) e given with the structure, or None;
    edge_index (2, E) and edge_vec (E, 3) Å: a full neighbour list within the potential's
    cutoff (the largest of the architecture's and the terms' cutoffs); num_graphs B;
    node_features and charges: the architecture's optional outputs.
    """

    positions: Tensor
    atomic_numbers: Tensor
    species: Tensor
    batch: Tensor
    cell: Tensor
    pbc: Tensor
    total_charge: Tensor
    partial_charges: Tensor | None
    edge_index: Tensor
    edge_vec: Tensor
    num_graphs: int
    node_features: Tensor | None
    charges: Tensor | None


def as_output(raw: ArchitectureOutput | Tensor) -> ArchitectureOutput:
    """Accept architectures written before the output record: a bare (N,) energy tensor."""
    if isinstance(raw, Tensor):
        return ArchitectureOutput(raw)
    return raw
