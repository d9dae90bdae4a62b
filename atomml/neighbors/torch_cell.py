"""Pure-PyTorch O(N) cell list: batched, triclinic, per-axis periodic, any device.

Why our own: vesin is CPU-only here and has no batched API; this backend runs wherever torch
runs and is the reference that GPU kernels are tested against.

Algorithm, for all structures of the batch at once:
1. Fractional coordinates along the periodic axes come from the pseudo-inverse of the cell
   with its non-periodic rows zeroed (so slabs, wires and zero vacuum vectors all work); atoms
   are wrapped into the cell along periodic axes, remembering the integer wrap.
2. Periodic images ("ghosts") are generated for every integer shift that can bring a copy
   within ``cutoff`` of the cell: ceil(cutoff / plane spacing) images per axis, so cutoffs
   larger than the cell are handled; copies farther than the cutoff from the cell are dropped.
3. All points (atoms and ghosts) are put in columns: a 2D grid of ``cutoff / 2`` bins in (y, z),
   and sorted by (column, x). Only occupied columns get a rank, so empty space costs nothing.
4. Each atom takes, in each of the (up to) 5x5 columns around it, the contiguous run of points
   with x within the cutoff (two binary searches), and keeps the pairs closer than the cutoff.
   Capacity is never fixed in advance: the number of pairs is counted, then allocated.
"""

from __future__ import annotations

import torch
from torch import Tensor

COLUMN_SUBDIVISION = 2  # columns of cutoff / 2 in (y, z): fewer candidates than cutoff-wide ones
QUERY_CHUNK = 1 << 22  # bound on (queries x neighbour bins) handled at once, for memory


def _empty(device: torch.device) -> tuple[Tensor, Tensor]:
    return (
        torch.zeros((2, 0), dtype=torch.long, device=device),
        torch.zeros((0, 3), dtype=torch.long, device=device),
    )


def _exclusive_cumsum(x: Tensor) -> Tensor:
    return torch.cumsum(x, 0) - x


def _periodic_images(frac: Tensor, batch: Tensor, n_img: Tensor, pad: Tensor, pbc: Tensor) -> tuple[Tensor, Tensor]:
    """Atom index and integer shift of every copy (shift 0 included) within ``pad`` (fraction
    of the cell) of the cell along each periodic axis.

    One axis at a time: the copies along b are made only of the copies along a that were
    kept, and so on, so the work is close to the number of points kept rather than
    ``N * prod(2 * n_img + 1)``."""
    device = frac.device
    atom = torch.arange(frac.shape[0], device=device)
    shift = torch.zeros((frac.shape[0], 3), dtype=torch.long, device=device)
    for axis in range(3):
        n_side = n_img[batch[atom], axis]
        copies = 2 * n_side + 1
        src = torch.repeat_interleave(torch.arange(atom.shape[0], device=device), copies)
        s = torch.arange(src.shape[0], device=device) - _exclusive_cumsum(copies)[src] - n_side[src]
        atom, shift = atom[src], shift[src]
        shift[:, axis] = s
        g = frac[atom, axis] + s.to(frac.dtype)
        p = pad[batch[atom], axis]
        keep = torch.nonzero(((g >= -p) & (g <= 1.0 + p)) | ~pbc[batch[atom], axis]).squeeze(1)
        atom, shift = atom[keep], shift[keep]
    return atom, shift


