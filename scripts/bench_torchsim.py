#!/usr/bin/env python
"""Batched MD and relaxation: torch-sim's integrators and optimisers (driving atomml's model) against
atomml's own batched paths, one process, one run, JSON.

Run with the test environment (torch-sim-atomistic 0.3.0 is in the ``test`` and ``bench`` extras)::

    .venv/bin/python scripts/bench_torchsim.py --output data/benchmarks/torchsim_vs_atomml.json
    .venv/bin/python scripts/bench_torchsim.py --cases md_replicas --no-small-path   # one case, seconds to minutes

The defaults take ~7-8 minutes on a quiet 2-core CPU (~10 with other jobs on it) when atomml's
inductor cache already holds the compiled small-system program of ``--replicas`` x the replica
molecule (``~/.cache/atomml/inductor``); the first run on a machine compiles it, ~2-2.5 min more
(134 s measured for 16 aspirins on the 2-core development machine; ``--no-small-path`` leaves that
row out). ``--repeats 1`` halves the time.

Both sides run in this one process with the same torch thread count (``--threads``, default 1:
``torch.set_num_threads``), on the same starting structures (made once, before any timing), with
the same potential object, float64 geometry and the potential's own network dtype (float32 for the
shipped potentials). Each case runs every method ``--repeats`` times in ABBA order (A B ... then
... B A) and reports the fastest run (wall clock, from structures in memory to results out, the
first evaluation included), and the least CPU time of this process over the runs (``*_cpu``
rates: steadier where other jobs share the CPU); the physics checks are taken from the first run.

Cases (``--cases``):

- ``md_molecules``: ``--molecules`` drug-like molecules (the first of a seeded sample of
  ``data/screen/druglike_1000.smi``, RDKit ETKDG + MMFF conformers, mixed sizes; the set of
  ``scripts/bench_screen.py``), ``tensornet-organic-gfn2``, NVT Langevin (BAOAB) at
  ``--temperature`` for ``--md-steps`` steps of ``--timestep`` fs with ``--friction`` /fs, every
  molecule in one batch (``--max-atoms``). Methods: ``torch_sim`` (``torch_sim.integrators.nvt_langevin`` with
  :class:`atomml.interfaces.torch_sim.AtomMLModel`, its init and update functions called in a loop,
  as ``torch_sim.integrate`` does without a reporter) and ``atomml_engine``
  (``atomml.screen.engine.md``, the batched engine of ``atomml screen --task md``, called
  in-process). Rate: structure-steps per second (and atom-steps per second).
- ``md_replicas``: ``--replicas`` copies of one small molecule (aspirin, 21 atoms), all starting
  from the same conformer with their own velocities and noise. Methods: the two above, and
  atomml's replica engine (``atomml.dynamics.replicas.run_replicas``, what ``atomml md
  --replicas K`` runs) with its two evaluators: ``atomml_replicas_general``
  (``atomml.fast.GeneralPath``: one batched graph, a Verlet-skin neighbour list reused across
  steps) and ``atomml_replicas_small`` (``atomml.fast.SmallSystemPath``, the small-molecule
  issue's compiled path, fixed shapes; ``atomml md`` picks it only up to 256 atoms in all
  replicas, here it is asked for). The compiled program is made (or loaded from the inductor
  cache) by a first call before the timed runs: ``first_call_s`` reports it, and
  ``inductor_cache_files_added`` says whether it compiled (files added) or loaded. The replica
  engine writes a frame (extxyz per replica, a log line, a resume record) every
  ``--replica-interval`` steps: that is part of its time, as in use.
- ``relax_molecules``: ``--relax-molecules`` drug-like molecules (the same sample), batched FIRE
  to ``--fmax`` (at most ``--max-steps`` steps). Methods: ``torch_sim``
  (``atomml.interfaces.torch_sim.relax``: ``torch_sim.optimize`` with its ASE-flavoured ``fire``, an
  in-flight autobatcher of at most ``--relax-max-atoms`` atoms, convergence checked every step)
  and ``atomml_engine`` (``atomml.screen.engine.relax``: ASE's FIRE arithmetic, batched, the same
  in-flight batching). ``--relax-max-atoms`` (512) is below the set's total, so that converged
  structures leave and waiting ones join, as in a screening run. Rate: structures per second, and
  FIRE steps per second.
- ``relax_alloys``: ``--alloys`` Cu/Al/Ni cells (``scripts/make_screen_sets.alloy_cells``),
  ``tensornet-metals-emt``, positions and cell: torch-sim's ``frechet_cell_fire`` against the
  engine's ``FrechetCellFilter`` coordinates (``cell=True``). NPT is out of scope.

For every run, ``evaluation_s`` is the time spent inside the model call (torch-sim:
``AtomMLModel.forward``, i.e. state -> graph, neighbour list, network, results; atomml engine:
``Evaluator.__call__``, i.e. numpy -> graph, neighbour list, network, results to numpy; replica
engine: the evaluator call), ``calls`` and ``atoms_evaluated`` count those calls and the atoms they
held; ``outside_evaluation_s`` is the rest: the integrator or optimiser, batching, bookkeeping and
I/O. ``ratio_over_torch_sim`` is an atomml method's rate over torch-sim's (> 1: atomml faster),
``ratio_over_torch_sim_cpu_time`` the same by CPU time.

Checks: MD: the potential energy of every structure at step 0 (the same positions and model: they
must agree to round-off), and the mean temperature over all steps and over the second half (each
method's own degrees of freedom: 3N for torch-sim and the screening engine, which do not remove the
centre-of-mass motion that the noise gives, 3N - 3 for the replica engine, which does). The
screening engine reports only its mean over all steps; the second half is read from its velocity
arrays (captured from ``engine.initial_velocities``, updated in place by the engine) plus the half
kick of the forces of each call, which reproduces the engine's own mean over all steps
(``probe_reproduces_engine_mean``). The second-half mean must be within 10% of the bath's
(``temperature_ok``): the strong default friction (0.1/fs) brings short runs there.
Relaxations: final energies of structures both methods converged, their FIRE step counts, and how
many converged.

Where each is faster, and why (``data/benchmarks/torchsim_vs_atomml.json``; a profile with
cProfile of each path backs the reasons):

- The model call is the same function on both sides (atomml's potential: each call builds the
  batched graph and its neighbour list with the same ``with_neighbors``, then the network with
  forces by autograd) and it is 97-99.9% of the time of MD and of molecule relaxation here. So
  wherever the integrator or optimiser is thin, the two sides tie, to within this machine's
  run-to-run noise (other jobs share its 2 cores: ``cpu_s_all_runs`` and ``*_cpu`` rates, this
  process's CPU time, are steadier than wall times there).
- MD of mixed molecules (~1,200 atoms a step): a tie. torch-sim's BAOAB is a few whole-batch
  tensor operations (~0.6 ms a step); the screening engine's loops over structures in NumPy and
  rebuilds the graph from per-structure arrays (~1.4 ms a step); the model takes ~0.5 s.
- MD of K replicas of one small molecule: the general batched paths tie (torch-sim, the screening
  engine, and the replica engine on ``GeneralPath``, whose Verlet-skin neighbour list saves the
  neighbour search, a few ms of ~120 ms a step, and which writes frames). atomml's compiled
  small-system path is about twice as fast (~65 ms a step for 16 aspirins): one compiled program
  for energy and forces at fixed shapes, called without the autograd engine or per-operation
  dispatch, which at a few hundred atoms cost as much as the arithmetic. The price is its first
  call: a compile (134 s for 16 aspirins on the 2-core development machine, once per molecule
  size and replica count), or a load from the inductor cache (~8-15 s; up to a minute where the
  cache holds only part of it, e.g. after a change to atomml's model code), reported apart and
  excluded from the rate. Its advantage shrinks as K x N grows and is gone with 2 threads
  (``atomml.fast``: ``atomml md`` chooses it only up to 256 atoms in all replicas).
- Relaxation of molecules: atomml's engine ~1.1x. The model cost is the same; torch-sim
  takes ~5-10% more FIRE steps (in the step after a structure joins the batch, its ASE-flavoured
  FIRE skips the power check and velocity mixing for every structure of the batch:
  ``atomml.interfaces.torch_sim.relax``; with all 32 in one batch from the start, ``--relax-max-atoms
  2048``, the totals agree: 2,105 steps against 2,103), and its swap bookkeeping
  (``concatenate_states``/``split`` of whole states, a convergence check every step) costs ~2 ms
  a step against the engine's ~0.6 ms of NumPy FIRE.
- Relaxation of alloy cells: atomml's engine ~1.5x. torch-sim's ``frechet_cell_fire`` computes
  the Fréchet derivative of expm for every system, nine directions each, in a Python loop per
  step (``torch_sim.math.expm_frechet``: ~40-80 ms a step for 30-60 cells, ~30% of its
  time); the engine gets the same derivative for the whole batch from one autograd pass through
  a batched ``matrix_exp`` (``_frechet_forces``, ~7-13 ms a step with its NumPy FIRE). torch-sim
  also takes ~20% more FIRE steps (the swap effect above).
- Where torch-sim should win is not measured here: with the state on a GPU, its integrators and
  optimisers never leave the device, while atomml's engine brings energies and forces to NumPy
  every step and steps each structure on the CPU. On this CPU, at one thread, nothing favours it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the atomml command (atomml.threads.passive_openmp)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SciPy's expm in FrechetCellFilter: see tests/conftest.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

ORGANIC, METALS = "tensornet-organic-gfn2", "tensornet-metals-emt"
ASPIRIN = "CC(=O)OC1=CC=CC=C1C(=O)O"
CASES = ("md_molecules", "md_replicas", "relax_molecules", "relax_alloys")
TEMPERATURE_TOLERANCE = 0.1  # the second-half mean temperature within 10% of the bath's
ENERGY_TOLERANCE_EV = 1e-4  # step-0 energies of the same positions and model


# -- timed evaluators --------------------------------------------------------------------------


class Timer:
    """Counts and times the calls of an evaluator."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seconds, self.calls, self.atoms = 0.0, 0, 0

    def add(self, seconds: float, atoms: int) -> None:
        self.seconds += seconds
        self.calls += 1
        self.atoms += int(atoms)

    def report(self, wall: float) -> dict:
        return {"evaluation_s": self.seconds, "outside_evaluation_s": wall - self.seconds, "calls": self.calls,
                "atoms_evaluated": self.atoms}  # fmt: skip


