"""Does torch-scatter speed up ``atomml.nn.scatter.scatter_sum`` on CPU?

Prints one JSON object with
  * ``micro``: scatter_sum by torch's ``index_add_`` (atomml's fallback) against
    ``torch_scatter.scatter_sum``, float32 src of shape (E, 128) summed into N = E/26 rows
    (random indices, sorted and unsorted), forward only and forward + backward; median of
    repeats, methods interleaved in each repeat. For reference it also times torch's own
    ``scatter_add_`` with a broadcast index (what ``torch_scatter.scatter_sum`` runs
    internally: in torch-scatter 2.1.2 it is a Python wrapper around it, not a compiled kernel)
    and, for sorted indices, torch-scatter's compiled ``segment_coo`` kernel.
  * ``end_to_end``: SchNet energy + forces on a ~1,500-atom periodic water box with
    ``atomml.nn.scatter.USE_TORCH_SCATTER`` False vs True, same process, alternating runs.

Speed-ups are t(index_add_) / t(other): above 1 means the other is faster.

Without torch_scatter installed (e.g. in the project's .venv) it reports torch_scatter as
unavailable and times index_add_ (and torch's scatter_add_) only. Typical use:

    .bench-venv-scatter/bin/python scripts/bench_scatter.py > /tmp/bench_scatter.json
    .venv/bin/python scripts/bench_scatter.py --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

import torch

import atomml
import atomml.nn.scatter as atomml_scatter
from atomml.benchmarking import cpu_name
from atomml.testing.structures import water_box

# atomml uses torch-scatter only off the CPU by default; this benchmark compares it on the CPU.
atomml_scatter.TORCH_SCATTER_ON_CPU = True

try:
    import torch_scatter  # type: ignore[import-not-found]
except Exception as exc:  # noqa: BLE001
    torch_scatter = None
    TORCH_SCATTER_ERROR = f"{type(exc).__name__}: {exc}"
else:
    TORCH_SCATTER_ERROR = None

FEATURES = 128
ATOMS_PER_ROW = 26  # N = E / 26, about the pairs per atom of SchNet (half edges) at 5 Å in water


# ---------------------------------------------------------------------------------------------
# scatter variants: f(src, index, dim_size) -> (dim_size, F)


def via_index_add(src, index, n):
    return src.new_zeros((n,) + tuple(src.shape[1:])).index_add_(0, index, src)


def via_torch_scatter(src, index, n):
    return torch_scatter.scatter_sum(src, index, dim=0, dim_size=n)


def via_scatter_add(src, index, n):
    """torch's scatter_add_ with a broadcast index (no torch_scatter needed)."""
    return src.new_zeros((n,) + tuple(src.shape[1:])).scatter_add_(0, index.unsqueeze(1).expand_as(src), src)


def via_segment_coo(src, index, n):
    """torch-scatter's compiled kernel for sorted indices."""
    return torch_scatter.segment_coo(src, index, dim_size=n, reduce="sum")


def _time_once(fn, src, index, n, backward: bool) -> float:
    if backward:
        src.grad = None
    t0 = time.perf_counter()
    out = fn(src, index, n)
    if backward:
        out.sum().backward()
    return time.perf_counter() - t0


