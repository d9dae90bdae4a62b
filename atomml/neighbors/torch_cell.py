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
   whose x is within sqrt(cutoff^2 - gap^2) of its own, gap being the (y, z) distance from the
   atom to the column (two binary searches), and keeps the pairs closer than the cutoff.
   Atoms are visited in the sorted (column, x) order, not by index, so that consecutive
   searches and gathers touch nearby memory.
5. Each atom's pairs form one contiguous block; a counting sort puts the blocks in order of
   atom index, so the list is sorted by i. Capacity is never fixed in advance: the candidates
   are counted, then allocated.
"""

from __future__ import annotations

import torch
from torch import Tensor

COLUMN_SUBDIVISION = 2  # columns of cutoff / 2 in (y, z): fewer candidates than cutoff-wide ones
QUERY_CHUNK = 1 << 19  # bound on (queries x neighbour columns) handled at once, for memory


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
        graph = batch.index_select(0, atom)
        n_side = n_img[:, axis].index_select(0, graph)
        copies = 2 * n_side + 1
        src = torch.repeat_interleave(torch.arange(atom.shape[0], device=device), copies)
        s = torch.arange(src.shape[0], device=device) - (_exclusive_cumsum(copies) + n_side).index_select(0, src)
        atom, graph, shift = atom.index_select(0, src), graph.index_select(0, src), shift.index_select(0, src)
        shift[:, axis] = s
        g = frac[:, axis].index_select(0, atom) + s.to(frac.dtype)
        p = pad[:, axis].index_select(0, graph)
        inside = ((g >= -p) & (g <= 1.0 + p)) | ~pbc[:, axis].index_select(0, graph)
        keep = torch.nonzero(inside).squeeze(1)
        atom, shift = atom.index_select(0, keep), shift.index_select(0, keep)
    return atom, shift


def _column_span(
    col: Tensor, span: Tensor, n_col: Tensor, lo: Tensor, coord: Tensor, col_size: float, margin: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Along one of y, z: the columns ``col + span`` around each query (Q, S), whether they
    exist, and the squared distance (float64) from the query's coordinate to each column's
    interval, reduced by ``margin`` so that rounding never drops a column."""
    c = col.unsqueeze(1) + span
    inside = (c >= 0) & (c < n_col)
    edge = lo + c.to(coord.dtype) * col_size
    coord = coord.unsqueeze(1)
    gap = torch.clamp(torch.maximum(edge - coord, coord - edge - col_size) - margin, min=0.0).double()
    return c, inside, gap * gap


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
    #    as a single contiguous range of x.
    num_graphs = cell.shape[0]
    big = torch.finfo(dtype).max
    index3 = pt_batch.unsqueeze(1).expand(-1, 3)
    lo = torch.full((num_graphs, 3), big, dtype=dtype, device=device).scatter_reduce(0, index3, pt_pos, reduce="amin")
    hi = torch.full((num_graphs, 3), -big, dtype=dtype, device=device).scatter_reduce(0, index3, pt_pos, reduce="amax")
    present = (lo[:, 0] <= hi[:, 0]).unsqueeze(1)
    lo = torch.where(present, lo, torch.zeros_like(lo))
    hi = torch.where(present, hi, torch.zeros_like(hi))
    col_size = cutoff / COLUMN_SUBDIVISION
    n_col = (torch.floor((hi[:, 1:] - lo[:, 1:]) / col_size).long() + 1).clamp(min=1)  # (B, 2): along y, z
    graph_offset = _exclusive_cumsum(n_col.prod(dim=1))
    pt_c2 = torch.floor((pt_pos[:, 1:] - lo[pt_batch, 1:]) / col_size).long()
    pt_c2 = torch.minimum(pt_c2.clamp(min=0), n_col[pt_batch] - 1)  # (P, 2) column along y, z
    pt_col = graph_offset[pt_batch] + pt_c2[:, 0] + n_col[pt_batch, 0] * pt_c2[:, 1]
    # sorted occupied column ids; their ranks keep the float key small and exact enough.
    # (sort + unique_consecutive: with busy CPU cores, torch.unique took 0.2 s for 45k ids)
    occupied = torch.unique_consecutive(torch.sort(pt_col).values)
    width = float((hi[:, 0] - lo[:, 0]).max()) + 2.0 * cutoff + 1.0
    pt_x = (pt_pos[:, 0] - lo[pt_batch, 0]).double()
    sorted_key, order = torch.sort(torch.searchsorted(occupied, pt_col).double() * width + pt_x)
    # Per-candidate work is gathers from these sorted point arrays, kept as separate 1D
    # arrays: a 1D index_select is several times faster than gathering rows of a (P, 3)
    # tensor, and adding three squares than a reduction over a dimension of size 3.
    sorted_pos = [c.contiguous() for c in pt_pos[order].unbind(1)]
    sorted_atom = pt_atom[order]
    # shift of each point relative to its unwrapped atom: S = point_shift - wrap[i]
    point_shift = [c.contiguous() for c in (pt_shift[order] + wrap[sorted_atom]).unbind(1)]
    atom_wrap = [c.contiguous() for c in wrap.unbind(1)]

    # 4. The queries are the unshifted points, in sorted (column, x) order: consecutive
    #    queries then search nearby keys and gather nearby points, several times faster than
    #    in atom order. In each of the 5x5 columns around a query, the candidates are the
    #    points with x within sqrt(cutoff^2 - gap^2) of the query's, gap being the (y, z)
    #    distance to the column; the pairs are the candidates closer than the cutoff, less the
    #    query's own slot.
    query_slot = torch.nonzero((pt_shift[order] == 0).all(dim=1)).squeeze(1)  # (N,) sorted slots
    query_atom = sorted_atom[query_slot]
    query_graph = batch[query_atom]
    query_c2 = pt_c2[order[query_slot]]
    r = COLUMN_SUBDIVISION
    span = torch.arange(-r, r + 1, device=device)
    n_span = span.shape[0]
    margin = 1e-6 * width + 1e-9  # conservative against rounding of keys and column edges
    cutoff_sq = cutoff * cutoff
    chunk = max(1, QUERY_CHUNK // (n_span * n_span))
    pair_slots, pair_counts = [], []
    for start in range(0, n_atoms, chunk):
        stop = min(start + chunk, n_atoms)
        slot = query_slot[start:stop]
        graph = query_graph[start:stop].unsqueeze(1)
        # the grid is separable: (Q, 5) column indices, bounds and gaps along y and along z,
        # combined into (Q, 5, 5) and flattened to (Q, 25)
        c_y, in_y, gap_y = _column_span(
            query_c2[start:stop, 0], span, n_col[graph, 0], lo[graph, 1], sorted_pos[1][slot], col_size, margin
        )
        c_z, in_z, gap_z = _column_span(
            query_c2[start:stop, 1], span, n_col[graph, 1], lo[graph, 2], sorted_pos[2][slot], col_size, margin
        )
        gap_sq = (gap_y.unsqueeze(2) + gap_z.unsqueeze(1)).flatten(1)
        valid = (in_y.unsqueeze(2) & in_z.unsqueeze(1)).flatten(1) & (gap_sq < cutoff_sq)
        ids = ((graph_offset[graph] + c_y).unsqueeze(2) + (n_col[graph, 0] * c_z).unsqueeze(1)).flatten(1)
        rank = torch.searchsorted(occupied, ids).clamp(max=occupied.shape[0] - 1)
        valid &= occupied[rank] == ids  # empty columns have no rank
        half_width = torch.sqrt(torch.clamp(cutoff_sq - gap_sq, min=0.0)) + margin
        base = rank.double() * width + pt_x[order[slot]].unsqueeze(1)
        first = torch.searchsorted(sorted_key, base - half_width, side="left")
        last = torch.searchsorted(sorted_key, base + half_width, side="right")
        count = torch.where(valid, last - first, torch.zeros_like(first)).reshape(-1)
        total = int(count.sum())
        if total == 0:
            pair_counts.append(torch.zeros(stop - start, dtype=torch.long, device=device))
            continue
        # candidate slots, run after run, and the query (0 .. Q-1 in this chunk) of each
        run_start = torch.repeat_interleave(first.reshape(-1) - _exclusive_cumsum(count), count, output_size=total)
        cand = torch.arange(total, device=device) + run_start
        per_query = count.view(-1, n_span * n_span).sum(dim=1)
        q = torch.repeat_interleave(torch.arange(stop - start, device=device), per_query, output_size=total)
        query_pos = [sorted_pos[k].index_select(0, slot) for k in range(3)]
        dist_sq = torch.zeros(total, dtype=dtype, device=device)
        for k in range(3):
            d = sorted_pos[k].index_select(0, cand) - query_pos[k].index_select(0, q)
            dist_sq += d * d
        keep = torch.nonzero((dist_sq < cutoff_sq) & (cand != slot.index_select(0, q))).squeeze(1)
        pair_slots.append(cand.index_select(0, keep))
        pair_counts.append(torch.bincount(q.index_select(0, keep), minlength=stop - start))

    # 5. Order the pairs by i. Each query's pairs are one contiguous block; a counting sort
    #    moves the blocks to atom-index order (each pair gathers from its block).
    count = torch.cat(pair_counts)  # pairs of each query, in query order
    n_pairs = int(count.sum())
    if n_pairs == 0:
        return _empty(device)
    slots = torch.cat(pair_slots)
    atom_count = torch.zeros_like(count).index_copy_(0, query_atom, count)
    block_start = torch.zeros_like(count).index_copy_(0, query_atom, _exclusive_cumsum(count))
    i_start = _exclusive_cumsum(atom_count)
    src = torch.arange(n_pairs, device=device) + torch.repeat_interleave(
        block_start - i_start, atom_count, output_size=n_pairs
    )
    slots = slots.index_select(0, src)
    i = torch.repeat_interleave(torch.arange(n_atoms, device=device), atom_count, output_size=n_pairs)
    j = sorted_atom.index_select(0, slots)
    shift = torch.stack(
        [point_shift[k].index_select(0, slots) - atom_wrap[k].index_select(0, i) for k in range(3)], dim=1
    )
    return torch.stack([i, j]), shift
