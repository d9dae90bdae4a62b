"""Free-energy estimators with their diagnostics: TI, EXP, BAR, MBAR (pymbar 4).

Every estimate is a :class:`FreeEnergy` in kT with its statistical error, the temperature
(to report kcal/mol and kJ/mol) and a list of ``flags``: diagnostics that make the number
suspect (poor overlap between neighbouring states, few uncorrelated samples). Failures that
leave no number (a solver that did not converge, no samples) raise :class:`EstimatorError`.
Nothing is silently returned. Inputs are reduced potentials u = beta U (dimensionless).

pymbar is imported in one place (:func:`_pymbar`), quietly: at import it logs a multi-line
banner about JAX and a caveat about its timeseries module, which users of this package should
not see on every run.

The statistics are pymbar's (MBAR, BAR, EXP, timeseries); TI and its error propagation are
written here because pymbar has no TI: the integral is a weighted sum of window means
(trapezoid or natural cubic spline), so its variance is sum_k w_k^2 var(mean_k), with each
window's variance from its statistical inefficiency.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from .. import units

# neighbouring states whose MBAR overlap is below this are flagged (a common rule of thumb:
# below ~0.03 the estimate between them rests on very few samples)
MIN_OVERLAP = 0.03
MIN_UNCORRELATED = 20  # fewer effectively independent samples per window are flagged


@functools.cache
def _pymbar() -> ModuleType:
    """The pymbar package, imported with stdout and pymbar's own log records below ERROR kept
    back for the import only: the user's logging set-up is left as it was, so pymbar's later
    warnings (a solver that struggles) still reach them."""
    logger = logging.getLogger("pymbar")
    level = logger.level
    # the banner goes through pymbar.mbar_solvers' logger, created during the import with level
    # NOTSET: it inherits this level until it is restored
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import pymbar
    finally:
        logger.setLevel(level)
    return pymbar


class EstimatorError(RuntimeError):
    """An estimator could not produce a number (no samples, solver failure)."""


@dataclasses.dataclass(frozen=True)
class FreeEnergy:
    """A free-energy difference in kT, with error and diagnostics."""

    value_kt: float
    error_kt: float
    temperature: float  # K
    method: str
    flags: tuple[str, ...] = ()

    @property
    def kt_in_kj_per_mol(self) -> float:
        return units.kt(self.temperature)

    @property
    def kj_per_mol(self) -> tuple[float, float]:
        return self.value_kt * self.kt_in_kj_per_mol, self.error_kt * self.kt_in_kj_per_mol

    @property
    def kcal_per_mol(self) -> tuple[float, float]:
        k = units.kt(self.temperature, "kcal/mol")
        return self.value_kt * k, self.error_kt * k

    @property
    def ok(self) -> bool:
        return not self.flags

    def __str__(self) -> str:
        kcal, dkcal = self.kcal_per_mol
        flag = f"  FLAGGED: {'; '.join(self.flags)}" if self.flags else ""
        return (f"{self.method}: {self.value_kt:.3f} ± {self.error_kt:.3f} kT = {kcal:.3f} ± {dkcal:.3f} kcal/mol "
                f"at {self.temperature:g} K{flag}")  # fmt: skip


def statistical_inefficiency(series: np.ndarray) -> float:
    """g >= 1 of a time series (pymbar.timeseries); N / g samples are effectively independent."""
    series = np.asarray(series, dtype=float)
    if series.size < 2 or np.ptp(series) == 0:
        return 1.0
    return float(_pymbar().timeseries.statistical_inefficiency(series))


def equilibrated(series: np.ndarray) -> tuple[int, float, float]:
    """(t0, g, N_eff): pymbar's equilibration detection; samples before t0 are discarded."""
    t0, g, neff = _pymbar().timeseries.detect_equilibration(np.asarray(series, dtype=float))
    return int(t0), float(g), float(neff)


def decorrelated_indices(series: np.ndarray, t0: int | None = None, g: float | None = None) -> np.ndarray:
    """Indices of effectively independent samples after equilibration; ``t0`` and ``g`` from an
    earlier :func:`equilibrated` of the same series spare detecting them again."""
    if t0 is None or g is None:
        t0, g, _ = equilibrated(series)
    return t0 + np.asarray(_pymbar().timeseries.subsample_correlated_data(np.asarray(series)[t0:], g=g), dtype=int)


def _ti_weights(lambdas: np.ndarray, method: str) -> np.ndarray:
    """w such that the integral over lambda of the interpolant of y is w @ y."""
    if method == "trapezoid":
        w = np.zeros_like(lambdas)
        d = np.diff(lambdas)
        w[:-1] += d / 2
        w[1:] += d / 2
        return w
    if method == "spline":
        from scipy.interpolate import CubicSpline

        # the integral of a natural cubic spline is linear in the data: integrate unit vectors
        eye = np.eye(len(lambdas))
        return np.array([CubicSpline(lambdas, eye[k], bc_type="natural").integrate(lambdas[0], lambdas[-1])
                         for k in range(len(lambdas))])  # fmt: skip
    raise ValueError(f"TI method must be 'trapezoid' or 'spline', got {method!r}")


