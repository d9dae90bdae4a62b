r"""Observables from MD with the committee's epistemic interval, by reweighting to each member.

A trajectory sampled with the committee mean :math:`\bar E` (NVT at temperature T) holds,
for member k, the Boltzmann distribution of :math:`E_k` after reweighting each frame by

.. math:: w_{k,f} \propto \exp\!\left(-\frac{E_k(x_f) - \bar E(x_f)}{k_B T}\right),

so a per-frame observable :math:`A_f` (an energy, a radial distribution function histogram,
...) has the member's average :math:`\langle A\rangle_k = \sum_f w_{k,f} A_f` without running MD
with every member. Its spread over the members is the interval the committee puts on the
observable (model uncertainty; the statistical error of the trajectory is separate). The
reweighting is only as good as the overlap between the sampled and the member's ensembles: the
effective sample size :math:`1/\sum_f w_{k,f}^2` of each member says how many frames carry it,
and members below ``min_ess`` are flagged: run MD with those members themselves instead.

:func:`member_energies` evaluates a committee on frames; :func:`reweight` gives the weights and
effective sample sizes; :func:`interval` the observable per member, their mean, standard
deviation and central interval.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import keys, units


@dataclasses.dataclass
class Reweighting:
    """weights (K, F), each row summing to 1; ess (K,) effective sample sizes (frames)."""

    weights: np.ndarray
    ess: np.ndarray
    temperature_K: float


def member_energies(potential: Any, frames: Sequence[Any], batch_size: int = 16) -> np.ndarray:
    """(K, F) energies (eV) of every member of a committee ``potential`` on ASE ``frames``."""
    import torch

    from ..graph import from_ase

    if potential.committee_size is None:
        raise ValueError("reweighting to members needs a committee potential; this is a single model")
    columns = []
    device = potential.network_dtype.device
    for start in range(0, len(frames), batch_size):
        graph = from_ase(list(frames[start : start + batch_size]), dtype=torch.float64).to(device=device)
        out = potential(graph, compute_forces=False)
        columns.append(out[keys.MEMBERS[keys.ENERGY]].detach().cpu().double().numpy())
    return np.concatenate(columns, axis=1)


def reweight(energies: np.ndarray, sampled: np.ndarray, temperature_K: float) -> Reweighting:
    """Weights that turn frames sampled with energy ``sampled`` (F,) at ``temperature_K`` into
    each member's ensemble (``energies`` (K, F), eV)."""
    energies, sampled = np.asarray(energies, dtype=np.float64), np.asarray(sampled, dtype=np.float64)
    if energies.ndim != 2 or sampled.shape != energies.shape[1:]:
        raise ValueError(f"energies must be (members, frames) and sampled (frames,), got {energies.shape} and {sampled.shape}")
    if not temperature_K > 0:
        raise ValueError(f"temperature_K must be positive, got {temperature_K}")
    if not (np.isfinite(energies).all() and np.isfinite(sampled).all()):
        raise ValueError("energies contain NaN or inf")
    u = -(energies - sampled) / (units.BOLTZMANN_EV_PER_K * temperature_K)
    u -= u.max(axis=1, keepdims=True)  # exp of at most 0: no overflow
    w = np.exp(u)
    w /= w.sum(axis=1, keepdims=True)
    return Reweighting(weights=w, ess=1.0 / (w**2).sum(axis=1), temperature_K=float(temperature_K))


def interval(values: np.ndarray, reweighting: Reweighting, probability: float = 0.95, min_ess: float = 50.0) -> dict[str, Any]:
    """The observable's per-frame ``values`` (F, ...) averaged in each member's ensemble.

    Returns ``sampled`` (the plain average over frames), ``members`` (K, ...), their ``mean``
    and ``std`` (population), ``low``/``high`` (the central ``probability`` interval of the
    members' values), ``ess`` (K,) and ``flagged``: the members whose effective sample size is
    below ``min_ess`` (their averages rest on few frames)."""
    values = np.asarray(values, dtype=np.float64)
    w = reweighting.weights
    if values.shape[0] != w.shape[1]:
        raise ValueError(f"values have {values.shape[0]} frames, the weights {w.shape[1]}")
    members = np.tensordot(w, values, axes=(1, 0))  # (K, ...)
    tail = 100.0 * (1.0 - probability) / 2.0
    return {
        "sampled": values.mean(axis=0),
        "members": members,
        "mean": members.mean(axis=0),
        "std": members.std(axis=0),
        "low": np.percentile(members, tail, axis=0),
        "high": np.percentile(members, 100.0 - tail, axis=0),
        "ess": reweighting.ess,
        "flagged": [int(k) for k in np.nonzero(reweighting.ess < min_ess)[0]],
    }
