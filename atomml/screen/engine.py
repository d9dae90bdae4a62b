"""Batched single points, relaxations and MD: one forward pass per step for many structures.

:class:`Evaluator` puts every structure of a batch into one graph
(:func:`~atomml.graph.batch_graphs`) and runs each potential of a committee on it once.
:func:`relax` runs ASE's FIRE (``ase.optimize.FIRE``, ASE 3.29, default parameters) for every
structure of the batch at once, step for step as ASE does for one structure, and with
``cell=True`` on the degrees of freedom of ASE's ``FrechetCellFilter`` (positions in the
undeformed cell plus the scaled matrix log of the deformation gradient), with the same
convergence test: the largest row norm of the filter's forces below ``fmax``. Written here
rather than by calling ASE because ASE's optimisers step one structure per calculator call;
the arithmetic per structure is ASE's, so a batched relaxation follows the plain ASE loop
(tests/unit/test_screen_engine.py compares them) and only the batch differs.

Structures leave the batch as they converge (or run out of steps) and new ones join, keeping
the number of atoms in flight at most ``max_atoms`` (one structure larger than that runs
alone): memory depends on the batch, not on how many structures there are.

A structure whose evaluation fails (its atoms collide during a step, its energy turns NaN)
leaves with a status; the others go on. Every finished structure goes to ``done`` at once, so
the caller can write and report progress.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..graph import _single, batch_graphs
from ..potential import MIN_CELL_VOLUME, MIN_DISTANCE, Potential, edge_vectors

# ase.optimize.FIRE's defaults (ASE 3.29)
FIRE_DEFAULTS = {"dt": 0.1, "maxstep": 0.2, "dtmax": 1.0, "Nmin": 5, "finc": 1.1, "fdec": 0.5, "astart": 0.1, "fa": 0.99}


@dataclasses.dataclass
class Job:
    """One structure in a batched run, and its outcome.

    ``key`` is the caller's handle. Inputs: ``numbers``, ``positions`` (n, 3) Å, ``cell`` (3, 3)
    Å (rows), ``pbc`` (3,), ``charge`` e. Outcome (filled in by the run): ``status`` ("ok",
    "not_converged", "diverged", "overlapping_atoms", "failed"), ``message``, ``energy`` eV,
    ``energy_initial`` eV, ``forces`` (n, 3) eV/Å, ``stress`` (6,) eV/Å³ or None, ``fmax``
    (largest atomic force) eV/Å, ``uncertainty`` eV (std of a committee's energies, NaN for one
    potential), ``steps``, ``wall`` (seconds in flight, shared with the batch), and for MD
    ``md`` (summary statistics).
    """

    key: Any
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    charge: float = 0.0
    status: str = ""
    message: str = ""
    energy: float = math.nan
    energy_initial: float = math.nan
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    fmax: float = math.nan
    uncertainty: float = math.nan
    steps: int = 0
    wall: float = 0.0
    md: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def natoms(self) -> int:
        return len(self.numbers)

    @property
    def periodic(self) -> bool:
        """Periodic along some axis with a 3D cell: it has a stress (as ``stress_defined``)."""
        return bool(np.any(self.pbc)) and abs(float(np.linalg.det(self.cell))) > MIN_CELL_VOLUME


@dataclasses.dataclass
class Evaluation:
    """Results of one batched call, per structure: energy (B,), forces (list of (n, 3)), stress
    (B, 6) or None, uncertainty (B,) (NaN for one potential), error (B,) None or (status,
    message)."""

    energy: np.ndarray
    forces: list[np.ndarray]
    stress: np.ndarray | None
    uncertainty: np.ndarray
    error: list[tuple[str, str] | None]


class Evaluator:
    """Energies, forces and stress of a batch of structures with one potential or a committee.

    A committee (several potentials) gives the mean energy, forces and stress, and the standard
    deviation of its members' energies as the uncertainty (population std, as MACE's committee
    calculator). Every member sees the same graph, built once with the largest cutoff.
    """

    def __init__(self, potentials: Potential | Sequence[Potential]):
        self.potentials = [potentials] if isinstance(potentials, Potential) else list(potentials)
        if not self.potentials:
            raise ValueError("an Evaluator needs at least one potential")
        self.cutoff = max(float(p.cutoff) for p in self.potentials)
        self.elements = sorted(set.intersection(*(set(p.elements) for p in self.potentials)))
        self.device = next(self.potentials[0].parameters()).device

    def check(self, job: Job) -> tuple[str, str] | None:
        """(status, message) for a structure no potential can evaluate, else None: unknown
        elements, non-finite coordinates or cell, a singular periodic cell, overlapping atoms."""
        from ase.data import chemical_symbols

        unknown = sorted(set(job.numbers.tolist()) - set(self.elements))
        if job.natoms == 0:
            return "invalid_geometry", "the structure has no atoms"
        if unknown:
            names = ", ".join(chemical_symbols[z] if 0 < z < len(chemical_symbols) else str(z) for z in unknown)
            known = " ".join(chemical_symbols[z] for z in self.elements)
            return "unknown_element", f"element(s) {names} not covered by the potential (it knows {known})"
        if not (np.isfinite(job.positions).all() and np.isfinite(job.cell).all()):
            return "invalid_geometry", "non-finite (NaN or inf) coordinates or cell"
        try:
            graph = self._graph([job])
        except InputError as exc:
            return "invalid_geometry", " ".join(str(exc).split())
        lengths = _edge_lengths(graph)
        if lengths.numel() and float(lengths.min()) < MIN_DISTANCE:
            k = int(lengths.argmin())
            i, j = graph.edge_index[:, k].tolist()
            return "overlapping_atoms", (
                f"atoms {i} and {j} are {float(lengths[k]):.3g} Å apart (closer than {MIN_DISTANCE} Å): "
                "remove duplicated atoms or fix the structure"
            )
        return None

    def _graph(self, jobs: Sequence[Job]) -> Any:
        graphs = [_single(j.positions, j.numbers, j.cell, j.pbc, j.charge, torch.float64) for j in jobs]
        return batch_graphs(graphs).to(self.device).with_neighbors(self.cutoff)

    def __call__(self, jobs: Sequence[Job], stress: bool) -> Evaluation:
        """One batched evaluation of ``jobs`` (all periodic with a 3D cell when ``stress``); a
        batch that fails is evaluated structure by structure, so that one bad structure fails
        alone."""
        try:
            return self._evaluate(jobs, stress)
        except (InputError, RuntimeError):
            if len(jobs) == 1:
                raise
        parts = []
        for job in jobs:
            try:
                parts.append(self._evaluate([job], stress))
            except (InputError, RuntimeError) as exc:
                status = "overlapping_atoms" if "overlapping" in str(exc) else "failed"
                nan = np.full(1, math.nan)
                parts.append(Evaluation(nan, [np.full((job.natoms, 3), math.nan)],
                                        np.full((1, 6), math.nan) if stress else None, nan,
                                        [(status, " ".join(str(exc).split()))]))  # fmt: skip
        return Evaluation(
            energy=np.concatenate([p.energy for p in parts]),
            forces=[f for p in parts for f in p.forces],
            stress=np.concatenate([p.stress for p in parts]) if stress else None,  # type: ignore[misc]
            uncertainty=np.concatenate([p.uncertainty for p in parts]),
            error=[e for p in parts for e in p.error],
        )

    def _evaluate(self, jobs: Sequence[Job], stress: bool) -> Evaluation:
        graph = self._graph(jobs)
        energies, forces, stresses = [], [], []
        for potential in self.potentials:
            out = potential(graph, compute_forces=True, compute_stress=stress)
            energies.append(out["energy"].detach().cpu().numpy())
            forces.append(out["forces"].detach().cpu().numpy())
            if stress:
                stresses.append(out["stress"].detach().cpu().numpy())
        energy = np.mean(energies, axis=0)
        uncertainty = np.std(energies, axis=0) if len(energies) > 1 else np.full(len(jobs), math.nan)
        split = np.cumsum([j.natoms for j in jobs])[:-1]
        per_structure = np.split(np.mean(forces, axis=0), split)
        stress_mean = np.mean(stresses, axis=0) if stress else None
        error: list[tuple[str, str] | None] = []
        for b, f in enumerate(per_structure):
            finite = np.isfinite(energy[b]) and np.isfinite(f).all()
            if stress_mean is not None:
                finite = finite and np.isfinite(stress_mean[b]).all()
            error.append(None if finite else ("diverged", "the energy or forces became NaN or inf"))
        return Evaluation(energy, per_structure, stress_mean, uncertainty, error)


def _edge_lengths(graph: Any) -> torch.Tensor:
    return edge_vectors(graph.positions, graph.cell, graph.batch, graph.edge_index, graph.cell_shift).norm(dim=1)


class _Fire:
    """ASE's FIRE step (``ase.optimize.FIRE.step``, downhill check off) for one structure's
    flat coordinates; ``forces`` is the optimiser's force (minus the gradient)."""

    def __init__(self) -> None:
        self.vel: np.ndarray | None = None
        self.dt = FIRE_DEFAULTS["dt"]
        self.a = FIRE_DEFAULTS["astart"]
        self.n_positive = 0

    def step(self, x: np.ndarray, forces: np.ndarray) -> np.ndarray:
        p = FIRE_DEFAULTS
        if self.vel is None:
            self.vel = np.zeros_like(x)
        else:
            vf = np.vdot(forces, self.vel)
            if vf > 0.0:
                f2 = np.vdot(forces, forces)
                self.vel = (1.0 - self.a) * self.vel + self.a * forces / np.sqrt(f2) * np.sqrt(np.vdot(self.vel, self.vel))
                if self.n_positive > p["Nmin"]:
                    self.dt = min(self.dt * p["finc"], p["dtmax"])
                    self.a *= p["fa"]
                self.n_positive += 1
            else:
                self.vel[:] *= 0.0
                self.a = p["astart"]
                self.dt *= p["fdec"]
                self.n_positive = 0
        self.vel += self.dt * forces
        dr = self.dt * self.vel
        norm = np.sqrt(np.vdot(dr, dr))
        if norm > p["maxstep"]:
            dr = p["maxstep"] * dr / norm
        return x + dr


