"""Free-energy estimators on harmonic oscillators with exact answers (z-score tests).

State k: u_k(x) = kappa_k (x - mu_k)^2 / 2 in reduced units (beta = 1), one dimension. Its
reduced free energy is f_k = -ln sqrt(2 pi / kappa_k), so f_1 - f_0 = ln(kappa_1 / kappa_0) / 2
whatever the centres. Samples are drawn exactly (independent Gaussians).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymbar")
from atomml.errors import InputError
from atomml.fe import estimators as est

T = 300.0
Z_MAX = 4.0  # an estimate more than 4 sigma from the exact value fails


def exact(k0, k1):
    return 0.5 * np.log(k1 / k0)


def u(x, kappa, mu):
    return 0.5 * kappa * (x - mu) ** 2


def sample(kappa, mu, n, rng):
    return rng.normal(mu, 1 / np.sqrt(kappa), n)


def assert_z(result, truth):
    z = (result.value_kt - truth) / result.error_kt
    assert abs(z) < Z_MAX, f"{result}: exact {truth:.4f}, z = {z:.1f}"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mbar_bar_exp_recover_exact_differences(seed):
    rng = np.random.default_rng(seed)
    kappas, mus = np.array([1.0, 1.6, 2.5, 4.0]), np.array([0.0, 0.2, 0.4, 0.5])
    n = 3000
    x = np.concatenate([sample(k, m, n, rng) for k, m in zip(kappas, mus)])
    u_kn = np.array([u(x, k, m) for k, m in zip(kappas, mus)])
    out = est.mbar(u_kn, [n] * 4, T)
    truth = np.array([exact(kappas[0], k) for k in kappas])
    assert out.result.ok, out.result.flags
    for k in range(1, 4):
        assert abs(out.free_energies_kt[k] - truth[k]) < Z_MAX * out.errors_kt[k]
    assert np.allclose(out.overlap.sum(axis=1), 1.0)
    # BAR and EXP between the first two states
    x0, x1 = x[:n], x[n : 2 * n]
    forward = u(x0, kappas[1], mus[1]) - u(x0, kappas[0], mus[0])
    reverse = u(x1, kappas[0], mus[0]) - u(x1, kappas[1], mus[1])
    assert_z(est.bar(forward, reverse, T), truth[1])
    assert_z(est.exp(forward, T), truth[1])


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")  # pymbar, no overlap
def test_mbar_flags_poor_overlap_and_refuses_bad_input():
    rng = np.random.default_rng(5)
    n = 500
    x = np.concatenate([sample(1.0, 0.0, n, rng), sample(1.0, 12.0, n, rng)])  # far apart
    u_kn = np.array([u(x, 1.0, 0.0), u(x, 1.0, 12.0)])
    out = est.mbar(u_kn, [n, n], T)
    assert not out.result.ok and "overlap" in out.result.flags[0]
    with pytest.raises(ValueError, match="does not match"):
        est.mbar(u_kn, [n, n - 1], T)
    with pytest.raises(InputError, match="is nan"):  # NaN has no meaning (was an EstimatorError)
        est.mbar(np.where(u_kn > 5, np.nan, u_kn), [n, n], T)


def ti_windows(n_windows, n_samples, rng, k0=1.0, k1=4.0):
    """dU/dlambda samples along kappa(lambda) = k0 + lambda (k1 - k0)."""
    lambdas = np.linspace(0, 1, n_windows)
    dudl = [0.5 * (k1 - k0) * sample(k0 + lam * (k1 - k0), 0.0, n_samples, rng) ** 2 for lam in lambdas]
    return lambdas, dudl


@pytest.mark.parametrize("method", ["trapezoid", "spline"])
def test_ti_within_error_with_enough_windows(method):
    lambdas, dudl = ti_windows(21, 4000, np.random.default_rng(3))
    result = est.ti(lambdas, dudl, T, method=method)
    assert result.ok
    assert_z(result, exact(1.0, 4.0))


def test_ti_discretisation_error_shrinks_with_windows():
    """With exact window means, trapezoid error falls as 1/n^2; the spline is better still."""
    truth = exact(1.0, 4.0)
    errors = {}
    for method in ("trapezoid", "spline"):
        errors[method] = []
        for n in (3, 5, 9, 17):
            lam = np.linspace(0, 1, n)
            means = [np.full(2, 0.5 * 3.0 / (1.0 + 3.0 * x)) for x in lam]  # <dU/dl> exactly, no noise
            errors[method].append(abs(est.ti(lam, means, T, method=method).value_kt - truth))
    trap = np.array(errors["trapezoid"])
    ratios = trap[:-1] / trap[1:]  # halving the spacing
    assert np.all(ratios > 3.0), ratios  # second order: ~4
    assert np.all(np.array(errors["spline"])[1:] < trap[1:])


def test_ti_flags_correlated_windows_and_refuses_bad_input():
    rng = np.random.default_rng(4)
    lam = np.array([0.0, 1.0])
    correlated = np.repeat(rng.normal(size=10), 100)  # 1,000 samples, ~10 independent
    result = est.ti(lam, [correlated, correlated + 1], T)
    assert not result.ok and "uncorrelated samples" in result.flags[0]
    with pytest.raises(est.EstimatorError, match="no samples"):
        est.ti(lam, [correlated, np.array([])], T)
    with pytest.raises(ValueError, match="increase"):
        est.ti([1.0, 0.0], [correlated, correlated], T)


def test_units_and_decorrelation():
    r = est.FreeEnergy(1.0, 0.1, 298.15, "test")
    assert np.isclose(r.kj_per_mol[0], 2.4790, atol=1e-4)  # RT at 298.15 K
    assert np.isclose(r.kcal_per_mol[0], 0.59248, atol=1e-5)
    rng = np.random.default_rng(0)
    ar = np.zeros(5000)
    for t in range(1, 5000):  # AR(1) with phi = 0.9: g = (1 + phi) / (1 - phi) = 19
        ar[t] = 0.9 * ar[t - 1] + rng.normal()
    g = est.statistical_inefficiency(ar)
    assert 12 < g < 28
    idx = est.decorrelated_indices(ar)
    assert 100 < len(idx) < 600


def test_forward_reverse_and_plots(tmp_path):
    from atomml.fe import diagnostics

    rng = np.random.default_rng(7)
    kappas, n = np.array([1.0, 1.5, 2.2, 3.0]), 800
    x = np.concatenate([sample(k, 0.0, n, rng) for k in kappas])
    u_kn = np.array([u(x, k, 0.0) for k in kappas])
    conv = diagnostics.forward_reverse(u_kn, [n] * 4, T)
    assert conv["converged"], conv["why"]
    assert abs(conv["forward"][-1] - exact(1.0, 3.0)) < Z_MAX * conv["forward_error"][-1]
    # a drifting window (its first half from another state) is caught
    drifted = np.concatenate([sample(1.0, 2.0, n // 2, rng), sample(3.0, 0.0, n // 2, rng)])
    x2 = np.concatenate([x[: 3 * n], drifted])
    bad = diagnostics.forward_reverse(np.array([u(x2, k, 0.0) for k in kappas]), [n] * 4, T)
    assert not bad["converged"] and "differ" in bad["why"]
    diagnostics.plot_overlap(est.mbar(u_kn, [n] * 4, T), tmp_path / "overlap.png")
    diagnostics.plot_convergence(conv, tmp_path / "convergence.png", T)
    diagnostics.plot_dudl([0, 0.5, 1], [rng.normal(size=50) + m for m in (1, 0.5, 0.2)], tmp_path / "dudl.png")
    for name in ("overlap.png", "convergence.png", "dudl.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leg_decorrelation_keeps_uncorrelated_equilibrated_samples():
    """The leg analysis' decorrelation on correlated oscillator samples: a transient at the start is
    cut, about N/g samples are kept (AR(1) with phi: g = (1 + phi) / (1 - phi)), and MBAR on
    the kept samples is still within error of the exact answer."""
    from atomml.fe.analysis import decorrelate

    rng = np.random.default_rng(3)
    kappas, n, phi = [1.0, 2.0], 4000, 0.8
    blocks = []
    for kappa in kappas:
        noise = rng.normal(size=n) * np.sqrt(1 - phi**2)
        x = np.empty(n)
        x[0] = noise[0]
        for i in range(1, n):
            x[i] = phi * x[i - 1] + noise[i]
        x += 5.0 * np.exp(-np.arange(n) / 100.0)  # a slow drift in: the start is not equilibrated
        blocks.append(x / np.sqrt(kappa))
    x_all = np.concatenate(blocks)
    u_kn = np.array([u(x_all, kappa, 0.0) for kappa in kappas])
    kept = decorrelate(u_kn, np.array([n, n]))
    g_exact = (1 + phi) / (1 - phi)
    for k, state in enumerate(kept.states):
        assert state.t0 > 0
        assert 0.4 * n / g_exact < kept.n_k[k] < 2.5 * n / g_exact  # g of u = x^2 is smaller than of x
        assert state.uncorrelated == kept.n_k[k]
    assert kept.u_kn.shape == (2, kept.n_k.sum())
    result = est.mbar(kept.u_kn, kept.n_k, T).result
    assert abs(result.value_kt - exact(*kappas)) < Z_MAX * result.error_kt


QUIET_SCRIPT = """
import logging, sys
handler = logging.StreamHandler(sys.stdout)  # an application that logs to stdout
logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s")
import numpy as np
from atomml.fe import estimators
rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(0, 1, 200), rng.normal(0, 0.8, 200)])
u_kn = np.array([0.5 * x**2, 0.5 * x**2 / 0.64])
print(estimators.mbar(u_kn, [200, 200], 300.0).result.value_kt, file=sys.stderr)
assert logging.getLogger().handlers == [handler] and logging.getLogger("pymbar").level == logging.NOTSET
logging.getLogger("pymbar.mbar").warning("a later pymbar warning")
"""


def test_pymbar_import_and_a_tiny_mbar_print_nothing(tmp_path):
    """pymbar logs a JAX banner and a timeseries caveat when it is imported; in a fresh interpreter
    whose logging goes to stdout, importing the estimators and running MBAR prints neither, and
    the application's logging stays as it set it up (pymbar's later warnings still reach it)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", QUIET_SCRIPT], check=False, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "a later pymbar warning\n"
    assert "JAX" not in proc.stderr and "timeseries module" not in proc.stderr
    assert float(proc.stderr.split()[-1]) == pytest.approx(np.log(1.25), abs=0.2)  # ln(sigma0/sigma1)
