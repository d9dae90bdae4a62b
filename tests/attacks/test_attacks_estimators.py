"""Attacks on the free-energy estimators (issue 14, item 9): every input either gives the right
number, checked against pymbar 4 or an exact answer, or a clear error. Never nan, never a
silent 0 ± 0.

The reference systems are one-dimensional, in reduced units (beta = 1): state 0 is the harmonic
well u_0 = x^2 / 2, and "walled" states are wells with a hard wall, u = +inf on one side: a
configuration impossible there, which is what a +inf reduced potential or work means.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

pytest.importorskip("pymbar")
from atomml.errors import AtomMLError, InputError
from atomml.fe import estimators as est

T = 300.0
Z_MAX = 4.0  # an estimate more than 4 sigma from the exact value fails


def u_wall(x, kappa, wall):
    """kappa x^2 / 2 for x > wall, +inf (impossible) at and below it."""
    return np.where(x > wall, 0.5 * kappa * x**2, np.inf)


def f_wall(kappa, wall):
    """Exact reduced free energy -ln Z of :func:`u_wall`: Z = sqrt(2 pi / kappa) P(x > wall)."""
    return -np.log(np.sqrt(2 * np.pi / kappa) * ndtr(-wall * np.sqrt(kappa)))


def sample_wall(kappa, wall, n, rng):
    """n exact samples of :func:`u_wall` (a Gaussian, rejecting what lies behind the wall)."""
    x = rng.normal(0, 1 / np.sqrt(kappa), 4 * n)
    return x[x > wall][:n]


def pymbar():
    return est._pymbar()


def walled_works(n, rng, kappa=2.0, wall=-0.5):
    """Forward works 0 -> walled state (+inf for samples of state 0 behind the wall), reverse
    works, and the exact Delta f."""
    x0, x1 = rng.normal(0, 1, n), sample_wall(kappa, wall, n, rng)
    forward = u_wall(x0, kappa, wall) - 0.5 * x0**2
    reverse = 0.5 * x1**2 - u_wall(x1, kappa, wall)
    return forward, reverse, f_wall(kappa, wall) - f_wall(1.0, -np.inf)


def two_state_mbar(forward, reverse):
    """pymbar's MBAR on the samples behind BAR's works: u_0 = 0 and u_1 = w_F for state 0's
    samples, u_0 = w_R and u_1 = 0 for state 1's (only differences matter)."""
    u_kn = np.array([np.r_[np.zeros(forward.size), reverse], np.r_[forward, np.zeros(reverse.size)]])
    return pymbar().MBAR(u_kn, np.array([forward.size, reverse.size])).compute_free_energy_differences()


def test_bar_with_infinite_forward_works_agrees_with_pymbar_mbar_and_the_exact_answer():
    """Before: one +inf work made pymbar's BAR give up, and bar() returned 0.000 ± 0.000 kT with
    no flag. A +inf work is a sample impossible in the other state: BAR is 2-state MBAR, so
    pymbar's MBAR on the same samples (it takes +inf) gives the same Delta f; and it is within
    error of the exact answer."""
    rng = np.random.default_rng(0)
    forward, reverse, truth = walled_works(1500, rng)
    assert np.isinf(forward).sum() > 100
    result = est.bar(forward, reverse, T)
    reference = two_state_mbar(forward, reverse)
    assert result.value_kt == pytest.approx(reference["Delta_f"][0, 1], abs=1e-6)
    assert result.error_kt == pytest.approx(reference["dDelta_f"][0, 1], rel=0.05)  # Bennett's vs MBAR's variance
    assert abs(result.value_kt - truth) < Z_MAX * result.error_kt, (result, truth)


def test_bar_with_infinite_works_equals_pymbar_bar_in_the_limit_of_huge_works():
    """A +inf work is the limit of a huge one: replacing it by a work 100 kT above all others
    (Fermi weight e^-100) in pymbar's own BAR gives the same Delta f and Bennett error."""
    rng = np.random.default_rng(1)
    forward, reverse, _ = walled_works(1000, rng)
    huge = np.where(np.isinf(forward), np.max(forward[np.isfinite(forward)]) + 100.0, forward)
    reference = pymbar().other_estimators.bar(huge, reverse)
    result = est.bar(forward, reverse, T)
    assert result.value_kt == pytest.approx(reference["Delta_f"], rel=1e-9)
    assert result.error_kt == pytest.approx(reference["dDelta_f"], rel=1e-9)


