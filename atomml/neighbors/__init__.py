"""Neighbour lists: full lists with integer cell shifts, per-axis periodicity, batches.

``neighbor_list(positions, cell, pbc, cutoff, batch=None, backend="auto")`` returns
``(edge_index, cell_shift)`` following the graph contract: both i->j and j->i, no i == j pair
with zero shift, periodic images of an atom itself when the cell is smaller than the cutoff,
and ``r_ij = positions[j] - positions[i] + cell_shift @ cell[batch[i]]``.

Backends:
- ``"vesin"``: the vesin library (C++, CPU); the default on CPU.
- ``"torch"``: a pure-PyTorch O(N) cell list (:mod:`.torch_cell`) that runs on any device and
  is the reference for GPU kernels.
- ``"auto"``: vesin for CPU tensors, torch elsewhere.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from .torch_cell import torch_neighbor_list
from .vesin_backend import vesin_neighbor_list

BACKENDS = {"torch": torch_neighbor_list, "vesin": vesin_neighbor_list}


def neighbor_list(
    positions: Tensor,
    cell: Tensor,
    pbc: Tensor,
    cutoff: float,
    batch: Tensor | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Full neighbour list within ``cutoff`` (Å).

    positions (N, 3); cell (B, 3, 3) or (3, 3); pbc (B, 3) or (3,); batch (N,) sorted structure
    index (``None``: one structure). Returns edge_index (2, E) int64 (row 0 = i, row 1 = j)
    and cell_shift (E, 3) int64, on the device of ``positions``, sorted by i (the vesin
    backend, the CPU's: by i, j, then shift, an order that does not depend on the positions the
    list was built at).
    """
    if not cutoff > 0 or cutoff == float("inf"):
        raise InputError(f"cutoff must be a positive finite number of Å, got {cutoff}")
    if not (bool(torch.isfinite(positions).all()) and bool(torch.isfinite(cell).all())):
        raise InputError("non-finite (NaN or inf) positions or cell: check the structure or the run that made it")
    if cell.dim() == 2:
        cell = cell.unsqueeze(0)
    pbc = torch.as_tensor(pbc, device=positions.device)
    if pbc.dim() == 1:
        pbc = pbc.unsqueeze(0)
    if pbc.shape[0] != cell.shape[0]:
        pbc = pbc.expand(cell.shape[0], 3)
    check_cells(cell, pbc.bool())  # before a backend meets a singular box with its own wording
    if batch is None:
        batch = torch.zeros(positions.shape[0], dtype=torch.long, device=positions.device)
    if backend == "auto":
        backend = "vesin" if positions.device.type == "cpu" else "torch"
    try:
        fn = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown neighbour-list backend {backend!r}; choose one of {sorted(BACKENDS)} or 'auto'") from None
    with torch.no_grad():
        return fn(positions.detach(), cell.detach(), pbc.bool(), float(cutoff), batch)



def check_cells(cell: Tensor, pbc: Tensor) -> None:
    """Periodic lattice vectors must be linearly independent (a non-zero volume)."""
    if not bool(pbc.any()):
        return
    # Gram determinant of the periodic vectors, batched: non-periodic rows are zeroed and get a
    # 1 on the Gram diagonal, which leaves the determinant of the periodic block unchanged.
    vectors = cell.double() * pbc.unsqueeze(-1)
    gram = vectors @ vectors.transpose(1, 2)
    gram = gram + torch.diag_embed((~pbc).double())
    scale = torch.where(pbc, (vectors**2).sum(dim=-1), torch.ones_like(gram[..., 0])).prod(dim=-1)
    singular = pbc.any(dim=1) & ~(torch.linalg.det(gram) > 1e-12 * scale.clamp(min=1e-300))
    if bool(singular.any()):
        b = int(torch.nonzero(singular)[0])
        axes = "".join("abc"[k] for k in range(3) if bool(pbc[b, k]))
        raise InputError(
            f"structure {b}: the periodic lattice vectors ({axes}) are singular or zero "
            f"(cell = {cell[b].tolist()}): give a cell with non-zero volume along the periodic "
            "axes, or set pbc=False for axes that are not periodic"
        )


__all__ = ["BACKENDS", "check_cells", "neighbor_list", "torch_neighbor_list", "vesin_neighbor_list"]