class _Relaxing:
    """A job under relaxation: its optimiser coordinates and state. With ``cell``, the
    coordinates are ASE ``FrechetCellFilter``'s: positions in the undeformed cell (n rows) and
    ``exp_cell_factor`` (= n) times log F (3 rows), F the deformation gradient from the first
    cell; the cell is ``cell0 @ F.T`` and the positions ``x @ F.T``."""

    def __init__(self, job: Job, cell: bool):
        self.job = job
        self.cell = cell
        self.fire = _Fire()
        self.factor = float(job.natoms)  # FrechetCellFilter's exp_cell_factor default
        self.cell0 = job.cell.copy()
        self.log_f = np.zeros((3, 3))  # log of the deformation gradient
        self.x_atoms = job.positions.copy()
        self.filter_forces: np.ndarray | None = None
        self.started = time.perf_counter()

    def deformation(self) -> np.ndarray:
        # torch's matrix_exp, as in _frechet_forces (scipy's expm is ~10 ms per 3x3 call here)
        return torch.linalg.matrix_exp(torch.from_numpy(self.log_f)).numpy()

    def step(self) -> None:
        assert self.filter_forces is not None
        n = self.job.natoms
        if not self.cell:
            x = self.fire.step(self.job.positions.ravel(), self.filter_forces.ravel())
            self.job.positions = x.reshape(n, 3)
            return
        x = np.concatenate([self.x_atoms, self.factor * self.log_f]).ravel()
        x = self.fire.step(x, self.filter_forces.ravel()).reshape(n + 3, 3)
        self.x_atoms = x[:n]
        self.log_f = x[n:] / self.factor
        f = self.deformation()
        self.job.cell = self.cell0 @ f.T
        self.job.positions = self.x_atoms @ f.T