def test_bar_of_a_wall_at_the_minimum_is_ln2_with_the_binomial_error():
    """State 1 is state 0 with x <= 0 forbidden: Delta f = ln 2 exactly. The finite works are all
    zero, so BAR reduces to counting: ln(n / n_allowed), with the binomial error
    sqrt(1 / n_allowed - 1 / n)."""
    rng = np.random.default_rng(2)
    forward, reverse, truth = walled_works(2000, rng, kappa=1.0, wall=0.0)
    assert truth == pytest.approx(np.log(2))
    allowed = np.isfinite(forward).sum()
    result = est.bar(forward, reverse, T)
    assert result.value_kt == pytest.approx(np.log(forward.size / allowed), abs=1e-9)
    assert result.error_kt == pytest.approx(np.sqrt(1 / allowed - 1 / forward.size), rel=1e-6)
    assert abs(result.value_kt - truth) < Z_MAX * result.error_kt


def test_bar_with_infinite_reverse_works_is_the_mirror_of_forward():
    """Swapping the directions negates BAR exactly, +inf reverse works included, and agrees
    with pymbar's MBAR (before: 0.000 ± 0.000 kT either way)."""
    rng = np.random.default_rng(3)
    forward, reverse, _ = walled_works(800, rng)
    there, back = est.bar(forward, reverse, T), est.bar(reverse, forward, T)
    assert back.value_kt == pytest.approx(two_state_mbar(reverse, forward)["Delta_f"][0, 1], abs=1e-6)
    assert back.value_kt == pytest.approx(-there.value_kt, abs=1e-9)
    assert back.error_kt == pytest.approx(there.error_kt, rel=1e-9)


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_bar_refuses_nan_and_minus_infinite_works(bad, direction):
    """Before: 0.000 ± 0.000 kT. NaN has no meaning; -inf would be a sample impossible in the
    state that generated it."""
    rng = np.random.default_rng(4)
    works = {"forward": rng.normal(1, 1, 200), "reverse": rng.normal(-1, 1, 200)}
    works[direction][17] = bad
    with pytest.raises(InputError, match=f"{direction} work 17 is"):
        est.bar(works["forward"], works["reverse"], T)


def test_bar_refuses_what_gives_no_number():
    rng = np.random.default_rng(5)
    forward, reverse = rng.normal(1, 1, 100), rng.normal(-1, 1, 100)
    with pytest.raises(est.EstimatorError, match="every forward work is \\+inf"):  # Delta f = +inf
        est.bar(np.full(100, np.inf), reverse, T)
    with pytest.raises(est.EstimatorError, match="every reverse work is \\+inf"):
        est.bar(forward, np.full(100, np.inf), T)
    with pytest.raises(est.EstimatorError, match="at least two"):  # before: 1.395 ± 0.000 kT
        est.bar(forward[:1], reverse[:1], T)
    with pytest.raises(est.EstimatorError, match="at least two"):
        est.bar(forward, [], T)
    with pytest.raises(InputError, match="1-D"):  # before: flattened silently
        est.bar(forward.reshape(10, 10), reverse, T)


def test_bar_error_survives_huge_works_and_numpy_error_state_is_kept():
    """Before: one work of 1e4 kT (atoms that clash in the other state) gave a value ± nan with
    no flag (pymbar's error formula underflows). The error is Bennett's, as pymbar computes it
    where it can (the same works with the huge one 100 kT above the rest), and a huge work is
    as good as +inf. pymbar's BAR also reset numpy's global overflow handling to 'warn'."""
    rng = np.random.default_rng(6)
    forward, reverse = rng.normal(1, 1, 200), rng.normal(-1, 1, 200)
    results = {big: est.bar(np.r_[forward, big], reverse, T) for big in (1e4, np.inf)}
    reference = pymbar().other_estimators.bar(np.r_[forward, forward.max() + 100.0], reverse)
    for result in results.values():
        assert result.value_kt == pytest.approx(reference["Delta_f"], rel=1e-9)
        assert result.error_kt == pytest.approx(reference["dDelta_f"], rel=1e-9)
    plain = est.bar(forward, reverse, T)  # and where pymbar's formula works, the same error
    assert plain.error_kt == pytest.approx(pymbar().other_estimators.bar(forward, reverse)["dDelta_f"], rel=1e-9)
    with np.errstate(over="ignore"):
        est.bar(forward, reverse, T)
        assert np.geterr()["over"] == "ignore"


