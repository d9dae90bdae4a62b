"""Molecular dynamics with ASE integrators, checkpointed so a killed run resumes.

A run writes three files next to each other:
- the trajectory (extended XYZ, one frame every ``interval`` steps, with momenta, energy and
  forces, and stress where the calculator computed it: ``ase.io.read(path, index=":")`` gives
  frames whose ``get_potential_energy()`` and ``get_forces()`` work),
- the log (one line per frame: step, time, energies, temperature),
- the resume record (:mod:`atomml.dynamics.resume`), replaced atomically after each frame: the
  run's fingerprint, the step reached, the byte sizes of trajectory and log at that point, and
  the exact state (positions, momenta and cell as float64 bytes; for Langevin, the state of its
  random stream; for NPT, the MTK integrator's chain and cell variables: :mod:`atomml.dynamics.npt`).
Running the same command again resumes: after checking that the output belongs to this very
run, trajectory and log are cut back to the last recorded frame (dropping anything half-written
when the run was killed) and MD continues from the recorded state, so the resumed run equals
the uninterrupted one bit for bit wherever the forces are a deterministic function of the
positions. (:class:`~atomml.interfaces.ase.AtomMLCalculator` with a Verlet skin reuses a
neighbour list whose order depends on where it was built, which can change the last bit of a
force: ``skin=0`` makes it deterministic.) The run holds the trajectory's lock
(:func:`atomml.locks.output_lock`) throughout: a second run on the same output is refused.

Every step is checked (from what the integrator computed anyway): a blown-up run (non-finite
energy or forces, a temperature far above the target, a committee's force spread above a set
limit) stops with :class:`~atomml.dynamics.frames.UnstableRunError`, keeping the frames before it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import write

from .. import units
from ..errors import InputError
from ..locks import output_lock
from . import npt
from .frames import COMMITTEE_LOG_HEADER, LOG_HEADER, MDResult, MDSettings, check_frame, failed_steps, md_result, run_in_frames
from .resume import (
    calculator_identity,
    cut_back,
    decode,
    encode,
    fingerprint,
    read_run_state,
    state_path,
    write_run_state,
)


def _integrator(atoms: Atoms, settings: MDSettings, rng: np.random.Generator) -> Any:
    if settings.ensemble == "npt":
        return npt.ase_integrator(atoms, settings)
    dt = settings.timestep_fs * units.FS
    if settings.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    # ASE >= 3.28: fixcm=False plus a FixCom constraint samples NVT correctly.
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin

    if not any(isinstance(c, FixCom) for c in atoms.constraints):
        atoms.set_constraint([*atoms.constraints, FixCom()])
    return Langevin(
        atoms,
        timestep=dt,
        temperature_K=settings.temperature,
        friction=settings.friction_per_fs / units.FS,
        fixcm=False,
        rng=rng,
    )


def _thermalize(atoms: Atoms, settings: MDSettings) -> None:
    """Initial momenta at the settings' temperature, without drift (or rotation, if isolated)."""
    from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta

    thermalize_momenta(atoms, temperature_K=settings.temperature, rng=np.random.default_rng(settings.seed))
    if len(atoms) > 1:  # one atom: removing its momentum would leave nothing to scale
        Stationary(atoms)
        if not atoms.pbc.any():
            ZeroRotation(atoms)


def _snapshot(atoms: Atoms, step: int, epot: float, forces: np.ndarray) -> Atoms:
    """A frame for the trajectory: ``atoms`` with its energy and forces (and its stress where
    it has one and the calculator computed it) attached, so that readers get them back."""
    from ase.calculators.singlepoint import SinglePointCalculator

    snapshot = atoms.copy()
    snapshot.info["step"] = step
    results = {"energy": epot, "forces": forces}
    if "stress" in atoms.calc.results:
        results["stress"] = atoms.calc.results["stress"]
    snapshot.calc = SinglePointCalculator(snapshot, **results)
    if "energy_std" in atoms.calc.results:  # a committee's spread
        snapshot.info["energy_std"] = float(atoms.calc.results["energy_std"])
        snapshot.info["max_forces_std"] = float(np.max(atoms.calc.results["forces_std"]))
    return snapshot


def _restore(atoms: Atoms, record: dict[str, Any], rng: np.random.Generator) -> None:
    """Set ``atoms`` (and the Langevin random stream) to the recorded state, bit for bit."""
    state = record["state"]
    atoms.set_cell(decode(state["cell"]))
    atoms.set_positions(decode(state["positions"]), apply_constraint=False)
    atoms.set_momenta(decode(state["momenta"]), apply_constraint=False)
    if state.get("rng") is not None:
        rng.bit_generator.state = state["rng"]


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
    """Run (or resume) MD of ``atoms`` with ``calculator``; see the module docstring.

    Raises :class:`~atomml.errors.OutputInUseError` if another run writes ``trajectory``,
    :class:`~atomml.errors.ResumeMismatchError` if its output belongs to another run (other
    potential, structure, charge, precision or settings), :class:`~atomml.errors.CheckpointError`
    if the resume record or the files it describes are damaged.
    """
    trajectory = Path(trajectory)
    with output_lock(trajectory, "MD trajectory"):
        return _run(atoms, calculator, settings, trajectory, Path(log) if log is not None else trajectory.with_suffix(".log"), restart, progress, on_frame)


