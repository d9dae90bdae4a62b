"""Test errors of a potential on a labelled dataset, and parity plots.

Errors are reported the way the field compares potentials: energy MAE/RMSE per atom
(meV/atom), force component MAE/RMSE (meV/Å), stress component MAE (meV/Å³). Structures
without a label for a quantity are left out of that quantity's error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import keys, units
from ..data import Dataset
from ..potential import Potential


def predict(
    potential: Potential,
    dataset: Dataset,
    batch_size: int = 32,
    indices: np.ndarray | None = None,
    stress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Energies (B,), forces (N, 3) and, where the cells allow it, stress (B, 6) predicted for
    the structures ``indices`` (default: all), in the dataset's order."""
    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    energy, forces, stresses = [], [], []
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        graph, labels = dataset.batch(chunk, dtype=torch.float64)  # float64 geometry: atomml.potential
        want_stress = wants_stress(graph.cell, labels["stress"]) if stress is None else stress
        with torch.enable_grad():
            out = potential(graph.to(device=_device(potential)), compute_forces=True, compute_stress=want_stress)
        energy.append(out[keys.ENERGY].detach().cpu().double().numpy())
        forces.append(out[keys.FORCES].detach().cpu().double().numpy())
        s = out[keys.STRESS].detach().cpu().double().numpy() if want_stress else np.full((len(chunk), 6), np.nan)
        stresses.append(s)
    return {"energy": np.concatenate(energy), "forces": np.concatenate(forces), "stress": np.concatenate(stresses)}


def wants_stress(cell: torch.Tensor, stress_labels: torch.Tensor) -> bool:
    """Stress is computed for a batch when some structure has a stress label and every cell
    has a volume (molecules have none)."""
    if not bool(torch.isfinite(stress_labels).all(dim=1).any()):
        return False
    return bool((torch.linalg.det(cell.double()).abs() > 1e-9).all())


def errors(dataset: Dataset, prediction: dict[str, np.ndarray], indices: np.ndarray | None = None) -> dict[str, Any]:
    """Error summary of ``prediction`` (from :func:`predict` on the same ``indices``)."""
    reference = dataset if indices is None else dataset.subset(indices)
    n = reference.num_atoms
    out: dict[str, Any] = {"structures": len(reference), "atoms": int(n.sum())}
    e_ok = np.isfinite(reference.energy)
    if e_ok.any():
        d = (prediction["energy"][e_ok] - np.asarray(reference.energy)[e_ok]) / n[e_ok]
        out["energy_mae_meV_per_atom"] = 1000 * float(np.abs(d).mean())
        out["energy_rmse_meV_per_atom"] = 1000 * float(np.sqrt((d**2).mean()))
    f_ok = np.isfinite(np.asarray(reference.forces)).all(axis=1)
    if f_ok.any():
        d = prediction["forces"][f_ok] - np.asarray(reference.forces)[f_ok]
        out["force_mae_meV_per_A"] = 1000 * float(np.abs(d).mean())
        out["force_rmse_meV_per_A"] = 1000 * float(np.sqrt((d**2).mean()))
        out["force_reference_mean_abs_meV_per_A"] = 1000 * float(np.abs(np.asarray(reference.forces)[f_ok]).mean())
    s_ok = np.isfinite(np.asarray(reference.stress)).all(axis=1) & np.isfinite(prediction["stress"]).all(axis=1)
    if s_ok.any():
        d = prediction["stress"][s_ok] - np.asarray(reference.stress)[s_ok]
        out["stress_mae_meV_per_A3"] = 1000 * float(np.abs(d).mean())
        out["stress_structures"] = int(s_ok.sum())
    return out