def timed_model(potential: Any, compute_stress: bool) -> Any:
    """An :class:`~atomml.interfaces.torch_sim.AtomMLModel` (CPU, float64 states) that times its calls."""
    from atomml.interfaces.torch_sim import AtomMLModel

    class TimedModel(AtomMLModel):
        def forward(self, state: Any, **kwargs: Any) -> dict:
            start = time.perf_counter()
            out = super().forward(state, **kwargs)
            positions = state["positions"] if isinstance(state, dict) else state.positions
            self.timer.add(time.perf_counter() - start, positions.shape[0])
            return out

    model = TimedModel(potential, device="cpu", dtype=torch.float64, compute_stress=compute_stress)
    model.timer = Timer()
    return model


def timed_evaluator(potential: Any) -> Any:
    """An :class:`atomml.screen.engine.Evaluator` that times its calls; ``probe(jobs, evaluation)``,
    where set, sees every call's result."""
    from atomml.screen.engine import Evaluator

    class TimedEvaluator(Evaluator):
        timer = Timer()
        probe = None

        def __call__(self, jobs, stress):
            start = time.perf_counter()
            out = super().__call__(jobs, stress)
            self.timer.add(time.perf_counter() - start, sum(j.natoms for j in jobs))
            if self.probe is not None:
                self.probe(jobs, out)
            return out

    evaluator = TimedEvaluator(potential)
    evaluator.timer = Timer()
    return evaluator


