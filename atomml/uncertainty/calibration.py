"""Calibration of predicted uncertainties: metrics, a recalibration factor, and plots.

Every function takes signed errors ``e = predicted - reference`` and predicted standard
deviations ``sigma`` (numpy arrays, or anything :func:`numpy.asarray` accepts) and reads them as
Gaussian predictions, ``e ~ N(0, sigma**2)``. The metrics are those of the literature on
uncertainty quantification for ML potentials and property models:

- :func:`gaussian_nll`: mean negative log-likelihood (Tran et al. 2020, *Mach. Learn.: Sci.
  Technol.* 1, 025006);
- :func:`calibration_curve` and :func:`miscalibration_area`: observed against expected fraction
  of errors inside centred Gaussian intervals (Kuleshov et al. 2018, ICML; Tran et al. 2020),
  and the area between that curve and the diagonal;
- :func:`spearman`: Spearman rank correlation between ``|e|`` and ``sigma`` (Tran et al. 2020);
- :func:`rmse_vs_rmv`: RMSE against root mean variance in equal-count bins of ``sigma`` (the
  reliability diagram of Levi et al. 2022, *Sensors* 22, 5540, used for ML potentials by Busk
  et al. 2022, *Mach. Learn.: Sci. Technol.* 3, 015012) and its ENCE;
- :func:`coverage`: fraction of errors inside the centred interval of a given probability;
- :func:`fit_recalibration`: the scalar ``s`` (``sigma' = s * sigma``) of least NLL, the number a
  potential stores and applies to its ``sigma`` at run time;
- :func:`report` / :class:`CalibrationReport`: all of these for one set;
- :func:`plot_calibration`, :func:`plot_parity_with_errors`: PNGs.

Shapes. ``errors`` may have any shape and is flattened; ``sigma`` gives one value per error
(same shape) or one value per *leading* index: ``sigma.shape`` equal to the first
``sigma.ndim`` entries of ``errors.shape`` repeats each sigma over the trailing axes. So force
errors ``(N, 3)`` take ``sigma`` ``(N, 3)`` (per component) or ``(N,)`` (per atom, the same
sigma for the atom's three components); a scalar ``sigma`` applies to every error, and a
``sigma`` with as many axes as ``errors`` and size-1 axes broadcasts as numpy would (``(N, 1)``).
Note that this is *not* numpy's trailing alignment: errors ``(3, 3)`` with ``sigma`` ``(3,)``
is read as one sigma per row. Every metric treats the broadcast pairs ``(e_i, sigma_i)``,
``i = 1..n``, as ``n`` samples (a per-atom sigma counts three times, once per component).

Bad input raises :class:`ValueError` that names the problem: shapes that do not fit, no values,
NaN or infinite errors, and sigma that is NaN, infinite, negative or zero (a zero sigma makes
the likelihood and ``e / sigma`` undefined: floor it, or leave those entries out).

matplotlib is imported by the plot functions only, through its object interface (``Figure``
with an Agg canvas): no backend is selected and no pyplot state is touched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atomml.files import replacing

__all__ = [
    "LEVELS",
    "BinnedCalibration",
    "CalibrationReport",
    "calibration_curve",
    "central_probability",
    "coverage",
    "fit_recalibration",
    "gaussian_nll",
    "miscalibration_area",
    "plot_calibration",
    "plot_parity_with_errors",
    "report",
    "rmse_vs_rmv",
    "spearman",
]

LEVELS = np.linspace(0.0, 1.0, 101)  # expected probabilities of the default calibration curve
LOG_2PI = math.log(2.0 * math.pi)
DPI = 110


# -- input --------------------------------------------------------------------------------------


def _array(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers: {exc}") from None
    return array


def _broadcast(sigma: np.ndarray, shape: tuple[int, ...], sigma_name: str, errors_name: str) -> np.ndarray:
    """``sigma`` repeated to ``shape`` by the leading-index rule of the module docstring."""
    if sigma.shape == shape:
        return sigma
    if sigma.ndim <= len(shape) and sigma.shape == shape[: sigma.ndim]:
        return np.broadcast_to(sigma.reshape(sigma.shape + (1,) * (len(shape) - sigma.ndim)), shape)
    if sigma.ndim == len(shape) and all(s in (1, n) for s, n in zip(sigma.shape, shape)):
        return np.broadcast_to(sigma, shape)
    raise ValueError(
        f"{sigma_name} of shape {sigma.shape} does not fit {errors_name} of shape {shape}: give one value per "
        f"error (the same shape) or one per leading index (e.g. {errors_name} (N, 3) with {sigma_name} (N,))"
    )


def _check_finite(values: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        kinds = [k for k, mask in (("NaN", np.isnan(values)), ("infinite", np.isinf(values))) if mask.any()]
        raise ValueError(f"{name} has {int(bad.sum())} {' or '.join(kinds)} value(s) of {values.size}")


def _check_sigma(sigma: np.ndarray, name: str = "sigma", allow_zero: bool = False) -> None:
    _check_finite(sigma, name)
    negative = int((sigma < 0).sum())
    if negative:
        raise ValueError(f"{name} has {negative} negative value(s) of {sigma.size} (a standard deviation is >= 0)")
    if not allow_zero:
        zero = int((sigma == 0).sum())
        if zero:
            raise ValueError(
                f"{name} has {zero} zero value(s) of {sigma.size}: the Gaussian likelihood and e / sigma are "
                "undefined there (floor sigma, e.g. np.maximum(sigma, 1e-8), or leave those entries out)"
            )


def _pair(
    errors: Any, sigma: Any, *, allow_zero: bool = False, errors_name: str = "errors", sigma_name: str = "sigma"
) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 ``(errors, sigma)`` of equal length, checked."""
    e = _array(errors, errors_name)
    s = _array(sigma, sigma_name)
    s = _broadcast(s, e.shape, sigma_name, errors_name)
    e, s = e.ravel(), s.ravel()
    if e.size == 0:
        raise ValueError(f"{errors_name} has no values")
    _check_finite(e, errors_name)
    _check_sigma(s, sigma_name, allow_zero=allow_zero)
    return e, s


