"""The frame loop that every MD engine shares: settings, checkpointed frames, the run summary.

An engine (:mod:`atomml.dynamics.ase`, :mod:`atomml.dynamics.openmm`) advances its integrator
and writes one frame every ``interval`` steps through :func:`run_in_frames`; after each frame it
replaces its resume record (:mod:`atomml.dynamics.resume`), so that running the same command
again resumes from the last frame. The log has one line per frame (:data:`LOG_HEADER`), the same
for every engine.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import units
from ..errors import AtomMLError
from . import npt

LOG_HEADER = "# step  time_ps  epot_eV  ekin_eV  etot_eV  temperature_K\n"
# with a committee potential, the members' spread as two more columns (ASE engine)
COMMITTEE_LOG_HEADER = LOG_HEADER.rstrip("\n") + "  energy_std_eV  max_forces_std_eV_per_A\n"
DEFAULT_TIMESTEP_FS = 1.0  # where neither the user nor the potential file names one
BLOW_UP_MARGIN_K = 2000.0  # see MDSettings.temperature_limit


class UnstableRunError(AtomMLError, RuntimeError):
    """An MD run blew up (temperature far above its target, non-finite energy or forces, or a
    committee that disagrees); the frames written before it are kept."""


def recommended_timestep(metadata: dict[str, Any]) -> float | None:
    """The time step (fs) that a potential file's ``metadata`` recommends, or None."""
    value = metadata.get("recommended_timestep_fs")
    return float(value) if value is not None else None


def _advice(settings: MDSettings) -> str:
    return (
        f"the time step ({settings.timestep_fs:g} fs) may be too long for this potential, or the structure is "
        "outside what it was trained on; try a shorter --timestep or check the structure"
    )


def failed_steps(settings: MDSettings, step: int, n: int, exc: Exception) -> UnstableRunError:
    """The error for a force evaluation that failed during the ``n`` steps after ``step``: the
    potential refuses the geometry the dynamics reached (atoms on top of each other, coordinates
    that are no longer finite), i.e. the run blew up between two checks."""
    return UnstableRunError(
        f"the run blew up between step {step} and step {step + n}: the potential refused the structure it "
        f"reached ({' '.join(str(exc).split())}); {_advice(settings)}"
    )


def check_frame(
    settings: MDSettings, step: int, temperature: float, epot: float, forces: Any, results: dict[str, Any] | None = None
) -> None:
    """Raise :class:`UnstableRunError` if the state at ``step`` shows a blown-up run: a
    non-finite energy or force, a temperature above ``settings.temperature_limit()``, or (where
    the calculator's ``results`` carry a committee's ``forces_std`` and the settings a limit) a
    force spread above ``settings.max_forces_std``."""
    advice = _advice(settings)
    if not (math.isfinite(epot) and math.isfinite(temperature) and np.isfinite(forces).all()):
        raise UnstableRunError(f"the run blew up at step {step}: the energy or forces are not finite; {advice}")
    limit = settings.temperature_limit()
    if temperature > limit:
        raise UnstableRunError(
            f"the run blew up at step {step}: the temperature reached {temperature:.0f} K, above the limit of "
            f"{limit:.0f} K for a {settings.temperature:g} K run; {advice} (MDSettings.max_temperature sets the limit)"
        )
    spread = (results or {}).get("forces_std")
    if spread is not None and settings.max_forces_std is not None and float(np.max(spread)) > settings.max_forces_std:
        raise UnstableRunError(
            f"the run left the potential's domain at step {step}: the committee's force spread reached "
            f"{float(np.max(spread)):.3g} eV/Å, above max_forces_std = {settings.max_forces_std:g} eV/Å; {advice}"
        )


