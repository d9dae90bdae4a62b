#!/usr/bin/env python
"""The small-system path (:mod:`atomml.fast`) against atomml's general path, torchmd-net and GFN2-xTB.

Run with the test environment (torchmd-net, RDKit and tblite are in the ``test`` and ``data`` extras)::

    .venv/bin/python scripts/bench_small_molecules.py --output bench_small_molecules.json   # ~15-30 min
    .venv/bin/python scripts/bench_small_molecules.py --quick     # smoke test: ethanol, 1 thread, ~3-8 min

Everything is float32 energy + forces per call on the CPU, in three parts:

- ``single`` (A): one molecule per call (aspirin, 21 atoms, and paracetamol, 20 atoms, as RDKit
  ETKDG + MMFF conformers with a fixed seed; ethanol, 9 atoms, from ASE) with two models, the
  shipped ``tensornet-organic-gfn2`` (64 channels) and TensorNet at 128 channels with torchmd-net
  3.1's weights (``bench_tensornet.paired_models``), at each ``--threads``. Paths:
  ``atomml_general`` (``AtomMLCalculator(small_system=False)``, ``get_forces()``),
  ``atomml_small`` (``SmallSystemPath`` on (1, N, 3) positions; its compile is the first call,
  reported as ``cold_start_s``: the first round's, a full compile only where the inductor cache
  did not hold the shape yet, which part C measures in a controlled way), ``torchmdnet`` (torchmd-net's eager TensorNet of the model's size:
  the same weights at 128 channels, its own random weights at 64 channels, as the issue asks for
  "torchmd-net's TensorNet of the same size") and ``xtb`` (GFN2-xTB through tblite's ASE
  calculator). Headline: the ratios xtb/atomml_small, torchmdnet/atomml_small and
  atomml_general/atomml_small of median times, and each path's 1 -> 2 thread speed-up.
- ``replicas`` (B): K = 1, 4, 16 replicas of aspirin (shipped potential) per call,
  ``GeneralPath`` against ``SmallSystemPath``: time per step relative to K = 1 of the same path,
  and general/small at each K.
- ``cold_start`` (C): the first call of ``SmallSystemPath`` (aspirin, shipped potential) in a
  process with an empty inductor cache (``ATOMML_CACHE_DIR`` and ``TORCHINDUCTOR_CACHE_DIR`` on a
  fresh temporary folder), then in a second process on the same folder (warm cache), both
  relative to a steady call.

Positions change by a fresh 1e-4 Å displacement every call (``--jitter``; a seeded cycle of 64),
so that ASE recomputes and every path sees the same sequence: the energies of the last calls of
the atomml paths (and of torchmd-net's 128-channel model, the same function) are compared as a
check that they computed the same thing. tblite's calculator starts each SCF from the previous
call's wavefunction, as in MD; from steps this small it converges in fewer iterations than from
MD steps (~0.01 Å), so ``xtb`` is measured at its fastest.

Each (path, system, threads) runs in a fresh subprocess with ``torch.set_num_threads`` and
``OMP_NUM_THREADS`` (tblite) set; within a (molecule, threads) or (threads) group the
subprocesses run in ABBA order over ``--rounds`` and their timed calls are pooled
(``atomml.benchmarking``). Compiled kernels specialise on the thread count, so each (molecule,
model, K, threads) shape compiles once, ~16 in all (~60 s each on a 2-core CPU, more on a busy
one), into the user's inductor cache (``~/.cache/atomml/inductor``), and later subprocesses load
it (~5-10 s each). A full run is ~15 min once the cache holds these shapes, and the first run on
a machine (or after a change to the model code) ~15 min longer; part ``cold_start`` always
compiles once in its own empty cache. ``--parts``, ``--molecules``, ``--models`` and
``--threads`` run a subset.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tensornet import HYPER, paired_models, torchmdnet_model

from atomml import fast
from atomml.benchmarking import cpu_name, emit_json, measure_call, pool_times, source_state, spawn_worker
from atomml.testing.structures import benchmark_system, molecule_from_smiles

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "tensornet-organic-gfn2"
SMILES = {"aspirin": "CC(=O)OC1=CC=CC=C1C(=O)O", "paracetamol": "CC(=O)NC1=CC=C(O)C=C1"}
MOLECULES = ("aspirin", "paracetamol", "ethanol")
# model name -> torchmd-net channels of the same size (the shipped potential has 64)
MODELS = {"shipped": 64, "tensornet128": HYPER["embedding_dimension"]}
PATHS = ("atomml_general", "atomml_small", "torchmdnet", "xtb")
PEERS = ("xtb", "torchmdnet", "atomml_general")  # each reported as its time over atomml_small's
REPLICA_PATHS = ("general", "small")
JITTER = 1e-4  # Å, a fresh displacement every call
CYCLE = 64  # jittered frames, used in turn
REPLICA_SPREAD = 0.02  # Å, how far replicas 1..K-1 stand from replica 0 (distinct structures)
TARGET_OVER_TORCHMDNET = 6.0  # the target for torchmdnet/atomml_small at the shipped size
FULL = {
    "molecules": "aspirin,paracetamol,ethanol",
    "models": "shipped,tensornet128",
    "threads": "1,2",
    "replicas": "1,4,16",
    "replica_molecule": "aspirin",
    "rounds": 2,
    "repeats": 30,
    "warmup": 5,
    "cold_repeats": 10,
}
QUICK = {
    "molecules": "ethanol",
    "models": "shipped,tensornet128",
    "threads": "1",
    "replicas": "1,4",
    "replica_molecule": "ethanol",
    "rounds": 1,
    "repeats": 5,
    "warmup": 2,
    "cold_repeats": 3,
}


# -- workers (one measurement per process) ----------------------------------------------------


def molecule(name: str, seed: int = 0):
    if name == "ethanol":
        return benchmark_system("ethanol")[0]
    return molecule_from_smiles(SMILES[name], seed)


def frames(base: np.ndarray, seed: int, jitter: float) -> itertools.cycle:
    """A cycle of ``base`` (K, N, 3) positions, each with its own random displacement of
    ``jitter`` Å (normal, per component), not accumulating."""
    rng = np.random.default_rng(seed)
    return itertools.cycle(base[None] + jitter * rng.standard_normal((CYCLE, *base.shape)))


def atomml_potential(model: str, potential_file: str | None = None):
    """The atomml potential of ``model``; ``potential_file``: the same saved by the parent, so
    that a worker need not import torchmd-net (~5 s) to convert it."""
    from atomml.potential_file import load_potential

    if potential_file:
        return load_potential(potential_file)
    return load_potential(SHIPPED) if model == "shipped" else paired_models()[0]


def _tensors(energy, forces) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(np.asarray(energy, dtype=np.float64)), torch.as_tensor(forces)


def single_call(path: str, atoms, model: str, seed: int, jitter: float, potential_file: str | None = None):
    """``call() -> (energy, forces)`` of one path on one molecule, and a function that reports
    the path's own counters after the timing."""
    positions = frames(atoms.positions[None], seed, jitter)
    if path in ("atomml_general", "xtb"):
        atoms = atoms.copy()
        if path == "xtb":
            from tblite.ase import TBLite

            atoms.calc, info = TBLite(method="GFN2-xTB", verbosity=0), {}
        else:
            from atomml.interfaces.ase import AtomMLCalculator

            # small_system=False keeps the calculator on the general path; before the argument
            # existed it was the only path (the worker also runs with ATOMML_SMALL_SYSTEM=0)
            options = (
                {"small_system": False} if "small_system" in inspect.signature(AtomMLCalculator).parameters else {}
            )
            atoms.calc = AtomMLCalculator(atomml_potential(model, potential_file), device="cpu", **options)
            info = {"small_system_argument": bool(options)}

        def call():
            atoms.positions = next(positions)[0]
            forces = atoms.get_forces()  # energy and forces come from one evaluation
            return _tensors(atoms.get_potential_energy(), forces)

        return call, lambda: info
    if path == "atomml_small":
        from atomml.fast import SmallSystemPath

        small = SmallSystemPath(atomml_potential(model, potential_file), atoms.numbers)

        def call():
            return _tensors(*small(next(positions)))

        counters = ("compiles", "compile_seconds", "neighbor_list_builds", "capacity")
        return call, lambda: {name: getattr(small, name) for name in counters}
    net = torchmdnet_model(embedding_dimension=MODELS[model])  # seed 0: paired_models' weights at 128
    z = torch.as_tensor(atoms.numbers, dtype=torch.long)
    batch = torch.zeros(len(atoms), dtype=torch.long)

    def call():  # torchmd-net's usual eager call, as bench_tensornet.py makes it
        energy, forces = net(z, torch.tensor(next(positions)[0], dtype=torch.float32), batch, box=None)
        return energy.detach().squeeze(-1), forces.detach()

    return call, lambda: {"channels": MODELS[model]}