class TimedCall:
    """A replica evaluator (``atomml.fast``) whose calls are timed; attributes pass through."""

    def __init__(self, inner: Any):
        self.inner, self.timer = inner, Timer()

    def __call__(self, positions: Any, cell: Any = None) -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        out = self.inner(positions, cell)
        self.timer.add(time.perf_counter() - start, self.inner.replicas * self.inner.n_atoms)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# -- structures --------------------------------------------------------------------------------


def druglike(n: int, seed: int) -> list:
    from bench_screen import structures

    return structures("molecules", n, seed)


def alloys(n: int, seed: int) -> list:
    from bench_screen import structures

    return structures("alloys", n, seed)


def replica_molecule(smiles: str, seed: int) -> Any:
    from atomml.testing.structures import molecule_from_smiles

    atoms = molecule_from_smiles(smiles, seed)
    atoms.info["charge"] = 0.0
    return atoms


def jobs_of(atoms_list: list) -> list:
    from atomml.graph import _ase_charge
    from atomml.screen.engine import Job

    return [Job(key=i, numbers=a.numbers.copy(), positions=np.array(a.positions, dtype=np.float64),
                cell=np.array(a.cell.array, dtype=np.float64), pbc=a.pbc.copy(), charge=_ase_charge(a))
            for i, a in enumerate(atoms_list)]  # fmt: skip


