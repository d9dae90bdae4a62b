"""Scatter (segment) sums used for message passing and per-structure sums.

torch's own ``index_add`` is the default. torch-scatter (the ``scatter`` extra; no wheel for
recent torch, a source build of ~8 minutes) is used only for tensors on an accelerator, and only
when installed: on the CPU it measured no faster for SchNet energy+forces (1.01x, paired
medians, 1,536-atom water box) and 1.6-2x slower for a scatter with its backward pass
(``scripts/bench_scatter.py``), because its ``scatter_sum`` is itself a call to torch's
``scatter_add_``. Set ``USE_TORCH_SCATTER = False`` to switch it off everywhere, or
``TORCH_SCATTER_ON_CPU = True`` to use it on the CPU too (the benchmark does).
"""

from __future__ import annotations

from torch import Tensor

try:  # optional compiled kernels
    import torch_scatter as _torch_scatter  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _torch_scatter = None

USE_TORCH_SCATTER = _torch_scatter is not None
TORCH_SCATTER_ON_CPU = False


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """out[k] = sum of src[e] over e with index[e] == k, along dimension 0."""
    if USE_TORCH_SCATTER and _torch_scatter is not None and (src.device.type != "cpu" or TORCH_SCATTER_ON_CPU):
        return _torch_scatter.scatter_sum(src, index, dim=0, dim_size=dim_size)
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)
