"""The block-level equivariance check (atomml.testing.check_equivariant): it passes functions
known to be equivariant (e3nn's own, matrix algebra), catches broken ones, and checks
TensorNet's embedding and interaction layers on their own."""

from __future__ import annotations

import pytest
import torch

import atomml
from atomml import testing
from atomml.models import create
from atomml.models.tensornet import entries, parts
from atomml.nn.pairs import pair_list
from atomml.testing import axial, check_equivariant, irreps, rank2, scalar, vector


def test_e3nn_functions_pass_and_a_broken_one_fails():
    from e3nn import o3

    torch.manual_seed(0)
    linear = o3.Linear("2x0e + 3x1o + 1x2e", "1x0e + 2x1o + 2x2e").double()
    x = torch.randn(5, linear.irreps_in.dim, dtype=torch.float64)
    check_equivariant(linear, [x], [irreps("2x0e + 3x1o + 1x2e")], irreps("1x0e + 2x1o + 2x2e"))
    shift = torch.randn(linear.irreps_out.dim, dtype=torch.float64)
    with pytest.raises(AssertionError, match="output 0"):
        check_equivariant(lambda y: linear(y) + shift, [x], [irreps("2x0e + 3x1o + 1x2e")], irreps("1x0e + 2x1o + 2x2e"))
    # the parity of a representation counts: 1e (axial) is not 1o
    v = torch.randn(4, 3, dtype=torch.float64)
    sh = o3.SphericalHarmonics("1o + 2e", normalize=True, normalization="component")
    check_equivariant(sh, [v], [irreps("1o")], irreps("1o + 2e"))
    with pytest.raises(AssertionError, match="inversion"):
        check_equivariant(sh, [v], [irreps("1o")], irreps("1e + 2e"))


def test_cartesian_representations():
    torch.manual_seed(1)
    a, b = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    check_equivariant(torch.linalg.cross, [a, b], [vector(), vector()], axial())
    with pytest.raises(AssertionError, match="inversion"):
        check_equivariant(torch.linalg.cross, [a, b], [vector(), vector()], vector())
    outer = lambda u, w: u.unsqueeze(-1) * w.unsqueeze(-2)  # noqa: E731
    check_equivariant(outer, [a, b], [vector(), vector()], rank2())
    # a rank-2 tensor along the first two dimensions
    m = torch.randn(3, 3, 4, dtype=torch.float64)
    square = lambda y: torch.einsum("abk,bck->ack", y, y)  # noqa: E731  (a matrix product per channel)
    check_equivariant(square, [m], [rank2(dims=(0, 1))], rank2(dims=(0, 1)))
    with pytest.raises(AssertionError, match="not equivariant"):
        check_equivariant(lambda y: y[:, :1].expand(-1, 3), [a], [vector()], vector())
    check_equivariant(lambda y: y.norm(dim=-1), [a], [vector()], scalar())


def _tensornet_setup(group: str, dtype: torch.dtype):
    torch.manual_seed(2)
    potential = create("tensornet", elements=[1, 6, 8], cutoff=4.0, hidden_channels=8, num_layers=1, num_rbf=6, group=group)
    potential = potential.to(dtype)
    # randomise away from the initial weights (zero biases, unit layer norms hide mistakes)
    with torch.no_grad():
        for p in potential.parameters():
            p.add_(0.3 * torch.randn_like(p))
    atoms = testing.random_molecule([1, 6, 8], 9, seed=3)
    graph = atomml.from_ase(atoms, dtype=dtype).with_neighbors(4.0)
    vec = graph.positions[graph.edge_index[1]] - graph.positions[graph.edge_index[0]]
    i, j, pair_vec, both_ways = pair_list(graph.edge_index, vec, graph.cell_shift)
    return potential.model, potential.species(graph.atomic_numbers), i, j, pair_vec, both_ways


def _matrices(x):
    """TensorNet's (I, a, s) components as (N, F, 3, 3) matrices, and back."""
    return torch.stack(entries(*x), dim=-1).unflatten(-1, (3, 3))


def _components(m):
    return parts(list(m.flatten(-2).unbind(-1)))


@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
def test_tensornet_layers_are_equivariant(group, dtype):
    """Embedding: edge vectors -> node tensors; interaction: node tensors -> node tensors. The
    antisymmetric part comes from a polar vector, so it is a pseudotensor; SO(3) models are
    checked under rotations only."""
    model, species, i, j, pair_vec, both_ways = _tensornet_setup(group, dtype)
    d = pair_vec.norm(dim=1)
    rbf, envelope = model.distance_expansion(d), torch.cos(d) ** 2  # any invariant envelope will do
    zero = d.new_zeros(1)
    rbf0, envelope0 = model.distance_expansion(zero)[0], zero + 1
    reflections = group == "O(3)"
    tensor = rank2(odd_antisymmetric=True)

    def embed(vec):
        u = -vec / vec.norm(dim=1, keepdim=True)
        return _matrices(model.tensor_embedding(species, i, j, u, rbf, envelope, rbf0, envelope0, both_ways))

    check_equivariant(embed, [pair_vec], [vector()], tensor, reflections=reflections)

    x = embed(pair_vec)
    charge = torch.ones(len(species), 1, dtype=dtype)

    def interact(m):
        return _matrices(model.layers[0](_components(m), i, j, rbf, envelope, rbf0, envelope0, charge, both_ways))

    check_equivariant(interact, [x], [tensor], tensor, reflections=reflections)
    # the check is not vacuous: a proper tensor is the wrong representation for the embedding's
    # antisymmetric part (it comes from the polar edge vector), and inversion finds that
    with pytest.raises(AssertionError, match="inversion"):
        check_equivariant(embed, [pair_vec], [vector()], rank2())