def micro(sizes: list[int], repeats: int, warmup: int, seed: int) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(seed)
    for e in sizes:
        n = e // ATOMS_PER_ROW
        src0 = torch.randn(e, FEATURES, generator=gen, dtype=torch.float32)
        unsorted = torch.randint(0, n, (e,), generator=gen)
        for order, index in (("sorted", unsorted.sort().values), ("unsorted", unsorted)):
            methods = {"index_add_": via_index_add, "scatter_add_": via_scatter_add}
            if torch_scatter is not None:
                methods["torch_scatter.scatter_sum"] = via_torch_scatter
                if order == "sorted":
                    methods["torch_scatter.segment_coo"] = via_segment_coo
            for mode in ("forward", "forward+backward"):
                backward = mode != "forward"
                src = src0.clone().requires_grad_(backward)
                # results and gradients against index_add_
                ref = via_index_add(src, index, n)
                ref_grad = None
                if backward:
                    ref.sum().backward()
                    ref_grad, src.grad = src.grad.clone(), None
                checks = {}
                for name, fn in methods.items():
                    out = fn(src, index, n)
                    ok = torch.allclose(out, ref, rtol=1e-4, atol=1e-4)
                    diff = float((out - ref).detach().abs().max())
                    if backward:
                        out.sum().backward()
                        ok = ok and torch.allclose(src.grad, ref_grad)
                        src.grad = None
                    checks[name] = {"allclose": bool(ok), "max_abs_diff": diff}
                del ref, ref_grad
                times: dict[str, list[float]] = {name: [] for name in methods}
                with torch.set_grad_enabled(backward):
                    for _ in range(warmup):
                        for fn in methods.values():
                            _time_once(fn, src, index, n, backward)
                    for r in range(repeats):
                        names = list(methods)
                        if r % 2:  # alternate the order so that neither always goes first
                            names.reverse()
                        for name in names:
                            times[name].append(_time_once(methods[name], src, index, n, backward))
                med = {name: statistics.median(t) for name, t in times.items()}
                row = {
                    "E": e,
                    "N": n,
                    "index": order,
                    "mode": mode,
                    "median_ms": {name: round(1e3 * t, 3) for name, t in med.items()},
                    "min_ms": {name: round(1e3 * min(t), 3) for name, t in times.items()},
                    "speedup_vs_index_add": {
                        name: round(med["index_add_"] / t, 3) for name, t in med.items() if name != "index_add_"
                    },
                    # median over repeats of t(index_add_)/t(other) within the same repeat: less
                    # sensitive to load that drifts on a shared machine
                    "paired_speedup_vs_index_add": {
                        name: round(statistics.median(a / b for a, b in zip(times["index_add_"], t)), 3)
                        for name, t in times.items()
                        if name != "index_add_"
                    },
                    "check_vs_index_add": checks,
                }
                rows.append(row)
                print(f"[micro] E={e} {order:8s} {mode:16s} " + "  ".join(
                    f"{k}={v:.2f}ms" for k, v in row["median_ms"].items()), file=sys.stderr)
                del src
                gc.collect()
    return rows


# ---------------------------------------------------------------------------------------------
# end to end


def scatter_share(pot, graph, modes, calls: int) -> dict:
    """Time spent inside SchNet's scatter_sum calls, as a share of the whole call: the most
    that any faster scatter could save. Measured in separate calls (the timing wrapper is not
    part of the timed runs above); numerator and denominator come from the same calls."""
    import atomml.models.schnet as schnet_module

    original = schnet_module.scatter_sum
    spent = [0.0]
    count = [0]

    def timed_scatter_sum(src, index, dim_size):
        t0 = time.perf_counter()
        out = original(src, index, dim_size)
        spent[0] += time.perf_counter() - t0
        count[0] += 1
        return out

    result = {}
    schnet_module.scatter_sum = timed_scatter_sum
    try:
        for flag in modes:
            atomml_scatter.USE_TORCH_SCATTER = flag
            shares, scatter_s = [], []
            for _ in range(calls):
                spent[0], count[0] = 0.0, 0
                t0 = time.perf_counter()
                pot(graph)
                total = time.perf_counter() - t0
                shares.append(spent[0] / total)
                scatter_s.append(spent[0])
            result[flag] = {
                "scatter_calls_per_energy_forces": count[0],
                "median_scatter_s": round(statistics.median(scatter_s), 4),
                "median_share_of_call": round(statistics.median(shares), 4),
            }
    finally:
        schnet_module.scatter_sum = original
    return result


