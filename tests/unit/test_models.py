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


def test_grouped_pair_convolution_in_chunks(monkeypatch):
    """Components in groups with their own filter rows (TensorNet's 1 + 3 + 5); several
    chunks; the plain version; gradients and double backward against finite differences."""
    from atomml.nn import pairs

    monkeypatch.setattr(pairs, "CHUNK_BYTES", 1)  # the minimum chunk (64 pairs) -> 3 chunks
    torch.manual_seed(1)
    n, p, sizes = 9, 150, (1, 3, 2)
    h = torch.randn(n, 6, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(p, 3, 2, dtype=torch.float64, requires_grad=True)
    envelope = torch.rand(p, dtype=torch.float64, requires_grad=True)
    i, j = torch.randint(0, n, (p,)), torch.randint(0, n, (p,))
    wp = (w * envelope.view(-1, 1, 1))[:, [0, 1, 1, 1, 2, 2]]
    expected = torch.zeros(n, 6, 2, dtype=torch.float64).index_add(0, i, h[j] * wp).index_add(0, j, h[i] * wp)

    def op(h, w, envelope):
        return pairs.PairConvolution.apply(h, w, envelope, i, j, sizes)

    assert torch.allclose(op(h, w, envelope), expected, atol=1e-13)
    assert torch.allclose(pairs.pair_convolution_plain(h, w, envelope, i, j, True, sizes), expected, atol=1e-13)
    assert torch.autograd.gradcheck(op, (h, w, envelope))
    assert torch.autograd.gradgradcheck(op, (h, w, envelope))


def test_directional_pair_sum_against_plain_operations(monkeypatch):
    from atomml.nn import pairs

    monkeypatch.setattr(pairs, "CHUNK_BYTES", 1)  # the minimum chunk (16 pairs) -> 3 chunks
    torch.manual_seed(2)
    n, p, f = 7, 40, 3
    sizes, signs = (1, 3, 2), (1.0, -1.0, 1.0)
    groups = [0, 1, 1, 1, 2, 2]
    args = [torch.randn(*shape, dtype=torch.float64, requires_grad=True) for shape in ((n, f), (n, f), (p, 3, f), (p, 6))]
    i, j = torch.randint(0, n, (p,)), torch.randint(0, n, (p,))

    def op(pn, qn, w, g):
        return pairs.DirectionalPairSum.apply(pn, qn, w, g, sizes, signs, i, j)

    pn, qn, w, g = args
    m = w[:, groups] * g.unsqueeze(-1)
    sign = torch.tensor([signs[k] for k in groups], dtype=torch.float64).view(1, -1, 1)
    expected = torch.zeros(n, 6, f, dtype=torch.float64).index_add(0, i, m * (pn[i] + qn[j]).unsqueeze(1))
    expected = expected.index_add(0, j, m * sign * (pn[j] + qn[i]).unsqueeze(1))
    assert torch.allclose(op(*args), expected, atol=1e-13)
    assert torch.allclose(pairs.directional_pair_sum_plain(*args, sizes, signs, i, j), expected, atol=1e-13)
    assert torch.autograd.gradcheck(op, args)
    assert torch.autograd.gradgradcheck(op, args)