def ti(lambdas: Sequence[float], dudl: Sequence[np.ndarray], temperature: float, method: str = "trapezoid") -> FreeEnergy:
    """Thermodynamic integration of <du/dlambda> (reduced, per window samples) over lambda."""
    lam = np.asarray(lambdas, dtype=float)
    if len(dudl) != len(lam) or len(lam) < 2:
        raise EstimatorError(f"TI needs at least two windows and one sample series per window ({len(lam)} vs {len(dudl)})")
    if np.any(np.diff(lam) <= 0):
        raise ValueError("TI lambdas must increase strictly")
    flags, means, variances = [], [], []
    for k, series in enumerate(dudl):
        series = np.asarray(series, dtype=float)
        if series.size == 0 or not np.all(np.isfinite(series)):
            raise EstimatorError(f"window {k} (lambda={lam[k]:g}) has no samples or non-finite dU/dlambda")
        g = statistical_inefficiency(series)
        n_eff = series.size / g
        if n_eff < MIN_UNCORRELATED:
            flags.append(f"window {k} (lambda={lam[k]:g}) has only {n_eff:.0f} uncorrelated samples")
        means.append(series.mean())
        variances.append(series.var(ddof=1) / n_eff if series.size > 1 else np.inf)
    w = _ti_weights(lam, method)
    value = float(w @ np.array(means))
    error = float(np.sqrt(np.sum(w**2 * np.array(variances))))
    return FreeEnergy(value, error, temperature, f"TI ({method})", tuple(flags))


def exp(work_kt: np.ndarray, temperature: float) -> FreeEnergy:
    """Exponential averaging (Zwanzig) of forward reduced work u_1(x) - u_0(x), x from state 0."""
    w = np.asarray(work_kt, dtype=float)
    if w.size == 0:
        raise EstimatorError("EXP needs samples")
    out = _pymbar().other_estimators.exp(w)
    flags = []
    # EXP is dominated by the lowest works: with a wide distribution it is biased
    if np.std(w) > 2.0:
        flags.append(f"EXP work spread {np.std(w):.1f} kT > 2 kT: the estimate is likely biased; use BAR or MBAR")
    return FreeEnergy(float(out["Delta_f"]), float(out["dDelta_f"]), temperature, "EXP", tuple(flags))


def bar(forward_kt: np.ndarray, reverse_kt: np.ndarray, temperature: float) -> FreeEnergy:
    """Bennett acceptance ratio from forward (0 -> 1) and reverse (1 -> 0) reduced works."""
    wf, wr = np.asarray(forward_kt, dtype=float), np.asarray(reverse_kt, dtype=float)
    if wf.size == 0 or wr.size == 0:
        raise EstimatorError("BAR needs forward and reverse samples")
    try:
        out = _pymbar().other_estimators.bar(wf, wr)
    except Exception as exc:  # noqa: BLE001 - pymbar raises several types
        raise EstimatorError(f"BAR did not converge: {exc}") from exc
    return FreeEnergy(float(out["Delta_f"]), float(out["dDelta_f"]), temperature, "BAR")


@dataclasses.dataclass(frozen=True)
class MBARResult:
    free_energies_kt: np.ndarray  # (K,) relative to state 0
    errors_kt: np.ndarray  # (K,)
    overlap: np.ndarray  # (K, K)
    result: FreeEnergy  # last state relative to the first

    @property
    def neighbour_overlaps(self) -> np.ndarray:
        return np.array([self.overlap[k, k + 1] for k in range(len(self.overlap) - 1)])


def mbar(u_kn: np.ndarray, n_k: Sequence[int], temperature: float) -> MBARResult:
    """MBAR over K states: ``u_kn[k, n]`` reduced potential of sample n in state k, samples
    ordered by the state that generated them (``n_k`` each)."""
    u_kn = np.asarray(u_kn, dtype=float)
    n_k = np.asarray(n_k, dtype=int)
    if u_kn.ndim != 2 or u_kn.shape[0] != len(n_k) or u_kn.shape[1] != n_k.sum():
        raise ValueError(f"u_kn {u_kn.shape} does not match N_k {n_k.tolist()} (K states x sum(N_k) samples)")
    if not np.all(np.isfinite(u_kn)):
        raise EstimatorError("u_kn holds non-finite reduced potentials")
    try:
        solver = _pymbar().MBAR(u_kn, n_k, solver_protocol="robust")
        out = solver.compute_free_energy_differences()
        overlap = solver.compute_overlap()["matrix"]
    except Exception as exc:  # noqa: BLE001 - pymbar raises several types
        raise EstimatorError(f"MBAR failed: {exc}") from exc
    f, df = np.asarray(out["Delta_f"])[0], np.asarray(out["dDelta_f"])[0]
    flags = []
    neighbours = [overlap[k, k + 1] for k in range(len(n_k) - 1)]
    for k, o in enumerate(neighbours):
        if o < MIN_OVERLAP:
            flags.append(f"states {k} and {k + 1} overlap only {o:.3f} (< {MIN_OVERLAP}): add states between them")
    if not np.all(np.isfinite(df)):
        flags.append("MBAR uncertainties are not finite")
    result = FreeEnergy(float(f[-1]), float(df[-1]), temperature, "MBAR", tuple(flags))
    return MBARResult(f, df, overlap, result)