def _probabilities(levels: Any, name: str = "levels") -> np.ndarray:
    p = _array(levels, name)
    _check_finite(p, name)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"{name} must lie in [0, 1]; got values from {p.min():g} to {p.max():g}")
    return p


def _scale(scale: float) -> float:
    value = float(scale)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"scale must be a finite positive number; got {scale!r}")
    return value


# -- metrics ------------------------------------------------------------------------------------


def gaussian_nll(errors: Any, sigma: Any) -> float:
    r"""Mean negative log-likelihood of the errors under ``N(0, sigma**2)``:

    .. math:: \mathrm{NLL} = \frac{1}{n}\sum_i \Big[\tfrac12\log 2\pi + \log\sigma_i
              + \frac{e_i^2}{2\sigma_i^2}\Big]

    The constant ``0.5 * log(2 pi)`` is included, so the value equals
    ``-mean(scipy.stats.norm.logpdf(e, 0, sigma))``; it depends on the unit of ``e`` and
    ``sigma`` (through ``log sigma``), so compare values in one unit only. Lower is better.
    """
    e, s = _pair(errors, sigma)
    return float(np.mean(0.5 * LOG_2PI + np.log(s) + 0.5 * (e / s) ** 2))


def central_probability(errors: Any, sigma: Any) -> np.ndarray:
    r"""For each error, the probability of the smallest centred Gaussian interval that holds it:

    .. math:: u_i = 2\Phi(|e_i|/\sigma_i) - 1 = \operatorname{erf}\!\big(|e_i| / (\sqrt2\,\sigma_i)\big)

    (flat, in [0, 1]). For calibrated Gaussian errors the ``u_i`` are uniform on [0, 1]; the
    calibration curve is their empirical distribution function.
    """
    from scipy.special import erf

    e, s = _pair(errors, sigma)
    return erf(np.abs(e) / (math.sqrt(2.0) * s))


