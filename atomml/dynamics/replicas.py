"""K independent replicas of one molecule, all K evaluated in one batched call per step.

Sampling often wants many short trajectories of one molecule rather than one long one. A small
molecule leaves the hardware idle, so K replicas batched into one evaluation
(:func:`atomml.fast.replica_evaluator`) cost little more than one: this engine integrates all of
them together, on (K, N, 3) NumPy arrays, with one evaluator call per step.

Integrators (ASE units: Å, amu, eV; momenta in amu Å per ASE time unit):

- NVT: Langevin BAOAB (Leimkuhler & Matthews, Appl. Math. Res. Express 2013; OpenMM's
  ``LangevinMiddleIntegrator``): half kick, half drift, the exact Ornstein-Uhlenbeck step of the
  momenta (friction ``settings.friction_per_fs``), half drift, forces, half kick. Its
  configurational averages are accurate to O(dt²) at any friction. Each replica's
  centre-of-mass momentum is projected out after the noise, as the ASE engine's ``FixCom`` does,
  so that a replica does not diffuse away; the thermostat then acts on 3N - 3 degrees of freedom.
- NVE: velocity Verlet.

Temperatures count 3N - 3 degrees of freedom (3 for one atom): every replica starts without
drift (and, in vacuum, without rotation, as the ASE engine's initial momenta), NVE conserves
the zero drift and the NVT noise is kept free of it.

Replicas differ by their random streams only: replica k draws from NumPy's default generator
seeded with ``SeedSequence(settings.seed, spawn_key=(first_replica + k,))``, first its initial
momenta (Maxwell-Boltzmann at ``settings.temperature``, drift and rotation removed as the ASE
engine does), then the noise of each step. The stream does not depend on K, so replica k of a
K-replica run is the one-replica run with ``first_replica=k`` (to float round-off: the batch
changes the order of sums in the neighbour list), and runs with disjoint ``first_replica``
ranges are independent samples that can go to separate jobs.

Output, for ``trajectory`` ``md.extxyz``:

- ``md.r0.extxyz``, ``md.r1.extxyz``, ... (the global replica index, ``first_replica + k``):
  one trajectory per replica, with frames as the ASE engine writes them (positions, momenta,
  energy and forces; ``info`` carries ``step`` and ``replica``), so ``ase.io.read(path, ":")``
  gives frames whose ``get_potential_energy()`` and ``get_forces()`` work;
- ``md.log`` (or ``log``): one log for all replicas, one line per frame per replica, with the
  columns of :data:`~atomml.dynamics.frames.LOG_HEADER` and the replica index as a last column
  (``np.loadtxt`` reads it whole; a replica's lines are those with that last column);
- ``md.extxyz.state.json``: the resume record (:mod:`atomml.dynamics.resume`), replaced
  atomically after each frame: the run's fingerprint (engine ``replicas``, with K and
  ``first_replica`` among its settings), the positions and momenta of every replica as float64
  bytes, every replica's random stream and the byte sizes of every file at that frame. Running
  again resumes exactly as the ASE engine does: files cut back to the last frame, the state
  restored bit for bit, so a resumed run equals the uninterrupted one wherever the forces are a
  deterministic function of the positions (an evaluator with ``skin=0``; with a Verlet skin the
  neighbour list's order, and so a force's last bit, depends on where the list was built). The
  evaluation path (compiled small-system or general) is not part of the fingerprint: either
  resumes the other's run, the same to float round-off;
- ``md.extxyz.lock`` while the run writes (:func:`atomml.locks.output_lock`).

Every step is checked as in the ASE engine (:func:`~atomml.dynamics.frames.check_frame`, per
replica): a replica that blows up stops the run with
:class:`~atomml.dynamics.frames.UnstableRunError` naming it, keeping the frames before it.
Periodic systems need a fixed cell (the evaluator's); there is no barostat (NPT: the ASE engine,
one replica).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import write

from .. import units
from ..errors import InputError
from ..locks import output_lock
from ..potential import Potential
from .frames import (
    LOG_HEADER,
    MDResult,
    MDSettings,
    UnstableRunError,
    check_frame,
    failed_steps,
    md_result,
    run_in_frames,
)
from .resume import (
    calculator_identity,
    cut_back,
    decode,
    encode,
    fingerprint,
    potential_identity,
    read_run_state,
    state_path,
    write_run_state,
)

ENGINE = "replicas"
REPLICA_LOG_HEADER = LOG_HEADER.rstrip("\n") + "  replica\n"
TRAJECTORY_COLUMNS = ["symbols", "positions", "momenta", "forces"]


@dataclasses.dataclass
class ReplicaResult(MDResult):
    """:class:`~atomml.dynamics.frames.MDResult` of a replica run: ``trajectory`` is the first
    replica's file, ``trajectories`` all of them; ``ns_per_day`` is per replica and
    ``aggregate_ns_per_day`` for all K together; ``mean_temperature`` is over every replica and
    frame, ``mean_temperatures`` per replica; the NVE drift is the replicas' mean (eV/atom/ps)."""

    replicas: int = 1
    first_replica: int = 0
    trajectories: list[Path] = dataclasses.field(default_factory=list)
    aggregate_ns_per_day: float = 0.0
    mean_temperatures: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["trajectories"] = [str(path) for path in self.trajectories]
        return out


