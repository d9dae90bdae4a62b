"""atomml.uncertainty.calibration against independent references.

The references are scipy (norm.logpdf, spearmanr, minimize_scalar, quad, kstest) and counts
written out here; the statistical checks draw seeded Gaussian errors with known sigma and bound
each estimate by its sampling distribution at a small false-alarm probability ALPHA (binomial
for coverage, chi-square for a bin's mean square and for the recalibration factor, the
Kolmogorov distribution for the calibration curve), so a correct implementation fails with a
probability of about ALPHA per check whatever the seed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad
from scipy.optimize import minimize_scalar

from atomml.uncertainty import calibration as cal

ALPHA = 1e-3  # false-alarm probability of each statistical check


def gaussian(n_atoms: int, seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Force-like errors (n_atoms, 3) drawn from N(0, sigma**2) with a per-atom sigma (n_atoms,)
    spread over a decade; the sigma returned is the true one times ``scale``."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(0.02), np.log(0.2), n_atoms))
    errors = rng.normal(size=(n_atoms, 3)) * sigma[:, None]
    return errors, scale * sigma


def ks_bound(n: int) -> float:
    """sup_p |F_n(p) - F(p)| of n uniform draws exceeds this with probability ~ALPHA."""
    return stats.kstwobign.ppf(1 - ALPHA) / math.sqrt(n)


# -- definitions against scipy --------------------------------------------------------------------


def test_nll_is_the_mean_of_scipy_logpdf_with_the_log_2pi_constant():
    errors, sigma = gaussian(400, seed=1)
    expected = -np.mean(stats.norm.logpdf(errors, loc=0.0, scale=sigma[:, None]))
    assert cal.gaussian_nll(errors, sigma) == pytest.approx(expected, rel=1e-12)
    assert cal.gaussian_nll(0.0, 1.0) == pytest.approx(0.5 * math.log(2 * math.pi), rel=1e-15)


def test_calibration_curve_and_coverage_count_errors_inside_centred_intervals():
    errors, sigma = gaussian(300, seed=2)
    z = np.abs(errors) / sigma[:, None]
    levels = np.array([0.0, 0.1, 0.5, 0.6827, 0.9, 0.95, 0.99, 1.0])
    expected = [np.mean(z <= stats.norm.ppf(0.5 + p / 2)) for p in levels]
    np.testing.assert_allclose(cal.calibration_curve(errors, sigma, levels), expected, rtol=0, atol=1e-15)
    assert cal.calibration_curve(errors, sigma)[[0, -1]].tolist() == [0.0, 1.0]
    assert cal.calibration_curve(errors, sigma).shape == cal.LEVELS.shape
    assert cal.coverage(errors, sigma) == np.mean(z <= stats.norm.ppf(0.975))
    assert cal.coverage(errors, sigma, 0.5) == np.mean(z <= stats.norm.ppf(0.75))


def test_miscalibration_area_is_the_integral_between_the_curve_and_the_diagonal():
    # one error at the centre of the probability scale: the curve is 0 below p = 0.5 and 1 above,
    # so the area is two triangles of 1/8
    assert cal.miscalibration_area(stats.norm.ppf(0.75), 1.0) == pytest.approx(0.25, abs=1e-12)
    # all errors 0: the curve is 1 everywhere, area 1/2
    assert cal.miscalibration_area(np.zeros(10), np.ones(10)) == pytest.approx(0.5, abs=1e-15)
    # against the trapezoid rule on a fine grid: the step curve has n jumps of 1/n, each costing at
    # most h / n of the rule, so the two differ by less than the grid step h
    errors, sigma = gaussian(200, seed=3, scale=1.3)
    grid = np.linspace(0.0, 1.0, 200_001)
    curve = cal.calibration_curve(errors, sigma, grid)
    numeric = np.trapezoid(np.abs(curve - grid), grid)
    assert cal.miscalibration_area(errors, sigma) == pytest.approx(numeric, abs=grid[1])


def test_spearman_is_scipys_and_nan_for_constant_input():
    rng = np.random.default_rng(4)
    abs_errors = np.abs(rng.normal(size=500))
    sigma = abs_errors * rng.lognormal(sigma=1.0, size=500)
    sigma[::7] = sigma[0]  # ties
    assert cal.spearman(abs_errors, sigma) == pytest.approx(stats.spearmanr(abs_errors, sigma).statistic, abs=1e-14)
    assert cal.spearman(-abs_errors, sigma) == cal.spearman(abs_errors, sigma)  # signed errors: |e| is taken
    assert cal.spearman(abs_errors, 3.0 * sigma) == cal.spearman(abs_errors, sigma)  # recalibration keeps ranks
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning must not escape
        assert math.isnan(cal.spearman(abs_errors, np.full(500, 0.1)))
        assert math.isnan(cal.spearman(np.zeros(500), sigma))
        assert math.isnan(cal.spearman([0.3], [0.2]))
    assert cal.spearman([0.0, 1.0, 2.0], [0.0, 0.5, 0.7]) == pytest.approx(1.0)  # zero sigma is allowed here


def test_fit_recalibration_is_the_least_nll_scale():
    errors, sigma = gaussian(300, seed=5, scale=1.7)
    s = cal.fit_recalibration(errors, sigma)
    assert s == pytest.approx(math.sqrt(np.mean((errors / sigma[:, None]) ** 2)), rel=1e-14)
    found = minimize_scalar(lambda t: cal.gaussian_nll(errors, t * sigma), bounds=(0.05, 5.0), method="bounded",
                            options={"xatol": 1e-10})  # fmt: skip
    assert s == pytest.approx(found.x, rel=1e-6)
    assert cal.gaussian_nll(errors, s * sigma) < cal.gaussian_nll(errors, sigma)


# -- statistics on calibrated and miscalibrated synthetic sets ------------------------------------


def test_calibrated_coverage_is_within_the_binomial_interval():
    errors, sigma = gaussian(10_000, seed=6)  # 30 000 components
    n = errors.size
    for p in (0.5, 0.6827, 0.95, 0.99):
        low, high = stats.binom.interval(1 - ALPHA, n, p)
        assert low / n <= cal.coverage(errors, sigma, p) <= high / n, p


def test_calibrated_miscalibration_area_is_within_its_sampling_error():
    n = 2000
    areas = []
    for seed in range(64):
        errors, sigma = gaussian(n // 3 + 1, seed=100 + seed)
        errors, sigma = errors.ravel()[:n], np.repeat(sigma, 3)[:n]
        area = cal.miscalibration_area(errors, sigma)
        u = cal.central_probability(errors, sigma)
        # the area never exceeds the Kolmogorov-Smirnov distance of the u_i from uniform, which
        # for calibrated errors stays under the Kolmogorov quantile
        assert area <= stats.kstest(u, "uniform").statistic + 1e-12
        assert area <= ks_bound(n)
        areas.append(area)
    # the mean of the integral of |Brownian bridge| is sqrt(2 pi) / 8: the mean area over the seeds
    # must match it within four standard errors (the spread measured over the seeds)
    areas = np.array(areas)
    expected = math.sqrt(2 * math.pi) / 8 / math.sqrt(n)
    assert abs(areas.mean() - expected) <= 4 * areas.std(ddof=1) / math.sqrt(len(areas))


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_miscalibrated_area_matches_the_gaussian_curve(factor):
    # sigma reported `factor` times the true one: the curve is F(p) = 2 Phi(factor z_p) - 1
    errors, sigma = gaussian(4000, seed=7, scale=factor)
    n = errors.size

    def curve(p):
        return 2 * stats.norm.cdf(factor * stats.norm.ppf(0.5 + p / 2)) - 1

    true_area = quad(lambda p: abs(curve(p) - p), 0, 1, limit=200)[0]
    # |area_n - area| <= integral |F_n - F| <= sup |F_n - F|
    assert cal.miscalibration_area(errors, sigma) == pytest.approx(true_area, abs=ks_bound(n))
    assert true_area > 10 * ks_bound(n)  # the check can tell calibrated from not


def _chi2_ratio_bounds(count: int, bins: int) -> tuple[float, float]:
    """Range of RMSE / RMV of a calibrated bin of constant sigma with `count` values (two-sided,
    ALPHA shared by the bins): count * RMSE**2 / sigma**2 is chi-square with `count` dof."""
    a = ALPHA / bins
    return math.sqrt(stats.chi2.ppf(a / 2, count) / count), math.sqrt(stats.chi2.ppf(1 - a / 2, count) / count)


@pytest.mark.parametrize("factor", [1.0, 2.0])
def test_rmse_vs_rmv_bins_follow_the_chi_square_distribution(factor):
    # ten sigma levels, 600 values each, shuffled: equal-count bins recover the levels exactly
    rng = np.random.default_rng(8)
    levels = np.geomspace(0.01, 0.3, 10)
    sigma_true = rng.permutation(np.repeat(levels, 600))
    errors = rng.normal(size=sigma_true.size) * sigma_true
    binned = cal.rmse_vs_rmv(errors, factor * sigma_true, bins=10)
    assert binned.counts.tolist() == [600] * 10
    np.testing.assert_allclose(binned.rmv, factor * levels, rtol=1e-14)
    np.testing.assert_array_equal(binned.sigma_low, binned.sigma_high)
    for level, rmse in zip(levels, binned.rmse):  # independent: the bin selected by its sigma
        assert rmse == pytest.approx(math.sqrt(np.mean(errors[sigma_true == level] ** 2)), rel=1e-12)
    ratio = binned.rmse / binned.rmv
    low, high = _chi2_ratio_bounds(600, 10)
    assert np.all((ratio >= low / factor) & (ratio <= high / factor)), ratio
    assert binned.ence == pytest.approx(np.mean(np.abs(binned.rmv - binned.rmse) / binned.rmv), rel=1e-14)
    if factor == 1.0:  # every bin within its bounds, so the mean deviation is too
        assert binned.ence <= max(1 - low, high - 1)
        assert binned.ence < 0.1
    else:  # RMSE = RMV / 2 up to the bin's sampling error
        assert abs(binned.ence - 0.5) <= max(1 - low, high - 1) / factor


def test_rmse_vs_rmv_equal_count_bins():
    errors, sigma = gaussian(1001, seed=9)  # 3003 values, sigma per atom
    binned = cal.rmse_vs_rmv(errors, sigma, bins=7)
    assert binned.counts.sum() == 3003 and binned.counts.max() - binned.counts.min() <= 1
    assert np.all(binned.sigma_high[:-1] <= binned.sigma_low[1:]) and np.all(binned.sigma_low <= binned.sigma_high)
    assert cal.rmse_vs_rmv(errors[:2], sigma[:2], bins=50).counts.tolist() == [1] * 6  # at most one bin per value
    s = np.repeat(sigma, 3)
    total = np.sum(binned.counts * binned.rmv**2)  # the bins partition the values
    assert total == pytest.approx(np.sum(s**2), rel=1e-12)


def test_recalibration_on_validation_restores_held_out_coverage():
    # a model whose sigma is twice the true one; the factor is fitted on one set, judged on another
    n_valid = n_test = 20_000
    valid_errors, valid_sigma = gaussian(n_valid // 3, seed=10, scale=2.0)
    test_errors, test_sigma = gaussian(n_test // 3, seed=11, scale=2.0)
    s = cal.fit_recalibration(valid_errors, valid_sigma)
    m = valid_errors.size
    # m (s / 0.5)**2 is chi-square with m degrees of freedom
    low, high = (0.5 * math.sqrt(stats.chi2.ppf(q, m) / m) for q in (ALPHA / 2, 1 - ALPHA / 2))
    assert low <= s <= high
    assert abs(s - 0.5) < 4 * 0.5 / math.sqrt(2 * m)  # the same, through the standard error

    before = cal.coverage(test_errors, test_sigma)
    after = cal.coverage(test_errors, s * test_sigma)
    assert before > 0.99  # sigma twice too large: almost everything is inside
    # coverage of the fitted interval: 2 Phi(z s / 0.5) - 1, so the error of s moves it by up to
    # the spread at s = low or high; then the binomial error of the test set on top
    z = stats.norm.ppf(0.975)
    worst_low = 2 * stats.norm.cdf(z * low / 0.5) - 1
    worst_high = 2 * stats.norm.cdf(z * high / 0.5) - 1
    n = test_errors.size
    assert stats.binom.ppf(ALPHA / 2, n, worst_low) / n <= after <= stats.binom.ppf(1 - ALPHA / 2, n, worst_high) / n
    assert 0.90 <= after <= 0.98  # the project's target

    rep = cal.report(test_errors, test_sigma, scale=s)
    assert rep.coverage == after and rep.scale == s
    assert rep.fitted_scale == pytest.approx(0.5, abs=high - 0.5 + 4 * 0.5 / math.sqrt(2 * n))
    assert rep.miscalibration_area < cal.miscalibration_area(test_errors, test_sigma)


# -- report, shapes, bad input --------------------------------------------------------------------


def test_report_bundles_the_metrics_of_the_scaled_sigma():
    errors, sigma = gaussian(500, seed=12)
    rep = cal.report(errors, sigma, scale=1.5, bins=5)
    scaled = 1.5 * sigma
    assert rep.n == errors.size and rep.probability == 0.95
    assert rep.nll == cal.gaussian_nll(errors, scaled)
    assert rep.miscalibration_area == cal.miscalibration_area(errors, scaled)
    assert rep.spearman == cal.spearman(np.abs(errors), scaled)
    assert rep.coverage == cal.coverage(errors, scaled)
    assert rep.fitted_scale == cal.fit_recalibration(errors, sigma)
    assert rep.ence == cal.rmse_vs_rmv(errors, scaled, 5).ence and len(rep.binned.rmv) == 5
    np.testing.assert_array_equal(rep.observed, cal.calibration_curve(errors, scaled))
    assert rep.rmse == pytest.approx(math.sqrt(np.mean(errors**2)))
    assert rep.rmv == pytest.approx(1.5 * math.sqrt(np.mean(sigma**2)))
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["nll"] == rep.nll and len(data["observed"]) == len(cal.LEVELS) and data["binned"]["counts"][0] == 300


def test_sigma_per_atom_broadcasts_over_components():
    errors, sigma = gaussian(50, seed=13)
    full = np.repeat(sigma[:, None], 3, axis=1)
    for per_atom in (sigma, sigma[:, None]):
        assert cal.report(errors, per_atom).to_dict() == cal.report(errors, full).to_dict()
    assert cal.gaussian_nll(errors, 0.1) == cal.gaussian_nll(errors, np.full(errors.shape, 0.1))  # scalar sigma
    # leading-index rule, not numpy's trailing one: errors (3, 3) with sigma (3,) is one sigma per row
    e = np.arange(9.0).reshape(3, 3) / 10
    s = np.array([0.1, 0.2, 0.3])
    assert cal.gaussian_nll(e, s) == pytest.approx(-np.mean(stats.norm.logpdf(e, 0, s[:, None])))
    assert cal.gaussian_nll(np.ones((2, 5, 3)), np.ones((2, 5))) == cal.gaussian_nll(np.ones(30), 1.0)


@pytest.mark.parametrize(
    ("errors", "sigma", "message"),
    [
        (np.zeros((4, 3)), np.ones(3), r"shape \(3,\) does not fit errors of shape \(4, 3\)"),
        (np.zeros((4, 3)), np.ones((3, 4)), "does not fit"),
        (np.zeros(3), np.ones(4), "does not fit"),
        (np.zeros(3), [1.0, -1.0, 1.0], "sigma has 1 negative"),
        (np.zeros(3), [1.0, np.nan, 1.0], "sigma has 1 NaN"),
        (np.zeros(3), [1.0, np.inf, 1.0], "sigma has 1 infinite"),
        (np.zeros(3), [1.0, 0.0, 1.0], "sigma has 1 zero"),
        ([0.0, np.nan], [1.0, 1.0], "errors has 1 NaN"),
        (np.zeros(0), np.ones(0), "errors has no values"),
        (["a"], [1.0], "errors must be numbers"),
    ],
)
def test_bad_input_names_the_problem(errors, sigma, message):
    for function in (cal.gaussian_nll, cal.miscalibration_area, cal.coverage, cal.fit_recalibration, cal.rmse_vs_rmv,
                     cal.report, cal.calibration_curve):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            function(errors, sigma)


def test_bad_arguments_name_the_problem():
    e, s = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match="levels must lie in"):
        cal.calibration_curve(e, s, [0.5, 1.2])
    with pytest.raises(ValueError, match="probability must lie in"):
        cal.coverage(e, s, 95)
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        cal.rmse_vs_rmv(e, s, 0)
    with pytest.raises(ValueError, match="scale must be a finite positive"):
        cal.report(e, s, scale=-1.0)
    with pytest.raises(ValueError, match="all errors are zero"):
        cal.fit_recalibration(e, s)
    with pytest.raises(ValueError, match="sigma has 1 negative"):
        cal.spearman(e, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="predicted of shape"):
        cal.plot_parity_with_errors(np.zeros(3), np.zeros(4), 1.0, "unused.png")
    with pytest.raises(ValueError, match="predicted has 1 NaN"):
        cal.plot_parity_with_errors(np.zeros(3), [0.0, np.nan, 0.0], 1.0, "unused.png")


# -- plots ----------------------------------------------------------------------------------------


def _assert_png_with_content(path):
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    image = imread(path)[..., :3]
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert image.std() > 0.05  # not blank
    assert np.mean(np.any(image < 0.9, axis=-1)) > 0.01  # at least 1 % of the pixels drawn on


def test_plots_write_png_files_without_touching_pyplot_state(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    pyplot = sys.modules.get("matplotlib.pyplot")
    figures = pyplot.get_fignums() if pyplot else None

    errors, sigma = gaussian(3000, seed=14)
    rep = cal.report(errors, sigma)
    path = cal.plot_calibration(rep, tmp_path / "calibration.png", title="valid", unit="eV/Å")
    assert path == tmp_path / "calibration.png"
    _assert_png_with_content(path)
    # from arrays, with a scale, into a folder not made yet; sigma over a decade draws log axes
    wide = 10 ** np.linspace(-2, 1, 3000)
    _assert_png_with_content(cal.plot_calibration((errors, wide, 0.5), tmp_path / "a" / "b.png"))
    reference = np.random.default_rng(15).normal(size=errors.shape)
    out = cal.plot_parity_with_errors(reference, reference + errors, sigma, tmp_path / "parity.png", max_points=500,
                                      label="force component (eV/Å)")  # fmt: skip
    _assert_png_with_content(out)
    # and no temporary files left beside them
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.png", "calibration.png", "parity.png"]

    assert matplotlib.get_backend() == backend
    assert sys.modules.get("matplotlib.pyplot") is pyplot
    if pyplot:
        assert pyplot.get_fignums() == figures


def test_import_loads_neither_matplotlib_nor_scipy():
    code = ("import sys, atomml.uncertainty.calibration; "
            "print(sorted(m for m in ('matplotlib', 'scipy') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