def charges_of(atoms_list: list) -> list[float]:
    from atomml.graph import _ase_charge

    return [_ase_charge(a) for a in atoms_list]


# -- MD ----------------------------------------------------------------------------------------


def _temperature_summary(series: np.ndarray, dof: str) -> dict:
    """``series`` (steps, structures) K, steps 1..n."""
    half = series.shape[0] // 2
    return {"mean_all_steps_K": float(series.mean()), "mean_second_half_K": float(series[half:].mean()),
            "dof": dof}  # fmt: skip


def md_torch_sim(atoms_list: list, potential: Any, a: argparse.Namespace) -> dict:
    import torch_sim as ts
    from ase import units

    from atomml.interfaces.torch_sim import with_charge

    model = timed_model(potential, compute_stress=False)
    charges = charges_of(atoms_list)
    # torch-sim's Langevin noise comes from torch's global generator, its initial momenta from a
    # torch.Generator seeded with `seed`: seeding the global one with the same number would make
    # the first step's noise the initial momenta's own normal numbers (T jumps from 300 to ~470 K)
    torch.manual_seed(a.seed + 1)
    start, cpu = time.perf_counter(), time.process_time()
    dtype = model.dtype
    init_fn, update_fn = ts.integrators.nvt_langevin(
        model=model,
        dt=torch.tensor(a.timestep * units.fs, dtype=dtype),
        kT=torch.tensor(a.temperature * units.kB, dtype=dtype),
        gamma=torch.tensor(a.friction / units.fs, dtype=dtype),
        seed=a.seed,
    )
    state = ts.io.atoms_to_state(atoms_list, model.device, dtype)
    state = with_charge(init_fn(with_charge(state, charges)), charges)  # MDState drops unknown attributes
    energy0 = state.energy.detach().clone()
    idx = state.system_idx
    n_systems = len(atoms_list)
    n_atoms = torch.bincount(idx, minlength=n_systems).to(dtype)
    temperatures = []
    for _ in range(a.steps):
        state = update_fn(state)
        twice_kinetic = torch.zeros(n_systems, dtype=dtype).index_add_(
            0, idx, (state.momenta**2 / state.masses.unsqueeze(-1)).sum(dim=1)
        )
        temperatures.append(twice_kinetic / (3 * n_atoms * units.kB))
    wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    series = torch.stack(temperatures).numpy()
    return {"wall_s": wall, "cpu_s": cpu_s, **model.timer.report(wall), "energy_step0": energy0.numpy().tolist(),
            "temperature": _temperature_summary(series, "3N"),
            "energy_final": state.energy.numpy().tolist()}  # fmt: skip


@contextlib.contextmanager
def engine_velocities():
    """The velocity arrays ``engine.md`` draws (it updates them in place), by job key."""
    from atomml.screen import engine

    captured: dict = {}
    original = engine.initial_velocities

    def recording(job, temperature_K, seed):
        v = original(job, temperature_K, seed)
        captured[job.key] = v
        return v

    engine.initial_velocities = recording
    try:
        yield captured
    finally:
        engine.initial_velocities = original


def md_engine(atoms_list: list, potential: Any, a: argparse.Namespace) -> dict:
    from ase import units
    from ase.data import atomic_masses

    from atomml.screen import engine

    evaluator = timed_evaluator(potential)
    jobs = jobs_of(atoms_list)
    dt = a.timestep * units.fs
    series: dict[Any, list[float]] = {j.key: [] for j in jobs}
    masses = {j.key: atomic_masses[j.numbers][:, None] for j in jobs}
    seen: set = set()
    finished: list = []
    with engine_velocities() as velocities:

        def probe(batch, ev):  # the full-step velocity: the engine's half-step one plus the half kick
            for k, job in enumerate(batch):
                if job.key not in seen:  # the initial evaluation (velocities not yet stepped)
                    seen.add(job.key)
                    continue
                v = velocities[job.key] + 0.5 * dt * ev.forces[k] / masses[job.key]
                series[job.key].append(float((masses[job.key] * v * v).sum()) / (3 * job.natoms * units.kB))

        evaluator.probe = probe
        start, cpu = time.perf_counter(), time.process_time()
        engine.md(jobs, evaluator, steps=a.steps, timestep_fs=a.timestep, temperature_K=a.temperature,
                  friction_per_fs=a.friction, seed=a.seed, max_atoms=a.max_atoms, done=finished.append)  # fmt: skip
        wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    bad = [j.status for j in jobs if j.status != "ok"]
    table = np.array([series[j.key] for j in jobs]).T  # (steps, structures)
    engine_mean = float(np.mean([j.md["md_temperature_K"] for j in jobs]))
    temperature = _temperature_summary(table, "3N")
    temperature["engine_reported_mean_all_steps_K"] = engine_mean
    difference = abs(temperature["mean_all_steps_K"] - engine_mean)
    temperature["probe_reproduces_engine_mean"] = bool(difference < 1e-6 * engine_mean)
    return {"wall_s": wall, "cpu_s": cpu_s, **evaluator.timer.report(wall),
            "energy_step0": [j.energy_initial for j in jobs], "temperature": temperature,
            "energy_final": [j.energy for j in jobs], "failed": bad}  # fmt: skip