def calibration_curve(errors: Any, sigma: Any, levels: Any = None) -> np.ndarray:
    r"""Observed fraction of errors inside the centred interval of expected probability ``p``,
    for each ``p`` of ``levels`` (default :data:`LEVELS`, 0 to 1 in steps of 0.01):

    .. math:: \hat F(p) = \frac{1}{n}\,\#\{i : |e_i| \le z_p\,\sigma_i\},\qquad
              z_p = \Phi^{-1}\!\big(\tfrac{1+p}{2}\big)

    i.e. ``#{i : u_i <= p} / n`` with ``u_i`` of :func:`central_probability`. A calibrated
    model gives ``F(p) = p`` (the diagonal); a curve below the diagonal is overconfident (sigma
    too small), above it underconfident. Returns an array of the shape of ``levels``.
    """
    p = _probabilities(LEVELS if levels is None else levels)
    u = np.sort(central_probability(errors, sigma))
    return np.searchsorted(u, p, side="right") / u.size


def miscalibration_area(errors: Any, sigma: Any) -> float:
    r"""Area between the calibration curve and the diagonal (Tran et al. 2020):

    .. math:: A = \int_0^1 |\hat F(p) - p|\,dp

    computed exactly for the empirical (step) curve of :func:`calibration_curve`, as if it were
    evaluated at infinitely many levels (a sum over 100 evenly spaced levels, as some tools
    compute, differs by at most 0.02, the level spacing times the variation of ``F(p) - p``).
    It is the 1-Wasserstein distance between the ``u_i`` and the uniform distribution, lies in
    [0, 0.5], and is never more than the Kolmogorov-Smirnov statistic ``sup |F(p) - p|``. For
    calibrated errors it is about ``sqrt(2 pi) / (8 sqrt(n)) = 0.313 / sqrt(n)`` (the mean of
    ``integral |B(p)| dp`` for a Brownian bridge ``B``), not 0.
    """
    u = np.sort(central_probability(errors, sigma))
    n = u.size
    # on [a_k, b_k) = [u_(k), u_(k+1)) the curve is k / n (u_(0) = 0, u_(n+1) = 1); an
    # antiderivative of |p - c| is (p - c) |p - c| / 2
    a = np.concatenate(([0.0], u))
    b = np.concatenate((u, [1.0]))
    c = np.arange(n + 1) / n
    g = lambda x: (x - c) * np.abs(x - c) / 2  # noqa: E731
    return float(np.sum(g(b) - g(a)))


def coverage(errors: Any, sigma: Any, probability: float = 0.95) -> float:
    r"""Fraction of errors inside the centred Gaussian interval of probability ``probability``:
    ``#{i : |e_i| <= z sigma_i} / n`` with ``z = Phi^-1((1 + probability) / 2)`` (1.96 for
    0.95). Calibrated errors give ``probability``, up to the binomial sampling error
    ``sqrt(p (1 - p) / n)``."""
    p = float(_probabilities(probability, "probability"))
    return float(calibration_curve(errors, sigma, [p])[0])


def spearman(abs_errors: Any, sigma: Any) -> float:
    r"""Spearman rank correlation between ``|e|`` and ``sigma`` (``scipy.stats.spearmanr``, ties
    given their mean rank): the Pearson correlation of the ranks, 1 when a larger sigma always
    goes with a larger error. Absolute values are taken, so signed errors may be passed too; a
    zero ``sigma`` is allowed here. It depends only on the order of ``sigma``, so a
    recalibration factor leaves it unchanged.

    Where either input is constant (or there is a single value) the rank correlation is
    undefined: the result is NaN, without a warning.
    """
    from scipy.stats import spearmanr

    e, s = _pair(abs_errors, sigma, allow_zero=True, errors_name="abs_errors")
    e = np.abs(e)
    if e.size < 2 or np.all(e == e[0]) or np.all(s == s[0]):
        return math.nan
    return float(spearmanr(e, s).statistic)


@dataclass(frozen=True)
class BinnedCalibration:
    """RMSE against root mean variance in bins of sigma (:func:`rmse_vs_rmv`); arrays of one
    entry per bin, in increasing sigma."""

    sigma_low: np.ndarray  # smallest sigma in the bin
    sigma_high: np.ndarray  # largest sigma in the bin
    counts: np.ndarray  # values in the bin (int)
    rmv: np.ndarray  # sqrt(mean(sigma**2)) over the bin
    rmse: np.ndarray  # sqrt(mean(e**2)) over the bin
    ence: float  # mean over the bins of |rmv - rmse| / rmv

    def to_dict(self) -> dict[str, Any]:
        return {
            "sigma_low": self.sigma_low.tolist(),
            "sigma_high": self.sigma_high.tolist(),
            "counts": self.counts.tolist(),
            "rmv": self.rmv.tolist(),
            "rmse": self.rmse.tolist(),
            "ence": self.ence,
        }


