#!/usr/bin/env python
"""ns/day of ASE Langevin MD (1 fs, 300 K) on a ~1,500-atom periodic water box: atomml's
``AtomMLCalculator`` against schnetpack's ``SpkCalculator``, same SchNet (schnetpack defaults:
128 features, 6 interactions, 20 Gaussians, cosine cutoff 5 Å) and the same weights, float32.

Run with the benchmark environment (``scripts/setup_bench_env.sh``)::

    .bench-venv/bin/python scripts/bench_md.py --steps 20 --warmup 2

Each calculator runs in its own fresh subprocess, one at a time, with ``torch.set_num_threads``
(default 2). Variants:

- ``atomml``: ``AtomMLCalculator(pot, dtype="float32", skin=0.5)`` (vesin neighbour list,
  rebuilt when an atom moved more than skin/2); no stress (Langevin never asks for it).
- ``schnetpack``: ``SpkCalculator`` with ``MatScipyNeighborList(cutoff=5)``, rebuilt every step
  (the form in schnetpack's documentation).
- ``schnetpack_skin``: ``SpkCalculator`` with ``SkinNeighborList(MatScipyNeighborList(5),
  cutoff_skin=0.5)``, schnetpack's own Verlet-skin wrapper: the same reuse rule as atomml.

The weights are random (seed 0); the last readout layer is scaled by ``--readout-scale``
(0.1) for both peers, so that forces stay moderate and the box does not heat up by hundreds of
kelvin within the run (which would make the skin-based neighbour-list reuse unrepresentative).

``SpkCalculator`` loads a pickled model with ``torch.load``, which torch >= 2.6 refuses unless
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``; this script sets it for the schnetpack subprocesses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from atomml.benchmarking import emit_json, source_state
from atomml.convert.schnetpack import import_schnetpack, to_schnetpack
from atomml.testing.structures import ORGANIC_ELEMENTS, water_box

ROOT = Path(__file__).resolve().parents[1]
HYPER = dict(cutoff=5.0, n_atom_basis=128, n_filters=128, n_interactions=6, n_rbf=20)  # schnetpack's defaults
VARIANTS = ("atomml", "schnetpack", "schnetpack_skin")
SKIN = 0.5  # Å, for both peers


def make_calculator(variant: str, workdir: str, readout_scale: float):
    from atomml.models import create

    torch.manual_seed(0)
    pot = create("schnet", elements=list(ORGANIC_ELEMENTS), **HYPER).eval()
    with torch.no_grad():
        pot.model.readout[2].weight.mul_(readout_scale)
    if variant == "atomml":
        from atomml import AtomMLCalculator

        return AtomMLCalculator(pot, dtype="float32", skin=SKIN)
    spk_model = to_schnetpack(pot)
    spk = import_schnetpack()
    from schnetpack.interfaces.ase_interface import SpkCalculator

    model_file = os.path.join(workdir, "schnet_spk.pt")
    torch.save(spk_model, model_file)
    nl = spk.transform.MatScipyNeighborList(cutoff=HYPER["cutoff"])
    if variant == "schnetpack_skin":
        nl = spk.transform.SkinNeighborList(nl, cutoff_skin=SKIN)
    return SpkCalculator(
        model_file=model_file,
        neighbor_list=nl,
        energy_key="energy",
        force_key="forces",
        energy_unit="eV",
        position_unit="Angstrom",
        dtype=torch.float32,
    )


def worker(args) -> dict:
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    torch.set_num_threads(args.threads)
    atoms = water_box(args.n_per_side, seed=0)
    with tempfile.TemporaryDirectory() as workdir:
        atoms.calc = make_calculator(args.variant, workdir, args.readout_scale)
        rng = np.random.default_rng(args.seed)
        MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
        Stationary(atoms)
        dyn = Langevin(atoms, args.timestep * units.fs, temperature_K=args.temperature,
                       friction=args.friction / units.fs, rng=rng)
        step_times: list[float] = []
        last = [time.perf_counter()]

        def tick():
            now = time.perf_counter()
            step_times.append(now - last[0])
            last[0] = now

        dyn.run(args.warmup)
        dyn.attach(tick, interval=1)
        last[0] = t0 = time.perf_counter()
        dyn.run(args.steps)
        elapsed = time.perf_counter() - t0
        # dyn.run calls observers once at its start (before the first step): drop that entry
        step_times = step_times[-args.steps:]
        energy = float(atoms.get_potential_energy())
        temperature = float(atoms.get_temperature())
        nl_builds = getattr(atoms.calc, "neighbor_list_builds", None)
    day = 86400.0
    ns = args.steps * args.timestep * 1e-6
    return {
        "variant": args.variant,
        "n_atoms": len(atoms),
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "threads": torch.get_num_threads(),
        "seconds_total": elapsed,
        "seconds_per_step_mean": elapsed / args.steps,
        "seconds_per_step_median": statistics.median(step_times),
        "ns_per_day": ns / elapsed * day,
        "ns_per_day_from_median_step": args.timestep * 1e-6 / statistics.median(step_times) * day,
        "final_potential_energy_eV": energy,
        "final_temperature_K": temperature,
        "neighbor_list_builds": nl_builds,
    }


def run_variant(variant: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--variant", variant,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--n-per-side", str(args.n_per_side), "--seed", str(args.seed),
           "--temperature", str(args.temperature), "--timestep", str(args.timestep),
           "--friction", str(args.friction), "--readout-scale", str(args.readout_scale)]
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return {"variant": variant, "error": f"worker exited with {proc.returncode}"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[bench_md] {variant:16s} {out['ns_per_day']:.4f} ns/day  {out['seconds_per_step_mean']:.2f} s/step"
          f"  (subprocess {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {VARIANTS}")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-per-side", type=int, default=8, help="waters per box edge (8: 1,536 atoms)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--timestep", type=float, default=1.0, help="fs")
    p.add_argument("--friction", type=float, default=0.01, help="1/fs")
    p.add_argument("--readout-scale", type=float, default=0.1,
                   help="factor on the last readout layer of the random-weight model (both peers)")
    p.add_argument("--output", help="also write the JSON here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        result = worker(args)
        print(json.dumps(result))
        return
    source = source_state()
    load_start = os.getloadavg()
    runs = {v: run_variant(v, args) for v in args.variants.split(",") if v}
    report = {
        "system": f"periodic water box, {3 * args.n_per_side ** 3} atoms, ~1 g/cm^3",
        "integrator": f"ASE Langevin, {args.timestep} fs, {args.temperature} K, friction {args.friction}/fs",
        "model": {"architecture": "SchNet", **HYPER, "dtype": "float32", "same_weights": True,
                  "weights": f"random (seed 0), last readout layer x {args.readout_scale}"},
        "steps": args.steps, "warmup_steps": args.warmup, "threads": args.threads,
        "torch": torch.__version__, "schnetpack": import_schnetpack().__version__,
        "cpu_count": os.cpu_count(), "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
        "atomml_source": source,
        "runs": runs,
    }
    if source_state() != source:
        report["warning"] = "atomml source changed during the run"
    a = runs.get("atomml", {})
    for v in ("schnetpack", "schnetpack_skin"):
        s = runs.get(v, {})
        if "ns_per_day" in a and "ns_per_day" in s:
            report[f"speedup_vs_{v}"] = a["ns_per_day"] / s["ns_per_day"]
    emit_json(report, args.output)


if __name__ == "__main__":
    main()
