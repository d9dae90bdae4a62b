"""Convergence diagnostics and plots (PNG) for free-energy estimates.

- :func:`forward_reverse`: MBAR on growing fractions of every window's samples, from the start
  (forward) and from the end (reverse); the two curves should meet within their errors.
- :func:`plot_overlap`, :func:`plot_convergence`, :func:`plot_dudl`: PNG files people look at
  (matplotlib, no display needed), each written whole or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..files import replacing
from .estimators import MBARResult, mbar


def _subset(u_kn: np.ndarray, n_k: np.ndarray, fraction: float, from_end: bool) -> tuple[np.ndarray, np.ndarray]:
    columns, sizes, start = [], [], 0
    for n in n_k:
        m = min(int(n), max(2, int(round(n * fraction))))
        idx = np.arange(start + n - m, start + n) if from_end else np.arange(start, start + m)
        columns.append(idx)
        sizes.append(m)
        start += n
    return u_kn[:, np.concatenate(columns)], np.array(sizes)


def forward_reverse(u_kn: np.ndarray, n_k: Sequence[int], temperature: float,
                    fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) -> dict:  # fmt: skip
    """Free energy (last state vs first, kT) and error on fractions of the data, both ways.

    ``converged`` is False (and says why) when the forward and reverse estimates on half of the
    data differ by more than three times their combined error. The halves are independent
    samples, so with converged data the gap exceeds that 0.3% of the time; at twice the
    error it would raise false alarms 5% of the time.
    """
    n_k = np.asarray(n_k, dtype=int)
    out: dict = {"fractions": list(fractions), "forward": [], "forward_error": [], "reverse": [], "reverse_error": []}
    for fraction in fractions:
        for key, from_end in (("forward", False), ("reverse", True)):
            r = mbar(*_subset(u_kn, n_k, fraction, from_end), temperature).result
            out[key].append(r.value_kt)
            out[key + "_error"].append(r.error_kt)
    half = int(np.argmin(np.abs(np.array(fractions) - 0.5)))
    gap = abs(out["forward"][half] - out["reverse"][half])
    combined = float(np.hypot(out["forward_error"][half], out["reverse_error"][half]))
    out["converged"] = bool(gap <= 3 * combined)
    out["why"] = "" if out["converged"] else (
        f"forward and reverse halves differ by {gap:.2f} kT (> 3 x {combined:.2f} kT): sample longer or equilibrate"
    )
    return out


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` to ``path`` (format from its suffix) through a temporary file, so that a
    job killed mid-write leaves the previous plot."""
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=120, format=os.path.splitext(path)[1].lstrip(".") or "png")


def plot_overlap(result: MBARResult, path: str | os.PathLike[str]) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(result.overlap, cmap="viridis", vmin=0, vmax=max(0.3, float(result.overlap.max())))
    k = len(result.overlap)
    for i in range(k):
        for j in range(k):
            if result.overlap[i, j] >= 0.01:
                ax.text(j, i, f"{result.overlap[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    ax.set_xlabel("state")
    ax.set_ylabel("state")
    ax.set_title("MBAR overlap (neighbours should exceed 0.03)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_convergence(convergence: dict, path: str | os.PathLike[str], temperature: float | None = None) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    f = np.array(convergence["fractions"])
    for key, label in (("forward", "forward"), ("reverse", "reverse")):
        y, e = np.array(convergence[key]), np.array(convergence[key + "_error"])
        ax.errorbar(f, y, yerr=e, marker="o", capsize=3, label=label)
    ax.set_xlabel("fraction of samples")
    ax.set_ylabel("ΔF (kT)" + (f" at {temperature:g} K" if temperature else ""))
    ax.legend()
    ax.set_title("forward / reverse convergence" + ("" if convergence["converged"] else " (NOT converged)"))
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_dudl(lambdas: Sequence[float], dudl: Sequence[np.ndarray], path: str | os.PathLike[str]) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    means = [np.mean(d) for d in dudl]
    errors = [np.std(d, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0 for d in dudl]
    ax.errorbar(lambdas, means, yerr=errors, marker="o", capsize=3)
    ax.set_xlabel("λ")
    ax.set_ylabel("⟨dU/dλ⟩ (kT)")
    ax.set_title("TI integrand")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
