"""Molecular dynamics with ASE integrators, checkpointed so a killed run resumes.

A run writes three files next to each other:
- the trajectory (extended XYZ, one frame every ``interval`` steps, with momenta),
- the log (one line per frame: step, time, energies, temperature),
- a small JSON state file, rewritten atomically after each frame, recording the settings, the
  step reached and the byte sizes of the trajectory and log at that point.
Running the same command again resumes: the two files are cut back to the last recorded frame
(dropping anything half-written when the run was killed) and MD continues from that frame's
positions and momenta. A Langevin run resumed this way is statistically, not bitwise, the
same trajectory (the random stream restarts).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read, write

from . import units
from .files import write_json

LOG_HEADER = "# step  time_ps  epot_eV  ekin_eV  etot_eV  temperature_K\n"


@dataclasses.dataclass(frozen=True)
class MDSettings:
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


def _state_path(trajectory: Path) -> Path:
    return trajectory.with_name(trajectory.name + ".state.json")


def read_run_state(path: Path, settings: MDSettings, trajectory: Path) -> dict[str, Any]:
    """The state record of an earlier run, refused if it ran with other settings (only the
    number of steps may change between runs: extending a run)."""
    state = json.loads(path.read_text())
    if {**state["settings"], "steps": settings.steps} != dataclasses.asdict(settings):
        raise ValueError(
            f"{trajectory} belongs to a run with other settings ({state['settings']}); "
            "use another output name, or start over (--overwrite)"
        )
    return state


def _integrator(atoms: Atoms, settings: MDSettings) -> Any:
    dt = settings.timestep_fs * units.FS
    if settings.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    from ase.md.langevin import Langevin

    # ASE >= 3.28: fixcm=False plus a FixCom constraint samples NVT correctly.
    from ase.constraints import FixCom

    if not any(isinstance(c, FixCom) for c in atoms.constraints):
        atoms.set_constraint([*atoms.constraints, FixCom()])
    return Langevin(
        atoms,
        timestep=dt,
        temperature_K=settings.temperature,
        friction=settings.friction_per_fs / units.FS,
        fixcm=False,
        rng=np.random.default_rng(settings.seed),
    )


def run_md(
    atoms: Atoms,
    calculator: Any,
    settings: MDSettings,
    trajectory: str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
    restart: bool = True,
    progress: bool = True,
    on_frame: Callable[[Atoms, int], None] | None = None,
) -> MDResult:
    """Run (or resume) MD of ``atoms`` with ``calculator``; see the module docstring."""
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

    trajectory = Path(trajectory)
    log_path = Path(log) if log is not None else trajectory.with_suffix(".log")
    state_path = _state_path(trajectory)
    settings_dict = dataclasses.asdict(settings)
    trajectory.parent.mkdir(parents=True, exist_ok=True)

    start_step = 0
    if restart and state_path.exists():
        state = read_run_state(state_path, settings, trajectory)
        with open(trajectory, "r+b") as f:
            f.truncate(state["trajectory_bytes"])
        with open(log_path, "r+b") as f:
            f.truncate(state["log_bytes"])
        last = read(trajectory, index=-1, format="extxyz")
        atoms = atoms.copy()
        atoms.set_positions(last.get_positions())
        atoms.set_cell(last.get_cell())
        atoms.set_momenta(last.get_momenta())
        start_step = int(state["step"])
    else:
        atoms = atoms.copy()
        for stale in (trajectory, log_path, state_path):
            stale.unlink(missing_ok=True)
        rng = np.random.default_rng(settings.seed)
        thermalize_momenta(atoms, temperature_K=settings.temperature, rng=rng)
        if len(atoms) > 1:  # one atom: removing its momentum would leave nothing to scale
            Stationary(atoms)
            if not atoms.pbc.any():
                ZeroRotation(atoms)
    atoms.calc = calculator

    temperatures: list[float] = []
    energies: list[tuple[float, float]] = []  # (time ps, total energy)

    def record(step: int) -> None:
        epot = atoms.get_potential_energy()
        ekin = atoms.get_kinetic_energy()
        temperature = float(atoms.get_temperature())
        t_ps = step * settings.timestep_fs / 1000.0
        temperatures.append(temperature)
        energies.append((t_ps, epot + ekin))
        with open(trajectory, "a") as f:
            snapshot = atoms.copy()
            snapshot.info["step"] = step
            write(f, snapshot, format="extxyz", columns=["symbols", "positions", "momenta"])
        with open(log_path, "a") as f:
            if f.tell() == 0:
                f.write(LOG_HEADER)
            f.write(f"{step} {t_ps:.6f} {epot:.8f} {ekin:.8f} {epot + ekin:.8f} {temperature:.3f}\n")
        write_json(
            state_path,
            {
                "settings": settings_dict,
                "step": step,
                "trajectory_bytes": trajectory.stat().st_size,
                "log_bytes": log_path.stat().st_size,
            },
        )
        if on_frame is not None:
            on_frame(atoms, step)

    if start_step == 0:
        record(0)
    dyn = _integrator(atoms, settings)
    wall = run_in_frames(dyn.run, record, settings, start_step, temperatures, energies, progress, "MD")
    return md_result(settings, start_step, wall, temperatures, energies, len(atoms), trajectory, log_path)


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
