#!/usr/bin/env python
"""atomml TensorNet against torchmd-net 3.1 TensorNet: same function, time and memory per call.

Run with the test environment (torchmd-net is in the ``test`` extra; ``./test.sh`` makes .venv)::

    .venv/bin/python scripts/bench_tensornet.py --systems molecules,water1500 --output out.json
    .venv/bin/python scripts/bench_tensornet.py                  # all systems (12k atoms: ~20 GB)
    .venv/bin/python scripts/bench_tensornet.py --systems ethanol,molecules20 \
        --peers atomml,torchmdnet,atomml_compiled --threads 1 --no-memory   # torch.compile too

Both peers run TensorNet at its published default size (128 channels, 2 interaction layers,
32 exponential-normal radial functions, cosine cutoff 5 Å, O(3), SiLU) with the same weights:
a torchmd-net model is built with a fixed seed and converted with
``atomml.convert.torchmdnet.from_torchmdnet``. float32, energy + forces per call, each peer's
usual path from ASE atoms including its neighbour search: atomml's ``Potential`` on
``from_ase`` (vesin neighbour list); torchmd-net's ``TorchMD_Net`` on (z, pos, batch, box)
with its default neighbour strategy (brute force, O(N^2)) and default warp kernels.

Every (peer, system, measurement) runs in a fresh subprocess, one at a time, with
``torch.set_num_threads(--threads)``; timing and peak-memory measurement are those of
``atomml.benchmarking``, as in ``bench_schnet.py`` (median of ``--repeats`` calls after
``--warmup``; extra peak RSS of one call after the kernel's peak counter is reset, glibc
returning freed memory to the kernel).
``ethanol`` is one 9-atom molecule, the size of an ML/MM solute, where per-operation overhead
rather than arithmetic sets the time; the optional peer ``atomml_compiled`` is atomml's
architecture under ``torch.compile(dynamic=True)`` (``AtomMLCalculator(compile=True)``), its
compilation inside the warm-up calls.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from atomml.benchmarking import emit_json, measure_call, pool_times, source_state, spawn_worker, wait_for_memory
from atomml.testing.structures import ORGANIC_ELEMENTS, benchmark_system

ROOT = Path(__file__).resolve().parents[1]
HYPER = dict(embedding_dimension=128, num_layers=2, num_rbf=32, cutoff_upper=5.0)
SYSTEMS = ("ethanol", "molecules20", "molecules", "water1500", "water12000")
PEERS = ("atomml", "torchmdnet", "atomml_compiled")
# torchmd-net's peak extra memory (the larger of the two), MiB per atom, with margin
MIB_PER_ATOM_ESTIMATE = 1.6


def torchmdnet_model(precision: int = 32, seed: int = 0, **overrides):
    """torchmd-net TensorNet + Scalar head, energy and forces, default hyperparameters."""
    from torchmdnet.models.model import create_model

    args = dict(
        model="tensornet", rbf_type="expnorm", trainable_rbf=False, activation="silu",
        cutoff_lower=0.0, max_z=128, max_num_neighbors=64, equivariance_invariance_group="O(3)",
        derivative=True, atom_filter=-1, prior_model=None, output_model="Scalar", reduce_op="sum",
        precision=precision, static_shapes=False, **HYPER,
    )  # fmt: skip
    args.update(overrides)
    torch.manual_seed(seed)
    return create_model(args).eval()


def paired_models(seed: int = 0):
    from atomml.convert.torchmdnet import from_torchmdnet

    model = torchmdnet_model(seed=seed)
    return from_torchmdnet(model, elements=ORGANIC_ELEMENTS).to(torch.float32).eval(), model


def _make_call(peer: str, atoms_list):
    import atomml

    pot, model = paired_models()
    n_atoms = sum(len(a) for a in atoms_list)
    if peer in ("atomml", "atomml_compiled"):
        del model
        if peer == "atomml_compiled":  # what AtomMLCalculator(compile=True) does; warm-up compiles
            pot.model = torch.compile(pot.model, dynamic=True)

        def call():
            out = pot(atomml.from_ase(atoms_list, dtype=torch.float32), compute_forces=True)
            return out["energy"].detach(), out["forces"].detach()

        return call, n_atoms
    pot = None  # from here on only the torchmd-net model is used
    z = torch.tensor(np.concatenate([a.numbers for a in atoms_list]), dtype=torch.long)
    pos = torch.tensor(np.concatenate([a.positions for a in atoms_list]), dtype=torch.float32)
    batch = torch.cat([torch.full((len(a),), k, dtype=torch.long) for k, a in enumerate(atoms_list)])
    periodic = bool(atoms_list[0].pbc.any())
    if periodic and len(atoms_list) > 1:
        raise SystemExit("a batch of periodic structures is not part of this benchmark")
    box = torch.tensor(atoms_list[0].cell.array, dtype=torch.float32) if periodic else None

    def call():
        energy, forces = model(z, pos, batch, box=box)
        return energy.detach().squeeze(-1), forces.detach()

    return call, n_atoms


def worker(args) -> dict:
    torch.set_num_threads(args.threads)
    atoms_list = benchmark_system(args.system)
    call, n_atoms = _make_call(args.peer, atoms_list)
    result = {"peer": args.peer, "system": args.system, "n_atoms": n_atoms, "n_structures": len(atoms_list),
              "threads": torch.get_num_threads()}  # fmt: skip
    result.update(measure_call(call, warmup=args.warmup, repeats=args.repeats, measure=args.measure))
    return result


def run_worker(peer: str, system: str, measure: str, args) -> dict:
    """One measurement in a fresh process (this script with --worker)."""
    argv = [__file__, "--worker", "--peer", peer, "--system", system, "--measure", measure, "--repeats", str(args.repeats),
            "--warmup", str(args.warmup), "--threads", str(args.threads)]
    return spawn_worker(argv, measure=measure, label={"peer": peer, "system": system}, cwd=ROOT)


def benchmark(args) -> dict:
    import torchmdnet

    report: dict = {
        "hyperparameters": HYPER, "dtype": "float32", "threads": args.threads, "repeats": args.repeats,
        "warmup": args.warmup, "rounds": args.rounds, "torch": torch.__version__,
        "torchmdnet": getattr(torchmdnet, "__version__", "3.1.0"),
        "neighbor_lists": {"atomml": "vesin (atomml default)", "torchmdnet": "brute (torchmd-net default)"},
        "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "atomml_source": source_state(), "systems": {},
    }  # fmt: skip
    peers = [p for p in args.peers.split(",") if p]
    if peers[:2] != ["atomml", "torchmdnet"] or not set(peers) <= set(PEERS):
        raise SystemExit(f"--peers: atomml,torchmdnet first, then optionally atomml_compiled (got {args.peers})")
    systems = [s for s in args.systems.split(",") if s]
    n_atoms = {system: sum(len(atoms) for atoms in benchmark_system(system)) for system in systems}
    for system in systems:
        runs: dict = {peer: {} for peer in peers}
        # alternating rounds (atomml, torchmd-net, atomml, ...): a change of background load
        # does not favour one peer; the repeats of all rounds are pooled
        for _ in range(args.rounds):
            for peer in peers:
                ok = wait_for_memory(system, n_atoms[system], MIB_PER_ATOM_ESTIMATE, args.memory_wait)
                out = run_worker(peer, system, "time", args) if ok else {"error": "not enough free memory"}
                runs[peer]["time"] = pool_times(runs[peer].get("time"), out)
        if not args.no_memory:
            for peer in peers[:2]:
                ok = wait_for_memory(system, n_atoms[system], MIB_PER_ATOM_ESTIMATE, args.memory_wait)
                runs[peer]["memory"] = run_worker(peer, system, "memory", args) if ok else {"error": "not enough free memory"}
        a, t = runs["atomml"], runs["torchmdnet"]
        if "error" in a["time"] or "error" in t["time"]:
            report["systems"][system] = {"error": runs}
            continue
        n = a["time"]["n_atoms"]
        entry = {
            "n_atoms": n, "n_structures": a["time"]["n_structures"],
            "atomml_seconds": a["time"]["seconds_median"], "torchmdnet_seconds": t["time"]["seconds_median"],
            "atomml_seconds_all": a["time"]["seconds_all"], "torchmdnet_seconds_all": t["time"]["seconds_all"],
            "throughput_ratio": t["time"]["seconds_median"] / a["time"]["seconds_median"],
            "throughput_ratio_min": t["time"]["seconds_min"] / a["time"]["seconds_min"],
            "energy_rel_diff_float32": abs(a["time"]["energy_sum"] - t["time"]["energy_sum"])
            / max(abs(t["time"]["energy_sum"]), 1e-30),
        }  # fmt: skip
        c = runs.get("atomml_compiled", {}).get("time")
        if c and "error" not in c:
            entry.update(
                atomml_compiled_seconds=c["seconds_median"], atomml_compiled_seconds_all=c["seconds_all"],
                compiled_speedup=a["time"]["seconds_median"] / c["seconds_median"],
                compiled_throughput_ratio=t["time"]["seconds_median"] / c["seconds_median"],
                compiled_energy_rel_diff=abs(c["energy_sum"] - a["time"]["energy_sum"]) / max(abs(a["time"]["energy_sum"]), 1e-30),
            )  # fmt: skip
        if not args.no_memory and "error" not in a["memory"] and "error" not in t["memory"]:
            am, tm = a["memory"]["extra_mib"], t["memory"]["extra_mib"]
            entry.update(
                atomml_extra_mib=am, torchmdnet_extra_mib=tm, atomml_mib_per_atom=am / n,
                torchmdnet_mib_per_atom=tm / n, memory_fraction=am / tm if tm > 0 else None,
                peak_reset_ok=bool(a["memory"]["peak_reset"] and t["memory"]["peak_reset"]),
            )  # fmt: skip
        report["systems"][system] = entry
    report["load_average_at_end"] = os.getloadavg()
    if source_state() != report["atomml_source"]:
        report["warning"] = "atomml source changed during the run: the systems may have used different code"
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {SYSTEMS}")
    p.add_argument("--peers", default="atomml,torchmdnet",
                   help="atomml,torchmdnet[,atomml_compiled]: the last is atomml under torch.compile (warm-up compiles)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="alternating timing rounds per peer (pooled)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory-wait", type=float, default=600.0,
                   help="seconds to wait for enough free memory before a run is skipped")  # fmt: skip
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--output", help="also write the JSON here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--peer", choices=PEERS, help=argparse.SUPPRESS)
    p.add_argument("--system", help=argparse.SUPPRESS)
    p.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    result = worker(args) if args.worker else benchmark(args)
    emit_json(result, args.output, worker=bool(args.worker))


if __name__ == "__main__":
    main()
