#!/usr/bin/env python
"""ns/day of the ML/MM hydration legs (issue 16): the OpenMM callback before the small-system path against today's.

    .venv/bin/python scripts/bench_mlmm_legs.py --output bench_mlmm_legs.json   # ~25-30 min on 2 cores
    .venv/bin/python scripts/bench_mlmm_legs.py --quick                         # smoke test, ~2 min

What is timed: the MM->ML end-state legs of ``atomml fe hydration --protocol freesolv
--ml-potential tensornet-organic-gfn2`` (:mod:`atomml.fe.mlmm`) for methane ("C") and ethanol
("CCO"), in water (the solute in the workflow's TIP3P box, at its density-equilibrated size) and
in vacuum. Each leg's System is the workflow's own (:func:`atomml.fe.mlmm.mixed_system` on the
set-up of :func:`atomml.fe.hydration.leg_setups` and the start of :func:`atomml.fe.hydration.leg_start`,
protocol ``md/protocols/freesolv.yaml`` with its ``mm_to_ml`` section), at one intermediate
state, ``lambda_interpolate`` = ``--lambda`` (0.5). MD as the sampler runs it: LangevinMiddle at
the protocol's temperature, friction and 2 fs step, on the platform the workflow picks (OpenMM's
fastest, ``--platform`` to name one), OpenMM's CPU threads and torch's threads both ``--threads``
and OpenMP's idle threads passive (as ``atomml fe hydration --threads`` sets them), in bursts of
the leg's ``steps_per_sample``. Only the MD steps are timed, not the sampler's energy evaluations
in every state after each sample (the solvent leg's Monte Carlo barostat calls the ML force in
its trials: its ``ml_calls_per_step`` is above 1).

The ML force's callback (the ``openmm.PythonForce`` inside openmm-ml's interpolating
``CustomCVForce``) is one of

- ``old``: the callback before the small-system path (commit c2540ea~1's ``AtomMLComputation``:
  an ASE ``Atoms`` and an :class:`~atomml.interfaces.ase.AtomMLCalculator` per force, the
  protocol's ``compile`` passed to the calculator), re-created here as :class:`OldComputation`
  on today's calculator with ``small_system=False`` (so the model code is today's: the
  difference measured is the callback's, not the TensorNet changes of the same commit);
- ``lean_general``: today's :class:`~atomml.interfaces.openmm.AtomMLComputation` with
  ``small_system=False`` (:class:`atomml.fast.GeneralPath`, the protocol's ``compile``: the
  architecture under ``torch.compile`` with dynamic shapes);
- ``small``: today's ``AtomMLComputation`` with ``small_system=True`` (the compiled
  :class:`atomml.fast.SmallSystemPath` from the first call; ``"auto"``, the workflow's default,
  moves there after :data:`atomml.fast.AUTO_AFTER_CALLS` steps);
- ``batched``: the ``small`` callback in one Context per state of the leg (the protocol's
  ``lambdas``), stepped side by side in threads with every state's ML solute evaluated in one
  call per step (:mod:`atomml.lockstep`, the samplers' ``batched=True``);

and ``mm`` is the leg's MM System (no ML force, no interpolation) for reference. The callback
is chosen by building the System through the workflow's code while openmm-ml's atomml plugin
constructs the chosen class instead of ``AtomMLComputation`` (``mock.patch``): the System is
the workflow's in every other respect. Each (molecule, leg, threads, path) runs in a fresh
subprocess; within a (molecule, leg, threads) the paths run in ABBA order over ``--rounds`` and
their bursts are pooled (:mod:`atomml.benchmarking`). Before timing, each worker creates the
Context, evaluates the ML energy at the start (the interpolation's ``mlTerm0``, in kJ/mol: the
three ML paths compute the same function and must agree to float32 round-off), and runs
``--warmup`` steps; that start-up, with any compile in it, is reported apart (``startup_s``,
``first_ml_call_s``, and the small path's ``compile_seconds``). The small path compiles in
every worker, from ``~/.cache/atomml/inductor`` once a solute size is cached (~30 s per worker
on a loaded 2-core CPU, more the first time); ``torch.compile`` of the general path (``old``,
``lean_general``, dynamic shapes) takes minutes the first time and seconds once torch's own
cache holds it.

Reported per (molecule, leg, threads): ns/day of each path (median burst; for ``batched``, of
each of its states, all advancing at once), the ML callback's milliseconds per step, and the
ratios small/old and small/lean_general of ns/day; and ``leg_ns_per_day``, the nanoseconds a
whole leg gets through per day (the states one after another on every path but ``batched``:
its per-state ns/day times the number of states), with the ratios batched/old and batched/small. The set-ups
and the density-equilibrated boxes are made once in ``--workdir`` (a 100 ps NPT run of the box,
~4 min per molecule on 2 cores, before any worker starts) and reused by later runs: the times
above are for a prepared ``--workdir`` and warm compile caches.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from atomml import units
from atomml.benchmarking import cpu_name, emit_json, pool_times, source_state, spawn_worker
from atomml.interfaces import openmm as openmm_interface
from atomml.lockstep import side_by_side

ROOT = Path(__file__).resolve().parents[1]
POTENTIAL = "tensornet-organic-gfn2"
PROTOCOL = "freesolv"
SMILES = {"methane": "C", "ethanol": "CCO"}
LEGS = ("solvent", "vacuum")
PATHS = ("mm", "old", "lean_general", "small", "batched")
ML_PATHS = PATHS[1:]
FULL = {"molecules": "methane,ethanol", "threads": "1,2", "steps": 1000, "warmup": 100, "burst": None, "rounds": 2}
QUICK = {"molecules": "methane", "threads": "1", "steps": 20, "warmup": 10, "burst": 10, "rounds": 1}


# -- the three callbacks ----------------------------------------------------------------------


class OldComputation:
    """The PythonForce callback of commit c2540ea~1: OpenMM state (nm) -> (energy kJ/mol,
    forces kJ/mol/nm) through an ASE ``Atoms`` and its AtomMLCalculator. ``small_system``: what
    today's plugin passes, ignored (the calculator stays on the general path, as it was then)."""

    def __init__(self, potential: Any, numbers: Any, periodic: bool, charge: float = 0.0,
                 precision: str = "single", device: str | None = None, skin: float = 0.5, compile: bool = False,
                 small_system: Any = None):  # fmt: skip
        import ase
        import torch

        from atomml.graph import total_charge
        from atomml.interfaces.ase import AtomMLCalculator

        dtypes = {"single": torch.float32, "double": torch.float64}
        self.periodic = bool(periodic)
        self.atoms = ase.Atoms(numbers=list(numbers), pbc=self.periodic)
        self.atoms.info["charge"] = total_charge(charge, "the charge option of createSystem")
        self.calculator = AtomMLCalculator(potential, device=device, dtype=dtypes[precision], skin=skin,
                                           compile=compile, small_system=False)  # fmt: skip
        self.atoms.calc = self.calculator

    def __call__(self, state: Any) -> tuple[float, np.ndarray]:
        from openmm import unit

        positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        self.atoms.set_positions(positions)
        if self.periodic:
            self.atoms.set_cell(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.angstrom))
        energy = self.atoms.get_potential_energy()
        forces = self.atoms.get_forces()
        return energy * units.EV_TO_KJ_PER_MOL, forces * openmm_interface.FORCE_PER_EV_PER_A