def md_replicas(atoms: Any, evaluator: TimedCall, a: argparse.Namespace, scratch: Path) -> dict:
    from atomml.dynamics import MDSettings
    from atomml.dynamics.replicas import run_replicas

    settings = MDSettings(ensemble="nvt", temperature=a.temperature, timestep_fs=a.timestep, steps=a.steps,
                          friction_per_fs=a.friction, interval=a.replica_interval, seed=a.seed)  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="replicas_", dir=scratch))
    evaluator.timer.reset()
    compiles = getattr(evaluator.inner, "compiles", None)
    start, cpu = time.perf_counter(), time.process_time()
    result = run_replicas(atoms, evaluator, settings, trajectory=folder / "md.extxyz", restart=False, progress=False,
                          replicas=a.replicas)  # fmt: skip
    wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    log = np.loadtxt(folder / "md.log", ndmin=2)  # step time epot ekin etot T replica
    steps, epot, temperature = log[:, 0], log[:, 2], log[:, 5]
    later = temperature[steps > 0]
    second = temperature[steps > a.steps / 2]
    out = {"wall_s": wall, "cpu_s": cpu_s, **evaluator.timer.report(wall), "energy_step0": epot[steps == 0].tolist(),
           "temperature": {"mean_all_steps_K": float(later.mean()), "mean_second_half_K": float(second.mean()),
                           "dof": "3N-3", "frames_every_steps": a.replica_interval},
           "energy_final": epot[steps == steps.max()].tolist(),
           "replica_engine_ns_per_day": result.ns_per_day}  # fmt: skip
    if compiles is not None:
        out["compiles_during_run"] = evaluator.inner.compiles - compiles
    return out


# -- relaxation --------------------------------------------------------------------------------


def relax_torch_sim(atoms_list: list, potential: Any, a: argparse.Namespace, cell: bool) -> dict:
    from atomml.interfaces.torch_sim import relax as torchsim_relax

    model = timed_model(potential, compute_stress=cell)
    start, cpu = time.perf_counter(), time.process_time()
    rows = torchsim_relax(atoms_list, model, fmax=a.fmax, max_steps=a.max_steps, cell=cell,
                                max_atoms=a.relax_max_atoms)  # fmt: skip
    wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu_s, **model.timer.report(wall), "energy": [r["energy"] for r in rows],
            "steps": [int(r["steps"]) for r in rows], "converged": [bool(r["converged"]) for r in rows]}  # fmt: skip


def relax_engine(atoms_list: list, potential: Any, a: argparse.Namespace, cell: bool) -> dict:
    from atomml.screen import engine

    evaluator = timed_evaluator(potential)
    jobs = jobs_of(atoms_list)
    finished: list = []
    start, cpu = time.perf_counter(), time.process_time()
    engine.relax(jobs, evaluator, fmax=a.fmax, max_steps=a.max_steps, cell=cell, max_atoms=a.relax_max_atoms,
                 done=finished.append)  # fmt: skip
    wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_s": wall, "cpu_s": cpu_s, **evaluator.timer.report(wall), "energy": [j.energy for j in jobs],
            "steps": [j.steps for j in jobs], "converged": [j.status == "ok" for j in jobs]}  # fmt: skip


# -- runs --------------------------------------------------------------------------------------


def abba(methods: dict, repeats: int, log_name: str) -> dict[str, list[dict]]:
    """Every method ``repeats`` times, the order reversed every other round."""
    runs: dict[str, list[dict]] = {name: [] for name in methods}
    names = list(methods)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            out = methods[name]()
            out["load_average_after"] = os.getloadavg()[0]
            runs[name].append(out)
            print(f"{log_name} {name} run {r + 1}: {out['wall_s']:.1f} s wall, {out['cpu_s']:.1f} s CPU "
                  f"({out['evaluation_s']:.1f} s evaluating, {out['calls']} calls), "
                  f"load {out['load_average_after']:.1f}",
                  file=sys.stderr)  # fmt: skip
    return runs


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall_s"])


