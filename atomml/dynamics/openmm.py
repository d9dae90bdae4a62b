"""Molecular dynamics in OpenMM with an atomml potential, checkpointed so a killed run resumes.

The OpenMM counterpart of :func:`atomml.dynamics.ase.run_md`, with the same settings
(:class:`~atomml.dynamics.frames.MDSettings`), the same log format, the same lock and the same
resume rule: a run writes a DCD trajectory (one frame every ``interval`` steps), the log, and
after each frame its resume record (:mod:`atomml.dynamics.resume`: the run's fingerprint, the
step reached, the byte sizes of trajectory and log, and the OpenMM state as XML, whose 17
digits bring positions, velocities and box back bit for bit), replaced atomically as one file.
Running the same command again checks that the output belongs to this run, cuts trajectory
and log back to the last recorded frame (fixing the DCD header's frame count) and continues
from the saved state; a larger ``steps`` extends a finished run. A resumed NVE run equals the
uninterrupted one bit for bit on a deterministic platform (Reference, CPU); a resumed
Langevin run draws a fresh random stream (OpenMM's integrator state is not portable).

NVE uses OpenMM's ``VerletIntegrator``, NVT its ``LangevinMiddleIntegrator``, NPT the latter
with a Monte Carlo barostat (:mod:`atomml.dynamics.npt`; the box is in the saved state, the
barostat's random stream is fresh on resuming). The whole
structure is ML (``MLPotential("atomml").createSystem``); the centre-of-mass motion is removed.
Beside the DCD, ``<stem>.topology.pdb`` holds the atoms, elements, box and starting positions
that readers of the DCD need (``mdtraj.load("md.dcd", top="md.topology.pdb")``, VMD,
MDAnalysis). Each frame is checked before it is written: a blown-up run (non-finite energy or
forces, a temperature far above the target) stops with
:class:`~atomml.dynamics.frames.UnstableRunError`, keeping the frames before it.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path
from typing import Any

from ase import Atoms

from .. import units
from ..files import replacing
from ..locks import output_lock
from . import npt
from .frames import LOG_HEADER, MDResult, MDSettings, check_frame, failed_steps, md_result, run_in_frames
from .resume import (
    cut_back,
    fingerprint,
    potential_identity,
    read_run_state,
    state_path,
    write_run_state,
)


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


def topology_path(trajectory: Path) -> Path:
    """The PDB written beside a DCD trajectory (its atoms, elements and box, and the starting
    positions), for tools that need a topology to read the DCD (MDTraj, MDAnalysis, VMD). Not
    ``<stem>.pdb``, which could be the run's own input structure."""
    return trajectory.with_name(trajectory.stem + ".topology.pdb")


def _truncate_dcd(path: Path, size: int, frames: int) -> None:
    """Cut a DCD file to ``size`` bytes holding ``frames`` frames, and say so in its header."""
    cut_back(path, size, "trajectory")
    with open(path, "r+b") as f:
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
    small_system: bool | str = "auto",
) -> MDResult:
    """Run (or resume) OpenMM MD of ``atoms`` with an atomml potential (object, file or name).
    ``small_system``: the ML force's choice of :mod:`atomml.fast` (True, False or "auto").

    Raises as :func:`atomml.dynamics.ase.run_md` does: another run on ``trajectory``
    (:class:`~atomml.errors.OutputInUseError`), output of another run
    (:class:`~atomml.errors.ResumeMismatchError`), a damaged record or trajectory
    (:class:`~atomml.errors.CheckpointError`).
    """
    trajectory = Path(trajectory)
    if trajectory.suffix != ".dcd":
        raise ValueError(f"the OpenMM engine writes DCD trajectories: name the output *.dcd, not {trajectory.name}")
    log_path = Path(log) if log is not None else trajectory.with_suffix(".log")
    with output_lock(trajectory, "MD trajectory"):
        return _run(atoms, potential, settings, trajectory, log_path, restart, progress, precision, device, platform,
                    small_system)  # fmt: skip


def _potential_file(potential: Any, trajectory: Path) -> tuple[str, str]:
    """The potential as a file that OpenMM-ML loads, and its identity (the same hash whether it
    comes as an object or as a file)."""
    from ..potential_file import load_potential, save_potential

    if isinstance(potential, (str, os.PathLike)):
        return str(potential), potential_identity(load_potential(potential))
    return str(save_potential(potential, trajectory.with_name(trajectory.name + ".potential"))), potential_identity(potential)