def replica_trajectories(trajectory: str | os.PathLike[str], replicas: int, first_replica: int = 0) -> list[Path]:
    """The trajectory files of replicas ``first_replica`` ... : ``md.extxyz`` -> ``md.r0.extxyz``, ..."""
    trajectory = Path(trajectory)
    return [trajectory.with_name(f"{trajectory.stem}.r{first_replica + k}{trajectory.suffix}") for k in range(replicas)]


def replica_rng(seed: int, replica: int) -> np.random.Generator:
    """Replica ``replica``'s random stream: the same whatever the number of replicas run with it."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(replica,)))


def evaluator_identity(evaluator: Any) -> tuple[str, str]:
    """(potential hash, precision) of an evaluator: an atomml one (``.potential``) by its
    potential and dtype, any other by its class, as :func:`~atomml.dynamics.resume.calculator_identity`."""
    potential = getattr(evaluator, "potential", None)
    if isinstance(potential, Potential):
        return potential_identity(potential), str(potential.dtype).replace("torch.", "")
    return calculator_identity(evaluator)


def _check_inputs(atoms: Atoms, evaluator: Any, settings: MDSettings, replicas: int, first_replica: int) -> None:
    """Refuse what this engine cannot run, and an evaluator built for other atoms, before any output."""
    if settings.ensemble == "npt":
        raise InputError(
            "the replica engine runs NVE and NVT only (no barostat): run NPT with one replica (atomml md without "
            "--replicas, atomml.dynamics.run_md)"
        )
    if atoms.constraints:
        raise InputError(
            f"the structure carries constraints ({', '.join(type(c).__name__ for c in atoms.constraints)}), which the "
            "replica engine does not apply: remove them, or run it with one replica (atomml md without --replicas)"
        )
    if replicas < 1 or first_replica < 0:
        raise InputError(f"replicas must be at least 1 and first_replica at least 0, got {replicas} and {first_replica}")
    said = {"replicas": getattr(evaluator, "replicas", replicas), "atoms": getattr(evaluator, "n_atoms", len(atoms))}
    if said != {"replicas": replicas, "atoms": len(atoms)}:
        raise InputError(
            f"the evaluator is built for {said['replicas']} replicas of {said['atoms']} atoms, the run has {replicas} of "
            f"{len(atoms)}: build it with replica_evaluator(potential, atoms.numbers, replicas={replicas}, ...)"
        )
    numbers = getattr(evaluator, "numbers", None)
    if numbers is not None and not np.array_equal(numbers, atoms.numbers):
        raise InputError("the evaluator is built for other elements (atomic numbers) than the structure's")
    if atoms.pbc.any():
        cell = getattr(evaluator, "cell", None)
        pbc = getattr(evaluator, "pbc", None)
        if cell is None or pbc is None or not (np.array_equal(pbc, atoms.pbc) and np.allclose(cell, atoms.cell.array)):
            raise InputError(
                "the structure is periodic but the evaluator has another cell or periodicity: build it with "
                "cell=atoms.cell, pbc=atoms.pbc (the replica engine keeps the cell fixed)"
            )


def _initial_momenta(atoms: Atoms, settings: MDSettings, rng: np.random.Generator) -> np.ndarray:
    """Maxwell-Boltzmann momenta at the settings' temperature, drawn from ``rng``, without drift
    (or rotation, if isolated): the ASE engine's initial momenta (ASE's draw, one normal number
    per component), from this replica's stream and with :mod:`atomml.units`' Boltzmann constant."""
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    atoms = atoms.copy()
    kt = units.BOLTZMANN_EV_PER_K * settings.temperature
    atoms.set_momenta(rng.standard_normal((len(atoms), 3)) * np.sqrt(atoms.get_masses() * kt)[:, None])
    if len(atoms) > 1:  # one atom: removing its momentum would leave nothing to scale
        Stationary(atoms)
        if not atoms.pbc.any():
            ZeroRotation(atoms)
    return atoms.get_momenta()


def run_replicas(
    atoms: Atoms,
    evaluator: Any,
    settings: MDSettings,
    trajectory: str | os.PathLike[str],
    log: str | os.PathLike[str] | None = None,
    restart: bool = True,
    progress: bool = True,
    replicas: int = 1,
    first_replica: int = 0,
) -> ReplicaResult:
    """Run (or resume) MD of ``replicas`` independent copies of ``atoms``; see the module docstring.

    Args:
        atoms: the molecule (or a system in a fixed cell) every replica starts from.
        evaluator: ``evaluator(positions (K, N, 3) Å) -> (energies (K,) eV, forces (K, N, 3) eV/Å)``,
            e.g. :func:`atomml.fast.replica_evaluator` built with ``replicas=K``.
        settings: NVE or NVT settings; ``seed`` seeds every replica's stream.
        trajectory: the base name (``md.extxyz``): it names the replicas' files, the resume
            record and the lock; ``log`` defaults to it with ``.log``.
        restart: resume an earlier run on this output (False: start over).
        first_replica: the global index of the first replica (its stream and file name).

    Raises :class:`~atomml.errors.OutputInUseError`, :class:`~atomml.errors.ResumeMismatchError`
    and :class:`~atomml.errors.CheckpointError` as :func:`~atomml.dynamics.run_md` does,
    :class:`~atomml.dynamics.frames.UnstableRunError` when a replica blows up.
    """
    _check_inputs(atoms, evaluator, settings, replicas, first_replica)
    trajectory = Path(trajectory)
    log_path = Path(log) if log is not None else trajectory.with_suffix(".log")
    with output_lock(trajectory, "MD trajectory"):
        return _Run(atoms, evaluator, settings, trajectory, log_path, replicas, first_replica).run(restart, progress)


class _Run:
    """One run: positions and momenta of every replica, their streams, the last forces, the files."""

    def __init__(self, atoms: Atoms, evaluator: Any, settings: MDSettings, trajectory: Path, log_path: Path,
                 replicas: int, first_replica: int):  # fmt: skip
        self.atoms, self.evaluator, self.settings = atoms.copy(), evaluator, settings
        self.k, self.n, self.first = replicas, len(atoms), first_replica
        self.trajectory, self.log_path, self.record_path = trajectory, log_path, state_path(trajectory)
        self.paths = replica_trajectories(trajectory, replicas, first_replica)
        self.identity = fingerprint(ENGINE, atoms, *evaluator_identity(evaluator), settings)
        self.identity["settings"].update(replicas=replicas, first_replica=first_replica)
        if hasattr(evaluator, "charge"):  # the charge the evaluator computes with, not the structure's note of it
            self.identity["charge"] = repr(float(evaluator.charge))
        self.rngs = [replica_rng(settings.seed, first_replica + k) for k in range(replicas)]
        masses = atoms.get_masses()
        self.masses = masses[None, :, None]  # (1, N, 1): broadcast over replicas and axes
        self.total_mass = float(masses.sum())
        self.dof = 3 * self.n - 3 if self.n > 1 else 3
        self.positions = np.repeat(atoms.positions[None], replicas, axis=0)
        self.momenta = np.zeros_like(self.positions)
        self.energies = np.zeros(replicas)
        self.forces = np.zeros_like(self.positions)
        self.step = 0
        self.temperatures: list[float] = []  # per frame: the replicas' mean (K)
        self.totals: list[tuple[float, float]] = []  # per frame: (time ps, the replicas' mean total energy eV)
        self.temperature_sums = np.zeros(replicas)

    def run(self, restart: bool, progress: bool) -> ReplicaResult:
        start_step = self._start(restart)
        if start_step == 0:
            self._record(0)
        wall = run_in_frames(self._advance, self._record, self.settings, start_step, self.temperatures, self.totals,
                             progress, f"MD x{self.k}")  # fmt: skip
        result = md_result(self.settings, start_step, wall, self.temperatures, self.totals, self.n, self.paths[0],
                           self.log_path)  # fmt: skip
        frames = len(self.temperatures)
        return ReplicaResult(
            **{field.name: getattr(result, field.name) for field in dataclasses.fields(MDResult)},
            replicas=self.k,
            first_replica=self.first,
            trajectories=self.paths,
            aggregate_ns_per_day=result.ns_per_day * self.k,
            mean_temperatures=[float(t) for t in self.temperature_sums / frames] if frames else [],
        )

    # -- start or resume -------------------------------------------------------------------

    def _start(self, restart: bool) -> int:
        """Restore the recorded state (files cut back to it), or start afresh; returns the step."""
        if restart and self.record_path.exists():
            record = read_run_state(self.record_path, self.identity, self.trajectory)
            for path, size in zip(self.paths, record["replica_trajectory_bytes"], strict=True):
                cut_back(path, size, "trajectory")
            cut_back(self.log_path, record["log_bytes"], "log")
            state = record["state"]
            self.positions, self.momenta = decode(state["positions"]), decode(state["momenta"])
            for rng, saved in zip(self.rngs, state["rng"] or [None] * self.k, strict=True):
                if saved is not None:
                    rng.bit_generator.state = saved
            self.step = int(record["step"])
        else:
            stale = [*self.paths, self.log_path, self.record_path]
            index = self.first + self.k
            while (extra := replica_trajectories(self.trajectory, 1, index)[0]).exists():
                stale.append(extra)  # a larger earlier run's replicas: readers that glob must not mix them in
                index += 1
            for path in stale:
                path.unlink(missing_ok=True)
            self.momenta = np.stack([_initial_momenta(self.atoms, self.settings, rng) for rng in self.rngs])
        # the forces at the start (a structure the potential refuses is the input's fault here)
        self.energies, self.forces = self._evaluate()
        return self.step

    # -- dynamics --------------------------------------------------------------------------

    def _evaluate(self) -> tuple[np.ndarray, np.ndarray]:
        energies, forces = self.evaluator(self.positions)
        return (np.asarray(energies, dtype=np.float64).reshape(self.k),
                np.asarray(forces, dtype=np.float64).reshape(self.k, self.n, 3))  # fmt: skip

    def _kinetic(self) -> np.ndarray:
        """Kinetic energy of each replica (K,), eV."""
        return 0.5 * np.einsum("kni,kni->k", self.momenta, self.momenta / self.masses)

    def _temperatures(self, kinetic: np.ndarray) -> np.ndarray:
        return 2.0 * kinetic / (self.dof * units.BOLTZMANN_EV_PER_K)

    def _check(self, step: int, temperatures: np.ndarray) -> None:
        """check_frame on every replica, vectorised: the per-replica call only for a bad one,
        whose message it gives, with the replica named."""
        bad = ~(np.isfinite(self.energies) & np.isfinite(temperatures) & np.isfinite(self.forces).all(axis=(1, 2)))
        bad |= temperatures > self.settings.temperature_limit()
        for k in np.flatnonzero(bad):
            try:
                check_frame(self.settings, step, float(temperatures[k]), float(self.energies[k]), self.forces[k])
            except UnstableRunError as exc:
                raise UnstableRunError(f"replica {self.first + k}: {exc}") from None

    def _advance(self, steps: int) -> None:
        settings, m = self.settings, self.masses
        dt = settings.timestep_fs * units.FS
        half = 0.5 * dt
        langevin = settings.ensemble == "nvt"
        # the Ornstein-Uhlenbeck step over dt: p <- c1 p + c2 sqrt(m kT) xi
        c1 = np.exp(-settings.friction_per_fs * settings.timestep_fs)
        noise_scale = np.sqrt((1.0 - c1 * c1) * units.BOLTZMANN_EV_PER_K * settings.temperature * m)
        fix_com = langevin and self.n > 1
        start = self.step
        for _ in range(steps):
            self.momenta += half * self.forces
            if langevin:
                self.positions += half * self.momenta / m
                xi = np.stack([rng.standard_normal((self.n, 3)) for rng in self.rngs])
                self.momenta = c1 * self.momenta + noise_scale * xi
                if fix_com:
                    self.momenta -= m * (self.momenta.sum(axis=1, keepdims=True) / self.total_mass)
                self.positions += half * self.momenta / m
            else:
                self.positions += dt * self.momenta / m
            try:
                self.energies, self.forces = self._evaluate()
            except InputError as exc:  # the structure passed at the start: the dynamics made it unusable
                raise failed_steps(settings, start, steps, exc) from exc
            self.momenta += half * self.forces
            self.step += 1
            self._check(self.step, self._temperatures(self._kinetic()))

    # -- frames ----------------------------------------------------------------------------

    def _frame(self, k: int, step: int) -> Atoms:
        """Replica ``k``'s frame as the ASE engine writes it: energy and forces attached."""
        from ase.calculators.singlepoint import SinglePointCalculator

        frame = self.atoms.copy()
        frame.set_positions(self.positions[k], apply_constraint=False)
        frame.set_momenta(self.momenta[k], apply_constraint=False)
        frame.info["step"] = step
        frame.info["replica"] = self.first + k
        frame.calc = SinglePointCalculator(frame, energy=float(self.energies[k]), forces=self.forces[k].copy())
        return frame

    def _record(self, step: int) -> None:
        kinetic = self._kinetic()
        temperatures = self._temperatures(kinetic)
        self._check(step, temperatures)  # before writing the frame
        t_ps = step * self.settings.timestep_fs * units.PS_PER_FS
        totals = self.energies + kinetic
        self.temperatures.append(float(temperatures.mean()))
        self.totals.append((t_ps, float(totals.mean())))
        self.temperature_sums += temperatures
        for k, path in enumerate(self.paths):
            with open(path, "a") as f:
                write(f, self._frame(k, step), format="extxyz", columns=TRAJECTORY_COLUMNS)
        with open(self.log_path, "a") as f:
            if f.tell() == 0:
                f.write(REPLICA_LOG_HEADER)
            f.writelines(
                f"{step} {t_ps:.6f} {self.energies[k]:.8f} {kinetic[k]:.8f} {totals[k]:.8f} {temperatures[k]:.3f} "
                f"{self.first + k}\n"
                for k in range(self.k)
            )
        state = {
            "positions": encode(self.positions),
            "momenta": encode(self.momenta),
            "cell": encode(self.atoms.cell.array),
            "rng": [rng.bit_generator.state for rng in self.rngs] if self.settings.ensemble == "nvt" else None,
        }
        write_run_state(self.record_path, self.identity, step, self.paths[0], self.log_path, state,
                        replica_trajectory_bytes=[path.stat().st_size for path in self.paths])  # fmt: skip