def timing(run: dict, runs: list[dict]) -> dict:
    """The fastest run's times (wall clock), and every run's wall and CPU times."""
    keys = ("wall_s", "evaluation_s", "outside_evaluation_s", "calls", "atoms_evaluated")
    return {**{k: run[k] for k in keys}, "wall_s_all_runs": [r["wall_s"] for r in runs],
            "cpu_s_all_runs": [r["cpu_s"] for r in runs],
            "load_average_after_runs": [r["load_average_after"] for r in runs],
            "evaluation_fraction": run["evaluation_s"] / run["wall_s"],
            "evaluation_ms_per_call": 1e3 * run["evaluation_s"] / max(run["calls"], 1),
            "outside_evaluation_ms_per_call": 1e3 * run["outside_evaluation_s"] / max(run["calls"], 1),
            "evaluated_atoms_per_evaluation_s": run["atoms_evaluated"] / run["evaluation_s"]}  # fmt: skip


def _ratios(methods: dict, unit: str) -> None:
    """Each method's rate over torch-sim's, by wall clock and by this process's CPU time."""
    base = methods["torch_sim"]
    for entry in methods.values():
        entry["ratio_over_torch_sim"] = entry[unit] / base[unit]
        entry["ratio_over_torch_sim_cpu_time"] = entry[unit + "_cpu"] / base[unit + "_cpu"]


def md_case(name: str, atoms_list: list, methods: dict, a: argparse.Namespace, extra: dict | None = None) -> dict:
    runs = abba(methods, a.repeats, name)
    n_structures, n_atoms = len(atoms_list), sum(len(x) for x in atoms_list)
    out: dict = {"structures": n_structures, "atoms": n_atoms, "steps": a.steps, "timestep_fs": a.timestep,
                 "temperature_K": a.temperature, "friction_per_fs": a.friction, "methods": {}}  # fmt: skip
    reference = runs["torch_sim"][0]["energy_step0"]
    for method, method_runs in runs.items():
        first, fastest = method_runs[0], best(method_runs)
        cpu = min(r["cpu_s"] for r in method_runs)
        t = first["temperature"]
        entry = {
            "structure_steps_per_s": n_structures * a.steps / fastest["wall_s"],
            "structure_steps_per_s_cpu": n_structures * a.steps / cpu,
            "atom_steps_per_s": n_atoms * a.steps / fastest["wall_s"],
            "ms_per_step": 1e3 * fastest["wall_s"] / a.steps,
            **timing(fastest, method_runs),
            "temperature": t,
            "temperature_ok": abs(t["mean_second_half_K"] - a.temperature) < TEMPERATURE_TOLERANCE * a.temperature,
            "max_abs_dE_step0_vs_torch_sim_eV": float(np.max(np.abs(np.subtract(first["energy_step0"], reference)))),
        }
        entry["energy_step0_ok"] = entry["max_abs_dE_step0_vs_torch_sim_eV"] < ENERGY_TOLERANCE_EV
        for key in ("failed", "compiles_during_run", "replica_engine_ns_per_day"):
            if key in first:
                entry[key] = first[key]
        out["methods"][method] = entry
    _ratios(out["methods"], "structure_steps_per_s")
    if extra:
        out.update(extra)
    return out