def _context(
    atoms: Atoms, potential: str, settings: MDSettings, precision: str, device: str | None, platform: str | None,
    seed: int = 0, small_system: bool | str = "auto",
) -> tuple[Any, Any, Any]:
    """An OpenMM Context of ``atoms`` with the ML potential and the settings' integrator (and
    for NPT their barostat), whose random streams start from ``seed``, with its System and
    integrator."""
    import openmm
    from openmm import unit
    from openmmml import MLPotential

    if settings.ensemble == "npt":
        npt.check_structure(atoms)
    system = MLPotential("atomml", potential=potential).createSystem(
        topology(atoms), precision=precision, device=device, charge=float(atoms.info.get("charge", 0.0)),
        small_system=small_system,
    )
    if settings.ensemble == "npt":
        npt.add_openmm_barostat(system, settings, seed)
    dt = settings.timestep_fs * unit.femtosecond
    if settings.ensemble == "nve":
        integrator = openmm.VerletIntegrator(dt)
    else:
        integrator = openmm.LangevinMiddleIntegrator(
            settings.temperature * unit.kelvin, settings.friction_per_fs * units.FS_PER_PS / unit.picosecond, dt
        )
        integrator.setRandomNumberSeed(seed)  # before the Context exists: OpenMM reads it only then
    args = (system, integrator) + ((openmm.Platform.getPlatformByName(platform),) if platform else ())
    return openmm.Context(*args), system, integrator


def _run(
    atoms: Atoms,
    potential: Any,
    settings: MDSettings,
    trajectory: Path,
    log_path: Path,
    restart: bool,
    progress: bool,
    precision: str,
    device: str | None,
    platform: str | None,
    small_system: bool | str = "auto",
) -> MDResult:
    import openmm
    from openmm import app, unit

    record_path = state_path(trajectory)
    potential_path, potential_id = _potential_file(potential, trajectory)
    identity = fingerprint("openmm", atoms, potential_id, precision, settings)
    saved = read_run_state(record_path, identity, trajectory) if restart and record_path.exists() else None
    # the random streams (Langevin, barostat): fresh ones for a continuation
    seed = settings.seed + 1 + (int(saved["step"]) if saved is not None else 0)
    context, system, integrator = _context(atoms, potential_path, settings, precision, device, platform, seed,
                                           small_system)  # fmt: skip

    start_step, frames = 0, 0
    if saved is not None:
        _truncate_dcd(trajectory, saved["trajectory_bytes"], saved["frames"])
        cut_back(log_path, saved["log_bytes"], "log")
        context.setState(openmm.XmlSerializer.deserialize(saved["state"]["xml"]))
        start_step, frames = int(saved["step"]), int(saved["frames"])
    else:
        for stale in (trajectory, log_path, record_path):
            stale.unlink(missing_ok=True)
        context.setPositions(atoms.positions * 0.1)
        if atoms.pbc.all():
            context.setPeriodicBoxVectors(*(v * 0.1 for v in atoms.cell.array))
        context.setVelocitiesToTemperature(settings.temperature * unit.kelvin, settings.seed + 1)

    dof = 3 * len(atoms) - system.getNumConstraints() - (3 if len(atoms) > 1 else 0)
    temperatures: list[float] = []
    energies: list[tuple[float, float]] = []
    cells: list[Any] = []
    top = topology(atoms)
    pdb = topology_path(trajectory)
    with replacing(pdb) as tmp, open(tmp, "w") as f:  # the same file on every (re)start
        app.PDBFile.writeFile(top, atoms.positions * unit.angstrom, f)
    dt = settings.timestep_fs * unit.femtosecond
    with open(trajectory, "r+b" if start_step > 0 else "wb") as dcd_handle:
        dcd = app.DCDFile(dcd_handle, top, dt, firstStep=0, interval=settings.interval, append=start_step > 0)

        def record(step: int) -> None:
            nonlocal frames
            # forces come with the energy (one evaluation): checked, not stored (DCD holds positions)
            state = context.getState(getPositions=True, getVelocities=True, getEnergy=True, getForces=True)
            epot = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * units.KJ_PER_MOL_TO_EV
            ekin = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) * units.KJ_PER_MOL_TO_EV
            temperature = 2 * ekin / (max(dof, 1) * units.BOLTZMANN_EV_PER_K)
            forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
            check_frame(settings, step, temperature, epot, forces)  # before writing the frame
            t_ps = step * settings.timestep_fs * units.PS_PER_FS
            temperatures.append(temperature)
            energies.append((t_ps, epot + ekin))
            cells.append(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) * units.NM_TO_ANGSTROM)
            dcd.writeModel(state.getPositions(), periodicBoxVectors=state.getPeriodicBoxVectors())
            frames += 1
            with open(log_path, "a") as f:
                if f.tell() == 0:
                    f.write(LOG_HEADER)
                f.write(f"{step} {t_ps:.6f} {epot:.8f} {ekin:.8f} {epot + ekin:.8f} {temperature:.3f}\n")
            xml = openmm.XmlSerializer.serialize(state)
            write_run_state(record_path, identity, step, trajectory, log_path, {"xml": xml}, frames=frames)

        if start_step == 0:
            record(0)
        reached = start_step

        def advance(n: int) -> None:
            nonlocal reached
            try:
                integrator.step(n)
            except openmm.OpenMMException as exc:  # the ML force raised (PythonForce passes its message on)
                raise failed_steps(settings, reached, n, exc) from exc
            reached += n

        wall = run_in_frames(advance, record, settings, start_step, temperatures, energies, progress, "MD (OpenMM)")
    result = md_result(settings, start_step, wall, temperatures, energies, len(atoms), trajectory, log_path, pdb)
    return dataclasses.replace(result, **npt.cell_means(cells, atoms.get_masses())) if settings.ensemble == "npt" else result
