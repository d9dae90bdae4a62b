#!/usr/bin/env python
"""atomml SchNet against schnetpack 2.1.1 SchNet: same function, time and memory per call.

Run with the benchmark environment (``scripts/setup_bench_env.sh`` makes ``.bench-venv/``)::

    .bench-venv/bin/python scripts/bench_schnet.py --check          # agreement, float64, JSON
    .bench-venv/bin/python scripts/bench_schnet.py --systems molecules,water1500 --repeats 3
    .bench-venv/bin/python scripts/bench_schnet.py                  # all systems (12k atoms: ~13 GB)

Both peers run schnetpack's default SchNet hyperparameters (128 features and filters, 6
interactions, 20 Gaussians, cosine cutoff 5 Å) with the same weights: the atomml potential is
built with a fixed seed and converted (``atomml.convert.schnetpack.to_schnetpack``).
schnetpack's ``Atomwise`` uses SiLU by default; it is built there with shifted softplus, which
is what atomml's readout uses (the two are otherwise the same 128 -> 64 -> 1 network).
``--check`` prints ``atomml.convert.schnetpack.agreement_report()``.

Timing and memory (``atomml.benchmarking``): every (peer, system, mode) runs in a fresh
subprocess, one at a time, with ``torch.set_num_threads(2)`` and float32. Modes: ``full`` =
each peer's usual path from ASE atoms (atomml: ``from_ase`` then the potential builds its
vesin neighbour list; schnetpack:
``AtomsConverter`` with its ``MatScipyNeighborList`` transform, as ``SpkCalculator`` does);
``model`` = neighbours precomputed outside the timed region. Time per call is the median of
``--repeats`` energy+forces calls after ``--warmup`` calls. Peak extra memory is measured in a
separate fresh subprocess: after set-up and the warm-up calls, the kernel's peak-RSS counter
is reset (``/proc/self/clear_refs`` = 5, which also resets ``ru_maxrss``), the current RSS is
read, one call is made, and extra = peak RSS (VmHWM) - RSS before the call. That subprocess
runs with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_``), so that tensors freed by
the warm-up calls are returned to the kernel instead of being kept in the heap, where the
measured call would reuse them unseen.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from atomml.benchmarking import emit_json, measure_call, pool_times, source_state, spawn_worker, wait_for_memory
from atomml.convert.schnetpack import agreement_report, import_schnetpack, to_schnetpack
from atomml.testing.structures import ORGANIC_ELEMENTS, benchmark_system

ROOT = Path(__file__).resolve().parents[1]
HYPER = dict(cutoff=5.0, n_atom_basis=128, n_filters=128, n_interactions=6, n_rbf=20)
SYSTEMS = ("molecules", "water1500", "water12000")
PEERS = ("atomml", "schnetpack")
MODES = ("full", "model")
# Peak extra memory seen for schnetpack (the larger of the two), MiB per atom, with margin.
MIB_PER_ATOM_ESTIMATE = 1.1


def paired_models(seed: int = 0):
    """(atomml potential, schnetpack model) with the same weights, float32, eval mode."""
    from atomml.models import create

    torch.manual_seed(seed)
    pot = create("schnet", elements=list(ORGANIC_ELEMENTS), **HYPER).eval()
    return pot, to_schnetpack(pot)


def spk_converter(dtype: torch.dtype, neighbor_list: str = "matscipy"):
    spk = import_schnetpack()
    from schnetpack.interfaces.ase_interface import AtomsConverter

    nl = {"matscipy": spk.transform.MatScipyNeighborList, "ase": spk.transform.ASENeighborList}[neighbor_list]
    return AtomsConverter(neighbor_list=nl(cutoff=HYPER["cutoff"]), dtype=dtype)


# --------------------------------------------------------------------------------------------
# benchmark worker (one peer, one system, one mode, in a fresh process)
# --------------------------------------------------------------------------------------------


def _make_call(peer: str, mode: str, atoms_list, neighbor_list: str):
    """Set up the peer and return (call, n_atoms, n_edges); call() returns (energy, forces)."""
    import atomml

    pot, spk_model = paired_models()
    cutoff = HYPER["cutoff"]
    if peer == "atomml":
        model = pot.to(torch.float32)
        if mode == "full":

            def call():
                out = model(atomml.from_ase(atoms_list, dtype=torch.float32), compute_forces=True)
                return out["energy"].detach(), out["forces"].detach()

            graph = atomml.from_ase(atoms_list, dtype=torch.float32).with_neighbors(cutoff)
        else:
            graph = atomml.from_ase(atoms_list, dtype=torch.float32).with_neighbors(cutoff)

            def call():
                out = model(graph, compute_forces=True)
                return out["energy"].detach(), out["forces"].detach()

        return call, graph.num_atoms, graph.num_edges
    del pot
    model = spk_model.to(torch.float32)
    converter = spk_converter(torch.float32, neighbor_list)
    if mode == "full":

        def call():
            out = model(converter(atoms_list))
            return out["energy"].detach(), out["forces"].detach()

        inputs = converter(atoms_list)
    else:
        inputs = converter(atoms_list)

        def call():
            out = model(dict(inputs))
            return out["energy"].detach(), out["forces"].detach()

    return call, int(inputs["_n_atoms"].sum()), int(inputs["_idx_i"].numel())


def worker(args) -> dict:
    torch.set_num_threads(args.threads)
    atoms_list = benchmark_system(args.system)
    call, n_atoms, n_edges = _make_call(args.peer, args.mode, atoms_list, args.neighbor_list)
    result = {"peer": args.peer, "system": args.system, "mode": args.mode, "n_atoms": n_atoms,
              "n_structures": len(atoms_list), "n_edges_directed": n_edges, "threads": torch.get_num_threads()}
    result.update(measure_call(call, warmup=args.warmup, repeats=args.repeats, measure=args.measure))
    return result


def run_worker(peer: str, system: str, mode: str, measure: str, args) -> dict:
    """One measurement in a fresh process (this script with --worker)."""
    argv = [__file__, "--worker", "--peer", peer, "--system", system, "--mode", mode, "--neighbor-list", args.neighbor_list,
            "--measure", measure, "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    return spawn_worker(argv, measure=measure, label={"peer": peer, "system": system, "mode": mode}, cwd=ROOT)


def benchmark(args) -> dict:
    systems = [s for s in args.systems.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    report: dict = {
        "hyperparameters": HYPER, "dtype": "float32", "threads": args.threads, "repeats": args.repeats,
        "warmup": args.warmup, "rounds": args.rounds, "torch": torch.__version__, "schnetpack": import_schnetpack().__version__,
        "neighbor_lists": {"atomml": "vesin (atomml default)", "schnetpack": f"{args.neighbor_list} (transform)"},
        "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "atomml_source": source_state(), "systems": {},
    }
    n_atoms = {system: sum(len(atoms) for atoms in benchmark_system(system)) for system in systems}

    def enough_memory(system: str) -> bool:
        return wait_for_memory(system, n_atoms[system], MIB_PER_ATOM_ESTIMATE, args.memory_wait)

    for system in systems:
        entry: dict = {}
        for mode in modes:
            runs: dict = {peer: {} for peer in PEERS}
            # Timing in alternating rounds (atomml, schnetpack, atomml, ...) so that a change of
            # background load does not favour one peer; repeats of all rounds are pooled.
            for _ in range(args.rounds):
                for peer in PEERS:
                    if not enough_memory(system):
                        out = {"error": "skipped: not enough free memory", "peer": peer}
                    else:
                        out = run_worker(peer, system, mode, "time", args)
                    runs[peer]["time"] = pool_times(runs[peer].get("time"), out)
            if not args.no_memory:
                for peer in PEERS:
                    if not enough_memory(system):
                        runs[peer]["memory"] = {"error": "skipped: not enough free memory", "peer": peer}
                    else:
                        runs[peer]["memory"] = run_worker(peer, system, mode, "memory", args)
            a, s = runs["atomml"], runs["schnetpack"]
            if "error" in a["time"] or "error" in s["time"]:
                entry[mode] = {"error": {"atomml": a, "schnetpack": s}}
                continue
            n = a["time"]["n_atoms"]
            m = {
                "n_atoms": n,
                "n_structures": a["time"]["n_structures"],
                "n_edges_directed": s["time"]["n_edges_directed"],
                "atomml_seconds": a["time"]["seconds_median"],
                "schnetpack_seconds": s["time"]["seconds_median"],
                "atomml_seconds_all": a["time"]["seconds_all"],
                "schnetpack_seconds_all": s["time"]["seconds_all"],
                "throughput_ratio": s["time"]["seconds_median"] / a["time"]["seconds_median"],
                # fastest calls: closer to the uncontended speed when other work shares the CPU
                "atomml_seconds_min": a["time"]["seconds_min"],
                "schnetpack_seconds_min": s["time"]["seconds_min"],
                "throughput_ratio_min": s["time"]["seconds_min"] / a["time"]["seconds_min"],
                "energy_rel_diff_float32": abs(a["time"]["energy_sum"] - s["time"]["energy_sum"])
                / max(abs(s["time"]["energy_sum"]), 1e-30),
            }
            if not args.no_memory and "error" not in a["memory"] and "error" not in s["memory"]:
                am, sm = a["memory"]["extra_mib"], s["memory"]["extra_mib"]
                m.update(
                    atomml_extra_mib=am, schnetpack_extra_mib=sm,
                    atomml_mib_per_atom=am / n, schnetpack_mib_per_atom=sm / n,
                    memory_ratio=sm / am if am > 0 else None,
                    peak_reset_ok=bool(a["memory"]["peak_reset"] and s["memory"]["peak_reset"]),
                )
            entry[mode] = m
        report["systems"][system] = entry
    report["load_average_at_end"] = os.getloadavg()
    if source_state() != report["atomml_source"]:
        report["warning"] = "atomml source changed during the run: the systems may have used different code"
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="float64 agreement check only; prints JSON")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {SYSTEMS}")
    p.add_argument("--modes", default=",".join(MODES), help="full (with neighbour list), model (precomputed)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="alternating timing rounds per peer (pooled)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory-wait", type=float, default=600.0,
                   help="seconds to wait for enough free memory before a run is skipped")
    p.add_argument("--neighbor-list", default="matscipy", choices=["matscipy", "ase"],
                   help="schnetpack's neighbour-list transform")
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--output", help="also write the JSON here")
    # worker-only
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--peer", choices=PEERS, help=argparse.SUPPRESS)
    p.add_argument("--system", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.check:
        torch.set_num_threads(args.threads)
        result = agreement_report()
    elif args.worker:
        result = worker(args)
    else:
        result = benchmark(args)
    emit_json(result, args.output, worker=bool(args.worker))


if __name__ == "__main__":
    main()