def torch_neighbor_list(positions: Tensor, cell: Tensor, pbc: Tensor, cutoff: float, batch: Tensor) -> tuple[Tensor, Tensor]:
    device, dtype = positions.device, positions.dtype
    n_atoms = positions.shape[0]
    if n_atoms == 0:
        return _empty(device)
    cell = cell.to(dtype)
    pbc = pbc.to(device)

    # 1. fractional coordinates along periodic axes and wrapping
    periodic_cell = cell * pbc.unsqueeze(-1).to(dtype)
    inv = torch.linalg.pinv(periodic_cell)  # (B, 3, 3); zero columns for non-periodic axes
    frac = torch.bmm(positions.unsqueeze(1), inv[batch]).squeeze(1)
    wrap = -torch.floor(frac)
    wrap = torch.where(pbc[batch], wrap, torch.zeros_like(wrap))
    frac = frac + wrap
    wrapped = positions + torch.bmm(wrap.unsqueeze(1), cell[batch]).squeeze(1)
    wrap = wrap.long()

    # 2. periodic images within the cutoff of the cell
    recip_norm = inv.norm(dim=1)  # (B, 3): 1 / plane spacing along each periodic axis
    pad = cutoff * recip_norm * pbc.to(dtype)
    n_img = torch.ceil(pad).long() * pbc.long()
    pad = pad + 1e-6  # conservative against rounding at the faces
    pt_atom, pt_shift = _periodic_images(frac, batch, n_img, pad, pbc)
    pt_batch = batch[pt_atom]
    pt_pos = wrapped[pt_atom] + torch.bmm(pt_shift.to(dtype).unsqueeze(1), cell[pt_batch]).squeeze(1)

    # 3. columns: a 2D grid of bins in (y, z); inside each column points are sorted by x, so
    #    that one sorted float key (column rank, x) gives every atom its candidates in a column
    #    as a single contiguous range [x - cutoff, x + cutoff].
    num_graphs = cell.shape[0]
    big = torch.finfo(dtype).max
    index3 = pt_batch.unsqueeze(1).expand(-1, 3)
    lo = torch.full((num_graphs, 3), big, dtype=dtype, device=device).scatter_reduce(0, index3, pt_pos, reduce="amin")
    hi = torch.full((num_graphs, 3), -big, dtype=dtype, device=device).scatter_reduce(0, index3, pt_pos, reduce="amax")
    present = (lo[:, 0] <= hi[:, 0]).unsqueeze(1)
    lo = torch.where(present, lo, torch.zeros_like(lo))
    hi = torch.where(present, hi, torch.zeros_like(hi))
    col_size = cutoff / COLUMN_SUBDIVISION
    n_col = (torch.floor((hi[:, 1:] - lo[:, 1:]) / col_size).long() + 1).clamp(min=1)  # (B, 2)
    graph_offset = _exclusive_cumsum(n_col.prod(dim=1))

    def column_of(pos_yz: Tensor, graph: Tensor) -> Tensor:
        c2 = torch.floor((pos_yz - lo[graph, 1:]) / col_size).long()
        return torch.minimum(c2.clamp(min=0), n_col[graph] - 1)

    def column_id(c2: Tensor, graph: Tensor) -> Tensor:
        return graph_offset[graph] + c2[..., 0] + n_col[graph, 0] * c2[..., 1]

    pt_col = column_id(column_of(pt_pos[:, 1:], pt_batch), pt_batch)
    # sorted occupied column ids; ranks keep the float key small and exact enough. (sort and
    # unique_consecutive: torch.unique is much slower on CPU when threads are contended)
    occupied = torch.unique_consecutive(torch.sort(pt_col).values)
    width = float((hi[:, 0] - lo[:, 0]).max()) + 2.0 * cutoff + 1.0
    pt_key = torch.searchsorted(occupied, pt_col).double() * width + (pt_pos[:, 0] - lo[pt_batch, 0]).double()
    sorted_key, order = torch.sort(pt_key)
    # Per-candidate work is gathers from these sorted point arrays. They are kept as separate
    # 1D coordinate arrays: a 1D index_select is several times faster than gathering rows of
    # an (P, 3) tensor, and so is summing three squares compared with a reduction over dim 1.
    sorted_x, sorted_y, sorted_z = pt_pos[order].unbind(1)
    sorted_x, sorted_y, sorted_z = sorted_x.contiguous(), sorted_y.contiguous(), sorted_z.contiguous()
    sorted_atom = pt_atom[order]
    # shift of each point relative to the unwrapped atom: r_ij = point - wrapped_i needs
    # S = point_shift - wrap[i]; kept as three 1D arrays too
    point_shift = (pt_shift[order] + wrap[sorted_atom]).t().contiguous()  # (3, P)
    # sorted slot of each atom's own unshifted copy, the one candidate that is not a pair
    unshifted = torch.nonzero((pt_shift == 0).all(dim=1)).squeeze(1)
    slot = torch.empty_like(order)
    slot[order] = torch.arange(order.shape[0], device=device)
    self_slot = torch.empty(n_atoms, dtype=torch.long, device=device)
    self_slot[pt_atom[unshifted]] = slot[unshifted]
    query_wrap = wrap.t().contiguous()  # (3, N)
    query_x, query_y, query_z = (c.contiguous() for c in wrapped.unbind(1))

    # 4. candidates of each atom: one key range per neighbouring column, then the exact test.
    #    The x half-width of the range in a column is sqrt(cutoff^2 - gap^2), gap being the
    #    (y, z) distance from the atom to the column, so corner columns give short ranges.
    r = COLUMN_SUBDIVISION
    span = torch.arange(-r, r + 1, device=device)
    offsets = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1).reshape(-1, 2)  # (K, 2)
    query_col = column_of(wrapped[:, 1:], batch)
    margin = 1e-6 * width + 1e-9  # conservative against rounding of keys and column edges
    cutoff_sq = cutoff * cutoff
    chunk = max(1, QUERY_CHUNK // offsets.shape[0])
    edges_i, edges_j, shifts = [], [], []
    for start in range(0, n_atoms, chunk):
        q = torch.arange(start, min(start + chunk, n_atoms), device=device)
        qb = batch[q].unsqueeze(1)
        nbr = query_col[q].unsqueeze(1) + offsets.unsqueeze(0)  # (Q, K, 2)
        valid = ((nbr >= 0) & (nbr < n_col[qb])).all(dim=-1)
        # (y, z) distance from the atom to each column's rectangle; skip those beyond the cutoff
        rect_lo = lo[qb, 1:] + nbr.to(dtype) * col_size
        yz = wrapped[q, 1:].unsqueeze(1)
        gap = torch.clamp(torch.maximum(rect_lo - yz, yz - rect_lo - col_size) - margin, min=0.0)
        gap_sq = (gap * gap).sum(dim=-1).double()
        valid &= gap_sq < cutoff_sq
        half_width = torch.sqrt(torch.clamp(cutoff_sq - gap_sq, min=0.0)) + margin
        ids = column_id(nbr, qb)
        rank = torch.searchsorted(occupied, ids).clamp(max=occupied.shape[0] - 1)
        valid &= occupied[rank] == ids
        x = (wrapped[q, 0] - lo[qb.squeeze(1), 0]).double().unsqueeze(1)
        base = rank.double() * width + x
        first = torch.searchsorted(sorted_key, base - half_width, side="left")
        last = torch.searchsorted(sorted_key, base + half_width, side="right")
        count = torch.where(valid, last - first, torch.zeros_like(first))
        total = int(count.sum())
        if total == 0:
            continue
        count = count.reshape(-1)
        segment_base = first.reshape(-1) - _exclusive_cumsum(count)
        cand = torch.arange(total, device=device) + torch.repeat_interleave(segment_base, count)
        i = torch.repeat_interleave(q, count.view(-1, offsets.shape[0]).sum(dim=1))
        d = sorted_x.index_select(0, cand) - query_x.index_select(0, i)
        dist_sq = d * d
        d = sorted_y.index_select(0, cand) - query_y.index_select(0, i)
        dist_sq += d * d
        d = sorted_z.index_select(0, cand) - query_z.index_select(0, i)
        dist_sq += d * d
        pair = (dist_sq < cutoff_sq) & (cand != self_slot.index_select(0, i))
        keep = torch.nonzero(pair).squeeze(1)
        i, cand = i.index_select(0, keep), cand.index_select(0, keep)
        edges_i.append(i)
        edges_j.append(sorted_atom.index_select(0, cand))
        shifts.append(torch.stack([point_shift[k].index_select(0, cand) - query_wrap[k].index_select(0, i) for k in range(3)], dim=1))
    if not edges_i:
        return _empty(device)
    return torch.stack([torch.cat(edges_i), torch.cat(edges_j)]), torch.cat(shifts)