def relax_case(name: str, atoms_list: list, methods: dict, a: argparse.Namespace) -> dict:
    runs = abba(methods, a.repeats, name)
    n = len(atoms_list)
    out: dict = {"structures": n, "atoms": sum(len(x) for x in atoms_list), "fmax": a.fmax,
                 "max_steps": a.max_steps, "max_atoms": a.relax_max_atoms, "methods": {}}  # fmt: skip
    ref = runs["torch_sim"][0]
    for method, method_runs in runs.items():
        first, fastest = method_runs[0], best(method_runs)
        cpu = min(r["cpu_s"] for r in method_runs)
        steps = int(sum(first["steps"]))
        entry = {"structures_per_s": n / fastest["wall_s"], "structures_per_s_cpu": n / cpu,
                 "fire_steps_per_s": steps / fastest["wall_s"], "fire_steps_per_s_cpu": steps / cpu,
                 "fire_steps_total": steps, "fire_steps_median": float(np.median(first["steps"])),
                 "converged": int(sum(first["converged"])), **timing(fastest, method_runs)}  # fmt: skip
        if method != "torch_sim":
            both = [i for i in range(n) if ref["converged"][i] and first["converged"][i]]
            de = np.abs([first["energy"][i] - ref["energy"][i] for i in both])
            entry["agreement_with_torch_sim"] = {
                "compared": len(both),
                "max_abs_dE_eV": float(de.max()) if len(de) else None,
                "median_abs_dE_eV": float(np.median(de)) if len(de) else None,
                "within_1meV": int((de < 1e-3).sum()),
                "within_10meV": int((de < 1e-2).sum()),
                "same_steps": int(sum(first["steps"][i] == ref["steps"][i] for i in both)),
                "fewer_steps_than_torch_sim": int(sum(first["steps"][i] < ref["steps"][i] for i in both)),
                "more_steps_than_torch_sim": int(sum(first["steps"][i] > ref["steps"][i] for i in both)),
            }
        out["methods"][method] = entry
    _ratios(out["methods"], "structures_per_s")
    base = out["methods"]["torch_sim"]
    for entry in out["methods"].values():
        entry["fire_step_rate_ratio_over_torch_sim"] = entry["fire_steps_per_s"] / base["fire_steps_per_s"]
    return out


def _cache_files(folder: str | os.PathLike[str]) -> int:
    return sum(len(files) for _, _, files in os.walk(folder)) if os.path.isdir(folder) else 0


def run_md_replicas(a: argparse.Namespace, potential: Any, scratch: Path) -> dict:
    from atomml import fast

    molecule = replica_molecule(a.replica_smiles, a.seed)
    copies = [molecule.copy() for _ in range(a.replicas)]
    general = TimedCall(fast.GeneralPath(potential, molecule.numbers, replicas=a.replicas))
    methods = {
        "torch_sim": lambda: md_torch_sim(copies, potential, a),
        "atomml_engine": lambda: md_engine(copies, potential, a),
        "atomml_replicas_general": lambda: md_replicas(molecule, general, a, scratch),
    }
    extra: dict = {"molecule_smiles": a.replica_smiles, "atoms_per_replica": len(molecule),
                   "replica_interval": a.replica_interval}  # fmt: skip
    if a.small_path:
        cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR", str(fast.CACHE_DIR))
        before = _cache_files(cache)
        start = time.perf_counter()
        small = fast.SmallSystemPath(potential, molecule.numbers, replicas=a.replicas, announce=True)
        start_positions = np.repeat(molecule.positions[None], a.replicas, axis=0)
        small(start_positions)  # the compile (or inductor cache load), before any timing
        extra["small_path"] = {
            "first_call_s": time.perf_counter() - start, "compile_seconds": small.compile_seconds,
            "compiles": small.compiles, "pair_capacity": small.capacity,
            "inductor_cache": cache.replace(str(Path.home()), "~", 1),  # no machine paths in the JSON
            "inductor_cache_files_added": _cache_files(cache) - before,
            "note": "first_call_s: compile (~1-2.5 min for a new molecule size and replica count on a 2-core CPU) or "
                    "inductor cache load (seconds); excluded from the timed runs",
        }  # fmt: skip
        timed_small = TimedCall(small)
        methods["atomml_replicas_small"] = lambda: md_replicas(molecule, timed_small, a, scratch)
    return md_case("md_replicas", copies, methods, a, extra)


