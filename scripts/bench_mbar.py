#!/usr/bin/env python
"""atomml.fe.estimators.mbar against calling pymbar directly: analysis time, same data.

    .venv/bin/python scripts/bench_mbar.py --states 20 --samples 20000 --repeats 5

Data: K harmonic states (reduced u_k(x) = kappa_k (x - mu_k)^2 / 2, well overlapping), N
samples in all drawn exactly from them. The peer is what a user would write with pymbar:
``MBAR(u_kn, N_k, solver_protocol="robust")`` then ``compute_free_energy_differences()``.
atomml's wrapper does the same and adds its checks and the overlap matrix (its diagnostics).
Prints JSON with median times and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def data(states: int, samples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    kappas = np.linspace(1.0, 4.0, states)
    mus = np.linspace(0.0, 1.0, states)
    n_k = np.full(states, samples // states)
    x = np.concatenate([rng.normal(m, 1 / np.sqrt(k), n) for k, m, n in zip(kappas, mus, n_k)])
    return np.array([0.5 * k * (x - m) ** 2 for k, m in zip(kappas, mus)]), n_k


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--states", type=int, default=20)
    p.add_argument("--samples", type=int, default=20000, help="samples in all states together")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--output", help="also write the JSON here")
    args = p.parse_args(argv)
    from pymbar import MBAR

    from atomml.fe.estimators import mbar

    u_kn, n_k = data(args.states, args.samples)

    def direct():
        MBAR(u_kn, n_k, solver_protocol="robust").compute_free_energy_differences()

    def ours():
        mbar(u_kn, n_k, 300.0)

    times: dict[str, list[float]] = {"pymbar": [], "atomml": []}
    for _ in range(args.repeats):  # alternate, so that load changes hit both
        for name, fn in (("pymbar", direct), ("atomml", ours)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    text = json.dumps({"states": args.states, "samples": int(n_k.sum()), "seconds_median": med,
                       "overhead_fraction": med["atomml"] / med["pymbar"] - 1, "seconds_all": times}, indent=2)  # fmt: skip
    if args.output:
        open(args.output, "w").write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
