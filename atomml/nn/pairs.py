"""Half-edge message passing: compute pair quantities once per unordered pair, send both ways.

A full neighbour list holds every pair twice, (i -> j) and (j -> i). Anything that depends on
the distance only (radial filters, cutoff envelopes) is the same for both, so architectures
compute it on one edge of each pair (:func:`half_edges`) and let :class:`PairConvolution`
deliver the message in both directions. This halves the cost of the edge networks, which
dominate the run time of SchNet- and TensorNet-like models, and the memory autograd keeps.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor


def half_edges(edge_index: Tensor, cell_shift: Tensor) -> Tensor:
    """Indices of one edge of each (i->j, j->i) pair of a full list: i < j, or i == j (a
    periodic image of the atom itself) with the first non-zero shift component positive."""
    i, j = edge_index[0], edge_index[1]
    s = cell_shift.long()
    first_nonzero = torch.where(s[:, 0] != 0, s[:, 0], torch.where(s[:, 1] != 0, s[:, 1], s[:, 2]))
    return torch.nonzero((i < j) | ((i == j) & (first_nonzero > 0))).squeeze(1)


# Pairs per chunk are chosen so that a chunk's gathered features take about this many bytes:
# small enough to stay in a core's L2 cache between the gather, the product and the scatter.
# On a 2-core EPYC (1,536-atom water box, 41,749 pairs x 5 x 128 float32) the forward pass
# took 12 ms in chunks of 1,024 pairs against 167 ms as whole-tensor operations.
CHUNK_BYTES = 2**21


def _chunk(row_elements: int, element_size: int, minimum: int = 64) -> int:
    """Pairs per chunk when each pair gathers ``row_elements`` values of ``element_size`` bytes."""
    return max(minimum, CHUNK_BYTES // max(row_elements * element_size, 1))


# True while the edge list is in the paired layout: its first half holds one edge of each pair
# and its second half the reverse edges in the same order. The small-system path
# (:mod:`atomml.fast`) lays out its padded lists so, and sets this while it traces and runs, so
# that a compiled model finds its half edges by slicing, a shape known before the call.
PAIRED_LAYOUT = False


@contextlib.contextmanager
def paired_layout():
    """Within this block, edge lists given to :func:`pair_list` are in the paired layout."""
    global PAIRED_LAYOUT
    before, PAIRED_LAYOUT = PAIRED_LAYOUT, True
    try:
        yield
    finally:
        PAIRED_LAYOUT = before


def pair_list(edge_index: Tensor, edge_vec: Tensor, cell_shift: Tensor) -> tuple[Tensor, Tensor, Tensor, bool]:
    """(i, j, vec, both_ways) for message passing: eagerly one edge per pair with messages both
    ways; while being compiled or exported the full list, messages one way (selecting half the
    edges has a data-dependent size, which the compilers cannot trace into one graph), unless
    the list is in the paired layout (:func:`paired_layout`), whose first half is one edge per pair."""
    if PAIRED_LAYOUT:
        half = edge_index.shape[1] // 2
        return edge_index[0, :half], edge_index[1, :half], edge_vec[:half], True
    if torch.compiler.is_compiling():
        return edge_index[0], edge_index[1], edge_vec, False
    pair = half_edges(edge_index, cell_shift)
    return edge_index[0, pair], edge_index[1, pair], edge_vec[pair], True


def _gather(src: Tensor, index: Tensor, buffer: Tensor | None) -> Tensor:
    """src[index] along dimension 0, written into ``buffer`` (reused from chunk to chunk) when
    one is given: fresh multi-megabyte tensors for every chunk cost page faults, which made
    TensorNet ~10% slower on a 64-molecule batch."""
    if buffer is None:
        return src.index_select(0, index)
    return torch.index_select(src, 0, index, out=buffer[: index.shape[0]])


def _mul_groups_(t: Tensor, w: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """t (P, C, F) *= w (P, K, F) in place, row k of w for the k-th group of components."""
    if len(sizes) == 1:
        return t.mul_(w[:, :1])
    start = 0
    for k, n in enumerate(sizes):
        t[:, start : start + n].mul_(w[:, k : k + 1])
        start += n
    return t


def _as_groups(h: Tensor, filt: Tensor, sizes: tuple[int, ...] | None):
    """Normalise the two calling conventions: h (N, F) with filt (P, F), or h (N, C, F) with
    filt (P, K, F) in groups of ``sizes`` components."""
    if sizes is None:
        return h.unsqueeze(1), filt.unsqueeze(1), (1,)
    if h.shape[1] != sum(sizes) or filt.shape[1] != len(sizes):
        raise ValueError(f"groups {sizes} do not fit features {tuple(h.shape)} and filter {tuple(filt.shape)}")
    return h, filt, tuple(sizes)


class PairConvolution(torch.autograd.Function):
    """v_i = sum over pairs of h_j * w_ij (and v_j of h_i * w_ij), w_ij = filter_ij * envelope_ij.

    ``h`` is (N, F) with ``filt`` (P, F); or (N, C, F) with ``filt`` (P, K, F) and ``sizes``
    giving K consecutive groups of components, group k multiplied by row k of the filter
    (TensorNet's scalar, vector and tensor parts). ``envelope`` is (P,), ``i``, ``j`` (P,) the
    two ends of each pair.

    Written as an autograd function for memory and speed. The backward pass keeps only h
    (atoms) and the filter (pairs x F) instead of the gathered h_i, h_j and the products
    (more pairs x F tensors, times the number of components), so memory for forces drops by
    half or more. Forward and backward work through the pairs in cache-sized chunks with
    in-place products (see ``CHUNK_BYTES``), an order of magnitude faster on a CPU than
    whole-tensor operations, which stream every intermediate through main memory; the
    backward gathers each of h_i, h_j, g_i, g_j once for both gradients. When the backward
    pass itself is differentiated (``create_graph=True``: training on forces), it is computed
    with plain differentiable operations instead, so double backward works.
    """

    @staticmethod
    def forward(h: Tensor, filt: Tensor, envelope: Tensor, i: Tensor, j: Tensor, sizes=None) -> Tensor:
        hg, fg, groups = _as_groups(h, filt, sizes)
        out = torch.zeros_like(hg)
        step = _chunk(math.prod(hg.shape[1:]), hg.element_size())
        buffer = hg.new_empty((min(step, i.shape[0]),) + hg.shape[1:])
        for c in _chunks(i.shape[0], step):
            ic, jc = i[c], j[c]
            wc = fg[c] * envelope[c].view(-1, 1, 1)
            out.index_add_(0, ic, _mul_groups_(_gather(hg, jc, buffer), wc, groups))
            out.index_add_(0, jc, _mul_groups_(_gather(hg, ic, buffer), wc, groups))
        return out.view_as(h)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        h, filt, envelope, i, j, sizes = inputs
        ctx.save_for_backward(h, filt, envelope, i, j)
        ctx.sizes = sizes

    @staticmethod
    def vmap(info, in_dims, h, filt, envelope, i, j, sizes=None):
        """Members of a committee (``torch.func.vmap``) folded into the feature axis: one call
        over the pairs with M x F features. Features are independent of each other here, so
        this is the members' own arithmetic, in one pass; a batched envelope is multiplied into
        the filter first."""
        _unbatched_indices(in_dims[3:5])
        members = info.batch_size
        if in_dims[2] is not None:
            filt = _member_first(filt, in_dims[1], members)
            env = envelope.movedim(in_dims[2], 0)  # (M, P): as filt's first two axes
            filt = filt * env.view(*env.shape, *([1] * (filt.dim() - 2)))
            filt_dim, envelope = 0, torch.ones_like(env[0])
        else:
            filt_dim = in_dims[1]
        args = (_fold(h, in_dims[0], members), _fold(filt, filt_dim, members), envelope, i, j)
        if torch.compiler.is_compiling():  # traced: the plain operations (see pair_convolution)
            return _unfold(pair_convolution_plain(*args, sizes=sizes), members), 0
        return _unfold(PairConvolution.apply(*args, sizes), members), 0

    @staticmethod
    def backward(ctx, grad_v: Tensor):
        h, filt, envelope, i, j = ctx.saved_tensors
        hg, fg, groups = _as_groups(h, filt, ctx.sizes)
        gv = grad_v.reshape(hg.shape)
        need_h, need_filt, need_env = ctx.needs_input_grad[:3]
        grad_h = grad_filt = grad_envelope = None
        if torch.is_grad_enabled() or gv.requires_grad:  # double backward: differentiable operations
            gi, gj = gv[i], gv[j]
            if need_h:
                we = _expand_groups(fg * envelope.view(-1, 1, 1), groups)
                grad_h = torch.zeros_like(hg).index_add(0, j, gi * we).index_add(0, i, gj * we)
            if need_filt or need_env:
                grad_w = _group_sums(gi * hg[j] + gj * hg[i], groups)
                if need_filt:
                    grad_filt = grad_w * envelope.view(-1, 1, 1)
                if need_env:
                    grad_envelope = (grad_w * fg).sum(dim=(1, 2))
        else:  # in chunks, every per-pair quantity made and used while it is in cache
            gv = gv.contiguous()
            grad_h = torch.zeros_like(hg) if need_h else None
            grad_filt = torch.empty_like(fg) if need_filt else None
            grad_envelope = torch.empty_like(envelope) if need_env else None
            step = _chunk(math.prod(hg.shape[1:]), hg.element_size())
            b1, b2, b3, b4 = (hg.new_empty((min(step, i.shape[0]),) + hg.shape[1:]) for _ in range(4))
            for c in _chunks(i.shape[0], step):
                ic, jc, env = i[c], j[c], envelope[c].view(-1, 1, 1)
                gi, gj = _gather(gv, ic, b1), _gather(gv, jc, b2)
                if need_filt or need_env:
                    t = _gather(hg, jc, b3).mul_(gi).addcmul_(gj, _gather(hg, ic, b4))
                    grad_w = _group_sums(t, groups)
                    if grad_filt is not None:
                        torch.mul(grad_w, env, out=grad_filt[c])
                    if grad_envelope is not None:
                        grad_envelope[c] = (grad_w * fg[c]).sum(dim=(1, 2))
                if grad_h is not None:
                    wc = fg[c] * env
                    grad_h.index_add_(0, jc, _mul_groups_(gi, wc, groups))
                    grad_h.index_add_(0, ic, _mul_groups_(gj, wc, groups))
        if grad_h is not None:
            grad_h = grad_h.view_as(h)
        if grad_filt is not None:
            grad_filt = grad_filt.view_as(filt)
        return grad_h, grad_filt, grad_envelope, None, None, None


def _chunks(n: int, step: int):
    for s in range(0, n, step):
        yield slice(s, min(s + step, n))


class DirectionalPairSum(torch.autograd.Function):
    """out[i, c] = sum over pairs (i, j) of g_c w_k(c) (p_i + q_j), and for the other end
    out[j, c] += sign_k(c) g_c w_k(c) (p_j + q_i).

    The pair embedding of TensorNet-like models: ``p``, ``q`` (N, F) are per-atom halves of a
    pair embedding that is linear in the two atoms, ``w`` (P, K, F) radial weights of the
    pair, ``g`` (P, C) geometric factors of the pair (1, the unit vector, its traceless outer
    product...) in K consecutive groups of ``sizes`` components (C = sum of sizes), group k
    using weight row k, and ``signs`` (K,) +1 for groups even under exchanging i and j, -1
    for odd ones (the unit vector). Returns (N, C, F).

    Chunked over pairs like :class:`PairConvolution` (the same function as whole-tensor
    operations, several times faster on a CPU and without the pairs x C x F intermediates
    that autograd would keep). The backward pass works per group: sums over a group's
    components are taken before multiplying by the group's weight, so that most products
    are pairs x K x F instead of pairs x C x F. It is itself differentiable.
    """

    @staticmethod
    def forward(p, q, w, g, sizes: tuple[int, ...], signs: tuple[float, ...], i, j):
        out = p.new_zeros((p.shape[0], sum(sizes), p.shape[1]))
        sign = torch.tensor(signs, device=w.device, dtype=w.dtype).view(1, -1, 1)
        step = _chunk(sum(sizes) * p.shape[1], p.element_size(), minimum=16)
        buffer = p.new_empty((min(step, i.shape[0]), sum(sizes), p.shape[1]))
        for c in _chunks(i.shape[0], step):
            ic, jc = i[c], j[c]
            wc, gc = w[c], g[c]
            wz = wc * (p.index_select(0, ic) + q.index_select(0, jc)).unsqueeze(1)  # to i
            out.index_add_(0, ic, _by_group(gc, wz, sizes, buffer))
            wz = wc * sign * (p.index_select(0, jc) + q.index_select(0, ic)).unsqueeze(1)  # to j
            out.index_add_(0, jc, _by_group(gc, wz, sizes, buffer))
        return out

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        p, q, w, g, sizes, signs, i, j = inputs
        ctx.save_for_backward(p, q, w, g, i, j)
        ctx.sizes, ctx.signs = sizes, signs

    @staticmethod
    def vmap(info, in_dims, p, q, w, g, sizes, signs, i, j):
        """Members of a committee folded into the feature axis (as :class:`PairConvolution`);
        a batched ``g`` (per-member geometry) becomes a trailing member axis, (P, C, M)."""
        _unbatched_indices(in_dims[6:8])
        members = info.batch_size
        p, q, w = (_fold(t, d, members) for t, d in zip((p, q, w), in_dims[:3]))
        if in_dims[3] is not None:
            g = g.movedim(in_dims[3], -1)
        if torch.compiler.is_compiling():
            return _unfold(directional_pair_sum_plain(p, q, w, g, sizes, signs, i, j), members), 0
        return _unfold(DirectionalPairSum.apply(p, q, w, g, sizes, signs, i, j), members), 0

    @staticmethod
    def backward(ctx, grad_out):
        p, q, w, g, i, j = ctx.saved_tensors
        sizes = ctx.sizes
        sign = torch.tensor(ctx.signs, device=w.device, dtype=w.dtype).view(1, -1, 1)
        grad_out = grad_out.contiguous()
        grad_p, grad_q = torch.zeros_like(p), torch.zeros_like(q)
        grad_w_parts, grad_g_parts = [], []  # kept as lists: this backward may be differentiated
        step = _chunk(sum(sizes) * p.shape[1], p.element_size(), minimum=16)
        # reused gather buffers, unless this backward is itself being differentiated
        reuse = not torch.is_grad_enabled() and not grad_out.requires_grad
        buf_i, buf_j = (grad_out.new_empty((min(step, i.shape[0]),) + grad_out.shape[1:]) if reuse else None for _ in range(2))
        for c in _chunks(i.shape[0], step):
            ic, jc = i[c], j[c]
            wc, gc = w[c], g[c]
            gi, gj = _gather(grad_out, ic, buf_i), _gather(grad_out, jc, buf_j)  # (Pc, C, F)
            zi = (p.index_select(0, ic) + q.index_select(0, jc)).unsqueeze(1)  # (Pc, 1, F)
            zj = (p.index_select(0, jc) + q.index_select(0, ic)).unsqueeze(1)
            bi = _group_sums(_times_g(gi, gc), sizes)  # (Pc, K, F)
            bj = _group_sums(_times_g(gj, gc), sizes) * sign
            grad_w_parts.append(bi * zi + bj * zj)
            grad_g_parts.append(
                _feature_sums(gi * _expand_groups(wc * zi, sizes) + gj * _expand_groups(wc * sign * zj, sizes), gc)
            )
            ai, aj = (wc * bi).sum(1), (wc * bj).sum(1)  # (Pc, F)
            grad_p.index_add_(0, ic, ai).index_add_(0, jc, aj)
            grad_q.index_add_(0, jc, ai).index_add_(0, ic, aj)
        grad_w = torch.cat(grad_w_parts) if grad_w_parts else torch.zeros_like(w)
        grad_g = torch.cat(grad_g_parts) if grad_g_parts else torch.zeros_like(g)
        return grad_p, grad_q, grad_w, grad_g, None, None, None, None


def _by_group(g: Tensor, wz: Tensor, sizes: tuple[int, ...], buffer: Tensor | None = None) -> Tensor:
    """(P, C, F): g[:, c] * wz[:, k(c)] for the components c of each group k (written into
    ``buffer`` if given). A g of shape (P, C, M) multiplies each of M blocks of F / M features
    by its own column (a committee's members folded into the features)."""
    rows, members = g.shape[0], (g.shape[2] if g.dim() == 3 else 1)
    g4 = g.reshape(rows, g.shape[1], members, 1)
    wz4 = wz.view(rows, wz.shape[1], members, -1)
    if buffer is None:
        out, start = [], 0
        for k, n in enumerate(sizes):
            out.append(g4[:, start : start + n] * wz4[:, k : k + 1])
            start += n
        return torch.cat(out, dim=1).view(rows, g.shape[1], -1)
    buffer, start = buffer[:rows], 0
    blocks = buffer.view(rows, buffer.shape[1], members, -1)
    for k, n in enumerate(sizes):
        torch.mul(g4[:, start : start + n], wz4[:, k : k + 1], out=blocks[:, start : start + n])
        start += n
    return buffer


def _times_g(x: Tensor, g: Tensor) -> Tensor:
    """x (P, C, F) times g (P, C), or (P, C, M) blockwise over M blocks of features."""
    if g.dim() == 2:
        return x * g.unsqueeze(-1)
    rows, components, members = g.shape
    return (x.view(rows, components, members, -1) * g.unsqueeze(-1)).view_as(x)


def _feature_sums(x: Tensor, g: Tensor) -> Tensor:
    """Sums of x (P, C, F) over the features, per block of features where g has a member axis:
    the shape of g."""
    if g.dim() == 2:
        return x.sum(-1)
    return x.view(*g.shape, -1).sum(-1)


# -- committees: members folded into the feature axis (torch.func.vmap batching rules) ---------
def _unbatched_indices(dims: tuple[int | None, ...]) -> None:
    if any(d is not None for d in dims):
        raise NotImplementedError("pair operations batch over members sharing one neighbour list, not over pair indices")


def _member_first(t: Tensor, dim: int | None, members: int) -> Tensor:
    """``t`` with its member axis first (expanded when it has none)."""
    if dim is None:
        return t.unsqueeze(0).expand(members, *t.shape)
    return t.movedim(dim, 0)


def _fold(t: Tensor, dim: int | None, members: int) -> Tensor:
    """(M, X..., F) -> (X..., M * F): the member axis folded into the last (feature) axis."""
    if dim is None and members == 1:
        return t
    t = _member_first(t, dim, members)
    return t.movedim(0, -2).reshape(*t.shape[1:-1], members * t.shape[-1])


def _unfold(t: Tensor, members: int) -> Tensor:
    """(X..., M * F) -> (M, X..., F)."""
    return t.view(*t.shape[:-1], members, -1).movedim(-2, 0)


def _group_sums(x: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """(P, K, F): sums of x (P, C, F) over the components of each group."""
    out, start = [], 0
    for n in sizes:
        out.append(x[:, start : start + n].sum(1))
        start += n
    return torch.stack(out, dim=1)


def _expand_groups(x: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """(P, C, F): row k of x (P, K, F) repeated for each component of group k."""
    return torch.cat([x[:, k : k + 1].expand(-1, n, -1) for k, n in enumerate(sizes)], dim=1)


# ---------------------------------------------------------------------------------------------
# The same operations as plain differentiable PyTorch, for torch.compile and torch.export: the
# compilers cannot trace the chunk loops (their trip count depends on the data) and fuse the
# gathers and products themselves. ``both_ways=False`` sends each edge's message to its first
# atom only, for a full edge list (no data-dependent selection of half edges).


def pair_convolution(
    h: Tensor, filt: Tensor, envelope: Tensor, i: Tensor, j: Tensor, both_ways: bool = True,
    sizes: tuple[int, ...] | None = None,
) -> Tensor:  # fmt: skip
    """:class:`PairConvolution` when running eagerly, plain operations when being compiled."""
    if both_ways and not torch.compiler.is_compiling():
        return PairConvolution.apply(h, filt, envelope, i, j, sizes)
    return pair_convolution_plain(h, filt, envelope, i, j, both_ways, sizes)


def pair_convolution_plain(
    h: Tensor, filt: Tensor, envelope: Tensor, i: Tensor, j: Tensor, both_ways: bool = True,
    sizes: tuple[int, ...] | None = None,
) -> Tensor:  # fmt: skip
    hg, fg, groups = _as_groups(h, filt, sizes)
    w = _expand_groups(fg * envelope.view(-1, 1, 1), groups)
    out = torch.zeros_like(hg).index_add(0, i, hg.index_select(0, j) * w)
    if both_ways:
        out = out.index_add(0, j, hg.index_select(0, i) * w)
    return out.view_as(h)


def directional_pair_sum(
    p: Tensor, q: Tensor, w: Tensor, g: Tensor, sizes: tuple[int, ...], signs: tuple[float, ...],
    i: Tensor, j: Tensor, both_ways: bool = True,
) -> Tensor:  # fmt: skip
    """:class:`DirectionalPairSum` when running eagerly, plain operations when being compiled."""
    if both_ways and not torch.compiler.is_compiling():
        return DirectionalPairSum.apply(p, q, w, g, sizes, signs, i, j)
    return directional_pair_sum_plain(p, q, w, g, sizes, signs, i, j, both_ways)


def directional_pair_sum_plain(
    p: Tensor, q: Tensor, w: Tensor, g: Tensor, sizes: tuple[int, ...], signs: tuple[float, ...],
    i: Tensor, j: Tensor, both_ways: bool = True,
) -> Tensor:  # fmt: skip
    out = p.new_zeros((p.shape[0], sum(sizes), p.shape[1]))
    out = out.index_add(0, i, _by_group(g, w * (p.index_select(0, i) + q.index_select(0, j)).unsqueeze(1), sizes))
    if both_ways:
        sign = torch.tensor(signs, device=w.device, dtype=w.dtype).view(1, -1, 1)
        wz = w * sign * (p.index_select(0, j) + q.index_select(0, i)).unsqueeze(1)
        out = out.index_add(0, j, _by_group(g, wz, sizes))
    return out
