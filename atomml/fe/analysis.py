"""Analysis of sampled legs: each state's equilibrated, uncorrelated samples, MBAR with its
diagnostics and plots, the flags of a set of legs and how long they were simulated.

Works on the folder of either sampler (:mod:`atomml.fe.sampling`); the hydration and MM→ML
summaries (:mod:`atomml.fe.hydration`, :mod:`atomml.fe.mlmm`) are built from these results.
Each result is a dataclass whose ``to_dict()`` gives the fields the JSON summaries write.

Before MBAR every state's samples are cut to the equilibrated part and subsampled to
uncorrelated ones (pymbar's timeseries on the state's own reduced potential); a state left with
fewer than :data:`atomml.fe.estimators.MIN_UNCORRELATED` is flagged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .estimators import FreeEnergy

# neighbouring replica-exchange states that swap less often than this are flagged: replicas
# barely travel between them
MIN_ACCEPTANCE = 0.1


@dataclasses.dataclass(frozen=True)
class StateEquilibration:
    """How one state's samples were cut: ``t0`` samples of equilibration dropped, statistical
    inefficiency ``g`` of the rest, ``uncorrelated`` samples kept."""

    t0: int
    g: float
    uncorrelated: int


@dataclasses.dataclass(frozen=True)
class Decorrelated:
    """The kept samples: ``u_kn`` (K, N) reduced potentials grouped by state, ``n_k`` (K,)."""

    u_kn: np.ndarray
    n_k: np.ndarray
    states: tuple[StateEquilibration, ...]


def decorrelate(u_kn: np.ndarray, n_k: np.ndarray) -> Decorrelated:
    """Each state's equilibrated, uncorrelated samples: pymbar's equilibration detection and
    subsampling on the state's own reduced potential (``u_kn`` (K, N), samples grouped by state,
    ``n_k`` (K,) of them each)."""
    from .estimators import decorrelated_indices, equilibrated

    keep, states, start = [], [], 0
    for k, n in enumerate(np.asarray(n_k, dtype=int)):
        series = u_kn[k, start : start + n]
        if n < 3:  # too short to analyse; kept as they are, and flagged by the count
            idx, t0, g = np.arange(n), 0, 1.0
        else:
            t0, g, _ = equilibrated(series)
            idx = decorrelated_indices(series, t0, g)
        keep.append(start + idx)
        states.append(StateEquilibration(int(t0), float(g), int(len(idx))))
        start += n
    columns = np.concatenate(keep)
    return Decorrelated(u_kn[:, columns], np.array([len(i) for i in keep]), tuple(states))


@dataclasses.dataclass(frozen=True)
class ExchangeStatistics:
    """Replica exchange of one leg: per neighbouring pair the fraction of swaps accepted (None
    before the first attempt), and round trips 0 -> K-1 -> 0 summed over replicas."""

    acceptance: list[float | None]
    round_trips: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LegAnalysis:
    """One sampled leg: MBAR of the last state against the first on the kept samples, with its
    diagnostics. ``convergence`` is :func:`atomml.fe.diagnostics.forward_reverse`'s dict;
    ``ns_per_day_per_state`` None where no dynamics is recorded; ``replica_exchange`` None for
    independent windows."""

    result: FreeEnergy
    neighbour_overlaps: list[float]
    convergence: dict[str, Any]
    samples_per_state: list[int]
    uncorrelated_per_state: list[int]
    equilibration: tuple[StateEquilibration, ...]
    ns_per_day_per_state: list[float | None]
    replica_exchange: ExchangeStatistics | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        out["result"] = dataclasses.asdict(self.result)
        out["equilibration"] = [dataclasses.asdict(s) for s in self.equilibration]
        out["replica_exchange"] = None if self.replica_exchange is None else self.replica_exchange.to_dict()
        return out


def analyse_leg(folder: str | os.PathLike[str], temperature: float) -> LegAnalysis:
    """MBAR on the equilibrated, uncorrelated samples (:func:`decorrelate`), forward/reverse
    convergence, overlap and convergence PNGs (written into ``folder``) and ns/day per state of
    one sampled leg (either sampler's folder); ``temperature`` in K."""
    import json

    from . import diagnostics
    from .estimators import MIN_UNCORRELATED, EstimatorError, mbar
    from .sampling import read_u_kn, replica_exchange_statistics, sampling_speed

    folder = Path(folder)
    u_all, n_all = read_u_kn(folder)
    if n_all.min() < 2:
        raise EstimatorError(f"{folder}: state {int(n_all.argmin())} has {int(n_all.min())} samples; run the leg (longer)")
    kept = decorrelate(u_all, n_all)
    estimate = mbar(kept.u_kn, kept.n_k, temperature)
    result = estimate.result
    few = [k for k, n in enumerate(kept.n_k) if n < MIN_UNCORRELATED]
    if few:
        flag = f"states {few} keep fewer than {MIN_UNCORRELATED} uncorrelated samples: sample longer"
        result = dataclasses.replace(result, flags=result.flags + (flag,))
    convergence = diagnostics.forward_reverse(kept.u_kn, kept.n_k, temperature)
    diagnostics.plot_overlap(estimate, folder / "overlap.png")
    diagnostics.plot_convergence(convergence, folder / "convergence.png", temperature)
    exchange = None
    if json.loads((folder / "run.json").read_text()).get("sampler") == "replica_exchange":
        stats = replica_exchange_statistics(folder)
        exchange = ExchangeStatistics([None if np.isnan(a) else float(a) for a in stats["acceptance"]],
                                      int(stats["round_trips"]))  # fmt: skip
    return LegAnalysis(
        result=result, neighbour_overlaps=estimate.neighbour_overlaps.tolist(), convergence=convergence,
        samples_per_state=n_all.tolist(), uncorrelated_per_state=kept.n_k.tolist(), equilibration=kept.states,
        ns_per_day_per_state=[None if np.isnan(v) else float(v) for v in sampling_speed(folder)],
        replica_exchange=exchange,
    )  # fmt: skip


def by_leg(legs: Mapping[str, LegAnalysis], field: str) -> dict[str, Any]:
    """``field`` of every leg, by the legs' names (a JSON summary's per-leg entries)."""
    return {name: getattr(leg, field) for name, leg in legs.items()}


def leg_flags(legs: Mapping[str, LegAnalysis]) -> list[str]:
    """The estimators' flags of all ``legs`` (named by their keys), then their failed
    convergence checks."""
    flags = [f"{name}: {f}" for name, leg in legs.items() for f in leg.result.flags]
    flags += [f"{name}: {leg.convergence['why']}" for name, leg in legs.items() if not leg.convergence["converged"]]
    return flags


def exchange_flags(legs: Mapping[str, LegAnalysis]) -> list[str]:
    """A flag for each neighbouring pair of replica-exchange states that swapped less than
    :data:`MIN_ACCEPTANCE` of the time (legs sampled in windows have none)."""
    flags = []
    for name, leg in legs.items():
        for k, a in enumerate(leg.replica_exchange.acceptance if leg.replica_exchange else []):
            if a is not None and a < MIN_ACCEPTANCE:
                flags.append(f"{name}: replica exchange between states {k} and {k + 1} accepted {a:.1%} of swaps "
                             f"(< {MIN_ACCEPTANCE:.0%}): add states between them")  # fmt: skip
    return flags


@dataclasses.dataclass(frozen=True)
class SamplingLengths:
    """Simulated ns of each leg and a flag for each leg stopped before the protocol's samples."""

    ns_per_leg: dict[str, float]
    flags: list[str]


def sampling_lengths(legs: Mapping[str, LegAnalysis], n_states: int, samples: int, steps_per_sample: int,
                     equilibration_steps: int, timestep_fs: float) -> SamplingLengths:  # fmt: skip
    """How long each of ``legs`` was simulated: its ``n_states`` states' equilibration plus the
    samples every state has, at ``timestep_fs``; legs with fewer than ``samples`` are flagged."""
    from ..units import NS_PER_FS

    ns, flags = {}, []
    for name, leg in legs.items():
        done = min(leg.samples_per_state)
        ns[name] = n_states * (done * steps_per_sample + equilibration_steps) * timestep_fs * NS_PER_FS
        if done < samples:
            flags.append(f"{name}: {done} of the protocol's {samples} samples per state (stopped early)")
    return SamplingLengths(ns, flags)
