#!/usr/bin/env python
"""The same atomml potential driven by OpenMM (atomml's PythonForce), by ASE, and by openmm-ml's
own ``ase`` potential wrapping atomml's ASE calculator: time per MD step, and the bridge's
overhead per step (OpenMM step time minus the bare model call).

    .venv/bin/python scripts/bench_openmm.py --steps 10 --output out.json

System: a periodic box of 1,536 water atoms (``atomml.testing.structures.water_box(8)``), TensorNet at its
published size (128 channels, 2 layers, 32 RBF, 5 Å; random weights), float32, 2 threads,
velocity Verlet at 0.5 fs from 300 K velocities (OpenMM ``VerletIntegrator`` on the CPU
platform; ASE ``VelocityVerlet``). All paths run in this one process, one after another, with
the same neighbour-list skin (0.5 Å). The bridge overhead is measured inside the OpenMM steps:
step time minus the time the atomml calculator took in that step (the bare model call on
MD-like positions is reported too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from atomml.benchmarking import emit_json, source_state
from atomml.testing.structures import water_box

TIMESTEP_FS = 0.5


def time_openmm(system, atoms, steps: int, warmup: int) -> list[float]:
    import openmm
    from openmm import unit

    integrator = openmm.VerletIntegrator(TIMESTEP_FS * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "2"})
    context.setPositions(atoms.positions * 0.1)
    context.setPeriodicBoxVectors(*(v * 0.1 for v in atoms.cell.array))
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(warmup)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        integrator.step(1)
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import ase.units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet
    from openmmml import MLPotential

    import atomml
    from atomml import units
    from atomml.models import create
    from atomml.dynamics.openmm import topology

    atoms = water_box(8)
    torch.manual_seed(0)
    path = atomml.save_potential(create("tensornet", elements=[1, 8], cutoff=5.0), Path("runs/bench_openmm/tensornet"))
    results: dict = {"n_atoms": len(atoms), "steps": args.steps, "threads": args.threads, "dtype": "float32",
                     "torch": torch.__version__, "atomml_source": source_state(),
                     "load_average_at_start": os.getloadavg()}  # fmt: skip

    # bare model calls on MD-like positions (same skin reuse as in MD)
    calc = atomml.AtomMLCalculator(str(path), dtype=torch.float32, skin=0.5)
    probe = atoms.copy()
    probe.calc = calc
    MaxwellBoltzmannDistribution(probe, temperature_K=300, rng=np.random.default_rng(1))
    dyn = VelocityVerlet(probe, timestep=TIMESTEP_FS * ase.units.fs)
    dyn.run(args.warmup)
    model = []
    for _ in range(args.steps):
        probe.positions += probe.get_velocities() * TIMESTEP_FS * ase.units.fs
        t0 = time.perf_counter()
        calc.calculate(probe, ["energy", "forces"])
        model.append(time.perf_counter() - t0)

    # ASE velocity Verlet
    md = atoms.copy()
    md.calc = atomml.AtomMLCalculator(str(path), dtype=torch.float32, skin=0.5)
    MaxwellBoltzmannDistribution(md, temperature_K=300, rng=np.random.default_rng(1))
    dyn = VelocityVerlet(md, timestep=TIMESTEP_FS * ase.units.fs)
    dyn.run(args.warmup)
    ase_steps = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        dyn.run(1)
        ase_steps.append(time.perf_counter() - t0)

    # OpenMM with atomml's force, and with openmm-ml's generic ASE potential
    top = topology(atoms)
    system = MLPotential("atomml", potential=str(path), precision="single").createSystem(top)
    # time spent in the model during the OpenMM steps themselves: the bridge overhead is the
    # rest of each step, measured in the same steps (immune to load changes between phases)
    inside: list[float] = []
    calculate = atomml.AtomMLCalculator.calculate

    def timed(self, *a, **k):
        t0 = time.perf_counter()
        calculate(self, *a, **k)
        inside.append(time.perf_counter() - t0)

    atomml.AtomMLCalculator.calculate = timed
    ours = time_openmm(system, atoms, args.steps, args.warmup)
    atomml.AtomMLCalculator.calculate = calculate
    in_steps = inside[-args.steps :]
    overhead = [step - model for step, model in zip(ours, in_steps)]
    ase_system = MLPotential("ase").createSystem(top, calculator=atomml.AtomMLCalculator(str(path), dtype=torch.float32, skin=0.5))
    theirs = time_openmm(ase_system, atoms, args.steps, args.warmup)

    med = statistics.median
    results.update(
        model_call_seconds=med(model), openmm_atomml_step_seconds=med(ours), ase_step_seconds=med(ase_steps),
        openmm_ml_ase_step_seconds=med(theirs),
        model_call_in_openmm_seconds=med(in_steps),
        bridge_overhead_seconds=med(overhead), bridge_overhead_fraction=med(overhead) / med(in_steps),
        openmm_vs_ase_speed=med(ase_steps) / med(ours), openmm_atomml_vs_openmm_ml_ase_speed=med(theirs) / med(ours),
        ns_per_day={name: TIMESTEP_FS * units.NS_PER_FS / med(t) * units.SECONDS_PER_DAY for name, t in
                    (("openmm_atomml", ours), ("ase", ase_steps), ("openmm_ml_ase", theirs))},
        all_seconds={"model": model, "openmm_atomml": ours, "model_in_openmm": in_steps, "ase": ase_steps,
                     "openmm_ml_ase": theirs},
        load_average_at_end=os.getloadavg(),
    )  # fmt: skip
    emit_json(results, args.output)


if __name__ == "__main__":
    main()