LIVE: list[Any] = []  # the callbacks OpenMM has called, each with the seconds of its calls


class _Timed:
    """Times each call. OpenMM copies a PythonForce by pickling its computation (openmm-ml's
    deepcopy, the Context's creation), so the object that OpenMM calls is an unpickled copy,
    which registers itself in :data:`LIVE` at its first call."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.pop("call_seconds", None)  # a copy starts its own record

    def __call__(self, state: Any) -> tuple[float, np.ndarray]:
        if "call_seconds" not in self.__dict__:
            self.call_seconds: list[float] = []
            LIVE.append(self)
        start = time.perf_counter()
        out = super().__call__(state)  # type: ignore[misc]
        self.call_seconds.append(time.perf_counter() - start)
        return out


class Old(_Timed, OldComputation):
    pass


class _Today(_Timed, openmm_interface.AtomMLComputation):
    SMALL_SYSTEM: bool

    def __init__(self, *args: Any, small_system: Any = None, **kwargs: Any):  # the plugin passes "auto"
        super().__init__(*args, small_system=self.SMALL_SYSTEM, **kwargs)


class LeanGeneral(_Today):
    SMALL_SYSTEM = False


class Small(_Today):
    SMALL_SYSTEM = True


COMPUTATIONS = {"old": Old, "lean_general": LeanGeneral, "small": Small, "batched": Small}


# -- worker (one path on one leg per process) -------------------------------------------------


def protocols() -> tuple[Any, Any]:
    from atomml.fe.hydration import HydrationProtocol
    from atomml.fe.mlmm import EndStateProtocol

    return HydrationProtocol.from_yaml(PROTOCOL), EndStateProtocol.from_yaml(PROTOCOL)


def set_threads(threads: int) -> int:
    """torch's threads and the default of OpenMM's CPU platform, as ``atomml fe hydration --threads``."""
    import openmm

    from atomml.threads import set_threads as set_torch_threads

    openmm.Platform.getPlatformByName("CPU").setPropertyDefaultValue("Threads", str(threads))
    return set_torch_threads(threads)


def leg_start(molecule: str, leg: str, workdir: Path, platform: str | None = None) -> tuple[Any, ...]:
    """(set-up, MM System, positions, box) of a leg, made in ``workdir/molecule`` on first use."""
    from atomml.fe.hydration import leg_setups
    from atomml.fe.hydration import leg_start as workflow_leg_start

    protocol, _ = protocols()
    solvated, vacuum = leg_setups(SMILES[molecule], workdir / molecule, protocol)
    setup = solvated if leg == "solvent" else vacuum
    return (setup, *workflow_leg_start(setup, protocol, leg == "solvent", platform))


def worker(args) -> dict:
    import openmm
    from openmm import unit

    from atomml.fe.mlmm import LAMBDA, mixed_system
    from atomml.fe.sampling import platform_for

    started = time.perf_counter()
    # the worker's CPUs: as many as its threads, so that the batched path's K Contexts, stepped
    # in K threads, get no more CPU than one Context does (its MM would otherwise run on every core)
    cpus = sorted(os.sched_getaffinity(0))[: args.threads]
    os.sched_setaffinity(0, cpus)
    threads = set_threads(args.threads)
    protocol, end_state = protocols()
    solvent = args.leg == "solvent"
    setup, system, positions, box = leg_start(args.molecule, args.leg, Path(args.workdir), args.platform)
    if args.path != "mm":
        with mock.patch.object(openmm_interface, "AtomMLComputation", COMPUTATIONS[args.path]):
            system = mixed_system(setup, args.potential, protocol, end_state, solvent)
    batched = args.path == "batched"
    lambdas = list(end_state.lambdas) if batched else [args.lambda_]
    contexts = []
    for k, value in enumerate(lambdas):
        integrator = openmm.LangevinMiddleIntegrator(protocol.temperature * unit.kelvin,
                                                     protocol.friction_per_ps / unit.picosecond,
                                                     end_state.timestep_fs * unit.femtosecond)  # fmt: skip
        integrator.setRandomNumberSeed(protocol.seed + 1 + k)
        context = openmm.Context(system, integrator, *platform_for(args.platform, len(lambdas)))  # as the samplers do
        if box is not None:
            context.setPeriodicBoxVectors(*box)
        context.setPositions(positions)
        if args.path != "mm":
            context.setParameter(LAMBDA, value)
        context.setVelocitiesToTemperature(protocol.temperature * unit.kelvin, protocol.seed + k)
        contexts.append((context, integrator))
    context, integrator = contexts[0]
    ml_energy = None
    if args.path != "mm":
        cv = next(f for f in context.getSystem().getForces() if isinstance(f, openmm.CustomCVForce))
        names = [cv.getCollectiveVariableName(i) for i in range(cv.getNumCollectiveVariables())]
        ml_energy = float(cv.getCollectiveVariableValues(context)[names.index("mlTerm0")])

    def step(n: int) -> None:
        """n steps of every context: side by side (one ML call per step for all), or the one context."""
        if batched:
            side_by_side([functools.partial(i.step, n) for _, i in contexts])
        else:
            integrator.step(n)
        context.getState(getPositions=True)  # waits for the steps on an asynchronous platform (no extra force call)

    step(1 + args.warmup)
    context.getState(getEnergy=True)
    startup = time.perf_counter() - started
    live = [c for c in LIVE if c.call_seconds]
    if args.path not in ("mm", "batched") and len(live) != 1:
        raise RuntimeError(f"expected one ML callback that OpenMM calls, found {len(live)}")
    calls = live[0].call_seconds if live and not batched else []  # batched: a call's time includes the wait
    bursts, ml_bursts, ml_calls = [], [], 0
    for _ in range(max(1, args.steps // args.burst)):
        before = len(calls)
        t0 = time.perf_counter()
        step(args.burst)
        bursts.append(time.perf_counter() - t0)
        ml_bursts.append(sum(calls[before:]))
        ml_calls += len(calls) - before
    steps = len(bursts) * args.burst
    result = {
        "molecule": args.molecule, "leg": args.leg, "path": args.path, "threads": threads, "cpus": cpus,
        "openmm_threads": context.getPlatform().getPropertyValue(context, "Threads")
        if context.getPlatform().getName() == "CPU" else None,
        "platform": context.getPlatform().getName(), "n_atoms": system.getNumParticles(),
        "ml_atoms": len(setup.molecule_atoms), "lambda_interpolate": args.lambda_ if args.path != "mm" else None,
        "steps": steps, "burst": args.burst, "warmup_steps": args.warmup, "startup_s": startup,
        "seconds_all": bursts, "seconds_median": statistics.median(bursts), "seconds_min": min(bursts),
        "ml_energy_at_start_kj_per_mol": ml_energy, "states_side_by_side": len(contexts),
    }  # fmt: skip
    if live and not batched:
        callback = live[0]
        # the ML callback's share of the median burst: its seconds in that burst (not the mean,
        # which one burst slowed by another process on a shared machine would dominate)
        median_burst = sorted(range(len(bursts)), key=bursts.__getitem__)[(len(bursts) - 1) // 2]
        result.update(first_ml_call_s=callback.call_seconds[0], ml_calls_per_step=ml_calls / steps,
                      ml_seconds_all=ml_bursts, ml_seconds_per_step=ml_bursts[median_burst] / args.burst)  # fmt: skip
    small = getattr(live[0], "small", None) if live and not batched else None
    if small is not None:
        result.update(compiles=small.compiles, compile_seconds=small.compile_seconds,
                      small_threads=small.threads, neighbor_list_builds=small.neighbor_list_builds)  # fmt: skip
    result["compile_general_path"] = end_state.compile
    return result


# -- the benchmark (this process prepares the legs and runs the workers) ---------------------


def worker_environment(threads: int, wait_policy: str) -> dict[str, str]:
    """``threads`` OpenMP threads with ``wait_policy``; PASSIVE is how the ``atomml`` command runs
    (:func:`atomml.threads.passive_openmp`: idle threads sleep at once instead of spinning
    against OpenMM's own threads)."""
    return {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": wait_policy}


def ns_per_day(seconds_per_burst: float, burst: int, timestep_fs: float) -> float:
    return burst * timestep_fs * units.NS_PER_FS / seconds_per_burst * units.SECONDS_PER_DAY


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def run_workers(args, molecule: str, leg: str, threads: int, paths: list[str]) -> dict[str, list[dict]]:
    """Every path of one (molecule, leg, threads) once per round, the order reversed every other
    round (A B B A ...); each path's worker results by round."""
    runs: dict[str, list[dict]] = {path: [] for path in paths}
    for r in range(args.rounds):
        for path in paths if r % 2 == 0 else paths[::-1]:
            argv = [__file__, "--worker", "--molecule", molecule, "--leg", leg, "--path", path, "--threads", threads,
                    "--steps", args.steps, "--warmup", args.warmup, "--burst", args.burst, "--lambda", args.lambda_,
                    "--workdir", args.workdir, "--potential", args.potential]  # fmt: skip
            if args.platform:
                argv += ["--platform", args.platform]
            label = {"key": f"{molecule}/{leg}/{threads}t/{path}"}
            runs[path].append(spawn_worker(argv, measure="time", label=label, cwd=ROOT, tag="bench_mlmm",
                                           env=worker_environment(threads, args.omp_wait_policy)))  # fmt: skip
    return runs


def leg_entry(runs: dict[str, list[dict]], burst: int, timestep_fs: float) -> dict:
    """What one (molecule, leg, threads) measured: ns/day of each path from its pooled bursts,
    the ratios, the ML callback's cost per step and the start-up, and the ML energy at the
    start as each ML path computed it (the same function: they agree to float32 round-off)."""
    pooled = {}
    for path, outs in runs.items():
        for out in outs:
            pooled[path] = pool_times(pooled.get(path), out)
    ok = {path: out for path, out in pooled.items() if "error" not in out}
    speed = {p: ns_per_day(ok[p]["seconds_median"], burst, timestep_fs) if p in ok else None for p in runs}
    # the leg's ns/day: the states run one after another on every path but "batched", which
    # advances all of its states in each burst
    states = {p: ok[p]["states_side_by_side"] if p in ok else 1 for p in runs}
    leg = {p: None if v is None else v * states[p] for p, v in speed.items()}
    ml = [p for p in runs if p in ML_PATHS]
    done = {p: [out for out in runs[p] if "error" not in out] for p in runs}

    def median(path: str, key: str, scale: float = 1.0) -> float | None:
        values = [scale * out[key] for out in done[path] if key in out]
        return statistics.median(values) if values else None

    energies = {p: [out["ml_energy_at_start_kj_per_mol"] for out in done[p]] for p in ml}
    firsts = [values[0] for values in energies.values() if values]
    return {
        "n_atoms": next((out["n_atoms"] for out in ok.values()), None),
        "ml_atoms": next((out["ml_atoms"] for out in ok.values()), None),
        "platform": next((out["platform"] for out in ok.values()), None),
        "ns_per_day": speed,
        "small/old": _ratio(speed.get("small"), speed.get("old")),
        "small/lean_general": _ratio(speed.get("small"), speed.get("lean_general")),
        "leg_ns_per_day": leg, "states_side_by_side": states.get("batched"),
        "batched/old": _ratio(leg.get("batched"), leg.get("old")),
        "batched/small": _ratio(leg.get("batched"), leg.get("small")),
        "ml_ms_per_step": {p: median(p, "ml_seconds_per_step", 1e3) for p in ml},
        "ml_calls_per_step": {p: median(p, "ml_calls_per_step") for p in ml},
        "ml_energy_at_start_kj_per_mol": energies,
        "ml_energy_spread_kj_per_mol": max(firsts) - min(firsts) if firsts else None,
        "startup_s": {p: [out["startup_s"] for out in done[p]] for p in runs},
        "first_ml_call_s": {p: [out["first_ml_call_s"] for out in done[p] if "first_ml_call_s" in out] for p in ml},
        "small_compile_seconds": [out["compile_seconds"] for out in done.get("small", [])],
        "burst_seconds_all": {p: ok[p]["seconds_all"] if p in ok else None for p in runs},
        "failed_workers": {p: [out["error"] for out in outs if "error" in out] for p, outs in runs.items()
                           if any("error" in out for out in outs)},
    }  # fmt: skip


def benchmark(args) -> dict:
    from importlib import metadata

    molecules = [m for m in args.molecules.split(",") if m]
    legs = [leg for leg in args.legs.split(",") if leg]
    threads_list = [int(t) for t in args.threads.split(",") if t]
    paths = [p for p in args.paths.split(",") if p]
    for given, allowed, what in ((molecules, SMILES, "--molecules"), (legs, LEGS, "--legs"),
                                 (paths, PATHS, "--paths")):  # fmt: skip
        if not set(given) <= set(allowed):
            raise SystemExit(f"{what}: choose from {', '.join(allowed)} (got {', '.join(given)})")
    _, end_state = protocols()
    report: dict = {
        "summary": {}, "protocol": PROTOCOL, "potential": args.potential, "lambda_interpolate": args.lambda_,
        "timestep_fs": end_state.timestep_fs, "precision": end_state.precision, "compile": end_state.compile,
        "threads": threads_list, "rounds": args.rounds, "steps_per_worker": args.steps, "burst": args.burst,
        "warmup_steps": args.warmup, "quick": args.quick, "platform_requested": args.platform,
        "omp_wait_policy": args.omp_wait_policy,
        "versions": {p: metadata.version(p) for p in ("torch", "openmm", "openmmml")},
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "atomml_source": source_state(),
    }  # fmt: skip
    started = time.perf_counter()
    set_threads(max(threads_list))
    for molecule in molecules:  # set-up and density equilibration here, not inside a timed worker
        for leg in legs:
            print(f"[bench_mlmm] preparing {molecule} {leg} in {args.workdir}", file=sys.stderr, flush=True)
            leg_start(molecule, leg, Path(args.workdir), args.platform)
    entries = {}
    for molecule in molecules:
        for leg in legs:
            for threads in threads_list:
                runs = run_workers(args, molecule, leg, threads, paths)
                entries[f"{molecule}/{leg}/{threads}t"] = {
                    "molecule": molecule, "smiles": SMILES[molecule], "leg": leg, "threads": threads,
                    **leg_entry(runs, args.burst, end_state.timestep_fs),
                }  # fmt: skip
    report["entries"] = entries
    report["summary"] = {key: {k: e[k] for k in ("ns_per_day", "small/old", "small/lean_general", "ml_ms_per_step",
                                                  "leg_ns_per_day", "batched/old", "batched/small")}
                         for key, e in entries.items()}  # fmt: skip
    report["failed_workers"] = {key: e["failed_workers"] for key, e in entries.items() if e["failed_workers"]}
    report["wall_s"] = time.perf_counter() - started
    report["load_average_at_end"] = os.getloadavg()
    if source_state() != report["atomml_source"]:
        report["warning"] = "atomml source changed during the run: the workers may have used different code"
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK} unless given")
    p.add_argument("--molecules", help=f"comma-separated, from {tuple(SMILES)} (default {FULL['molecules']})")
    p.add_argument("--legs", default=",".join(LEGS), help="comma-separated, from solvent, vacuum (default both)")
    p.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, from {PATHS} (default all)")
    p.add_argument("--threads", help=f"comma-separated: torch and OpenMM CPU threads (default {FULL['threads']})")
    p.add_argument("--steps", type=int, help=f"timed MD steps per worker (default {FULL['steps']})")
    p.add_argument("--warmup", type=int, help=f"MD steps after the first, before timing (default {FULL['warmup']})")
    p.add_argument("--burst", type=int, help="steps per timed burst (default: the protocol's steps_per_sample)")
    p.add_argument("--rounds", type=int, help=f"ABBA rounds per leg, pooled (default {FULL['rounds']})")
    p.add_argument("--lambda", dest="lambda_", type=float, default=0.5, metavar="LAMBDA",
                   help="lambda_interpolate of the state timed (default %(default)s)")  # fmt: skip
    p.add_argument("--platform", help="OpenMM platform (default: OpenMM's fastest, as the workflow)")
    p.add_argument("--omp-wait-policy", default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                   help="OMP_WAIT_POLICY of the workers (default: the environment's, else PASSIVE as the atomml "
                        "command sets it; ACTIVE spins idle OpenMP threads against OpenMM's)")  # fmt: skip
    p.add_argument("--potential", default=POTENTIAL, help="ML potential (default the shipped %(default)s)")
    p.add_argument("--workdir", default=str(ROOT / "runs" / "bench_mlmm_legs"),
                   help="set-ups and equilibrated boxes, made once and reused (default %(default)s)")  # fmt: skip
    p.add_argument("--output", help="also write the JSON here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--molecule", help=argparse.SUPPRESS)
    p.add_argument("--leg", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:  # the parent passes every setting a worker uses
        args.threads = int(args.threads)
        emit_json(worker(args), args.output, worker=True)
        return
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.burst is None:
        args.burst = protocols()[1].steps_per_sample
    emit_json(benchmark(args), args.output)


if __name__ == "__main__":
    main()
