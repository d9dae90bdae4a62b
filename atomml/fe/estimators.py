"""Free-energy estimators with their diagnostics: TI, EXP, BAR, MBAR (pymbar 4).

Every estimate is a :class:`FreeEnergy` in kT with its statistical error, the temperature
(to report kcal/mol and kJ/mol) and a list of ``flags``: diagnostics that make the number
suspect (poor overlap between neighbouring states, few uncorrelated samples). Failures that
leave no number (a solver that did not converge, no samples) raise :class:`EstimatorError`;
input that has no meaning (NaN, wrong shapes, negative counts) raises
:class:`atomml.errors.InputError`. Nothing is silently returned. Inputs are reduced potentials
u = beta U (dimensionless).

+inf is a legitimate reduced potential: a configuration that is impossible in that state (a hard
wall, a restraint's forbidden region). A work u_target - u_sampled of +inf gives that sample zero
weight in the target state (exp(-inf) = 0) while it still counts among the samples; MBAR and
EXP take it as it is, BAR as explained in :func:`bar`. NaN and -inf have no such meaning (a
sample cannot be impossible in the state that generated it) and are refused.

pymbar is imported in one place (:func:`_pymbar`), quietly: at import it logs a multi-line
banner about JAX and a caveat about its timeseries module, which users of this package should
not see on every run.

The statistics are pymbar's (MBAR, BAR, EXP, timeseries); TI and its error propagation are
written here because pymbar has no TI: the integral is a weighted sum of window means
(trapezoid or natural cubic spline), so its variance is sum_k w_k^2 var(mean_k), with each
window's variance from its statistical inefficiency. BAR's error is Bennett's formula, the one
pymbar uses, evaluated here in log space (:func:`_bennett_error`): pymbar's evaluation of it
fails for works above ~750 kT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import numbers
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from .. import units
from ..errors import AtomMLError, InputError

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


class EstimatorError(AtomMLError, RuntimeError):
    """An estimator could not produce a number (no samples, no solution, solver failure)."""


def _check_temperature(temperature: float) -> None:
    """Refuse a temperature that cannot convert kT to kcal/mol (checked before any work)."""
    if not isinstance(temperature, numbers.Real) or isinstance(temperature, bool) or not 0 < temperature < np.inf:
        raise InputError(f"temperature {temperature!r} is not a positive number of kelvin: "
                         "pass the simulated temperature in K")  # fmt: skip


def _series(series: np.ndarray, what: str) -> np.ndarray:
    """``series`` as a 1-D float array of finite values, else :class:`InputError` naming ``what``."""
    x = np.asarray(series, dtype=float)
    if x.ndim != 1:
        raise InputError(f"{what} must be a 1-D array of samples, got shape {x.shape}: pass one series at a time")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise InputError(f"{what} sample {bad[0]} is {x[bad[0]]}: remove or recompute the non-finite samples")
    return x


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
    series = _series(series, "time series")
    if series.size < 2 or np.ptp(series) == 0:
        return 1.0
    return float(_pymbar().timeseries.statistical_inefficiency(series))


def equilibrated(series: np.ndarray) -> tuple[int, float, float]:
    """(t0, g, N_eff): pymbar's equilibration detection; samples before t0 are discarded."""
    series = _series(series, "time series")
    if series.size == 0:
        raise EstimatorError("equilibration detection needs samples: the time series is empty")
    t0, g, neff = _pymbar().timeseries.detect_equilibration(series)
    return int(t0), float(g), float(neff)


