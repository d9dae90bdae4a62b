"""Half-edge message passing: compute pair quantities once per unordered pair, send both ways.

A full neighbour list holds every pair twice, (i -> j) and (j -> i). Anything that depends on
the distance only (radial filters, cutoff envelopes) is the same for both, so architectures
compute it on one edge of each pair (:func:`half_edges`) and let :class:`PairConvolution`
deliver the message in both directions. This halves the cost of the edge networks, which
dominate the run time of SchNet- and TensorNet-like models, and the memory autograd keeps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .scatter import scatter_sum


def half_edges(edge_index: Tensor, cell_shift: Tensor) -> Tensor:
    """Indices of one edge of each (i->j, j->i) pair of a full list: i < j, or i == j (a
    periodic image of the atom itself) with the first non-zero shift component positive."""
    i, j = edge_index[0], edge_index[1]
    s = cell_shift.long()
    first_nonzero = torch.where(s[:, 0] != 0, s[:, 0], torch.where(s[:, 1] != 0, s[:, 1], s[:, 2]))
    return torch.nonzero((i < j) | ((i == j) & (first_nonzero > 0))).squeeze(1)


def _per_pair(w: Tensor, like: Tensor) -> Tensor:
    """Pair weights (P, F) viewed to broadcast against gathered node features (P, ..., F)."""
    return w.view((w.shape[0],) + (1,) * (like.dim() - 2) + (w.shape[-1],))


class PairConvolution(torch.autograd.Function):
    """v_i = sum over pairs of h_j * w_ij (and v_j of h_i * w_ij), w_ij = filter_ij * envelope_ij.

    ``h`` is (N, F) or (N, ..., F) (vector or tensor components share the pair's weight);
    ``filt`` is (P, F), ``envelope`` (P,), ``i``, ``j`` (P,) the two ends of each pair.
    Written as an autograd function so that the backward pass keeps only h (atoms) and the
    filter (pairs x F) instead of the gathered h_i, h_j and the products (more pairs x F
    tensors, times the number of components): memory for forces drops by half or more. The
    backward uses differentiable operations, so double backward (training on forces) works.
    """

    @staticmethod
    def forward(ctx, h: Tensor, filt: Tensor, envelope: Tensor, i: Tensor, j: Tensor) -> Tensor:
        ctx.save_for_backward(h, filt, envelope, i, j)
        n = h.shape[0]
        hj = h[j]
        w = _per_pair(filt * envelope.unsqueeze(-1), hj)
        return scatter_sum(hj * w, i, n) + scatter_sum(h[i] * w, j, n)

    @staticmethod
    def backward(ctx, grad_v: Tensor):
        h, filt, envelope, i, j = ctx.saved_tensors
        grad_h = grad_filt = grad_envelope = None
        gi, gj = grad_v[i], grad_v[j]
        if ctx.needs_input_grad[0]:
            w = _per_pair(filt * envelope.unsqueeze(-1), gi)
            n = h.shape[0]
            grad_h = scatter_sum(gi * w, j, n) + scatter_sum(gj * w, i, n)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_w = gi * h[j] + gj * h[i]
            if grad_w.dim() > 2:  # components share the weight: sum their contributions
                grad_w = grad_w.flatten(1, -2).sum(1)
            if ctx.needs_input_grad[1]:
                grad_filt = grad_w * envelope.unsqueeze(-1)
            if ctx.needs_input_grad[2]:
                grad_envelope = (grad_w * filt).sum(dim=-1)
        return grad_h, grad_filt, grad_envelope, None, None