def _frechet_forces(relaxing: Sequence[_Relaxing], forces: Sequence[np.ndarray], stress: np.ndarray) -> list[np.ndarray]:
    """``FrechetCellFilter.get_forces`` for a batch: atomic forces times F, and the derivative of
    the energy with respect to log F (the Fréchet derivative of expm contracted with the unit-cell
    gradient, here by autograd through torch's batched ``matrix_exp``), over exp_cell_factor."""
    from ase.stress import voigt_6_to_full_3x3_stress

    log_f = torch.tensor(np.stack([r.log_f for r in relaxing]), dtype=torch.float64, requires_grad=True)
    deform = torch.linalg.matrix_exp(log_f)
    f = deform.detach().numpy()
    grads = []
    for b, r in enumerate(relaxing):
        volume = abs(float(np.linalg.det(r.job.cell)))
        virial = -volume * voigt_6_to_full_3x3_stress(stress[b])
        grads.append(virial @ np.linalg.inv(f[b].T))
    (log_force,) = torch.autograd.grad((deform * torch.tensor(np.stack(grads))).sum(), log_f)
    out = []
    for b, r in enumerate(relaxing):
        out.append(np.concatenate([forces[b] @ f[b], log_force[b].numpy() / r.factor]))
    return out


def _batches(jobs: Iterable[Job], max_atoms: int) -> Iterable[list[Job]]:
    batch: list[Job] = []
    atoms = 0
    for job in jobs:
        if batch and atoms + job.natoms > max_atoms:
            yield batch
            batch, atoms = [], 0
        batch.append(job)
        atoms += job.natoms
    if batch:
        yield batch