def decorrelated_indices(series: np.ndarray, t0: int | None = None, g: float | None = None) -> np.ndarray:
    """Indices of effectively independent samples after equilibration; ``t0`` and ``g`` from an
    earlier :func:`equilibrated` of the same series spare detecting them again (give both or
    neither)."""
    series = _series(series, "time series")
    if (t0 is None) != (g is None):
        raise InputError("decorrelated_indices takes t0 and g together (both from one equilibrated() call) or neither")
    if t0 is None or g is None:
        t0, g, _ = equilibrated(series)
    elif not (0 <= t0 < series.size and 1 <= g < np.inf):
        raise InputError(f"t0 = {t0} and g = {g} do not fit a series of {series.size} samples "
                         "(0 <= t0 < N, g >= 1): take them from equilibrated() of the same series")  # fmt: skip
    return t0 + np.asarray(_pymbar().timeseries.subsample_correlated_data(series[t0:], g=g), dtype=int)


def _ti_weights(lambdas: np.ndarray, method: str) -> np.ndarray:
    """w such that the integral over lambda of the interpolant of y is w @ y."""
    if method == "trapezoid":
        w = np.zeros_like(lambdas)
        d = np.diff(lambdas)
        w[:-1] += d / 2
        w[1:] += d / 2
        return w
    from scipy.interpolate import CubicSpline

    # the integral of a natural cubic spline is linear in the data: integrate unit vectors
    eye = np.eye(len(lambdas))
    return np.array([CubicSpline(lambdas, eye[k], bc_type="natural").integrate(lambdas[0], lambdas[-1])
                     for k in range(len(lambdas))])  # fmt: skip


def _ti_lambdas(lambdas: Sequence[float], n_windows: int) -> np.ndarray:
    """The windows' lambdas as a finite, strictly increasing 1-D array with one dU/dlambda
    series per window: anything else does not define one path to integrate along."""
    lam = np.asarray(lambdas, dtype=float)
    if lam.ndim != 1 or lam.size != n_windows or lam.size < 2:
        raise InputError(f"TI needs at least two windows with one lambda and one dU/dlambda series each, got lambdas "
                         f"of shape {lam.shape} and {n_windows} series: pass matching lists")  # fmt: skip
    if not np.all(np.isfinite(lam)):
        raise InputError(f"TI lambdas must be finite numbers, got {lam.tolist()}: pass each window's coupling value")
    if np.any(np.diff(lam) <= 0):
        raise InputError(f"TI lambdas must increase strictly, got {lam.tolist()}: order the windows by lambda, merge "
                         "windows at the same lambda, and negate the result to integrate the other way")  # fmt: skip
    return lam


def _ti_window(series: np.ndarray, where: str) -> np.ndarray:
    """One window's dU/dlambda samples as a 1-D array; a NaN has no meaning, an infinite sample
    makes the integrand diverge (TI has no number where MBAR may still have one)."""
    x = np.asarray(series, dtype=float)
    if x.ndim != 1:
        raise InputError(f"{where}: dU/dlambda must be a 1-D array of samples, got shape {x.shape}")
    if x.size == 0:
        raise EstimatorError(f"{where} has no samples: run that window")
    if np.any(np.isnan(x)):
        raise InputError(f"{where}: dU/dlambda sample {np.flatnonzero(np.isnan(x))[0]} is NaN: recompute it")
    if np.any(np.isinf(x)):
        raise EstimatorError(f"{where}: dU/dlambda sample {np.flatnonzero(np.isinf(x))[0]} is infinite, so the TI "
                             "integrand diverges: use soft-core potentials or MBAR")  # fmt: skip
    return x


def ti(lambdas: Sequence[float], dudl: Sequence[np.ndarray], temperature: float, method: str = "trapezoid") -> FreeEnergy:
    """Thermodynamic integration of <du/dlambda> (reduced, per window samples) over lambda."""
    _check_temperature(temperature)
    if method not in ("trapezoid", "spline"):
        raise InputError(f"TI method must be 'trapezoid' or 'spline', got {method!r}")
    lam = _ti_lambdas(lambdas, len(dudl))
    flags, means, variances = [], [], []
    for k, series in enumerate(dudl):
        series = _ti_window(series, f"window {k} (lambda={lam[k]:g})")
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


