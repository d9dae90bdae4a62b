"""Neighbour-list timings: atomml's torch and vesin backends against vesin, matscipy and ASE.

Systems: N uniformly random points (not molecules) in a cubic periodic box at 0.1 atoms/Å^3,
about the atom density of liquid water; cutoff 5 Å; float64; one structure. Random points
have the same pair count as water at that density but no bonded geometry.

Each backend is called once as warm-up, then timed ``--repeats`` times (fewer if the repeats
would take longer than ``--budget`` seconds); the median is reported. ASE is skipped above
30,000 atoms (tens of seconds a call). At every size the torch backend's pair set is checked
to be identical to vesin's (``identical_pairs``).

Prints one JSON object. Example: ``.venv/bin/python scripts/bench_neighbors.py --sizes 300 3000``.
The numbers depend on the machine and on whatever else runs on it: the JSON records the CPU,
the thread count and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

DENSITY = 0.1  # atoms / Å^3
CUTOFF = 5.0  # Å
ASE_MAX_ATOMS = 30_000
DEFAULT_SIZES = [300, 3_000, 30_000, 100_000]


def random_box(n_atoms: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    length = (n_atoms / DENSITY) ** (1.0 / 3.0)
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, length, (n_atoms, 3)), np.eye(3) * length


def time_call(fn, repeats: int, budget: float) -> tuple[float, float, int, object]:
    """Median and minimum seconds of ``fn()`` after one warm-up call, the number of timed
    calls, and the result of the warm-up call."""
    start = time.perf_counter()
    result = fn()
    warm_up = time.perf_counter() - start
    n = max(1, min(repeats, int(budget / max(warm_up, 1e-9))))
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), n, result


def pair_keys(i: np.ndarray, j: np.ndarray, shifts: np.ndarray, n_atoms: int) -> np.ndarray:
    """Sorted int64 codes of the (i, j, S) tuples, so that two lists compare as sets."""
    i, j, shifts = (np.asarray(a, dtype=np.int64) for a in (i, j, shifts))
    bound = int(np.abs(shifts).max(initial=0)) + 1
    code = np.zeros(len(i), dtype=np.int64)
    for axis in range(3):
        code = code * (2 * bound + 1) + shifts[:, axis] + bound
    return np.sort((i * n_atoms + j) * (2 * bound + 1) ** 3 + code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="numbers of atoms")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and vesin (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per backend and size (default 5)")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of timed calls per backend and size")
    args = parser.parse_args()

    import ase
    import matscipy
    import torch
    import vesin
    from ase import Atoms
    from ase.neighborlist import neighbor_list as ase_neighbor_list
    from matscipy.neighbours import neighbour_list as matscipy_neighbour_list

    import atomml
    from atomml.benchmarking import cpu_name
    from atomml.neighbors import neighbor_list

    torch.set_num_threads(args.threads)
    vesin_calculator = vesin.NeighborList(cutoff=CUTOFF, full_list=True, sorted=True, n_threads=args.threads)

    report = {
        "system": f"uniform random points, periodic cubic box, {DENSITY} atoms/A^3, one structure",
        "cutoff_A": CUTOFF,
        "dtype": "float64",
        "statistic": f"seconds: median of up to {args.repeats} calls after one warm-up (fewer when over "
        f"{args.budget} s); seconds_min: the fastest of those calls",
        "torch_num_threads": torch.get_num_threads(),
        "vesin_n_threads": args.threads,
        "notes": {
            "ase": f"skipped above {ASE_MAX_ATOMS} atoms: too slow (tens of seconds a call)",
            "matscipy": "single-threaded",
            "vesin_direct": "vesin.NeighborList(full_list=True, sorted=True).compute(..., 'ijS'), numpy in and out",
            "ratio": "torch / atomml-vesin (and torch / vesin direct) at the same size",
        },
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "vesin": vesin.__version__,
            "matscipy": matscipy.__version__,
            "ase": ase.__version__,
            "atomml": getattr(atomml, "__version__", "unknown"),
        },
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "results": [],
    }

    for n_atoms in args.sizes:
        positions, cell = random_box(n_atoms)
        pos_t, cell_t = torch.from_numpy(positions), torch.from_numpy(cell)
        pbc_t = torch.ones(3, dtype=torch.bool)
        atoms = Atoms(numbers=np.ones(n_atoms, dtype=int), positions=positions, cell=cell, pbc=True)

        backends = {
            "atomml_torch": lambda: neighbor_list(pos_t, cell_t, pbc_t, CUTOFF, backend="torch"),
            "atomml_vesin": lambda: neighbor_list(pos_t, cell_t, pbc_t, CUTOFF, backend="vesin"),
            "vesin_direct": lambda: vesin_calculator.compute(positions, cell, True, "ijS"),
            "matscipy": lambda: matscipy_neighbour_list("ijS", positions=positions, cell=cell, pbc=[True] * 3, cutoff=CUTOFF),
        }
        if n_atoms <= ASE_MAX_ATOMS:
            backends["ase"] = lambda: ase_neighbor_list("ijS", atoms, CUTOFF)

        seconds, fastest, repeats, pairs, outputs = {}, {}, {}, {}, {}
        for name, fn in backends.items():
            seconds[name], fastest[name], repeats[name], out = time_call(fn, args.repeats, args.budget)
            if name.startswith("atomml"):
                edge_index, shifts = out
                out = (edge_index[0].numpy(), edge_index[1].numpy(), shifts.numpy())
            pairs[name] = int(len(out[0]))
            outputs[name] = out
        if n_atoms > ASE_MAX_ATOMS:
            seconds["ase"] = fastest["ase"] = None

        torch_keys = pair_keys(*outputs["atomml_torch"], n_atoms)
        identical = bool(np.array_equal(torch_keys, pair_keys(*outputs["atomml_vesin"], n_atoms)))
        identical = identical and bool(np.all(np.diff(torch_keys) > 0))  # and no repeated pair
        report["results"].append(
            {
                "n_atoms": n_atoms,
                "box_length_A": round(float(cell[0, 0]), 3),
                "pairs": pairs["atomml_vesin"],
                "pairs_per_backend_agree": len(set(pairs.values())) == 1,
                "identical_pairs": identical,
                "seconds": {k: (None if v is None else round(v, 6)) for k, v in seconds.items()},
                "seconds_min": {k: (None if v is None else round(v, 6)) for k, v in fastest.items()},
                "timed_calls": repeats,
                "ratio_torch_over_vesin": round(seconds["atomml_torch"] / seconds["atomml_vesin"], 3),
                "ratio_torch_over_vesin_direct": round(seconds["atomml_torch"] / seconds["vesin_direct"], 3),
            }
        )
        del outputs
        print(f"{n_atoms} atoms done", file=sys.stderr, flush=True)

    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