def _record(job: Job, ev: Evaluation, b: int) -> None:
    job.energy = float(ev.energy[b])
    job.forces = ev.forces[b]
    job.stress = None if ev.stress is None else ev.stress[b]
    job.uncertainty = float(ev.uncertainty[b])
    job.fmax = float(np.linalg.norm(job.forces, axis=1).max()) if job.natoms else math.nan


def single_point(jobs: Iterable[Job], evaluator: Evaluator, *, max_atoms: int, done: Callable[[Job], None]) -> None:
    """Energy, forces (and stress for periodic cells) of every job, ``max_atoms`` to a call."""
    jobs = list(jobs)
    for stress in (True, False):
        for batch in _batches([j for j in jobs if j.periodic == stress], max_atoms):
            started = time.perf_counter()
            ev = evaluator(batch, stress)
            wall = (time.perf_counter() - started) / len(batch)
            for b, job in enumerate(batch):
                _record(job, ev, b)
                job.energy_initial = job.energy
                job.wall = wall
                job.status, job.message = ev.error[b] or ("ok", "")
                done(job)


def relax(
    jobs: Iterable[Job],
    evaluator: Evaluator,
    *,
    fmax: float,
    max_steps: int,
    cell: bool,
    max_atoms: int,
    done: Callable[[Job], None],
) -> None:
    """Relax every job with ASE's FIRE (and, with ``cell``, the cell of periodic jobs through
    ``FrechetCellFilter``'s coordinates) until the largest filter force is below ``fmax`` or
    ``max_steps`` steps are taken; converged jobs leave the batch and queued ones join.

    Each job's ``steps`` counts FIRE steps as ASE's ``Optimizer.nsteps`` does; its ``wall`` is
    its share of the time of the calls it was part of.
    """
    jobs = list(jobs)
    groups = [[j for j in jobs if j.periodic], [j for j in jobs if not j.periodic]] if cell else [jobs]
    for group in groups:
        with_cell = cell and bool(group) and group[0].periodic
        _relax_group(group, evaluator, fmax, max_steps, with_cell, max_atoms, done)


def _relax_group(
    jobs: list[Job], evaluator: Evaluator, fmax: float, max_steps: int, cell: bool, max_atoms: int,
    done: Callable[[Job], None],
) -> None:  # fmt: skip
    queue = deque(jobs)
    active: list[_Relaxing] = []
    fresh: list[_Relaxing] = []  # joined and not yet evaluated
    while queue or active:
        atoms = sum(r.job.natoms for r in active)
        while queue and (not active and not fresh or atoms + queue[0].natoms <= max_atoms):
            job = queue.popleft()
            fresh.append(_Relaxing(job, cell))
            atoms += job.natoms
        active.extend(fresh)
        fresh = []
        started = time.perf_counter()
        ev = evaluator([r.job for r in active], cell)
        share = (time.perf_counter() - started) / len(active)
        failed = [b for b, e in enumerate(ev.error) if e is not None]
        ok = [b for b, e in enumerate(ev.error) if e is None]
        if cell and ok:
            assert ev.stress is not None
            frechet = _frechet_forces([active[b] for b in ok], [ev.forces[b] for b in ok], ev.stress[ok])
            for b, forces in zip(ok, frechet):
                active[b].filter_forces = forces
        else:
            for b in ok:
                active[b].filter_forces = ev.forces[b]
        still = []
        for b, r in enumerate(active):
            job = r.job
            job.wall += share
            _record(job, ev, b)
            if math.isnan(job.energy_initial):
                job.energy_initial = job.energy
            if b in failed:
                job.status, job.message = ev.error[b]  # type: ignore[misc]
                done(job)
                continue
            criterion = float(np.linalg.norm(r.filter_forces, axis=1).max())
            if criterion < fmax:
                job.status = "ok"
                done(job)
            elif job.steps >= max_steps:
                job.status = "not_converged"
                job.message = f"largest force {criterion:.3g} eV/Å after {job.steps} steps (fmax {fmax} eV/Å)"
                done(job)
            else:
                r.step()
                job.steps += 1
                still.append(r)
        active = still


