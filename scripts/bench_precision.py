#!/usr/bin/env python
"""What the precision policy (issue 25) buys and costs: NVE energy conservation and time per call.

Three variants of the shipped potential ``tensornet-organic-gfn2`` (the same weights):

- ``float32_policy``: today's code, ``AtomMLCalculator(..., dtype=torch.float32)``: the network
  runs in float32; positions, edge vectors, reference energies, per-atom energies and their sum
  are float64 (module docstring of ``atomml/potential.py``);
- ``float64_network``: today's code with ``dtype=torch.float64`` (the reference: no rounding
  worth the name);
- ``float32_before``: the code before the policy (``--baseline-rev``, default 4ed5922), where a
  float32 potential did everything in float32 (positions cast first, float32 sums). Its tree is
  extracted with ``git archive`` from the repository this script sits in (``atomml/`` and the
  potential file of that commit: today's files are format 3, which the old loader cannot read;
  the weights are bit-identical), or taken from ``--baseline-tree``.

Measurements:

1. NVE (ASE velocity Verlet, no thermostat) of 216 waters (``water_box(6)``, 648 atoms,
   periodic) at 0.25 and 0.5 fs, ``--steps`` steps each, every variant from the same float64
   positions and momenta. That start is made once, by a float32_policy worker: a brief FIRE
   relaxation of the grid of rigid waters, Maxwell-Boltzmann velocities at 300 K (fixed seed)
   and a short Langevin thermalisation. E_total = the calculator's potential energy + ASE's
   kinetic energy (float64). Reported: the median step-to-step |ΔE_total| (float32 numbers near
   the box's -3e4 eV are 2e-3 eV apart, more than the integrator's own error at 0.25 fs) and
   the drift (slope of a linear fit, eV/ps). The same two numbers for the float64 sum of the
   per-atom ``energies`` show how much of the noise is the sum's rounding. Target (issue 25): float32_policy within 1.5x of float64_network.
2. Cost: time per energy+forces call through the calculator (median of repeats after warm-up;
   the neighbour list is built in the warm-up and reused, as in MD) on one aspirin (RDKit
   conformer, fixed seed) and on a periodic water box of 1,728 waters (``water_box(12)``, 5,184
   atoms: the smallest ``water_box`` with at least 1,500 waters), float32_policy against
   float32_before. Workers of the two alternate (ABBA order over the rounds) because the
   machine is noisy. Reported: the ratio policy/before of the pooled medians, of the minima, of
   the 10th percentiles, and the median of the per-round ratios (the two workers of a round run back to back). Targets:
   policy/before <= 1.03 on the water box, <= 1.05 on aspirin.

Every variant runs in its own subprocess (this script with ``--worker``), with PYTHONPATH set to
its source tree, so that the two codes never share an import; each worker uses ``--threads``
torch threads (default 2). Run::

    .venv/bin/python scripts/bench_precision.py --output data/benchmarks/precision_2t.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POTENTIAL = "tensornet-organic-gfn2"
ASPIRIN_SMILES = "CC(=O)OC1=CC=CC=C1C(=O)O"
NVE_VARIANTS = ("float32_policy", "float64_network", "float32_before")
COST_VARIANTS = ("float32_policy", "float32_before")
DTYPES = {"float32_policy": "float32", "float64_network": "float64", "float32_before": "float32"}
TARGETS = {"nve_median_abs_dE_ratio": 1.5, "cost_ratio_water_box": 1.03, "cost_ratio_aspirin": 1.05}
MODES = ("prepare", "nve", "cost")
PARTS = ("nve", "cost")


# ---------------------------------------------------------------- structures (float64 files)


def save_atoms(path: Path, atoms) -> Path:
    """Numbers, float64 positions, momenta and cell, pbc: exact, for every variant alike."""
    np.savez(path, numbers=atoms.numbers, positions=atoms.positions, momenta=atoms.get_momenta(),
             cell=np.asarray(atoms.cell), pbc=atoms.pbc)  # fmt: skip
    return path


def load_atoms(path: str):
    from ase import Atoms

    data = np.load(path)
    atoms = Atoms(numbers=data["numbers"], positions=data["positions"], cell=data["cell"], pbc=data["pbc"])
    atoms.set_momenta(data["momenta"])
    return atoms


def baseline_tree(rev: str, workdir: Path) -> Path:
    """``atomml/`` and the potential file of commit ``rev``, extracted into ``workdir/baseline``."""
    tree = workdir / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", rev, "atomml", f"potentials/{POTENTIAL}.safetensors"],
                             cwd=ROOT, capture_output=True, check=False)  # fmt: skip
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev} failed in {ROOT}: {archive.stderr.decode().strip()}; "
                         "give an existing checkout of the old code with --baseline-tree")  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


# ---------------------------------------------------------------- workers (one variant each)


def make_calculator(args):
    import torch

    import atomml
    from atomml import AtomMLCalculator

    # the worker must run the code it was given, not whichever atomml is installed
    if not Path(atomml.__file__).resolve().is_relative_to(Path(args.tree).resolve()):
        raise SystemExit(f"imported {atomml.__file__}, expected the tree {args.tree}")
    return AtomMLCalculator(args.potential, device="cpu", dtype=getattr(torch, args.dtype))


def prepare(args) -> dict:
    """A brief FIRE relaxation (the grid of rigid waters holds much potential energy that would
    heat the box), Maxwell-Boltzmann at ``--temperature`` and a short Langevin run; writes
    ``--save``."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.optimize import FIRE

    atoms = load_atoms(args.input)
    atoms.calc = make_calculator(args)
    FIRE(atoms, logfile=None).run(fmax=0.1, steps=args.relax_steps)
    rng = np.random.default_rng(args.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, args.timestep * units.fs, temperature_K=args.temperature,
                   friction=args.friction / units.fs, fixcm=False, rng=rng)  # fmt: skip
    dyn.run(args.steps)
    Stationary(atoms)
    save_atoms(Path(args.save), atoms)
    return {"temperature_K": float(atoms.get_temperature()), "potential_energy_eV": float(atoms.get_potential_energy())}


