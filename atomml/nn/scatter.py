"""Scatter (segment) sums used for message passing and per-structure sums.

torch-scatter is used when it is installed (the ``scatter`` extra); otherwise torch's own
``index_add`` is used, which needs no compiled extension. ``scripts/bench_scatter.py`` measures
whether the extension helps.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:  # optional compiled kernels
    import torch_scatter as _torch_scatter  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _torch_scatter = None

USE_TORCH_SCATTER = _torch_scatter is not None


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """out[k] = sum of src[e] over e with index[e] == k, along dimension 0."""
    if USE_TORCH_SCATTER and _torch_scatter is not None:
        return _torch_scatter.scatter_sum(src, index, dim=0, dim_size=dim_size)
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)