def _run(
    atoms: Atoms,
    calculator: Any,
    settings: MDSettings,
    trajectory: Path,
    log_path: Path,
    restart: bool,
    progress: bool,
    on_frame: Callable[[Atoms, int], None] | None,
) -> MDResult:
    record_path = state_path(trajectory)
    identity = fingerprint("ase", atoms, *calculator_identity(calculator), settings)
    rng = np.random.default_rng(settings.seed)  # the Langevin stream, recorded with each frame
    atoms = atoms.copy()
    if settings.ensemble == "npt":
        npt.check_ase(atoms, settings)

    start_step, record_state = 0, {}
    if restart and record_path.exists():
        record = read_run_state(record_path, identity, trajectory)
        cut_back(trajectory, record["trajectory_bytes"], "trajectory")
        cut_back(log_path, record["log_bytes"], "log")
        _restore(atoms, record, rng)
        record_state = record["state"]
        start_step = int(record["step"])
    else:
        for stale in (trajectory, log_path, record_path):
            stale.unlink(missing_ok=True)
        _thermalize(atoms, settings)
    atoms.calc = calculator

    temperatures: list[float] = []
    energies: list[tuple[float, float]] = []  # (time ps, total energy)
    cells: list[np.ndarray] = []

    def record(step: int) -> None:
        epot = atoms.get_potential_energy()
        forces = atoms.get_forces(apply_constraint=False)  # the potential's, not FixCom's
        ekin = atoms.get_kinetic_energy()
        temperature = float(atoms.get_temperature())
        check_frame(settings, step, temperature, epot, forces, calculator.results)  # before writing it
        t_ps = step * settings.timestep_fs * units.PS_PER_FS
        temperatures.append(temperature)
        energies.append((t_ps, epot + ekin))
        cells.append(atoms.cell.array.copy())
        with open(trajectory, "a") as f:
            write(f, _snapshot(atoms, step, epot, forces), format="extxyz", columns=["symbols", "positions", "momenta", "forces"])
        spread = calculator.results.get("energy_std")
        with open(log_path, "a") as f:
            if f.tell() == 0:
                f.write(LOG_HEADER if spread is None else COMMITTEE_LOG_HEADER)
            line = f"{step} {t_ps:.6f} {epot:.8f} {ekin:.8f} {epot + ekin:.8f} {temperature:.3f}"
            if spread is not None:
                line += f" {spread:.8f} {float(np.max(calculator.results['forces_std'])):.8f}"
            f.write(line + "\n")
        state = {
            "positions": encode(atoms.positions),
            "momenta": encode(atoms.get_momenta()),
            "cell": encode(atoms.cell.array),
            "rng": rng.bit_generator.state if settings.ensemble == "nvt" else None,
        }
        if settings.ensemble == "npt" and step > start_step:  # (before the first step: a fresh integrator's)
            state["npt"] = npt.ase_state(dyn, settings)
        write_run_state(record_path, identity, step, trajectory, log_path, state)
        if on_frame is not None:
            on_frame(atoms, step)

    if start_step == 0:
        record(0)
    dyn = _integrator(atoms, settings, rng)
    if record_state.get("npt") is not None:  # resumed NPT: the integrator's own variables too
        npt.restore_ase_state(dyn, settings, record_state["npt"])

    def watch() -> None:  # every step, from what the integrator has just computed: nearly free
        results = calculator.results
        energy = results.get("energy", 0.0)
        forces = results.get("forces", np.zeros((0, 3)))
        check_frame(settings, start_step + dyn.nsteps, float(atoms.get_temperature()), float(energy), forces, results)

    def advance(n: int) -> None:
        step = start_step + dyn.nsteps
        try:
            dyn.run(n)
        except InputError as exc:  # the structure passed at step 0: the dynamics made it unusable
            raise failed_steps(settings, step, n, exc) from exc

    dyn.attach(watch, interval=1)
    wall = run_in_frames(advance, record, settings, start_step, temperatures, energies, progress, "MD")
    result = md_result(settings, start_step, wall, temperatures, energies, len(atoms), trajectory, log_path)
    return dataclasses.replace(result, **npt.cell_means(cells, atoms.get_masses())) if settings.ensemble == "npt" else result