def _works(works: np.ndarray, direction: str) -> np.ndarray:
    """``works`` (u_target - u_sampled of samples from the sampled state) as a 1-D float array
    of at least two, not all +inf: one work gives a zero error (no spread), and NaN or -inf (a
    sample impossible in the state that generated it) has no meaning."""
    w = np.asarray(works, dtype=float)
    if w.ndim != 1:
        raise InputError(f"{direction} works must be a 1-D array, one per sample, got shape {w.shape}")
    if w.size < 2:
        raise EstimatorError(f"{direction} works: got {w.size}, need at least two to estimate an error; "
                             "collect more samples")  # fmt: skip
    bad = np.flatnonzero(np.isnan(w) | (w == -np.inf))
    if bad.size:
        raise InputError(f"{direction} work {bad[0]} is {w[bad[0]]}: a work is a number or +inf (the sample is "
                         "impossible in the target state); recompute that sample's energies")  # fmt: skip
    if np.all(np.isinf(w)):
        raise EstimatorError(f"every {direction} work is +inf: no sample is possible in the target state, so the "
                             "free energy difference has no finite estimate; add intermediate states or check the "
                             "energies")  # fmt: skip
    return w


def exp(work_kt: np.ndarray, temperature: float) -> FreeEnergy:
    """Exponential averaging (Zwanzig) of forward reduced work u_1(x) - u_0(x), x from state 0.
    A +inf work (x impossible in state 1) adds exp(-inf) = 0 to the average and counts in it."""
    _check_temperature(temperature)
    w = _works(work_kt, "forward")
    out = _pymbar().other_estimators.exp(w)
    flags = []
    # EXP is dominated by the lowest works: with a wide distribution it is biased
    spread = np.std(w[np.isfinite(w)])
    if spread > 2.0:
        flags.append(f"EXP work spread {spread:.1f} kT > 2 kT: the estimate is likely biased; use BAR or MBAR")
    return FreeEnergy(float(out["Delta_f"]), float(out["dDelta_f"]), temperature, "EXP", tuple(flags))


def bar(forward_kt: np.ndarray, reverse_kt: np.ndarray, temperature: float) -> FreeEnergy:
    """Bennett acceptance ratio from forward (0 -> 1) and reverse (1 -> 0) reduced works.

    A +inf work (a sample impossible in the other state) has Fermi weight exactly 0 in BAR's
    equation but still counts in n_F (or n_R). pymbar's BAR cannot evaluate it (inf - inf), so
    it solves the equation on the finite works, and the solution is shifted by the change in
    M = ln(n_F / n_R), the only way the counts enter the equation.
    """
    _check_temperature(temperature)
    wf, wr = _works(forward_kt, "forward"), _works(reverse_kt, "reverse")
    ff, fr = wf[np.isfinite(wf)], wr[np.isfinite(wr)]
    with np.errstate():  # pymbar's BAR sets numpy's global error handling and can leave it changed
        try:
            out = _pymbar().other_estimators.bar(ff, fr, compute_uncertainty=False)
        except Exception as exc:  # pymbar raises several types
            raise EstimatorError(f"BAR did not converge: {exc}; check the works or add intermediate states") from exc
    value = float(out["Delta_f"]) + np.log(wf.size / wr.size) - np.log(ff.size / fr.size)
    return FreeEnergy(value, _bennett_error(wf, wr, value), temperature, "BAR")


def _bennett_error(forward: np.ndarray, reverse: np.ndarray, delta_f: float) -> float:
    """Bennett's asymptotic error of BAR (his eq. 10a; pymbar's default), in log space: pymbar's
    own evaluation gives nan once one work exceeds ~750 kT (as where atoms clash in the other
    state), and +inf works add nothing to the sums here while counting in n_F, n_R."""
    from scipy.special import logsumexp

    c = np.log(forward.size / reverse.size) - delta_f
    log_fermi = (-np.logaddexp(0.0, forward + c), -np.logaddexp(0.0, reverse - c))
    variance = sum(np.exp(logsumexp(2 * f) - 2 * logsumexp(f)) for f in log_fermi) - 1 / forward.size - 1 / reverse.size
    return float(np.sqrt(max(variance, 0.0)))  # >= 0 by Cauchy-Schwarz, up to rounding