def rmse_vs_rmv(errors: Any, sigma: Any, bins: int = 10) -> BinnedCalibration:
    r"""Reliability diagram of Levi et al. (2022): the values sorted by sigma and cut into
    ``bins`` bins of equal count (sizes differ by at most one; ``min(bins, n)`` bins), and per bin
    ``k``

    .. math:: \mathrm{RMV}_k = \sqrt{\tfrac{1}{n_k}\sum_{i\in k}\sigma_i^2},\qquad
              \mathrm{RMSE}_k = \sqrt{\tfrac{1}{n_k}\sum_{i\in k}e_i^2}

    with the expected normalised calibration error

    .. math:: \mathrm{ENCE} = \frac{1}{K}\sum_k \frac{|\mathrm{RMV}_k - \mathrm{RMSE}_k|}{\mathrm{RMV}_k}.

    Calibrated errors give ``RMSE_k ~ RMV_k`` (for a bin of constant sigma,
    ``n_k RMSE_k**2 / sigma**2`` is chi-square with ``n_k`` degrees of freedom), so the ENCE of a
    calibrated model is about ``1 / sqrt(pi n_k)``, not 0. Equal sigmas may fall on both sides of
    a bin edge (the sort is stable: they keep their input order).
    """
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    e, s = _pair(errors, sigma)
    order = np.argsort(s, kind="stable")
    groups = np.array_split(order, min(int(bins), s.size))
    rmv = np.array([math.sqrt(np.mean(s[g] ** 2)) for g in groups])
    rmse = np.array([math.sqrt(np.mean(e[g] ** 2)) for g in groups])
    return BinnedCalibration(
        sigma_low=np.array([s[g[0]] for g in groups]),
        sigma_high=np.array([s[g[-1]] for g in groups]),
        counts=np.array([g.size for g in groups], dtype=np.int64),
        rmv=rmv,
        rmse=rmse,
        ence=float(np.mean(np.abs(rmv - rmse) / rmv)),
    )


def fit_recalibration(errors: Any, sigma: Any) -> float:
    r"""The factor ``s`` for which ``sigma' = s * sigma`` gives the least :func:`gaussian_nll`:

    .. math:: \frac{\partial}{\partial s}\frac1n\sum_i\Big[\log(s\sigma_i) + \frac{e_i^2}{2 s^2\sigma_i^2}\Big] = 0
              \;\Rightarrow\; s^2 = \frac1n\sum_i \frac{e_i^2}{\sigma_i^2}

    so the recalibrated ``z = e / sigma'`` has unit mean square. Fit it on validation data (not
    on the data it is judged on); for Gaussian ``z`` its standard error is about
    ``s / sqrt(2 n)``.

    Why one scalar: it is the number stored with a potential and applied to every sigma it
    predicts at run time, whatever the structure; it has a closed form, cannot overfit a
    validation set, and keeps the order of the sigmas (so Spearman's rho and the ranking used
    for active learning do not change). A recalibration curve (isotonic, Kuleshov et al. 2018)
    would fit the calibration curve exactly on the validation set but is no longer a Gaussian
    sigma. After scaling, the 95 % coverage is exactly 95 % only if ``e / sigma`` is Gaussian;
    heavier tails give somewhat more or less.
    """
    e, s = _pair(errors, sigma)
    scale = math.sqrt(float(np.mean((e / s) ** 2)))
    if scale == 0.0:
        raise ValueError("all errors are zero: no recalibration factor can be fitted")
    return scale


