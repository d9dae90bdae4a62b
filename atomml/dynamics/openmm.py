"""Molecular dynamics in OpenMM with an atomml potential, checkpointed so a killed run resumes.

The OpenMM counterpart of :func:`atomml.dynamics.ase.run_md`, with the same settings
(:class:`~atomml.dynamics.frames.MDSettings`), the same log format and the same resume rule: a run
writes a DCD trajectory (one frame every ``interval`` steps), the log, and after each frame an
OpenMM state (positions, velocities, box; XML) plus a small JSON record of the step reached
and the byte sizes of trajectory and log, both replaced atomically. Running the same command
again cuts trajectory and log back to the last recorded frame (fixing the DCD header's frame
count) and continues from the saved state; a larger ``steps`` extends a finished run.

NVE uses OpenMM's ``VerletIntegrator``, NVT its ``LangevinMiddleIntegrator``. The whole
structure is ML (``MLPotential("atomml").createSystem``); the centre-of-mass motion is removed.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path
from typing import Any

from ase import Atoms

from .. import units
from ..files import write_json, write_text
from .frames import LOG_HEADER, MDResult, MDSettings, md_result, read_run_state, run_in_frames


def topology(atoms: Atoms) -> Any:
    """An OpenMM Topology for ASE ``atoms``: one residue per atom, the box if periodic."""
    from openmm import app, unit

    if atoms.pbc.any() and not atoms.pbc.all():
        raise ValueError(
            f"OpenMM needs a fully periodic or a non-periodic system, this one has pbc={atoms.pbc.tolist()}; "
            "use the ASE engine (--engine ase) for slabs and wires"
        )
    top = app.Topology()
    chain = top.addChain()
    for z in atoms.numbers:
        element = app.Element.getByAtomicNumber(int(z))
        top.addAtom(element.symbol, element, top.addResidue("X", chain))
    if atoms.pbc.all():
        top.setPeriodicBoxVectors(atoms.cell.array * 0.1 * unit.nanometer)
    return top


def _truncate_dcd(path: Path, size: int, frames: int) -> None:
    """Cut a DCD file to ``size`` bytes holding ``frames`` frames, and say so in its header."""
    with open(path, "r+b") as f:
        f.truncate(size)
        f.seek(12)
        first, interval = struct.unpack("<2i", f.read(8))
        f.seek(8)
        f.write(struct.pack("<i", frames))
        f.seek(20)
        f.write(struct.pack("<i", first + max(frames - 1, 0) * interval))


def run_openmm_md(
    atoms: Atoms,
    potential: Any,
    settings: MDSettings,
    trajectory: str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
    restart: bool = True,
    progress: bool = True,
    precision: str = "single",
    device: str | None = None,
    platform: str | None = None,
) -> MDResult:
    """Run (or resume) OpenMM MD of ``atoms`` with an atomml potential (object, file or name)."""
    import openmm
    from openmm import app, unit
    from openmmml import MLPotential

    trajectory = Path(trajectory)
    if trajectory.suffix != ".dcd":
        raise ValueError(f"the OpenMM engine writes DCD trajectories: name the output *.dcd, not {trajectory.name}")
    log_path = Path(log) if log is not None else trajectory.with_suffix(".log")
    meta_path = trajectory.with_name(trajectory.name + ".state.json")
    state_xml = trajectory.with_name(trajectory.name + ".state.xml")
    settings_dict = dataclasses.asdict(settings)
    trajectory.parent.mkdir(parents=True, exist_ok=True)

    if not isinstance(potential, (str, os.PathLike)):
        from ..potential_file import save_potential

        potential = save_potential(potential, trajectory.with_name(trajectory.name + ".potential"))
    top = topology(atoms)
    system = MLPotential("atomml", potential=str(potential)).createSystem(
        top, precision=precision, device=device, charge=float(atoms.info.get("charge", 0.0))
    )
    dt = settings.timestep_fs * unit.femtosecond
    if settings.ensemble == "nve":
        integrator = openmm.VerletIntegrator(dt)
    else:
        integrator = openmm.LangevinMiddleIntegrator(
            settings.temperature * unit.kelvin, settings.friction_per_fs * units.FS_PER_PS / unit.picosecond, dt
        )
    args = (system, integrator) + ((openmm.Platform.getPlatformByName(platform),) if platform else ())
    context = openmm.Context(*args)

    start_step, frames = 0, 0
    if restart and meta_path.exists():
        meta = read_run_state(meta_path, settings, trajectory)
        _truncate_dcd(trajectory, meta["trajectory_bytes"], meta["frames"])
        with open(log_path, "r+b") as f:
            f.truncate(meta["log_bytes"])
        context.setState(openmm.XmlSerializer.deserialize(state_xml.read_text()))
        start_step, frames = int(meta["step"]), int(meta["frames"])
        if settings.ensemble == "nvt":  # a fresh random stream for the continuation
            integrator.setRandomNumberSeed(settings.seed + start_step + 1)
    else:
        for stale in (trajectory, log_path, meta_path, state_xml):
            stale.unlink(missing_ok=True)
        context.setPositions(atoms.positions * 0.1)
        if atoms.pbc.all():
            context.setPeriodicBoxVectors(*(v * 0.1 for v in atoms.cell.array))
        context.setVelocitiesToTemperature(settings.temperature * unit.kelvin, settings.seed + 1)
        if settings.ensemble == "nvt":
            integrator.setRandomNumberSeed(settings.seed + 1)

    dof = 3 * len(atoms) - system.getNumConstraints() - (3 if len(atoms) > 1 else 0)
    temperatures: list[float] = []
    energies: list[tuple[float, float]] = []
    dcd_handle = open(trajectory, "r+b" if start_step > 0 else "wb")
    dcd = app.DCDFile(dcd_handle, top, dt, firstStep=0, interval=settings.interval, append=start_step > 0)

    def record(step: int) -> None:
        nonlocal frames
        state = context.getState(getPositions=True, getVelocities=True, getEnergy=True)
        epot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * units.KJ_PER_MOL_TO_EV
        ekin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) * units.KJ_PER_MOL_TO_EV
        temperature = 2 * ekin / (max(dof, 1) * units.BOLTZMANN_EV_PER_K)
        t_ps = step * settings.timestep_fs * units.PS_PER_FS
        temperatures.append(temperature)
        energies.append((t_ps, epot + ekin))
        dcd.writeModel(state.getPositions(), periodicBoxVectors=state.getPeriodicBoxVectors())
        frames += 1
        with open(log_path, "a") as f:
            if f.tell() == 0:
                f.write(LOG_HEADER)
            f.write(f"{step} {t_ps:.6f} {epot:.8f} {ekin:.8f} {epot + ekin:.8f} {temperature:.3f}\n")
        write_text(state_xml, openmm.XmlSerializer.serialize(state))
        write_json(meta_path, {"settings": settings_dict, "step": step, "frames": frames,
                                       "trajectory_bytes": trajectory.stat().st_size,
                                       "log_bytes": log_path.stat().st_size})  # fmt: skip

    try:
        if start_step == 0:
            record(0)
        wall = run_in_frames(integrator.step, record, settings, start_step, temperatures, energies, progress, "MD (OpenMM)")
    finally:
        dcd_handle.close()
    return md_result(settings, start_step, wall, temperatures, energies, len(atoms), trajectory, log_path)