@dataclasses.dataclass(frozen=True)
class MBARResult:
    free_energies_kt: np.ndarray  # (K,) relative to state 0
    errors_kt: np.ndarray  # (K,)
    overlap: np.ndarray  # (K, K)
    result: FreeEnergy  # last state relative to the first

    @property
    def neighbour_overlaps(self) -> np.ndarray:
        return np.array([self.overlap[k, k + 1] for k in range(len(self.overlap) - 1)])


def _counts(n_k: Sequence[int]) -> np.ndarray:
    """``n_k`` as a 1-D int array of at least two sample counts, each a whole number >= 0 (a
    fractional count would be truncated into another grouping of the samples)."""
    counts = np.asarray(n_k, dtype=float)
    if counts.ndim != 1 or not np.all(np.isfinite(counts) & (counts >= 0) & (counts == np.round(counts))):
        raise InputError(f"N_k must be a 1-D list of sample counts (whole numbers >= 0), "
                         f"got {np.asarray(n_k).tolist()}")  # fmt: skip
    if counts.size < 2:
        raise InputError(f"MBAR needs at least two states, got {counts.size}: pass u_kn with a row per state")
    return counts.astype(int)


def _check_reduced_potentials(u_kn: np.ndarray, n_k: np.ndarray) -> None:
    """Refuse NaN and -inf, and +inf in the state that generated the sample (impossible where it
    was drawn: usually samples out of N_k order); +inf elsewhere is a configuration impossible in
    that state. A state where every sample is impossible has no finite free energy."""
    bad = np.argwhere(np.isnan(u_kn) | (u_kn == -np.inf))
    if bad.size:
        k, n = bad[0]
        raise InputError(f"u_kn[{k}, {n}] is {u_kn[k, n]}: a reduced potential is a number or +inf (impossible in "
                         "that state); recompute that sample's energy")  # fmt: skip
    origin = np.repeat(np.arange(n_k.size), n_k)
    own = np.flatnonzero(np.isinf(u_kn[origin, np.arange(origin.size)]))
    if own.size:
        n = own[0]
        raise InputError(f"sample {n} has u = +inf in state {origin[n]}, which generated it: order the samples by the "
                         "state that generated them, N_k each, and check that state's energies")  # fmt: skip
    impossible = np.flatnonzero(np.all(np.isinf(u_kn), axis=1))
    if impossible.size:
        raise EstimatorError(f"state {impossible[0]} has u = +inf for every sample: none is possible in it, so its "
                             "free energy has no finite estimate; sample it or check its energies")  # fmt: skip


def mbar(u_kn: np.ndarray, n_k: Sequence[int], temperature: float) -> MBARResult:
    """MBAR over K states: ``u_kn[k, n]`` reduced potential of sample n in state k (+inf where
    the sample is impossible in state k), samples ordered by the state that generated them
    (``n_k`` each; a state may have none)."""
    _check_temperature(temperature)
    u_kn = np.asarray(u_kn, dtype=float)
    n_k = _counts(n_k)
    if u_kn.ndim != 2 or u_kn.shape != (n_k.size, n_k.sum()):
        raise InputError(f"u_kn {u_kn.shape} does not match N_k {n_k.tolist()} (K states x sum(N_k) samples): "
                         "pass a row per state and a column per sample")  # fmt: skip
    if n_k.sum() == 0:
        raise EstimatorError("MBAR needs samples: every state has N_k = 0; run the states")
    _check_reduced_potentials(u_kn, n_k)
    try:
        solver = _pymbar().MBAR(u_kn, n_k, solver_protocol="robust")
        out = solver.compute_free_energy_differences()
        overlap = solver.compute_overlap()["matrix"]
    except Exception as exc:  # pymbar raises several types
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