@dataclasses.dataclass(frozen=True)
class MDSettings:
    """What an MD run does; every engine takes the same settings. Only ``steps`` may change
    when a run is resumed (to extend it)."""

    ensemble: str = "nvt"  # "nve" (velocity Verlet), "nvt" (Langevin) or "npt" (see atomml.dynamics.npt)
    temperature: float = 300.0  # K: initial velocities, and the Langevin bath
    timestep_fs: float = 1.0
    steps: int = 1000
    friction_per_fs: float = 0.01  # Langevin friction
    interval: int = 10  # steps between frames (and checkpoints)
    seed: int = 0
    # Stopping rules, not part of the trajectory (a resumed run may change them): a run stops
    # with UnstableRunError above this temperature (K; None: max(5 x temperature,
    # temperature + 2000 K)), or where a committee's force spread (``forces_std``, eV/Å) exceeds
    # max_forces_std (None: not checked).
    max_temperature: float | None = None
    max_forces_std: float | None = None
    # NPT only (None: the defaults in atomml.dynamics.npt): pressure (bar), barostat
    # ("isotropic" or "full"), ASE's Nosé-Hoover chain and MTK barostat times (fs), OpenMM's
    # steps between Monte Carlo cell moves
    pressure_bar: float | None = None
    barostat: str | None = None
    thermostat_time_fs: float | None = None
    barostat_time_fs: float | None = None
    barostat_interval: int | None = None

    def __post_init__(self) -> None:
        if self.ensemble not in ("nve", "nvt", "npt"):
            raise ValueError(f"ensemble must be 'nve', 'nvt' or 'npt', got {self.ensemble!r}")
        npt.check_settings(self)
        if self.timestep_fs <= 0 or self.steps < 0 or self.interval < 1 or self.temperature < 0:
            raise ValueError(f"invalid MD settings: {self}")
        for name in ("max_temperature", "max_forces_std"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or None for the default), got {value}")

    def temperature_limit(self) -> float:
        """The temperature (K) above which a run counts as blown up."""
        if self.max_temperature is not None:
            return self.max_temperature
        return max(5 * self.temperature, self.temperature + BLOW_UP_MARGIN_K)


@dataclasses.dataclass
class MDResult:
    """A run's summary: speed (ns/day), mean temperature (K), total-energy drift (eV/atom/ps;
    NVE only: with a thermostat the total energy is not conserved, so its drift is None), and
    the topology file written beside a trajectory that lacks one (DCD), else None."""

    steps_done: int
    resumed_from: int
    wall_seconds: float
    ns_per_day: float
    mean_temperature: float
    energy_drift_eV_per_atom_per_ps: float | None
    trajectory: Path
    log: Path
    topology: Path | None = None
    # NPT: means over the frames (atomml.dynamics.npt.cell_means); None otherwise
    mean_volume_A3: float | None = None
    mean_density_g_per_cm3: float | None = None
    mean_cell_lengths_A: list[float] | None = None
    mean_cell_angles_deg: list[float] | None = None

    def summary(self) -> dict[str, Any]:
        """The result as JSON-ready values; what a run does not have (None) is left out."""
        out = {key: value for key, value in dataclasses.asdict(self).items() if value is not None}
        for key in ("trajectory", "log", "topology"):
            if key in out:
                out[key] = str(out[key])
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
        step = last_frame = start_step
        try:
            while step < settings.steps:
                n = min(settings.interval - step % settings.interval, settings.steps - step)
                advance(n)
                step += n
                bar.update(n)
                if step % settings.interval == 0 or step == settings.steps:
                    record(step)
                    last_frame = step
                    bar.set_postfix(T=f"{temperatures[-1]:.0f} K", Etot=f"{energies[-1][1]:.3f} eV")
        except UnstableRunError as exc:
            raise UnstableRunError(f"{exc}. The trajectory and log keep the frames up to step {last_frame}.") from None
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
    topology: Path | None = None,
) -> MDResult:
    """Speed, mean temperature and, for NVE, total-energy drift (linear fit, per atom) of a run."""
    remaining = settings.steps - start_step
    simulated_ns = max(remaining, 0) * settings.timestep_fs * units.NS_PER_FS
    drift = 0.0 if settings.ensemble == "nve" else None
    if drift is not None and len(energies) >= 3:
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
        topology=topology,
    )
