"""Block averages against the analytic standard error of the mean."""

from __future__ import annotations

import numpy as np
import pytest

from atomml.analysis import block_mean_and_error


def test_independent_values_give_the_plain_standard_error():
    values = np.random.default_rng(0).normal(3.0, 2.0, 40_000)
    mean, error = block_mean_and_error(values)
    expected = 2.0 / np.sqrt(len(values))
    assert mean == pytest.approx(values.mean())
    assert 0.6 * expected < error < 1.6 * expected  # 10 blocks: the estimate itself is ~25 % uncertain


def test_correlated_values_give_the_ar1_standard_error():
    """AR(1) x_t = phi x_(t-1) + noise: the error of the mean is sigma sqrt((1 + phi) / (1 - phi) / n)."""
    rng = np.random.default_rng(1)
    phi, n = 0.9, 200_000
    noise = rng.normal(0.0, 1.0, n)
    x = np.empty(n)
    x[0] = noise[0] / np.sqrt(1 - phi**2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + noise[t]
    sigma = 1.0 / np.sqrt(1 - phi**2)
    expected = sigma * np.sqrt((1 + phi) / (1 - phi) / n)
    _, error = block_mean_and_error(x, blocks=20)
    naive = x.std() / np.sqrt(n)
    assert 0.6 * expected < error < 1.6 * expected and error > 3 * naive


def test_too_short_a_series_is_refused():
    with pytest.raises(ValueError, match="at least 20 values"):
        block_mean_and_error(np.arange(10.0), blocks=10)