def nve(args) -> dict:
    """Velocity Verlet from ``--input``: the energies of every step (steps + 1 values)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms = load_atoms(args.input)
    atoms.calc = make_calculator(args)
    series: dict[str, list[float]] = {"potential": [], "kinetic": [], "energies_sum": [], "temperature": []}

    def record():
        series["potential"].append(float(atoms.get_potential_energy()))
        series["kinetic"].append(float(atoms.get_kinetic_energy()))
        series["energies_sum"].append(float(np.sum(atoms.calc.results["energies"], dtype=np.float64)))
        series["temperature"].append(float(atoms.get_temperature()))

    dyn = VelocityVerlet(atoms, args.timestep * units.fs)
    dyn.attach(record, interval=1)
    t0 = time.perf_counter()
    dyn.run(args.steps)
    seconds = time.perf_counter() - t0
    return {"n_atoms": len(atoms), "seconds_per_step": seconds / args.steps,
            "neighbor_list_builds": atoms.calc.neighbor_list_builds, **series}  # fmt: skip


def cost(args) -> dict:
    """Seconds per energy+forces call through the calculator (``atomml.benchmarking``)."""
    import torch
    from ase.calculators.calculator import all_changes

    from atomml.benchmarking import measure_call

    atoms = load_atoms(args.input)
    calc = make_calculator(args)

    def call():
        calc.calculate(atoms, ["energy", "forces"], all_changes)
        return torch.tensor(calc.results["energy"], dtype=torch.float64), torch.from_numpy(calc.results["forces"])

    return {"n_atoms": len(atoms), **measure_call(call, warmup=args.warmup, repeats=args.repeats)}


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    result = {"prepare": prepare, "nve": nve, "cost": cost}[args.worker](args)
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, **result}


# ---------------------------------------------------------------- parent


class Runner:
    """Starts workers: each variant with its own source tree and potential file."""

    def __init__(self, baseline: Path, threads: int):
        self.trees = {"float32_policy": ROOT, "float64_network": ROOT, "float32_before": baseline}
        self.potentials = {"float32_policy": POTENTIAL, "float64_network": POTENTIAL,
                           "float32_before": str(baseline / "potentials" / f"{POTENTIAL}.safetensors")}  # fmt: skip
        self.threads = threads

    def __call__(self, mode: str, variant: str, label: dict[str, str], **options) -> dict:
        from atomml.benchmarking import spawn_worker

        tree = self.trees[variant]
        argv = [__file__, "--worker", mode, "--tree", tree, "--potential", self.potentials[variant],
                "--dtype", DTYPES[variant], "--threads", self.threads]  # fmt: skip
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", value]
        env = {"PYTHONPATH": str(tree)}
        return spawn_worker(argv, measure="time", label={"variant": variant, **label}, cwd=tree, env=env, tag="precision")


def energy_stats(total: list[float], timestep_fs: float) -> dict:
    """Median/mean step-to-step |ΔE| (eV), drift (eV/ps, least-squares slope), max - min (eV)."""
    e = np.asarray(total, dtype=np.float64)
    steps = np.abs(np.diff(e))
    t_ps = np.arange(len(e)) * timestep_fs * 1e-3
    return {"median_abs_dE_eV": float(np.median(steps)), "mean_abs_dE_eV": float(steps.mean()),
            "drift_eV_per_ps": float(np.polyfit(t_ps, e, 1)[0]), "range_eV": float(np.ptp(e))}  # fmt: skip


def nve_summary(out: dict, timestep_fs: float) -> dict:
    if "error" in out:
        return out
    kinetic = np.asarray(out["kinetic"])
    return {
        "total_energy": energy_stats(np.asarray(out["potential"]) + kinetic, timestep_fs),
        "total_from_float64_sum_of_energies": energy_stats(np.asarray(out["energies_sum"]) + kinetic, timestep_fs),
        "initial_potential_energy_eV": out["potential"][0],
        "mean_temperature_K": float(np.mean(out["temperature"])),
        "seconds_per_step": out["seconds_per_step"],
        "neighbor_list_builds": out["neighbor_list_builds"],
    }


def run_nve(run: Runner, start: Path, args) -> dict:
    results: dict = {}
    for dt in args.timesteps:
        key = f"{dt:g}fs"
        results[key] = {}
        for variant in NVE_VARIANTS:
            out = run("nve", variant, {"measure": f"NVE {key}"}, input=start, timestep=dt, steps=args.steps)
            results[key][variant] = summary = nve_summary(out, dt)
            if "error" not in summary:
                print(f"[precision] NVE {key} {variant:16s} median |dE| {summary['total_energy']['median_abs_dE_eV']:.2e} eV,"
                      f" drift {summary['total_energy']['drift_eV_per_ps']:+.3f} eV/ps", file=sys.stderr, flush=True)  # fmt: skip
        ref = results[key]["float64_network"]
        for variant in ("float32_policy", "float32_before"):
            if "error" not in ref and "error" not in results[key][variant]:
                ratio = results[key][variant]["total_energy"]["median_abs_dE_eV"] / ref["total_energy"]["median_abs_dE_eV"]
                results[key][f"median_abs_dE_ratio_{variant}_over_float64_network"] = ratio
        ratio = results[key].get("median_abs_dE_ratio_float32_policy_over_float64_network")
        results[key]["policy_meets_target"] = None if ratio is None else ratio <= TARGETS["nve_median_abs_dE_ratio"]
    return results


def run_cost(run: Runner, structure: Path, name: str, warmup: int, repeats: int, rounds: int) -> dict:
    """ABBA-alternating workers of the two float32 variants; repeats pooled per variant."""
    from atomml.benchmarking import pool_times

    pooled: dict = {}
    round_medians: dict[str, list[float]] = {v: [] for v in COST_VARIANTS}
    paired: list[float] = []  # policy/before of the two workers of one round, run back to back
    for r in range(rounds):
        medians = {}
        for variant in COST_VARIANTS if r % 2 == 0 else COST_VARIANTS[::-1]:
            out = run("cost", variant, {"measure": f"cost {name}"}, input=structure, warmup=warmup, repeats=repeats)
            pooled[variant] = pool_times(pooled.get(variant), out)
            if "error" not in out:
                medians[variant] = out["seconds_median"]
                round_medians[variant].append(out["seconds_median"])
        if len(medians) == 2:
            paired.append(medians["float32_policy"] / medians["float32_before"])
    policy, before = pooled["float32_policy"], pooled["float32_before"]
    entry = {"warmup": warmup, "repeats_per_round": repeats, "rounds": rounds, "round_medians_s": round_medians,
             "round_ratios_policy_over_before": paired}  # fmt: skip
    if "error" in policy or "error" in before:
        return {**entry, "error": {"float32_policy": policy, "float32_before": before}}
    return {
        **entry,
        "n_atoms": policy["n_atoms"],
        "float32_policy_seconds_median": policy["seconds_median"],
        "float32_before_seconds_median": before["seconds_median"],
        "ratio_policy_over_before": policy["seconds_median"] / before["seconds_median"],
        "ratio_policy_over_before_min": policy["seconds_min"] / before["seconds_min"],
        "ratio_policy_over_before_p10": float(np.percentile(policy["seconds_all"], 10) / np.percentile(before["seconds_all"], 10)),
        "ratio_policy_over_before_round_median": float(np.median(paired)),
        "energy_eV": {"float32_policy": policy["energy_sum"], "float32_before": before["energy_sum"]},
    }


def benchmark(args) -> dict:
    import torch

    from atomml.benchmarking import cpu_name, source_state
    from atomml.testing.structures import molecule_from_smiles, water_box

    t_start = time.perf_counter()
    report: dict = {
        "potential": POTENTIAL, "threads": args.threads, "torch": torch.__version__, "cpu": cpu_name(),
        "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(), "atomml_source": source_state(),
        "baseline_rev": args.baseline_rev, "targets": TARGETS,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_precision_") as tmp:
        work = Path(tmp)
        baseline = Path(args.baseline_tree) if args.baseline_tree else baseline_tree(args.baseline_rev, work)
        if not args.baseline_tree:
            commit = subprocess.run(["git", "rev-parse", f"{args.baseline_rev}^{{commit}}"], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
            report["baseline_commit"] = commit
        run = Runner(baseline, args.threads)

        if "nve" in args.parts:
            box = water_box(args.nve_waters_per_side, seed=args.seed)
            start = work / "nve_start.npz"
            prep = run("prepare", "float32_policy", {"measure": "thermalise"}, input=save_atoms(work / "box.npz", box),
                       save=start, seed=args.seed, temperature=args.temperature, timestep=args.equilibration_timestep,
                       steps=args.equilibration_steps, friction=args.friction, relax_steps=args.relax_steps)  # fmt: skip
            if "error" in prep:
                raise SystemExit("the thermalisation worker failed (its stderr is above)")
            report["nve"] = {
                "system": f"water_box({args.nve_waters_per_side}, seed={args.seed}): {len(box) // 3} waters, {len(box)} atoms, periodic",
                "start": f"{args.relax_steps} FIRE steps (fmax 0.1 eV/A), Maxwell-Boltzmann {args.temperature} K (seed {args.seed}), "
                         f"then {args.equilibration_steps} Langevin steps "
                         f"of {args.equilibration_timestep} fs, friction {args.friction}/fs, with float32_policy; the same float64 "
                         "positions and momenta for every variant",
                "thermalised": prep, "integrator": "ASE VelocityVerlet", "steps": args.steps,
                "results": run_nve(run, start, args),
            }  # fmt: skip

        if "cost" in args.parts:
            systems = {
                "aspirin": (molecule_from_smiles(ASPIRIN_SMILES, args.seed), args.aspirin_warmup, args.aspirin_repeats, args.aspirin_rounds),
                "water_box": (water_box(args.cost_waters_per_side, seed=args.seed), args.water_warmup, args.water_repeats,
                              args.water_rounds),
            }  # fmt: skip
            report["cost"] = {"call": "AtomMLCalculator.calculate(atoms, ['energy', 'forces']); neighbour list built in the "
                                      "warm-up and reused (skin 0.5 A), as in MD"}  # fmt: skip
            for name, (atoms, warmup, repeats, rounds) in systems.items():
                entry = run_cost(run, save_atoms(work / f"{name}.npz", atoms), name, warmup, repeats, rounds)
                target = TARGETS[f"cost_ratio_{name}"]
                entry["meets_target"] = entry["ratio_policy_over_before"] <= target if "error" not in entry else None
                report["cost"][name] = entry
            report["cost"]["aspirin"]["system"] = f"aspirin {ASPIRIN_SMILES}, RDKit ETKDG + MMFF conformer (seed {args.seed}), non-periodic"
            report["cost"]["water_box"]["system"] = (
                f"water_box({args.cost_waters_per_side}, seed={args.seed}): {args.cost_waters_per_side ** 3} waters, periodic "
                "(the default, 12, is the smallest water_box with >= 1,500 waters)"
            )
    report["load_average_at_end"] = os.getloadavg()
    report["wall_seconds"] = time.perf_counter() - t_start
    if source_state() != report["atomml_source"]:
        report["warning"] = "atomml source changed during the run"
    return report


def merge(report: dict, args) -> dict:
    """The parts measured now, with the others kept from ``--output`` as they were measured."""
    measured = {part: {"atomml_source": report["atomml_source"], "load_average_at_start": report["load_average_at_start"],
                       "load_average_at_end": report["load_average_at_end"],
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())} for part in args.parts}  # fmt: skip
    if not args.output or set(args.parts) == set(PARTS) or not Path(args.output).exists():
        return {**report, "measured": measured}
    old = json.loads(Path(args.output).read_text())
    kept = {part: old[part] for part in PARTS if part not in args.parts and part in old}
    old_measured = old.get("measured") or {part: {k: old.get(k) for k in ("atomml_source", "load_average_at_start",
                                                                           "load_average_at_end")} for part in kept}  # fmt: skip
    return {**report, **kept, "measured": {**{p: old_measured.get(p) for p in kept}, **measured}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400, help="NVE steps at each timestep")
    p.add_argument("--timesteps", type=float, nargs="+", default=[0.25, 0.5], help="NVE timesteps, fs")
    p.add_argument("--nve-waters-per-side", type=int, default=6, help="NVE box: n^3 waters (6: 216 waters, 648 atoms)")
    p.add_argument("--temperature", type=float, default=300.0, help="K, of the NVE start")
    p.add_argument("--relax-steps", type=int, default=100, help="FIRE steps before the Langevin run")
    p.add_argument("--equilibration-steps", type=int, default=300, help="Langevin steps before NVE")
    p.add_argument("--equilibration-timestep", type=float, default=1.0, help="fs")
    p.add_argument("--friction", type=float, default=0.05, help="Langevin friction, 1/fs")
    p.add_argument("--cost-waters-per-side", type=int, default=12, help="cost box: n^3 waters (12: 1,728 waters)")
    p.add_argument("--aspirin-rounds", type=int, default=12, help="alternating cost workers per variant (pooled)")
    p.add_argument("--aspirin-warmup", type=int, default=10)
    p.add_argument("--aspirin-repeats", type=int, default=100)
    p.add_argument("--water-rounds", type=int, default=4, help="alternating cost workers per variant (pooled)")
    p.add_argument("--water-warmup", type=int, default=1)
    p.add_argument("--water-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline-rev", default="4ed5922", help="the commit before the precision policy")
    p.add_argument("--baseline-tree", help="an existing checkout of the old code (instead of git archive)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                   help="what to measure; with --output, the parts not measured are kept from that file "
                        "(each part records the source, machine load and time it was measured with)")
    p.add_argument("--output", help="also write the JSON here")
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    for hidden in ("tree", "potential", "dtype", "input", "save"):
        p.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    p.add_argument("--timestep", type=float, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:  # its tree may be the code before the policy: nothing from atomml here
        print(json.dumps(worker(args)))
        return
    from atomml.benchmarking import emit_json

    emit_json(merge(benchmark(args), args), args.output)


if __name__ == "__main__":
    main()