def test_exp_with_infinite_works_agrees_with_pymbar_mbar_and_the_exact_answer():
    """A +inf work adds exp(-inf) = 0 to the average and counts in it: EXP equals MBAR with the
    target state unsampled (pymbar), and a wall at the minimum gives ln 2."""
    rng = np.random.default_rng(7)
    x0 = rng.normal(0, 1, 2000)
    forward = u_wall(x0, 2.0, -0.5) - 0.5 * x0**2
    result = est.exp(forward, T)
    u_kn = np.array([0.5 * x0**2, u_wall(x0, 2.0, -0.5)])
    reference = pymbar().MBAR(u_kn, np.array([x0.size, 0])).compute_free_energy_differences()
    assert result.value_kt == pytest.approx(reference["Delta_f"][0, 1], abs=1e-8)
    truth = f_wall(2.0, -0.5) - f_wall(1.0, -np.inf)
    assert abs(result.value_kt - truth) < Z_MAX * result.error_kt, (result, truth)
    halved = est.exp(u_wall(x0, 1.0, 0.0) - 0.5 * x0**2, T)
    assert abs(halved.value_kt - np.log(2)) < Z_MAX * halved.error_kt


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_exp_refuses_nan_and_minus_infinite_works(bad):
    """Before: nan ± nan (NaN) and -inf ± nan (-inf)."""
    works = np.random.default_rng(8).normal(1, 1, 100)
    works[3] = bad
    with pytest.raises(InputError, match="forward work 3 is"):
        est.exp(works, T)


def test_exp_refuses_what_gives_no_number():
    with pytest.raises(est.EstimatorError, match="every forward work is \\+inf"):  # before: inf ± nan
        est.exp(np.full(10, np.inf), T)
    with pytest.raises(est.EstimatorError, match="at least two"):  # before: 1.126 ± 0.000 kT
        est.exp([1.126], T)


def test_ti_refuses_lambdas_that_define_no_path():
    """Before: a NaN or infinite lambda gave nan ± nan or inf ± inf."""
    rng = np.random.default_rng(9)
    series = [rng.normal(m, 1, 100) for m in (1.0, 0.5, 0.2)]
    cases = [([0, np.nan, 1], "finite"), ([0, 0.5, np.inf], "finite"), ([0, 0.5, 0.5], "increase"),
             ([0, 1, 0.5], "increase"), ([[0, 0.5, 1]], "two windows"), ([0, 1], "two windows")]  # fmt: skip
    for lambdas, match in cases:
        with pytest.raises(InputError, match=match):
            est.ti(lambdas, series, T)
    with pytest.raises(InputError, match="two windows"):
        est.ti([0.0], series[:1], T)


def test_ti_refuses_windows_without_a_finite_integrand():
    rng = np.random.default_rng(10)
    good = rng.normal(1, 1, 100)
    with pytest.raises(InputError, match="sample 5 is NaN"):
        est.ti([0, 1], [good, np.r_[good[:5], np.nan, good[5:]]], T)
    with pytest.raises(est.EstimatorError, match="diverges"):  # an endpoint singularity: TI has no number
        est.ti([0, 1], [good, np.r_[good, np.inf]], T)
    with pytest.raises(InputError, match="1-D"):  # one mean per window is no sample series
        est.ti([0, 1], [1.0, 2.0], T)
    with pytest.raises(InputError, match="method"):
        est.ti([0, 1], [good, good], T, method="simpson")


def mbar_walled(n, rng):
    """Samples of state 0 (harmonic) and a walled state 1; u_kn with +inf where state 0's samples
    lie behind the wall, and the exact Delta f."""
    x = np.r_[rng.normal(0, 1, n), sample_wall(2.0, -0.5, n, rng)]
    return np.array([0.5 * x**2, u_wall(x, 2.0, -0.5)]), f_wall(2.0, -0.5) - f_wall(1.0, -np.inf)


def test_mbar_takes_infinite_reduced_potentials_like_pymbar():
    """Before: refused ("non-finite reduced potentials"). +inf is a configuration impossible in
    that state; pymbar takes it, and so does mbar(), with pymbar's numbers and the exact answer."""
    rng = np.random.default_rng(11)
    u_kn, truth = mbar_walled(1500, rng)
    assert np.isinf(u_kn).sum() > 100
    out = est.mbar(u_kn, [1500, 1500], T)
    reference = pymbar().MBAR(u_kn, np.array([1500, 1500])).compute_free_energy_differences()
    assert out.free_energies_kt == pytest.approx(reference["Delta_f"][0], abs=1e-6)
    assert out.errors_kt == pytest.approx(reference["dDelta_f"][0], rel=1e-4)
    assert out.result.ok and abs(out.result.value_kt - truth) < Z_MAX * out.result.error_kt


def test_mbar_refuses_meaningless_reduced_potentials():
    rng = np.random.default_rng(12)
    u_kn, _ = mbar_walled(200, rng)
    for k, n, bad in [(0, 3, np.nan), (1, 250, np.nan), (1, 7, -np.inf)]:
        broken = u_kn.copy()
        broken[k, n] = bad
        with pytest.raises(InputError, match=f"u_kn\\[{k}, {n}\\]"):
            est.mbar(broken, [200, 200], T)
    with pytest.raises(InputError, match="in state 0, which generated it"):  # rows swapped: impossible where drawn
        est.mbar(u_kn[::-1], [200, 200], T)
    unsampled = np.r_[u_kn, np.full((1, 400), np.inf)]
    with pytest.raises(est.EstimatorError, match="state 2 has u = \\+inf for every sample"):
        est.mbar(unsampled, [200, 200, 0], T)


