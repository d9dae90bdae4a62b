"""The frame loop that every MD engine shares: settings, checkpointed frames, the run summary.

An engine (:mod:`atomml.dynamics.ase`, :mod:`atomml.dynamics.openmm`) advances its integrator
and writes one frame every ``interval`` steps through :func:`run_in_frames`; after each frame it
replaces its resume record (:mod:`atomml.dynamics.resume`), so that running the same command
again resumes from the last frame. The log has one line per frame (:data:`LOG_HEADER`), the same
for every engine.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import units

LOG_HEADER = "# step  time_ps  epot_eV  ekin_eV  etot_eV  temperature_K\n"


@dataclasses.dataclass(frozen=True)
class MDSettings:
    """What an MD run does; every engine takes the same settings. Only ``steps`` may change
    when a run is resumed (to extend it)."""

    ensemble: str = "nvt"  # "nve" (velocity Verlet) or "nvt" (Langevin)
    temperature: float = 300.0  # K: initial velocities, and the Langevin bath
    timestep_fs: float = 1.0
    steps: int = 1000
    friction_per_fs: float = 0.01  # Langevin friction
    interval: int = 10  # steps between frames (and checkpoints)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ensemble not in ("nve", "nvt"):
            raise ValueError(f"ensemble must be 'nve' or 'nvt', got {self.ensemble!r}")
        if self.timestep_fs <= 0 or self.steps < 0 or self.interval < 1 or self.temperature < 0:
            raise ValueError(f"invalid MD settings: {self}")


@dataclasses.dataclass
class MDResult:
    """A run's summary: speed (ns/day), mean temperature (K), total-energy drift (eV/atom/ps)."""

    steps_done: int
    resumed_from: int
    wall_seconds: float
    ns_per_day: float
    mean_temperature: float
    energy_drift_eV_per_atom_per_ps: float
    trajectory: Path
    log: Path

    def summary(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["trajectory"], out["log"] = str(self.trajectory), str(self.log)
        return out


def run_in_frames(
    advance: Callable[[int], Any],
    record: Callable[[int], None],
    settings: MDSettings,
    start_step: int,
    temperatures: list[float],
    energies: list[tuple[float, float]],
    progress: bool,
    desc: str,
) -> float:
    """Advance from ``start_step`` to ``settings.steps``, calling ``record`` at every frame
    (every ``interval`` steps and at the end), with a progress bar; returns the wall time."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    with tqdm(total=settings.steps, initial=start_step, unit="step", disable=not progress, desc=desc) as bar:
        step = start_step
        while step < settings.steps:
            n = min(settings.interval - step % settings.interval, settings.steps - step)
            advance(n)
            step += n
            bar.update(n)
            if step % settings.interval == 0 or step == settings.steps:
                record(step)
                bar.set_postfix(T=f"{temperatures[-1]:.0f} K", Etot=f"{energies[-1][1]:.3f} eV")
    return time.perf_counter() - t0


def md_result(
    settings: MDSettings,
    start_step: int,
    wall: float,
    temperatures: list[float],
    energies: list[tuple[float, float]],
    n_atoms: int,
    trajectory: Path,
    log: Path,
) -> MDResult:
    """Speed, mean temperature and total-energy drift (linear fit, per atom) of a run."""
    remaining = settings.steps - start_step
    simulated_ns = max(remaining, 0) * settings.timestep_fs * units.NS_PER_FS
    drift = 0.0
    if len(energies) >= 3:
        t, e = np.array(energies).T
        drift = float(np.polyfit(t, e, 1)[0]) / max(n_atoms, 1)
    return MDResult(
        steps_done=max(start_step, settings.steps),
        resumed_from=start_step,
        wall_seconds=wall,
        ns_per_day=simulated_ns / wall * units.SECONDS_PER_DAY if wall > 0 and remaining > 0 else 0.0,
        mean_temperature=float(np.mean(temperatures)) if temperatures else float("nan"),
        energy_drift_eV_per_atom_per_ps=drift,
        trajectory=trajectory,
        log=log,
    )