def md(
    jobs: Iterable[Job],
    evaluator: Evaluator,
    *,
    steps: int,
    timestep_fs: float,
    temperature_K: float,
    friction_per_fs: float,
    seed: int,
    max_atoms: int,
    done: Callable[[Job], None],
) -> None:
    """Langevin MD (BAOAB; velocity Verlet when ``friction_per_fs`` is 0) of every job for
    ``steps`` steps from Maxwell-Boltzmann velocities at ``temperature_K``
    (:func:`initial_velocities`). Summary statistics in ``job.md``: mean temperature (K, 3N degrees of freedom as ASE's
    ``get_temperature``), mean and std of the potential energy (eV) over the steps, and the
    energy drift (eV/atom/ps, total energy, last minus first over the time; meaningful without
    friction). ``energy`` is the final potential energy."""
    from ase import units
    from ase.data import atomic_masses

    jobs = list(jobs)
    dt = timestep_fs * units.fs
    gamma = friction_per_fs / units.fs
    kt = units.kB * temperature_K
    for stress in (True, False):
        for batch in _batches([j for j in jobs if j.periodic == stress], max_atoms):
            started = time.perf_counter()
            masses = [atomic_masses[job.numbers][:, None] for job in batch]
            velocities = [initial_velocities(job, temperature_K, seed) for job in batch]
            rng = np.random.default_rng([seed, _stable_hash(batch[0].key), 1])
            alive = [True] * len(batch)
            series: list[list[tuple[float, float, float]]] = [[] for _ in batch]
            ev = evaluator(batch, stress)
            for b, job in enumerate(batch):
                _record(job, ev, b)
                job.energy_initial = job.energy
                if ev.error[b] is not None:
                    alive[b] = False
                    job.status, job.message = ev.error[b]  # type: ignore[misc]
            c1 = math.exp(-gamma * dt)
            for step in range(steps):
                live = [b for b in range(len(batch)) if alive[b]]
                if not live:
                    break
                for b in live:
                    job, m, v = batch[b], masses[b], velocities[b]
                    v += 0.5 * dt * job.forces / m  # B
                    job.positions = job.positions + 0.5 * dt * v  # A
                    if gamma > 0:  # O: the exact Ornstein-Uhlenbeck update
                        v *= c1
                        v += np.sqrt((1 - c1 * c1) * kt / m) * rng.standard_normal(v.shape)
                    job.positions = job.positions + 0.5 * dt * v  # A
                ev = evaluator([batch[b] for b in live], stress)
                for k, b in enumerate(live):
                    job, m, v = batch[b], masses[b], velocities[b]
                    if ev.error[k] is not None:
                        alive[b] = False
                        job.status, job.message = ev.error[k]  # type: ignore[misc]
                        job.message = f"at MD step {step + 1}: {job.message}"
                        continue
                    _record(job, ev, k)
                    v += 0.5 * dt * job.forces / m  # B
                    kinetic = 0.5 * float((m * v * v).sum())
                    temperature = 2 * kinetic / (3 * job.natoms * units.kB)
                    series[b].append((job.energy, kinetic, temperature))
                    job.steps = step + 1
            wall = (time.perf_counter() - started) / len(batch)
            for b, job in enumerate(batch):
                job.wall = wall
                if alive[b]:
                    job.status = "ok"
                if series[b]:
                    e, k, t = (np.array(c) for c in zip(*series[b]))
                    total = e + k
                    time_ps = len(series[b]) * timestep_fs / 1000
                    job.md = {
                        "md_temperature_K": float(t.mean()),
                        "md_epot_mean_eV": float(e.mean()),
                        "md_epot_std_eV": float(e.std()),
                        "md_drift_eV_per_atom_ps": float((total[-1] - total[0]) / job.natoms / time_ps),
                    }
                if not alive[b]:
                    job.energy = math.nan
                done(job)


def initial_velocities(job: Job, temperature_K: float, seed: int) -> np.ndarray:
    """Maxwell-Boltzmann velocities (ASE units) at ``temperature_K``, drawn as ASE's
    ``MaxwellBoltzmannDistribution`` draws them from a generator seeded by ``seed`` and the job's
    key (the same in every process and every batch), less the centre-of-mass velocity."""
    from ase import units
    from ase.data import atomic_masses

    masses = atomic_masses[job.numbers][:, None]
    rng = np.random.default_rng([seed, _stable_hash(job.key)])
    momenta = rng.standard_normal((job.natoms, 3)) * np.sqrt(masses * units.kB * temperature_K)
    velocities = momenta / masses
    return velocities - momenta.sum(axis=0) / masses.sum()  # zero total momentum, as ASE's Stationary


def _stable_hash(key: Any) -> int:
    """A hash of ``key`` that is the same in every process (Python's ``hash`` of a str is not)."""
    import zlib

    return zlib.crc32(repr(key).encode())