def evaluate(potential: Potential, dataset: Dataset, batch_size: int = 32) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Errors of ``potential`` on all of ``dataset`` and the predictions behind them."""
    prediction = predict(potential, dataset, batch_size)
    return errors(dataset, prediction), prediction


def parity_plot(
    dataset: Dataset,
    prediction: dict[str, np.ndarray],
    path: str | os.PathLike[str],
    title: str = "",
    atomic_energies: dict[int, float] | None = None,
) -> Path:
    """PNG with predicted vs reference energy per atom, force components and (if labelled) stress.

    With ``atomic_energies`` (eV per element) their sum is taken off both energies, so the plot
    shows the part of the energy the network fits rather than the element references. The axes
    are in eV, eV/Å and GPa; each panel's title is the MAE of :func:`errors`, the number the
    metrics file holds (meV/atom, meV/Å; stress converted from meV/Å³ to GPa).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = dataset.num_atoms
    summary = errors(dataset, prediction)
    baseline = np.zeros(len(dataset))
    label = "energy per atom (eV)"
    if atomic_energies:
        per_atom = np.vectorize(lambda z: atomic_energies.get(int(z), 0.0))(np.asarray(dataset.numbers))
        baseline = np.add.reduceat(per_atom, np.asarray(dataset.offsets[:-1])) if len(per_atom) else baseline
        label = "energy per atom − element refs (eV)"
    # (axis label, reference, prediction, the metrics key whose value titles the panel)
    panels = [(label, (np.asarray(dataset.energy) - baseline) / n, (prediction["energy"] - baseline) / n, "energy_mae_meV_per_atom")]
    forces = np.asarray(dataset.forces).ravel(), prediction["forces"].ravel()
    panels.append(("force component (eV/Å)", *forces, "force_mae_meV_per_A"))
    if np.isfinite(prediction["stress"]).any() and np.isfinite(np.asarray(dataset.stress)).any():
        to_gpa = units.EV_PER_A3_TO_GPA
        stress = np.asarray(dataset.stress).ravel() * to_gpa, prediction["stress"].ravel() * to_gpa
        panels.append(("stress component (GPa)", *stress, "stress_mae_meV_per_A3"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    for ax, (label, ref, pred, key) in zip(np.atleast_1d(axes), panels):
        ok = np.isfinite(ref) & np.isfinite(pred)
        ref, pred = ref[ok], pred[ok]
        ax.scatter(ref, pred, s=3, alpha=0.4, rasterized=True)
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_title(mae_title(key, summary))
    return _save(fig, path, title)


def _save(fig: Any, path: str | os.PathLike[str], title: str) -> Path:
    """Write a figure as PNG (its folder made if needed) and close it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


TITLES = {  # metrics.json key -> how plots and log lines show it (stress in GPa, as materials people read it)
    "energy_mae_meV_per_atom": "energy MAE {:.3g} meV/atom",
    "force_mae_meV_per_A": "force MAE {:.3g} meV/Å",
    "stress_mae_meV_per_A3": "stress MAE {:.3g} GPa",
}
# what a key's value (in the unit its name says) is multiplied by for display
DISPLAY_SCALE = {"stress_mae_meV_per_A3": units.EV_PER_MEV * units.EV_PER_A3_TO_GPA}


def metric_text(key: str, value: float) -> str:
    """``TITLES[key]`` with ``value`` (in the unit the key names) shown in the display unit."""
    return TITLES[key].format(value * DISPLAY_SCALE.get(key, 1.0))


def mae_title(key: str, summary: dict[str, Any]) -> str:
    """A panel title with the error ``summary[key]``, in the display unit of :data:`TITLES`."""
    return metric_text(key, summary[key]) if key in summary else TITLES[key].split(" {")[0] + ": no labels"


def learning_curve(history: list[dict[str, Any]], path: str | os.PathLike[str], title: str = "") -> Path:
    """PNG of a run's ``log.csv`` rows against step: the training loss (mean over the steps since
    the validation before) and the validation loss, and the validation MAE and RMSE of energy
    (meV/atom), forces (meV/Å) and stress (meV/Å³), the units of the log's column names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = np.array([row["step"] for row in history], dtype=float)

    def column(key: str) -> np.ndarray:
        return np.array([np.nan if row.get(key) is None else row[key] for row in history], dtype=float)

    panels = [("loss (weighted, as minimised)", [("train", "train_loss"), ("valid", "valid_loss")])]
    for quantity, unit, key in (("energy", "meV/atom", "energy_{}_meV_per_atom"), ("force", "meV/Å", "force_{}_meV_per_A"),
                                ("stress", "meV/Å³", "stress_{}_meV_per_A3")):  # fmt: skip
        if np.isfinite(column(key.format("mae"))).any():
            panels.append((f"valid {quantity} error ({unit})", [("MAE", key.format("mae")), ("RMSE", key.format("rmse"))]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (label, lines) in zip(np.atleast_1d(axes), panels):
        for name, key in lines:
            values = column(key)
            ok = np.isfinite(values) & (values > 0)
            if ok.any():
                ax.plot(step[ok], values[ok], "o-", ms=3, label=name)
        ax.set_xlabel("step")
        ax.set_title(label)
        if ax.lines:
            ax.set_yscale("log")
            ax.legend()
    return _save(fig, path, title)


def _device(module: torch.nn.Module) -> torch.device:
    return next(iter(module.buffers())).device