# -- report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationReport:
    """The calibration of one set (:func:`report`), for ``sigma' = scale * sigma``."""

    n: int  # number of (error, sigma) pairs after broadcasting
    scale: float  # factor applied to sigma before every metric below
    fitted_scale: float  # fit_recalibration on this set's raw sigma (what fitting here would store)
    nll: float  # gaussian_nll
    miscalibration_area: float
    spearman: float  # rho(|e|, sigma); NaN where undefined
    probability: float  # probability of the coverage interval
    coverage: float  # observed fraction inside the centred interval of ``probability``
    rmse: float  # over all values
    rmv: float  # sqrt(mean(sigma'**2)) over all values
    binned: BinnedCalibration  # rmse_vs_rmv
    levels: np.ndarray = field(repr=False)  # expected probabilities of the calibration curve
    observed: np.ndarray = field(repr=False)  # calibration_curve at ``levels``

    @property
    def ence(self) -> float:
        return self.binned.ence

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (floats and lists; ``spearman`` may be NaN)."""
        return {
            "n": self.n,
            "scale": self.scale,
            "fitted_scale": self.fitted_scale,
            "nll": self.nll,
            "miscalibration_area": self.miscalibration_area,
            "spearman": self.spearman,
            "probability": self.probability,
            "coverage": self.coverage,
            "rmse": self.rmse,
            "rmv": self.rmv,
            "ence": self.ence,
            "binned": self.binned.to_dict(),
            "levels": self.levels.tolist(),
            "observed": self.observed.tolist(),
        }


def report(
    errors: Any, sigma: Any, scale: float = 1.0, *, bins: int = 10, levels: Any = None, probability: float = 0.95
) -> CalibrationReport:
    """Every metric of this module for ``errors`` with ``sigma' = scale * sigma`` (``scale``: a
    factor from :func:`fit_recalibration` on other data; 1 for the raw sigma)."""
    factor = _scale(scale)
    e, s = _pair(errors, sigma)
    scaled = factor * s
    p = _probabilities(LEVELS if levels is None else levels).ravel()
    prob = float(_probabilities(probability, "probability"))
    return CalibrationReport(
        n=int(e.size),
        scale=factor,
        fitted_scale=fit_recalibration(e, s),
        nll=gaussian_nll(e, scaled),
        miscalibration_area=miscalibration_area(e, scaled),
        spearman=spearman(e, scaled),
        probability=prob,
        coverage=coverage(e, scaled, prob),
        rmse=float(math.sqrt(np.mean(e**2))),
        rmv=float(math.sqrt(np.mean(scaled**2))),
        binned=rmse_vs_rmv(e, scaled, bins),
        levels=p,
        observed=calibration_curve(e, scaled, p),
    )


# -- plots --------------------------------------------------------------------------------------


def _figure(ncols: int, width: float = 4.4, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no backend chosen, no global figure list

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save(fig: Any, path: str | os.PathLike[str], title: str) -> Path:
    """The PNG, written whole or not at all (a temporary name beside ``path``, then renamed)."""
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def plot_calibration(
    report_or_arrays: CalibrationReport | Sequence[Any],
    path: str | os.PathLike[str],
    title: str = "",
    unit: str = "",
) -> Path:
    """PNG of two panels: the calibration curve (observed against expected fraction in centred
    intervals, with the diagonal and the miscalibration area shaded) and the RMSE-vs-RMV
    reliability diagram (one point per equal-count bin of sigma, the diagonal, and for each bin
    the range that holds a calibrated bin's RMSE with 95 % probability, from the chi-square
    distribution with the bin's count as degrees of freedom, exact for a bin of constant sigma).

    ``report_or_arrays``: a :class:`CalibrationReport`, or ``(errors, sigma)`` or
    ``(errors, sigma, scale)`` for :func:`report`. ``unit`` labels the RMSE/RMV axes. Returns
    the path written.
    """
    from scipy.stats import chi2

    rep = report_or_arrays if isinstance(report_or_arrays, CalibrationReport) else report(*report_or_arrays)
    fig, (left, right) = _figure(2)

    left.plot([0, 1], [0, 1], "k--", lw=0.8, label="ideal")
    left.fill_between(rep.levels, rep.observed, rep.levels, color="tab:blue", alpha=0.2, lw=0)
    left.plot(rep.levels, rep.observed, color="tab:blue", lw=1.6, label="observed")
    left.set(xlim=(0, 1), ylim=(0, 1), xlabel="expected fraction in centred interval",
             ylabel="observed fraction", title=f"miscalibration area {rep.miscalibration_area:.3f}")  # fmt: skip
    left.set_aspect("equal")
    left.legend(loc="upper left", fontsize="small")
    left.text(0.97, 0.03, f"n = {rep.n}\n{100 * rep.probability:g} % coverage {100 * rep.coverage:.1f} %"
              f"\nNLL {rep.nll:.3g}\nSpearman ρ {rep.spearman:.3f}", transform=left.transAxes,
              ha="right", va="bottom", fontsize="small")  # fmt: skip

    b = rep.binned
    k = b.counts.astype(float)
    low, high = b.rmv * np.sqrt(chi2.ppf(0.025, k) / k), b.rmv * np.sqrt(chi2.ppf(0.975, k) / k)
    right.vlines(b.rmv, low, high, color="0.6", lw=3, alpha=0.6, label="calibrated 95 % range")
    right.plot(b.rmv, b.rmse, "o-", color="tab:red", ms=4, label="bins of σ (equal count)")
    lo = float(min(b.rmv.min(), b.rmse[b.rmse > 0].min(initial=b.rmv.min()), low.min()))
    hi = float(max(b.rmv.max(), b.rmse.max(), high.max()))
    logarithmic = lo > 0 and hi / lo > 20
    if logarithmic:
        right.set(xscale="log", yscale="log")
        lo, hi = lo / 1.2, hi * 1.2
    else:
        lo, hi = 0.0, hi * 1.05
    right.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="ideal")
    suffix = f" ({unit})" if unit else ""
    right.set(xlim=(lo, hi), ylim=(lo, hi), xlabel=f"RMV = √mean(σ²){suffix}", ylabel=f"RMSE{suffix}",
              title=f"ENCE {b.ence:.3f}")  # fmt: skip
    right.legend(loc="upper left", fontsize="small")
    if rep.scale != 1.0:
        title = f"{title}  (σ × {rep.scale:.3g})".strip()
    return _save(fig, path, title)


def plot_parity_with_errors(
    reference: Any,
    predicted: Any,
    sigma: Any,
    path: str | os.PathLike[str],
    *,
    nsigma: float = 1.0,
    max_points: int = 2000,
    seed: int = 0,
    label: str = "",
    title: str = "",
) -> Path:
    """PNG of predicted against reference values with error bars ``± nsigma * sigma``.

    ``sigma`` broadcasts over ``reference`` as in the module docstring (forces ``(N, 3)`` with a
    per-atom ``(N,)``); pass the recalibrated sigma to show what the potential reports. Above
    ``max_points`` values a uniform random subset of that size (``seed``) is drawn, so that the
    bars stay readable; the title says how many are shown. ``label`` names the quantity with its
    unit (``"force component (eV/Å)"``). Returns the path written.
    """
    ref = _array(reference, "reference")
    pred = _array(predicted, "predicted")
    if ref.shape != pred.shape:
        raise ValueError(f"predicted of shape {pred.shape} does not match reference of shape {ref.shape}")
    _check_finite(ref.ravel(), "reference")
    _check_finite(pred.ravel(), "predicted")
    e, s = _pair(pred - ref, sigma, errors_name="reference")
    if not (math.isfinite(nsigma) and nsigma > 0):
        raise ValueError(f"nsigma must be a finite positive number; got {nsigma!r}")
    if int(max_points) < 1:
        raise ValueError(f"max_points must be at least 1; got {max_points!r}")
    x, y = ref.ravel(), pred.ravel()
    n = x.size
    shown = np.arange(n)
    if n > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(n, int(max_points), replace=False))
    fig, (ax,) = _figure(1, width=5.0, height=4.6)
    ax.errorbar(x[shown], y[shown], yerr=nsigma * s[shown], fmt="o", ms=2.5, color="tab:blue", ecolor="tab:blue",
                elinewidth=0.6, alpha=0.5, rasterized=True)  # fmt: skip
    lo = float(min(x.min(), y.min()))
    hi = float(max(x.max(), y.max()))
    pad = 0.03 * (hi - lo) if hi > lo else 1.0
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
    ax.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad))
    what = label or "value"
    ax.set(xlabel=f"reference {what}", ylabel=f"predicted {what}")
    count = f"all {n}" if shown.size == n else f"{shown.size} of {n}"
    ax.set_title(f"{count} shown; bars ± {nsigma:g} σ; RMSE {math.sqrt(np.mean(e**2)):.3g}", fontsize="medium")
    return _save(fig, path, title)