def end_to_end(repeats: int, warmup: int, n_per_side: int, seed: int) -> dict:
    from atomml.models import create

    torch.manual_seed(seed)
    pot = create("schnet", elements=[1, 8], cutoff=5.0)
    pot.eval()
    atoms = water_box(n_per_side, seed)
    graph = atomml.from_ase(atoms, dtype=torch.float32).with_neighbors(5.0)
    modes = [False, True] if torch_scatter is not None else [False]
    label = {False: "index_add_", True: "torch_scatter"}
    default_flag = atomml_scatter.USE_TORCH_SCATTER
    cpu_times: dict[bool, list[float]] = {flag: [] for flag in modes}

    def call(flag: bool):
        atomml_scatter.USE_TORCH_SCATTER = flag
        c0, t0 = time.process_time(), time.perf_counter()
        out = pot(graph)
        t1, c1 = time.perf_counter(), time.process_time()
        cpu_times[flag].append(c1 - c0)
        return t1 - t0, out

    results = {}
    try:
        for flag in modes:
            _, out = call(flag)
            results[flag] = (out["energy"].detach().clone(), out["forces"].detach().clone())
        for _ in range(warmup):
            for flag in modes:
                call(flag)
        times: dict[bool, list[float]] = {flag: [] for flag in modes}
        for flag in modes:
            cpu_times[flag].clear()
        for r in range(repeats):
            order = modes if r % 2 == 0 else modes[::-1]
            for flag in order:
                gc.collect()
                t, _ = call(flag)
                times[flag].append(t)
                print(f"[e2e] repeat {r} {label[flag]:14s} {t:.3f}s", file=sys.stderr)
        share = scatter_share(pot, graph, modes, max(2, warmup))
    finally:
        atomml_scatter.USE_TORCH_SCATTER = default_flag

    pair_count = int(graph.edge_index.shape[1])
    med = {flag: statistics.median(t) for flag, t in times.items()}
    report = {
        "system": f"periodic water box, {n_per_side}^3 molecules",
        "n_atoms": len(atoms),
        "n_edges_full": pair_count,
        "model": "schnet, elements [1, 8], cutoff 5.0, defaults (128 features, 6 interactions)",
        "call": "pot(graph): energy + forces, float32",
        "repeats": repeats,
        "median_s": {label[f]: round(t, 4) for f, t in med.items()},
        "min_s": {label[f]: round(min(t), 4) for f, t in times.items()},
        "all_s": {label[f]: [round(x, 4) for x in t] for f, t in times.items()},
        # process CPU time (both threads): less inflated than wall time when other work
        # competes for the cores
        "median_cpu_s": {label[f]: round(statistics.median(t), 4) for f, t in cpu_times.items()},
        "scatter_share": {label[f]: v for f, v in share.items()},
    }
    if True in med:
        e0, f0 = results[False]
        e1, f1 = results[True]
        report["speedup_torch_scatter_vs_index_add"] = round(med[False] / med[True], 3)
        # adjacent runs (alternating order) as pairs: median of t(index_add_)/t(torch_scatter)
        report["paired_speedup_torch_scatter_vs_index_add"] = round(
            statistics.median(a / b for a, b in zip(times[False], times[True])), 3
        )
        report["cpu_time_speedup_torch_scatter_vs_index_add"] = round(
            statistics.median(cpu_times[False]) / statistics.median(cpu_times[True]), 3
        )
        report["time_ratio_torch_scatter_over_index_add"] = round(med[True] / med[False], 3)
        report["check"] = {
            "energy_abs_diff": float((e1 - e0).abs().max()),
            "forces_max_abs_diff": float((f1 - f0).abs().max()),
            "forces_allclose": bool(torch.allclose(f1, f0, rtol=1e-4, atol=1e-4)),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="40000,400000", help="comma-separated E values")
    parser.add_argument("--repeats", type=int, default=15, help="micro-benchmark repeats per method")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--e2e-repeats", type=int, default=9, help="end-to-end repeats per setting (>=5)")
    parser.add_argument("--water-per-side", type=int, default=8, help="8 -> 512 waters, 1536 atoms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few repeats")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-micro", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats, args.warmup, args.e2e_repeats, args.water_per_side = "4000", 3, 1, 2, 4

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_scatter": getattr(torch_scatter, "__version__", None),
        "torch_scatter_available": torch_scatter is not None,
        "torch_scatter_error": TORCH_SCATTER_ERROR,
        "atomml_default_USE_TORCH_SCATTER": atomml_scatter.USE_TORCH_SCATTER,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "dtype": "float32",
        "features": FEATURES,
        "note": "speedup = t(index_add_) / t(other); >1 means other is faster. "
        "torch_scatter.scatter_sum (2.1.2) is Python around torch's scatter_add_.",
    }
    if not args.skip_micro:
        report["micro"] = micro([int(s) for s in args.sizes.split(",")], args.repeats, args.warmup, args.seed)
    if not args.skip_e2e:
        report["end_to_end"] = end_to_end(args.e2e_repeats, args.warmup, args.water_per_side, args.seed)
    report["loadavg_start"] = [round(x, 2) for x in load_start]
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
