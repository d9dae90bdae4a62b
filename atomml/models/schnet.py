"""SchNet (Schütt et al., J. Chem. Phys. 148, 241722 (2018)), layer for layer as schnetpack 2.

Continuous-filter convolutions: per-atom features x (n_atom_basis) are mapped to n_filters,
multiplied elementwise by a filter W(d_ij) that a two-layer network makes from a Gaussian
expansion of the distance and a cosine cutoff, summed over neighbours, mapped back and added
as a residual. A two-layer readout gives per-atom energies. Shifted softplus throughout, as in
the paper (schnetpack's ``Atomwise`` readout defaults to SiLU; built with shifted softplus it
computes exactly this model: ``tests/integration/test_schnet_schnetpack.py``);
Xavier-uniform weights and zero biases, as schnetpack initialises them.

One change of evaluation order, exact in arithmetic: the filter depends on the distance only,
so W(d_ij) = W(d_ji) is computed once per unordered pair (half the edges) and each half edge
carries a message in both directions. This halves the dominant cost (the filter networks on
edges) and the memory autograd keeps for forces.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from ..contract import ArchitectureOutput
from ..graph import AtomicGraph
from ..nn.activations import ShiftedSoftplus
from ..nn.radial import CosineCutoff, GaussianRBF
from ..nn.pairs import pair_convolution, pair_list


@dataclasses.dataclass(frozen=True)
class SchNetConfig:
    """Hyperparameters; defaults are schnetpack's."""

    elements: tuple[int, ...]
    cutoff: float = 5.0
    n_atom_basis: int = 128
    n_filters: int = 128
    n_interactions: int = 6
    n_rbf: int = 20
    shared_interactions: bool = False

    @classmethod
    def tiny(cls, elements: tuple[int, ...]) -> SchNetConfig:
        """A small model for tests: 16 features, 2 interactions, 3.5 Å."""
        return cls(elements=tuple(elements), cutoff=3.5, n_atom_basis=16, n_filters=16, n_interactions=2, n_rbf=8)


def _dense(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class SchNetInteraction(nn.Module):
    """One continuous-filter convolution block (schnetpack's ``SchNetInteraction``)."""

    def __init__(self, n_atom_basis: int, n_rbf: int, n_filters: int):
        super().__init__()
        self.in2f = _dense(n_atom_basis, n_filters, bias=False)
        self.filter_network = nn.Sequential(_dense(n_rbf, n_filters), ShiftedSoftplus(), _dense(n_filters, n_filters))
        self.f2out = nn.Sequential(_dense(n_filters, n_atom_basis), ShiftedSoftplus(), _dense(n_atom_basis, n_atom_basis))

    def forward(self, x: Tensor, rbf: Tensor, envelope: Tensor, i: Tensor, j: Tensor, both_ways: bool = True) -> Tensor:
        """``i``, ``j``: the two ends of each unordered pair; messages go both ways (or, for a
        full edge list, to ``i`` only)."""
        v = pair_convolution(self.in2f(x), self.filter_network(rbf), envelope, i, j, both_ways)
        return self.f2out(v)


class SchNet(nn.Module):
    config_cls = SchNetConfig

    def __init__(self, config: SchNetConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(len(config.elements), config.n_atom_basis)
        self.radial_basis = GaussianRBF(config.n_rbf, config.cutoff)
        self.cutoff_fn = CosineCutoff(config.cutoff)
        n = 1 if config.shared_interactions else config.n_interactions
        self.interactions = nn.ModuleList(
            SchNetInteraction(config.n_atom_basis, config.n_rbf, config.n_filters) for _ in range(n)
        )
        half = config.n_atom_basis // 2
        self.readout = nn.Sequential(_dense(config.n_atom_basis, half), ShiftedSoftplus(), _dense(half, 1))

    def forward(self, graph: AtomicGraph, species: Tensor, edge_index: Tensor, edge_vec: Tensor) -> ArchitectureOutput:
        assert graph.cell_shift is not None
        i, j, vec, both_ways = pair_list(edge_index, edge_vec, graph.cell_shift)
        d = vec.norm(dim=1)
        rbf = self.radial_basis(d)
        envelope = self.cutoff_fn(d)
        x = self.embedding(species).to(edge_vec.dtype)
        for k in range(self.config.n_interactions):
            interaction = self.interactions[0 if self.config.shared_interactions else k]
            x = x + interaction(x, rbf, envelope, i, j, both_ways)
        return ArchitectureOutput(self.readout(x).squeeze(-1), node_features=x)
