"""The architecture builder."""

import pytest
import torch

from atomml.models import ARCHITECTURES, create
from atomml.nn.pairs import half_edges


def test_create_validates_hyperparameters():
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        create("schnet", elements=[1], n_layers=3)
    with pytest.raises(TypeError, match="'elements'"):
        create("schnet")
    with pytest.raises(ValueError, match="unknown architecture"):
        create("nope", elements=[1])
    assert "schnet" in ARCHITECTURES


def test_create_accepts_symbols_and_numbers():
    assert create("schnet", elements=["H", 8], n_interactions=1).elements == [1, 8]


def test_schnet_parameter_count_matches_schnetpack_layout():
    # schnetpack SchNet(128, 6 interactions, 20 rbf) + Atomwise(128 -> 64 -> 1), with the
    # embedding over our element list instead of 100 elements
    p = create("schnet", elements=[1, 6, 7, 8], n_atom_basis=128, n_filters=128, n_interactions=6, n_rbf=20)
    per_interaction = 128 * 128 + (20 * 128 + 128) + (128 * 128 + 128) + (128 * 128 + 128) + (128 * 128 + 128)
    expected = 4 * 128 + 6 * per_interaction + (128 * 64 + 64) + (64 + 1)
    assert sum(x.numel() for x in p.model.parameters()) == expected


def test_half_edges_picks_one_of_each_pair():
    edge_index = torch.tensor([[0, 1, 0, 0, 2, 2], [1, 0, 0, 0, 2, 2]])
    shift = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, -1, 1], [0, 1, -1]])
    assert half_edges(edge_index, shift).tolist() == [0, 2, 5]


def test_pair_convolution_gradients_including_double_backward():
    from atomml.nn.pairs import PairConvolution

    torch.manual_seed(0)
    h = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    envelope = torch.rand(7, dtype=torch.float64, requires_grad=True)
    i, j = torch.randint(0, 5, (7,)), torch.randint(0, 5, (7,))
    assert torch.autograd.gradcheck(PairConvolution.apply, (h, w, envelope, i, j))
    assert torch.autograd.gradgradcheck(PairConvolution.apply, (h, w, envelope, i, j))
