"""Stability of the shipped organic potential on every held-out molecule: 10 ps NVT + NVE drift.

    .venv/bin/python scripts/stability_organic.py [--potential tensornet-organic-gfn2] [--nvt-ps 10] [--nve-ps 2]

For each molecule of ``data/generated/organic/organic_heldout.extxyz`` (molecules never used in
training), starting from its lowest-energy reference frame:

- Langevin NVT at 300 K (ASE ``Langevin``, 0.5 fs, friction 0.01/fs) for ``--nvt-ps``;
  every 50 fs the bonds are checked against the starting ones by ``atomml.analysis.BondMonitor``
  (bonded: closer than 1.2 × the sum of ASE's covalent radii; "bond broken": a starting bond
  stretched beyond 1.5 × the sum; "bond formed": another pair closer than the sum itself, so
  that thermal motion of 1-3 contacts is no change) and the molecule's potential energy against
  its running mean: more than 5 eV above it, or non-finite, is "energy blow-up";
- then velocity-Verlet NVE for ``--nve-ps`` from the last NVT state; the drift is the slope of a
  straight-line fit to the molecule's total energy, in eV per atom per ps.

All neutral molecules are simulated together as one ASE ``Atoms`` with the molecules 30 Å apart
(beyond the cutoff, so they do not interact and the Langevin thermostat acts per atom): one
model call per step for all of them, and ASE's own integrators. Per-molecule energies are sums
of the potential's per-atom energies. Charged molecules run on their own (the potential
conditions on the total charge of a structure). Jobs run in parallel processes (``--workers``);
each job's result is saved when it finishes and skipped on a rerun. The summary goes to
``data/benchmarks/stability_organic.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPACING = 30.0  # Å between molecules of a composite system: far beyond any cutoff
CHECK_FS = 50.0
BLOW_UP_EV = 5.0


def starting_structures(path: Path) -> list:
    """The lowest-energy frame of each molecule in the held-out file."""
    from ase.io import read

    best: dict[str, object] = {}
    for atoms in read(path, ":"):
        name = atoms.info["molecule"]
        if name not in best or atoms.get_potential_energy() < best[name].get_potential_energy():
            best[name] = atoms
    frames = []
    for name, atoms in sorted(best.items()):
        clean = atoms.copy()
        clean.calc = None
        clean.info = {"molecule": name, "charge": int(atoms.info.get("charge", 0))}
        frames.append(clean)
    return frames


def run_job(molecules: list, potential: str, nvt_ps: float, nve_ps: float, seed: int) -> list[dict]:
    """NVT then NVE of ``molecules`` (one composite system); one result per molecule."""
    import torch
    from ase import Atoms, units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    from atomml import AtomMLCalculator
    from atomml.analysis import BondMonitor

    torch.set_num_threads(1)
    system = Atoms()
    slices = []
    for k, mol in enumerate(molecules):
        shifted = mol.copy()
        shifted.positions += np.array([SPACING * k, 0.0, 0.0]) - shifted.positions.mean(axis=0)
        slices.append(slice(len(system), len(system) + len(shifted)))
        system += shifted
    system.info["charge"] = sum(int(m.info["charge"]) for m in molecules)
    system.calc = AtomMLCalculator(potential, dtype=torch.float32)
    dt = 0.5
    monitors = [BondMonitor(m, timestep_fs=dt) for m in molecules]
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(system, temperature_K=300, rng=rng)
    Stationary(system)
    every = int(CHECK_FS / dt)
    results = [{"molecule": m.info["molecule"], "atoms": len(m), "charge": int(m.info["charge"]), "status": "stable"} for m in molecules]
    energies: list[list[float]] = [[] for _ in molecules]
    temperatures: list[list[float]] = [[] for _ in molecules]

    def check(step: int) -> None:
        e = system.get_potential_energies()
        v = system.get_velocities()
        m = system.get_masses()
        for k, (sl, monitor) in enumerate(zip(slices, monitors)):
            if results[k]["status"] != "stable":
                continue
            part = system[sl]
            energy = float(e[sl].sum())
            kinetic = 0.5 * float((m[sl, None] * v[sl] ** 2).sum())
            temperatures[k].append(2 * kinetic / (3 * len(part) * units.kB))
            if not np.isfinite(energy) or (energies[k] and energy > np.mean(energies[k]) + BLOW_UP_EV):
                results[k].update(status="energy blow-up", failed_at_ps=step * dt / 1000)
            else:
                monitor(part, step)
                if (event := monitor.event) is not None:
                    status = "non-finite positions" if event.kind == "non-finite" else f"bond {event.kind}"
                    results[k].update(status=status, detail=str(event), failed_at_ps=event.time_ps)
            energies[k].append(energy)

    started = time.perf_counter()
    nvt = Langevin(system, dt * units.fs, temperature_K=300, friction=0.01 / units.fs, fixcm=False, rng=rng)
    nvt_steps = int(round(nvt_ps * 1000 / dt))
    for done in range(0, nvt_steps, every):
        nvt.run(every)
        check(done + every)
    nvt_seconds = time.perf_counter() - started
    nve = VelocityVerlet(system, dt * units.fs)
    totals: list[list[float]] = [[] for _ in molecules]
    times = []
    nve_steps = int(round(nve_ps * 1000 / dt))
    sample = 10
    for done in range(0, nve_steps + 1, sample):
        if done:
            nve.run(sample)
        e = system.get_potential_energies()
        v, m = system.get_velocities(), system.get_masses()
        times.append(done * dt / 1000)
        for k, sl in enumerate(slices):
            totals[k].append(float(e[sl].sum()) + 0.5 * float((m[sl, None] * v[sl] ** 2).sum()))
    for k, res in enumerate(results):
        t = np.array(times)
        total = np.array(totals[k])
        slope = np.polyfit(t, total, 1)[0] if np.isfinite(total).all() else float("nan")
        res.update(
            nvt_ps=nvt_ps,
            mean_temperature_K=round(float(np.mean(temperatures[k])), 1),
            max_temperature_K=round(float(np.max(temperatures[k])), 1),
            nve_ps=nve_ps,
            nve_drift_eV_per_atom_per_ps=float(slope) / res["atoms"],
            nve_total_energy_std_eV_per_atom=float(np.std(total - np.polyval(np.polyfit(t, total, 1), t))) / res["atoms"],
            composite_atoms=len(system),
            nvt_ns_per_day_composite=round(nvt_ps * 1e-3 / nvt_seconds * 86400, 3),
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--potential", default="tensornet-organic-gfn2")
    parser.add_argument("--heldout", default=str(ROOT / "data" / "generated" / "organic" / "organic_heldout.extxyz"))
    parser.add_argument("--nvt-ps", type=float, default=10.0)
    parser.add_argument("--nve-ps", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / "runs" / "stability"))
    parser.add_argument("--output", default=str(ROOT / "data" / "benchmarks" / "stability_organic.json"))
    args = parser.parse_args()

    molecules = starting_structures(Path(args.heldout))
    neutral = [m for m in molecules if m.info["charge"] == 0]
    charged = [[m] for m in molecules if m.info["charge"] != 0]
    # two neutral composites so that both workers have work of similar size
    half = (len(neutral) + 1) // 2
    jobs = [group for group in [neutral[:half], neutral[half:], *charged] if group]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"{len(molecules)} held-out molecules in {len(jobs)} jobs; NVT {args.nvt_ps} ps + NVE {args.nve_ps} ps", flush=True)
    results: list[dict] = []
    pending = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for k, group in enumerate(jobs):
            done = work / f"job{k}_" f"{'-'.join(m.info['molecule'] for m in group)[:80]}.json"
            if done.exists():
                results += json.loads(done.read_text())
                continue
            pending[pool.submit(run_job, group, args.potential, args.nvt_ps, args.nve_ps, args.seed + k)] = done
        for future, done in pending.items():
            out = future.result()
            tmp = done.with_suffix(".tmp")
            tmp.write_text(json.dumps(out, indent=1))
            os.replace(tmp, done)
            results += out
            print(f"  finished: {', '.join(r['molecule'] + ' ' + r['status'] for r in out)}", flush=True)
    results.sort(key=lambda r: r["molecule"])
    drift = np.array([abs(r["nve_drift_eV_per_atom_per_ps"]) for r in results])
    summary = {
        "potential": args.potential,
        "molecules": len(results),
        "stable": sum(r["status"] == "stable" for r in results),
        "nvt_ps_each": args.nvt_ps,
        "nve_ps_each": args.nve_ps,
        "timestep_fs": 0.5,
        "max_abs_nve_drift_eV_per_atom_per_ps": float(drift.max()),
        "median_abs_nve_drift_eV_per_atom_per_ps": float(np.median(drift)),
        "results": results,
    }
    Path(args.output).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=1))
    for r in results:
        print(f"  {r['molecule']:<28} {r['atoms']:3d} atoms  q={r['charge']:+d}  {r['status']:<15} "
              f"T={r['mean_temperature_K']:6.1f} K  NVE drift {r['nve_drift_eV_per_atom_per_ps']:+.2e} eV/atom/ps")


if __name__ == "__main__":
    main()