def test_mbar_refuses_counts_and_shapes_that_do_not_group_samples():
    """Before: negative counts ran (overlap -0.514); [100.5, 99.5] was truncated to [100, 99];
    one state or all-empty states gave 'index 1 is out of bounds'."""
    rng = np.random.default_rng(13)
    x = np.r_[rng.normal(0, 1, 100), rng.normal(0, 0.8, 99)]
    u_kn = np.array([0.5 * x**2, 0.5 * x**2 / 0.64])
    for n_k in ([300, -101], [100.5, 99.5], [[100, 99]], [np.inf, 99], [np.nan, 99]):
        with pytest.raises(InputError, match="N_k must be"):
            est.mbar(u_kn, n_k, T)
    with pytest.raises(InputError, match="at least two states"):
        est.mbar(u_kn[:1], [199], T)
    with pytest.raises(InputError, match="at least two states"):
        est.mbar(np.zeros((0, 0)), [], T)
    with pytest.raises(InputError, match="does not match"):
        est.mbar(u_kn[0], [100, 99], T)
    with pytest.raises(est.EstimatorError, match="every state has N_k = 0"):
        est.mbar(np.zeros((3, 0)), [0, 0, 0], T)
    assert est.mbar(u_kn, np.array([100.0, 99.0]), T).result.value_kt == est.mbar(u_kn, [100, 99], T).result.value_kt


def test_mbar_with_an_unsampled_state_agrees_with_pymbar():
    """A state with no samples of its own is legitimate: its free energy comes from the others'."""
    rng = np.random.default_rng(14)
    u_kn, _ = mbar_walled(600, rng)
    x = np.sqrt(2 * u_kn[0])  # |x| is all the oscillators need
    u3 = np.r_[u_kn, [0.5 * 1.5 * x**2]]
    out = est.mbar(u3, [600, 600, 0], T)
    reference = pymbar().MBAR(u3, np.array([600, 600, 0])).compute_free_energy_differences()
    assert out.free_energies_kt == pytest.approx(reference["Delta_f"][0], abs=1e-6)
    assert abs(out.free_energies_kt[2] - 0.5 * np.log(1.5)) < Z_MAX * out.errors_kt[2]


@pytest.mark.parametrize("temperature", [np.nan, -5.0, 0.0, np.inf, "300", None, True])
def test_estimators_refuse_temperatures_that_convert_nothing(temperature):
    """Before: 0.222 ± 0.022 kT = nan ± nan kcal/mol 'at nan K'."""
    rng = np.random.default_rng(15)
    works = rng.normal(1, 1, 50)
    calls = [lambda: est.exp(works, temperature), lambda: est.bar(works, -works, temperature),
             lambda: est.ti([0, 1], [works, works], temperature),
             lambda: est.mbar(np.array([works**2, works**2 / 2]), [25, 25], temperature)]  # fmt: skip
    for call in calls:
        with pytest.raises(InputError, match="temperature"):
            call()


def test_time_series_functions_refuse_non_finite_series_and_mismatched_arguments():
    """Before: NaN or inf gave g = nan and (0, nan, nan); t0 without g was ignored; a negative t0
    gave negative indices (samples from the end); a t0 past the end gave no samples."""
    rng = np.random.default_rng(16)
    series = rng.normal(size=200)
    for bad in (np.nan, np.inf):
        broken = np.r_[series, bad]
        for call in (est.statistical_inefficiency, est.equilibrated, est.decorrelated_indices):
            with pytest.raises(InputError, match="sample 200 is"):
                call(broken)
    with pytest.raises(InputError, match="1-D"):
        est.statistical_inefficiency(series.reshape(20, 10))
    with pytest.raises(InputError, match="together"):
        est.decorrelated_indices(series, t0=10)
    for t0, g in [(-5, 1.0), (200, 1.0), (0, 0.0), (0, np.nan)]:
        with pytest.raises(InputError, match="do not fit"):
            est.decorrelated_indices(series, t0=t0, g=g)
    with pytest.raises(est.EstimatorError, match="empty"):
        est.equilibrated([])
    t0, g, _ = est.equilibrated(series)
    assert np.array_equal(est.decorrelated_indices(series, t0, g), est.decorrelated_indices(series))


def test_estimator_errors_are_errors_a_user_can_act_on():
    """The CLI prints AtomMLErrors as one line; an estimator with no number is one of them."""
    assert issubclass(est.EstimatorError, AtomMLError) and issubclass(est.EstimatorError, RuntimeError)