def main() -> None:
    from importlib import metadata

    from atomml.benchmarking import cpu_name
    from atomml.potential_file import load_potential
    from atomml.threads import available_cpus

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--molecules", type=int, default=32, help="md_molecules: drug-like molecules")
    p.add_argument("--md-steps", type=int, default=60, help="MD steps (both MD cases)")
    p.add_argument("--replica-steps", type=int, default=None, help="md_replicas steps (default: --md-steps x 2)")
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--friction", type=float, default=0.1,
                   help="Langevin friction, 1/fs (strong, so that short runs reach the bath temperature)")
    p.add_argument("--replicas", type=int, default=16, help="md_replicas: K")
    p.add_argument("--replica-smiles", default=ASPIRIN, help="md_replicas: the molecule (default aspirin)")
    p.add_argument("--replica-interval", type=int, default=10, help="replica engine: steps between frames")
    p.add_argument("--no-small-path", dest="small_path", action="store_false",
                   help="md_replicas: leave out atomml's compiled small-system path (its compile takes minutes)")
    p.add_argument("--relax-molecules", type=int, default=32, help="relax_molecules: drug-like molecules")
    p.add_argument("--alloys", type=int, default=64, help="relax_alloys: alloy cells")
    p.add_argument("--fmax", type=float, default=0.05, help="eV/Å")
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--max-atoms", type=int, default=2048,
                   help="MD: most atoms in one batch of the atomml engines (torch-sim integrates every structure in "
                        "one state): keep it above the set's atoms")
    p.add_argument("--relax-max-atoms", type=int, default=512,
                   help="relaxations: most atoms in flight (all methods); below the set's total, so that converged "
                        "structures leave the batch and waiting ones join, as in a screening run")
    p.add_argument("--repeats", type=int, default=2, help="runs of each method per case, ABBA order; fastest kept")
    p.add_argument("--threads", type=int, default=1, help="torch threads (both sides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="write the JSON here too")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    report: dict = {
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "available_cpus": available_cpus(),
                    "torch_threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg()},
        "versions": {k: version(k) for k in ("atomml", "torch", "torch-sim-atomistic", "ase", "numpy", "rdkit")},
        "arguments": {k: v for k, v in vars(a).items() if k != "output"},
        "summary": [],
        "cases": {},
    }  # fmt: skip
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench_torchsim_"))
    organic = load_potential(ORGANIC) if {"md_molecules", "md_replicas", "relax_molecules"} & set(a.cases) else None
    steps = a.md_steps
    case_wall: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(case: str) -> None:
        nonlocal clock
        case_wall[case] = time.perf_counter() - clock
        clock = time.perf_counter()

    if "md_molecules" in a.cases:
        mols = druglike(a.molecules, a.seed)
        a.steps = steps
        methods = {"torch_sim": lambda: md_torch_sim(mols, organic, a),
                   "atomml_engine": lambda: md_engine(mols, organic, a)}  # fmt: skip
        report["cases"]["md_molecules"] = md_case("md_molecules", mols, methods, a, {"potential": ORGANIC})
        lap("md_molecules")
    if "md_replicas" in a.cases:
        a.steps = a.replica_steps or 2 * steps
        report["cases"]["md_replicas"] = run_md_replicas(a, organic, scratch)
        report["cases"]["md_replicas"]["potential"] = ORGANIC
        lap("md_replicas")
    if "relax_molecules" in a.cases:
        mols = druglike(a.relax_molecules, a.seed)
        methods = {"torch_sim": lambda: relax_torch_sim(mols, organic, a, cell=False),
                   "atomml_engine": lambda: relax_engine(mols, organic, a, cell=False)}  # fmt: skip
        report["cases"]["relax_molecules"] = relax_case("relax_molecules", mols, methods, a)
        report["cases"]["relax_molecules"]["potential"] = ORGANIC
        lap("relax_molecules")
    if "relax_alloys" in a.cases:
        metals = load_potential(METALS)
        cells = alloys(a.alloys, a.seed)
        methods = {"torch_sim": lambda: relax_torch_sim(cells, metals, a, cell=True),
                   "atomml_engine": lambda: relax_engine(cells, metals, a, cell=True)}  # fmt: skip
        report["cases"]["relax_alloys"] = relax_case("relax_alloys", cells, methods, a)
        report["cases"]["relax_alloys"]["potential"] = METALS
        report["cases"]["relax_alloys"]["cell"] = "FrechetCellFilter (atomml engine) / frechet_cell_fire (torch-sim)"
        lap("relax_alloys")

    for case, result in report["cases"].items():
        result["case_wall_s"] = case_wall.get(case)
        unit = "structure_steps_per_s" if case.startswith("md") else "structures_per_s"
        for method, entry in result["methods"].items():
            row = {"case": case, "method": method, "rate": entry[unit], "unit": unit,
                   "ratio_over_torch_sim": entry["ratio_over_torch_sim"],
                   "rate_cpu_time": entry[unit + "_cpu"],
                   "ratio_over_torch_sim_cpu_time": entry["ratio_over_torch_sim_cpu_time"],
                   "evaluation_fraction": entry["evaluation_fraction"]}  # fmt: skip
            if case.startswith("relax"):
                row["fire_steps_total"] = entry["fire_steps_total"]
                row["fire_step_rate_ratio_over_torch_sim"] = entry["fire_step_rate_ratio_over_torch_sim"]
            report["summary"].append(row)
    report["wall_s"] = time.perf_counter() - started
    report["machine"]["load_average_at_end"] = os.getloadavg()
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    if a.output:
        Path(a.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
