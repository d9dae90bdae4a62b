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
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read, write

from .. import units
from ..files import write_json
from .frames import LOG_HEADER, MDResult, MDSettings, md_result, read_run_state, run_in_frames


def _state_path(trajectory: Path) -> Path:
    return trajectory.with_name(trajectory.name + ".state.json")


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
        t_ps = step * settings.timestep_fs * units.PS_PER_FS
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
