"""A committee against reference labels: its errors and spreads, and the recalibration factor.

:func:`predictions` evaluates a committee potential (:mod:`atomml.models.committee`) on a
labelled :class:`~atomml.data.Dataset`, ``batch_size`` structures to a call, and returns the
committee mean's errors with the members' spread: per structure for energies, per force
component for forces (the members' standard deviation of that component, so that each error
has its own σ). :func:`calibrate` fits one recalibration factor s on such data
(:func:`~atomml.uncertainty.calibration.fit_recalibration`, on the force components, or on the
energies where there are no forces) and reports the calibration metrics before and after it;
:func:`write_calibration` stores s in the potential (``model.std_scale``: every later
``energy_std`` and ``forces_std`` is multiplied by it) and writes ``calibration.json`` and PNG
plots. ``atomml committee calibrate`` runs both.

Fit s on data that was not used to train the members (a validation set), and judge it on a third
set: s corrects the spread's scale, not its ranking (Spearman's ρ is unchanged by it).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import keys
from . import calibration


@dataclasses.dataclass
class Predictions:
    """A committee's errors (mean - reference) and spreads on labelled structures, eV and eV/Å.

    energy_error, energy_std: (B,) per labelled structure; energy_per_atom: divided by the atoms;
    forces_error, forces_std: (M, 3) per labelled atom and component; forces_reference,
    forces_predicted: (M, 3) for parity plots; natoms: (B,)."""

    energy_error: np.ndarray
    energy_std: np.ndarray
    natoms: np.ndarray
    forces_error: np.ndarray
    forces_std: np.ndarray
    forces_reference: np.ndarray
    forces_predicted: np.ndarray
    energy_reference: np.ndarray
    energy_predicted: np.ndarray


def predictions(potential: Any, dataset: Any, batch_size: int = 16) -> Predictions:
    """Evaluate ``potential`` (a committee) on ``dataset`` with raw spreads (``std_scale`` not
    applied), float64 geometry, in the potential's own dtype."""
    if potential.committee_size is None:
        raise ValueError("calibration needs a committee potential (its members' spread); this is a single model")
    e_err, e_std, natoms, e_ref, e_pred = [], [], [], [], []
    f_err, f_std, f_ref, f_pred = [], [], [], []
    for start in range(0, len(dataset), batch_size):
        indices = np.arange(start, min(start + batch_size, len(dataset)))
        graph, labels = dataset.batch(indices, dtype=torch.float64)
        out = potential(graph.to(device=potential.network_dtype.device))
        energies = out[keys.MEMBERS[keys.ENERGY]].detach().cpu().double().numpy()  # (K, b)
        forces = out[keys.MEMBERS[keys.FORCES]].detach().cpu().double().numpy()  # (K, n, 3)
        reference_e, reference_f = labels["energy"].numpy(), labels["forces"].numpy()
        has_e = np.isfinite(reference_e)
        e_err.append(energies.mean(0)[has_e] - reference_e[has_e])
        e_std.append(energies.std(0)[has_e])
        natoms.append(labels["num_atoms"].numpy()[has_e])
        e_ref.append(reference_e[has_e])
        e_pred.append(energies.mean(0)[has_e])
        has_f = np.isfinite(reference_f).all(axis=1)
        f_err.append(forces.mean(0)[has_f] - reference_f[has_f])
        f_std.append(forces.std(0)[has_f])
        f_ref.append(reference_f[has_f])
        f_pred.append(forces.mean(0)[has_f])
    return Predictions(
        energy_error=np.concatenate(e_err), energy_std=np.concatenate(e_std), natoms=np.concatenate(natoms),
        forces_error=np.concatenate(f_err).reshape(-1, 3), forces_std=np.concatenate(f_std).reshape(-1, 3),
        forces_reference=np.concatenate(f_ref).reshape(-1, 3), forces_predicted=np.concatenate(f_pred).reshape(-1, 3),
        energy_reference=np.concatenate(e_ref), energy_predicted=np.concatenate(e_pred),
    )  # fmt: skip


# a spread of exactly zero (a component fixed by symmetry) cannot be a Gaussian's width: floor it
SIGMA_FLOOR = {"forces": 1e-6, "energy": 1e-8}  # eV/Å, eV


def calibrate(p: Predictions, scale: float | None = None) -> dict[str, Any]:
    """The recalibration factor (fitted on ``p`` unless ``scale`` is given) and the calibration
    reports of forces and energies with the raw spread and with the factor."""
    parts = {}
    if p.forces_error.size:
        parts["forces"] = (p.forces_error, np.maximum(p.forces_std, SIGMA_FLOOR["forces"]))
    if p.energy_error.size:
        parts["energy"] = (p.energy_error, np.maximum(p.energy_std, SIGMA_FLOOR["energy"]))
    if not parts:
        raise ValueError("no labelled energies or forces to calibrate on")
    fitted_on = "forces" if "forces" in parts else "energy"
    s = calibration.fit_recalibration(*parts[fitted_on]) if scale is None else float(scale)
    result: dict[str, Any] = {"scale": s, "fitted_on": fitted_on if scale is None else None}
    for name, (errors, sigma) in parts.items():
        result[name] = {"raw": calibration.report(errors, sigma), "recalibrated": calibration.report(errors, sigma, scale=s)}
    if p.forces_error.size:  # ranking per atom: |error| vector against the atom's spread
        atom_error = np.linalg.norm(p.forces_error, axis=1)
        atom_spread = np.sqrt((p.forces_std**2).sum(axis=1))
        result["forces_per_atom_spearman"] = calibration.spearman(atom_error, atom_spread)
    return result


def write_calibration(result: dict[str, Any], p: Predictions, folder: str | os.PathLike[str]) -> Path:
    """``calibration.json`` (every metric, raw and recalibrated) and PNGs: the calibration
    curve and RMSE-vs-RMV diagram, and a parity plot with ±σ error bars, of forces and
    energies."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {k: v for k, v in result.items() if k not in ("forces", "energy")}
    s = result["scale"]
    for name in ("forces", "energy"):
        if name not in result:
            continue
        summary[name] = {kind: report.to_dict() for kind, report in result[name].items()}
        unit = "eV/Å" if name == "forces" else "eV"
        calibration.plot_calibration(result[name]["recalibrated"], folder / f"calibration_{name}.png",
                                     title=f"{name}, spread x {s:.3g}", unit=unit)  # fmt: skip
    if p.forces_error.size:
        calibration.plot_parity_with_errors(p.forces_reference, p.forces_predicted, s * p.forces_std,
                                            folder / "parity_forces.png", label="force component (eV/Å)")  # fmt: skip
    if p.energy_error.size:
        calibration.plot_parity_with_errors(p.energy_reference / p.natoms, p.energy_predicted / p.natoms,
                                            s * p.energy_std / p.natoms, folder / "parity_energy.png",
                                            label="energy per atom (eV/atom)")  # fmt: skip
    path = folder / "calibration.json"
    path.write_text(json.dumps(summary, indent=1, default=float))
    return path
