"""Means of correlated time series with an honest standard error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def block_mean_and_error(series: Sequence[float] | np.ndarray, blocks: int = 10) -> tuple[float, float]:
    """Mean of a correlated series and its standard error from block means.

    The error is the largest of the estimates with ``blocks``, 2x and 4x as many blocks (the
    finer ones only where each block keeps at least 3 values), so that a short series whose few
    block means happen to agree does not pass for a precise one. (pymbar's statistical
    inefficiency, used by :mod:`atomml.fe.analysis`, needs longer series than MD tests keep.)
    """
    values = np.asarray(series, dtype=float)
    if values.ndim != 1 or len(values) < 2 * blocks:
        raise ValueError(f"need a 1D series of at least {2 * blocks} values for {blocks} blocks, got shape {values.shape}")
    errors = []
    for k in (blocks, 2 * blocks, 4 * blocks):
        if k == blocks or len(values) // k >= 3:
            means = np.array([b.mean() for b in np.array_split(values, k)])
            errors.append(means.std(ddof=1) / np.sqrt(k))
    return float(values.mean()), float(max(errors))