def replica_call(path: str, atoms, replicas: int, seed: int, jitter: float):
    from atomml.fast import GeneralPath, SmallSystemPath

    rng = np.random.default_rng(seed + 1)
    base = atoms.positions[None] + REPLICA_SPREAD * rng.standard_normal((replicas, len(atoms), 3))
    base[0] = atoms.positions
    positions = frames(base, seed, jitter)
    evaluator = (GeneralPath if path == "general" else SmallSystemPath)(atomml_potential("shipped"), atoms.numbers,
                                                                         replicas=replicas)  # fmt: skip

    def call():
        return _tensors(*evaluator(next(positions)))

    return call, lambda: {
        "compiles": getattr(evaluator, "compiles", None),
        "neighbor_list_builds": evaluator.neighbor_list_builds,
    }


def worker(args) -> dict:
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    atoms = molecule(args.molecule, args.seed)
    if args.worker == "single":
        call, info = single_call(args.path, atoms, args.model, args.seed, args.jitter, args.potential_file)
    elif args.worker == "replicas":
        call, info = replica_call(args.path, atoms, args.replicas, args.seed, args.jitter)
    else:  # cold_start: the small path, in a process whose parent chose the cache folder
        call, info = single_call("atomml_small", atoms, "shipped", args.seed, args.jitter)
    setup = time.perf_counter() - started
    t0 = time.perf_counter()
    call()  # the compile, for the small path
    first = time.perf_counter() - t0
    result = {"worker": args.worker, "path": args.path, "molecule": args.molecule, "model": args.model,
              "replicas": args.replicas, "n_atoms": len(atoms), "threads": torch.get_num_threads(),
              "setup_s": setup, "first_call_s": first}  # fmt: skip
    result.update(measure_call(call, warmup=args.warmup, repeats=args.repeats))
    result.update(info())
    return result


