#!/usr/bin/env python
"""Screening throughput: ``atomml screen`` against a plain ASE loop and torch-sim, one run, JSON.

Run with the test environment (torch-sim-atomistic 0.3.0 is in the ``test`` and ``bench`` extras)::

    .venv/bin/python scripts/bench_screen.py --set molecules --n 200 --output data/benchmarks/screen_molecules.json
    .venv/bin/python scripts/bench_screen.py --set alloys --n 500 --output data/benchmarks/screen_alloys.json

Sets: ``molecules``, the first ``--n`` of a seeded sample (``--seed``) of the shipped 1,000
drug-like SMILES (``data/screen/druglike_1000.smi``, ``scripts/make_screen_sets.py``), relaxed
(positions) with ``tensornet-organic-gfn2``; ``alloys``, ``--n`` Cu/Al/Ni cells from
``make_screen_sets.alloy_cells`` relaxed in positions and cell with ``tensornet-metals-emt``.
Every method starts from the same structures (RDKit conformers made once, before any timing, and
written to an extxyz file that ``atomml screen`` reads), with the same criterion: ASE's FIRE with
default parameters until the largest force (with cells: the largest row of ``FrechetCellFilter``'s
forces) is below ``--fmax``, at most ``--max-steps`` steps.

Methods, each timed from structures in memory to energies out (wall clock, structures/s):

- ``ase_loop``: one ``AtomMLCalculator`` reused for every structure, ASE's ``FIRE`` (and
  ``FrechetCellFilter``), one structure at a time; run on the first ``--loop-n`` structures
  (minutes per hundred) at 1 torch thread and at the machine's thread count (``--threads``),
  ``small_system=False`` (relaxations stay on the general path: the automatic switch would
  compile a program per molecule size after 200 calls, about a minute each);
- ``torch_sim``: torch-sim 0.3.0's batched FIRE (``atomml.interfaces.torch_sim.relax``) driving the same
  potential through ``atomml.interfaces.torch_sim.AtomMLModel``, at 1 torch thread and at
  ``--threads``, in one process (torch-sim has no multi-process runner);
- ``atomml_screen_wN``: ``atomml.screen.run`` with N local Dask workers (``--workers``; one
  torch thread each, atomml screen's default), cluster start-up and the parquet/extxyz writing
  included; no HTML summary.

Memory (``memory``): the peak resident memory of ``atomml screen`` in one process for a quarter
of the structures and for all of them, at ``--batch-atoms`` 512 and 2048.

Agreement: for every structure the plain loop relaxed, the final energy of each other method
and whether its FIRE took the same number of steps (atomml screen's FIRE is ASE's arithmetic, so
the step counts should match where round-off does not tip a comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the atomml command (atomml.threads.passive_openmp)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SciPy's expm in FrechetCellFilter: see tests/conftest.py

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

POTENTIALS = {"molecules": "tensornet-organic-gfn2", "alloys": "tensornet-metals-emt"}


def structures(kind: str, n: int, seed: int) -> list:
    if kind == "molecules":
        from atomml.screen.inputs import read_records

        records = read_records([ROOT / "data" / "screen" / "druglike_1000.smi"])
        order = np.random.default_rng(seed).permutation(len(records))[:n]
        out = []
        for i in order:
            record = records[i].build(seed=0)
            assert not record.status, record.message
            record.atoms.info["id"] = record.id
            out.append(record.atoms)
        return out
    from make_screen_sets import alloy_cells
    from pymatgen.io.ase import AseAtomsAdaptor

    out = []
    for s in alloy_cells(n, seed=seed):
        atoms = AseAtomsAdaptor.get_atoms(s, msonable=False)
        atoms.calc = None
        atoms.info = {"id": s.properties.get("id", f"alloy{len(out):04d}")}
        out.append(atoms)
    return out


def ase_loop(atoms_list: list, potential: str, fmax: float, max_steps: int, cell: bool, threads: int) -> dict:
    import torch
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    import atomml

    torch.set_num_threads(threads)
    calc = atomml.AtomMLCalculator(potential, small_system=False)
    energies, steps, converged = [], [], []
    start = time.perf_counter()
    for atoms in atoms_list:
        a = atoms.copy()
        a.calc = calc
        opt = FIRE(FrechetCellFilter(a) if cell else a, logfile=None)
        converged.append(bool(opt.run(fmax=fmax, steps=max_steps)))
        energies.append(float(a.get_potential_energy()))
        steps.append(int(opt.nsteps))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "structures": len(atoms_list), "energy": energies, "steps": steps, "converged": converged}


def torch_sim(atoms_list: list, potential: str, fmax: float, max_steps: int, cell: bool, threads: int,
              max_atoms: int) -> dict:  # fmt: skip
    import torch
    from atomml.interfaces.torch_sim import relax as torchsim_relax

    torch.set_num_threads(threads)
    start = time.perf_counter()
    rows = torchsim_relax(atoms_list, potential, fmax=fmax, max_steps=max_steps, cell=cell, max_atoms=max_atoms)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "structures": len(atoms_list), "energy": [r["energy"] for r in rows],
            "steps": [r.get("steps") for r in rows], "converged": [bool(r["converged"]) for r in rows]}  # fmt: skip


def atomml_screen(path: Path, potential: str, fmax: float, max_steps: int, cell: bool, workers: int, threads: int,
                  batch_atoms: int, chunk_size: int, scratch: Path) -> dict:  # fmt: skip
    import torch

    from atomml.screen import run

    torch.set_num_threads(threads)
    output = scratch / f"screen_w{workers}"
    shutil.rmtree(output, ignore_errors=True)
    start = time.perf_counter()
    table = run([path], potential, task="relax-cell" if cell else "relax", output=output, workers=workers,
                fmax=fmax, max_steps=max_steps, batch_atoms=batch_atoms, chunk_size=chunk_size, progress=False,
                summary=False)  # fmt: skip
    wall = time.perf_counter() - start
    return {"wall_s": wall, "structures": len(table), "energy": table["energy_eV"].tolist(),
            "steps": table["steps"].tolist(), "converged": (table["status"] == "ok").tolist(),
            "statuses": table["status"].value_counts().to_dict()}  # fmt: skip


MEMORY_PROBE = """
import resource, sys
import atomml.screen
atomml.screen.run([sys.argv[1]], sys.argv[2], task=sys.argv[3], output=sys.argv[4], workers=0, max_steps=20,
                  batch_atoms=int(sys.argv[5]), chunk_size=64, progress=False, summary=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_memory(built: list, potential: str, cell: bool, scratch: Path) -> dict:
    """Peak resident memory (MiB) of ``atomml screen`` in one process (``--workers 0``, 20 FIRE
    steps each) for a quarter of the structures and for all of them, at two batch sizes: it
    should follow the batch size, not the number of structures."""
    import subprocess

    import ase.io

    out = {}
    for count in (max(1, len(built) // 4), len(built)):
        path = scratch / f"memory_{count}.extxyz"
        ase.io.write(path, built[:count], format="extxyz")
        for batch_atoms in (512, 2048):
            output = scratch / f"memory_{count}_{batch_atoms}"
            proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), potential,
                                   "relax-cell" if cell else "relax", str(output), str(batch_atoms)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            out[f"{count}_structures_batch_atoms_{batch_atoms}"] = int(proc.stdout.split()[-1]) / 1024
    return out


def main() -> None:
    from atomml.threads import available_cpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=sorted(POTENTIALS), default="molecules")
    parser.add_argument("--n", type=int, default=200, help="structures for atomml screen and torch-sim")
    parser.add_argument("--loop-n", type=int, default=40, help="structures for the plain ASE loop (the first ones)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument("--batch-atoms", type=int, default=2048)
    parser.add_argument("--chunk-size", type=int, default=None, help="default: atomml screen's (even chunks of <= 64)")
    parser.add_argument("--methods", nargs="+", default=["ase_loop", "torch_sim", "atomml_screen", "memory"])
    parser.add_argument("--output", default=None, help="write the JSON here too")
    args = parser.parse_args()

    potential, cell = POTENTIALS[args.set], args.set == "alloys"
    built = structures(args.set, args.n, args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="bench_screen_"))
    import ase.io

    path = scratch / "structures.extxyz"
    ase.io.write(path, built, format="extxyz")
    runs: dict[str, dict] = {}
    loop_set = built[: args.loop_n]
    if "ase_loop" in args.methods:
        for threads in sorted({1, args.threads}):
            runs[f"ase_loop_{threads}t"] = ase_loop(loop_set, potential, args.fmax, args.max_steps, cell, threads)
            print(f"ase_loop {threads}t: {runs[f'ase_loop_{threads}t']['wall_s']:.1f} s", file=sys.stderr)
    if "torch_sim" in args.methods:
        for threads in sorted({1, args.threads}):
            name = f"torch_sim_{threads}t"
            runs[name] = torch_sim(built, potential, args.fmax, args.max_steps, cell, threads, args.batch_atoms)
            print(f"{name}: {runs[name]['wall_s']:.1f} s", file=sys.stderr)
    if "atomml_screen" in args.methods:
        for workers in args.workers:
            runs[f"atomml_screen_w{workers}"] = atomml_screen(
                path, potential, args.fmax, args.max_steps, cell, workers, args.threads, args.batch_atoms,
                args.chunk_size, scratch,
            )  # fmt: skip
            print(f"atomml_screen w{workers}: {runs[f'atomml_screen_w{workers}']['wall_s']:.1f} s", file=sys.stderr)
    memory = peak_memory(built, potential, cell, scratch) if "memory" in args.methods else None
    shutil.rmtree(scratch, ignore_errors=True)

    rate = {name: r["structures"] / r["wall_s"] for name, r in runs.items()}
    loops = [k for k in rate if k.startswith("ase_loop")]
    best_loop = max(loops, key=rate.get) if loops else None
    summary: dict = {
        "set": args.set, "potential": potential, "structures": args.n, "loop_structures": len(loop_set),
        "atoms_mean": float(np.mean([len(a) for a in built])), "fmax": args.fmax, "max_steps": args.max_steps,
        "threads": args.threads, "batch_atoms": args.batch_atoms, "chunk_size": args.chunk_size,
        "structures_per_s": rate,
        "converged": {name: int(sum(r["converged"])) for name, r in runs.items()},
    }  # fmt: skip
    if best_loop:
        summary["speedup_vs_best_ase_loop"] = {name: rate[name] / rate[best_loop] for name in rate}
        ref = runs[best_loop]
        agreement = {}
        for name, r in runs.items():
            if name.startswith("ase_loop"):
                continue
            both = [i for i in range(len(loop_set)) if ref["converged"][i] and r["converged"][i]]
            de = [abs(r["energy"][i] - ref["energy"][i]) for i in both]
            same = [r["steps"][i] == ref["steps"][i] for i in both if r["steps"][i] is not None]
            agreement[name] = {
                "compared": len(both), "max_abs_dE_eV": max(de) if de else None,
                "median_abs_dE_eV": float(np.median(de)) if de else None,
                "within_1meV": int(sum(d < 1e-3 for d in de)),
                "same_steps": int(sum(same)) if same else None,
            }  # fmt: skip
        summary["agreement_with_" + best_loop] = agreement
    sims = [k for k in rate if k.startswith("torch_sim")]
    if sims:
        best_sim = max(sims, key=rate.get)
        summary["over_best_torch_sim"] = {k: rate[k] / rate[best_sim] for k in rate if k.startswith("atomml_screen")}
    if memory is not None:
        summary["peak_memory_MiB"] = memory
    text = json.dumps(summary, indent=1)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