# -- the benchmark (this process runs the workers) --------------------------------------------


class Runs:
    """Pooled timings of the workers, by key, with every round's first call."""

    def __init__(self, args):
        self.args, self.pooled, self.first, self.loads = args, {}, {}, []
        self.potential_files: dict[str, str] = {}  # model -> a saved copy of its atomml potential

    def run(self, key: tuple, worker: str, threads: int, *, repeats: int | None = None, env=None, **options) -> dict:
        a = self.args
        argv = [__file__, "--worker", worker, "--threads", threads, "--seed", a.seed, "--jitter", a.jitter,
                "--warmup", a.warmup, "--repeats", a.repeats if repeats is None else repeats]  # fmt: skip
        for name, value in options.items():
            argv += [f"--{name.replace('_', '-')}", value]
        label = {"key": "/".join(map(str, key))}
        out = spawn_worker(argv, measure="time", label=label, cwd=ROOT, tag="bench_small",
                           env={"OMP_NUM_THREADS": str(threads), **(env or {})})  # fmt: skip
        self.pooled[key] = pool_times(self.pooled.get(key), out)
        self.loads.append(os.getloadavg()[0])  # just after the worker: its own threads count too
        if "error" not in out:
            self.first.setdefault(key, []).append(out["first_call_s"])
        return out

    def abba(self, tasks: list[tuple[tuple, dict]]) -> None:
        """Each task once per round, the order reversed every other round (A B B A ...)."""
        for r in range(self.args.rounds):
            for key, spec in tasks if r % 2 == 0 else tasks[::-1]:
                self.run(key, **spec)

    def ms(self, key: tuple, stat: str = "seconds_median") -> float | None:
        out = self.pooled.get(key)
        return None if out is None or "error" in out else 1e3 * out[stat]


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _rel_diff(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or "error" in a or "error" in b:
        return None
    return abs(a["energy_sum"] - b["energy_sum"]) / max(abs(b["energy_sum"]), 1e-30)


def part_single(runs: Runs, molecules, models, threads_list) -> dict:
    entries, speedups = {}, {}
    for name in molecules:
        for threads in threads_list:
            tasks = []
            for model in models:
                for path in PATHS[:3]:
                    key = ("single", name, model, path, threads)
                    spec = {"worker": "single", "threads": threads, "molecule": name, "model": model, "path": path}
                    if path == "atomml_general":  # no automatic switch to the small path, whatever the calculator
                        spec["env"] = {fast.ENVIRONMENT_SWITCH: "0"}
                    if path != "torchmdnet" and model in runs.potential_files:
                        spec["potential_file"] = runs.potential_files[model]
                    tasks.append((key, spec))
            key = ("single", name, "-", "xtb", threads)
            tasks.append((key, {"worker": "single", "threads": threads, "molecule": name, "path": "xtb"}))
            runs.abba(tasks)
        for model in models:
            keys = {
                (path, t): ("single", name, "-" if path == "xtb" else model, path, t)
                for path in PATHS
                for t in threads_list
            }
            for threads in threads_list:
                ms = {path: runs.ms(keys[path, threads]) for path in PATHS}
                low = {path: runs.ms(keys[path, threads], "seconds_min") for path in PATHS}
                small = runs.pooled.get(keys["atomml_small", threads], {})
                pooled = {path: runs.pooled.get(keys[path, threads]) for path in PATHS}
                entries[f"{name}/{model}/{threads}t"] = {
                    "molecule": name, "model": model, "threads": threads,
                    "n_atoms": small.get("n_atoms"), "torchmdnet_channels": MODELS[model],
                    "ratios": {f"{p}/atomml_small": _ratio(ms[p], ms["atomml_small"]) for p in PEERS},
                    "ratios_fastest_call": {f"{p}/atomml_small": _ratio(low[p], low["atomml_small"]) for p in PEERS},
                    "median_ms": ms,
                    "cold_start_s": runs.first.get(keys["atomml_small", threads], [None])[0],
                    "first_call_s_per_round": {p: runs.first.get(keys[p, threads]) for p in PATHS},
                    "small_path": {k: small.get(k) for k in ("compiles", "compile_seconds", "neighbor_list_builds")},
                    "general_small_system_argument": (pooled["atomml_general"] or {}).get("small_system_argument"),
                    "energy_rel_diff_small_vs_general": _rel_diff(pooled["atomml_small"], pooled["atomml_general"]),
                    "energy_rel_diff_small_vs_torchmdnet": _rel_diff(pooled["atomml_small"], pooled["torchmdnet"])
                    if model == "tensornet128" else None,  # the same weights only at 128 channels
                    "calls_all_ms": {p: [1e3 * s for s in (pooled[p] or {}).get("seconds_all", [])] for p in PATHS},
                }  # fmt: skip
            if len(threads_list) > 1:
                one, two = threads_list[0], threads_list[-1]
                speedups[f"{name}/{model}"] = {
                    p: _ratio(runs.ms(keys[p, one]), runs.ms(keys[p, two])) for p in PATHS
                }  # fmt: skip
    return {"entries": entries, "thread_speedup": speedups}


def part_replicas(runs: Runs, name: str, ks, threads_list) -> dict:
    entries = {}
    for threads in threads_list:
        tasks = [(("replicas", name, path, k, threads),
                  {"worker": "replicas", "threads": threads, "molecule": name, "path": path, "replicas": k})
                 for k in ks for path in REPLICA_PATHS]  # fmt: skip
        runs.abba(tasks)
        for k in ks:
            ms = {p: runs.ms(("replicas", name, p, k, threads)) for p in REPLICA_PATHS}
            one = {p: runs.ms(("replicas", name, p, ks[0], threads)) for p in REPLICA_PATHS}
            small = runs.pooled.get(("replicas", name, "small", k, threads), {})
            general = runs.pooled.get(("replicas", name, "general", k, threads))
            entries[f"K={k}/{threads}t"] = {
                "replicas": k, "threads": threads,
                "general/small": _ratio(ms["general"], ms["small"]),
                f"step_over_K={ks[0]}": {p: _ratio(ms[p], one[p]) for p in REPLICA_PATHS},
                "median_ms_per_step": ms,
                "median_ms_per_replica": {p: None if ms[p] is None else ms[p] / k for p in REPLICA_PATHS},
                "energy_rel_diff_small_vs_general": _rel_diff(small, general),
                "small_path_compiles": small.get("compiles"),
            }  # fmt: skip
    return {"molecule": name, "model": "shipped", "entries": entries}


def part_cold_start(runs: Runs, name: str, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="atomml-cold-") as folder:
        env = {"ATOMML_CACHE_DIR": folder, "TORCHINDUCTOR_CACHE_DIR": str(Path(folder) / "inductor")}
        cold, warm = (runs.run(("cold_start", name, state, threads), "cold_start", threads, env=env, molecule=name,
                               repeats=runs.args.cold_repeats) for state in ("empty", "warm"))  # fmt: skip
    if "error" in cold or "error" in warm:
        return {"error": {"empty_cache": cold, "warm_cache": warm}}
    steady = warm["seconds_median"]  # the process that compiled may still share the CPU with its compile workers
    return {
        "molecule": name, "model": "shipped", "threads": threads,
        "empty_over_warm_cache": cold["first_call_s"] / warm["first_call_s"],
        "first_call_over_steady_call": {"empty_cache": cold["first_call_s"] / steady,
                                        "warm_cache": warm["first_call_s"] / steady},
        "first_call_s": {"empty_cache": cold["first_call_s"], "warm_cache": warm["first_call_s"]},
        # SmallSystemPath.compile_seconds: the forward graph's compile only (the backward's is
        # compiled later in the same first call, by the gradient); first_call_s holds both
        "path_compile_seconds": {"empty_cache": cold["compile_seconds"], "warm_cache": warm["compile_seconds"]},
        "setup_s": {"empty_cache": cold["setup_s"], "warm_cache": warm["setup_s"]},
        "steady_call_ms": 1e3 * steady,
        "energy_rel_diff_warm_vs_empty": _rel_diff(warm, cold),
    }  # fmt: skip


def _summary(report: dict) -> dict:
    summary: dict = {}
    single = report.get("single")
    if single:
        summary["single_ratios"] = {key: e["ratios"] for key, e in single["entries"].items()}
        shipped = [
            e["ratios"]["torchmdnet/atomml_small"] for e in single["entries"].values() if e["model"] == "shipped"
        ]
        if shipped and None not in shipped:
            summary["target"] = {"torchmdnet/atomml_small at the shipped size, lowest": min(shipped),
                                 "wanted_at_least": TARGET_OVER_TORCHMDNET,
                                 "met_everywhere": min(shipped) >= TARGET_OVER_TORCHMDNET}  # fmt: skip
        summary["thread_speedup"] = single["thread_speedup"]
    replicas = report.get("replicas")
    if replicas:
        summary["replicas"] = {key: {k: v for k, v in e.items() if k == "general/small" or k.startswith("step_over")}
                               for key, e in replicas["entries"].items()}  # fmt: skip
    cold = report.get("cold_start")
    if cold and "error" not in cold:
        summary["cold_start"] = {
            k: cold[k] for k in ("empty_over_warm_cache", "first_call_over_steady_call", "first_call_s")
        }
    return summary


def benchmark(args) -> dict:
    from importlib import metadata

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    molecules = [m for m in args.molecules.split(",") if m]
    models = [m for m in args.models.split(",") if m]
    threads_list = [int(t) for t in args.threads.split(",") if t]
    ks = [int(k) for k in args.replicas.split(",") if k]
    parts = [p for p in args.parts.split(",") if p]
    for given, allowed, what in ((molecules, MOLECULES, "--molecules"), (models, MODELS, "--models"),
                                 (parts, ("single", "replicas", "cold_start"), "--parts"),
                                 ([args.replica_molecule], MOLECULES, "--replica-molecule")):  # fmt: skip
        if not set(given) <= set(allowed):
            raise SystemExit(f"{what}: choose from {', '.join(allowed)} (got {', '.join(given)})")
    report: dict = {
        "summary": {}, "dtype": "float32", "device": "cpu", "quick": args.quick, "threads": threads_list,
        "rounds": args.rounds, "repeats_per_round": args.repeats, "warmup": args.warmup, "seed": args.seed,
        "jitter_A": args.jitter, "shipped_potential": SHIPPED, "tensornet128_hyperparameters": HYPER,
        "versions": {p: version(p) for p in ("torch", "torchmd-net", "tblite", "rdkit", "ase")},
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "atomml_source": source_state(),
    }  # fmt: skip
    started = time.perf_counter()
    runs = Runs(args)
    with tempfile.TemporaryDirectory(prefix="atomml-bench-") as folder:
        if "single" in parts and "tensornet128" in models:
            from atomml.potential_file import save_potential

            runs.potential_files["tensornet128"] = str(
                save_potential(paired_models()[0], Path(folder) / "tn128.safetensors")
            )
        if "single" in parts:
            report["single"] = part_single(runs, molecules, models, threads_list)
    if "replicas" in parts:
        report["replicas"] = part_replicas(runs, args.replica_molecule, ks, threads_list)
    if "cold_start" in parts:
        report["cold_start"] = part_cold_start(runs, args.replica_molecule, threads_list[0])
    report["summary"] = _summary(report)
    report["failed_workers"] = {"/".join(map(str, k)): v["error"] for k, v in runs.pooled.items() if "error" in v}
    report["wall_s"] = time.perf_counter() - started
    report["load_average_at_end"] = os.getloadavg()
    report["load_average_after_workers"] = (
        {"median": float(np.median(runs.loads)), "max": max(runs.loads)} if runs.loads else None
    )
    if runs.loads and max(runs.loads) > (os.cpu_count() or 1) + 0.5:
        report["warning_load"] = (
            f"the 1-minute load average reached {max(runs.loads):.1f} on {os.cpu_count()} CPUs: other processes "
            "competed with the workers (2-thread timings suffer most); rerun on a quiet machine"
        )
    if source_state() != report["atomml_source"]:
        report["warning"] = "atomml source changed during the run: the parts may have used different code"
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK} unless given")
    p.add_argument(
        "--parts", default="single,replicas,cold_start", help="comma-separated: single, replicas, cold_start"
    )
    p.add_argument("--molecules", help=f"part single, from {MOLECULES} (default {FULL['molecules']})")
    p.add_argument("--models", help=f"part single, from {tuple(MODELS)} (default {FULL['models']})")
    p.add_argument("--threads", help=f"comma-separated torch threads (default {FULL['threads']})")
    p.add_argument(
        "--replicas", help=f"part replicas: K per call (default {FULL['replicas']}; the first is the reference)"
    )
    p.add_argument(
        "--replica-molecule", help=f"molecule of parts replicas and cold_start (default {FULL['replica_molecule']})"
    )
    p.add_argument("--rounds", type=int, help=f"ABBA rounds per group, pooled (default {FULL['rounds']})")
    p.add_argument("--repeats", type=int, help=f"timed calls per worker (default {FULL['repeats']})")
    p.add_argument("--warmup", type=int, help=f"calls before timing, after the first (default {FULL['warmup']})")
    p.add_argument(
        "--cold-repeats", type=int, help=f"timed calls after the cold start (default {FULL['cold_repeats']})"
    )
    p.add_argument("--seed", type=int, default=0, help="RDKit conformers and the jitter")
    p.add_argument("--jitter", type=float, default=JITTER,
                   help="Å, the random displacement of every call (tblite restarts its SCF from the last call: "
                        "larger steps, as in MD, make xtb slower)")  # fmt: skip
    p.add_argument("--output", help="also write the JSON here")
    p.add_argument("--worker", choices=["single", "replicas", "cold_start"], help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--molecule", help=argparse.SUPPRESS)
    p.add_argument("--model", default="shipped", help=argparse.SUPPRESS)
    p.add_argument("--potential-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:  # the parent passes every setting a worker uses
        args.threads, args.replicas = int(args.threads), int(args.replicas or 1)
        emit_json(worker(args), args.output, worker=True)
        return
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    emit_json(benchmark(args), args.output)


if __name__ == "__main__":
    main()
