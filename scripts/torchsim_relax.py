#!/usr/bin/env python
"""Relax many structures at once with torch-sim's batched FIRE and an atomml potential.

``relax(structures, potential, fmax=..., max_steps=..., cell=...)`` is the helper a benchmark
imports to set torch-sim's batched relaxation against :func:`atomml.relax` (ASE's FIRE, one
structure at a time). Each kind of structure goes through one ``torch_sim.optimize`` call with
an in-flight autobatcher: batches of at most ``max_atoms`` atoms, each structure swapped out
as soon as it has converged (checked after every step) and the next one swapped in.

The convergence rule is ASE's: a structure has converged when the largest row norm of the
forces the optimiser moves along is below ``fmax``. torch-sim's FIRE runs in its ASE flavour
(:func:`ase_fire`, ASE's default parameters), and ``steps`` counts steps as ASE's
``opt.nsteps`` does (0 for a structure that has converged at the start). Run as a script for a
demo on five molecules (seconds on two CPU cores)::

    .venv/bin/python scripts/torchsim_relax.py

torch-sim versions: 0.3.0 (the last release for Python 3.11, .venv's) and 0.6.2 (Python >= 3.12,
``dev/torchsim-py312.sh``) are tested. Their APIs differ in how an optimiser is named and
started (:func:`ase_fire`), in what the autobatcher calls its per-structure step count, and in
how a structure entering a running batch takes its first step (see :func:`relax`).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from atomml.interfaces.torch_sim import ase_fire, optimizer_force_rows, relax  # noqa: F401  (the benchmarks' names)


def _demo() -> None:
    """Five rattled molecules with the shipped organic potential, against atomml.relax (ASE's FIRE)."""
    from ase.build import molecule

    import atomml

    names = ["H2O", "NH3", "CH3CH2OH", "CH3COOH", "C6H6"]
    structures = []
    for seed, name in enumerate(names):
        atoms = molecule(name)
        atoms.rattle(0.05, seed=seed)
        structures.append(atoms)
    potential, fmax, max_steps = "tensornet-organic-gfn2", 0.05, 500
    start = time.perf_counter()
    batched = relax(structures, potential, fmax=fmax, max_steps=max_steps, cell=False)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = [atomml.relax(atoms, potential, fmax=fmax, steps=max_steps, cell=False) for atoms in structures]
    reference_s = time.perf_counter() - start
    print(f"{potential}, fmax {fmax} eV/Å, torch threads {torch.get_num_threads()}")
    print(f"{'molecule':10s} {'E torch-sim':>14s} {'E atomml.relax':>15s} {'dE (eV)':>10s} "
          f"{'fmax ts':>8s} {'fmax ASE':>8s} {'steps ts':>8s} {'steps ASE':>9s} {'converged':>10s}")  # fmt: skip
    for name, ours, theirs in zip(names, batched, reference):
        fmax_ase = float(np.linalg.norm(theirs.forces, axis=1).max())
        print(f"{name:10s} {ours['energy']:14.6f} {theirs.energy:15.6f} {ours['energy'] - theirs.energy:10.2e} "
              f"{ours['fmax']:8.4f} {fmax_ase:8.4f} {ours['steps']:8d} {theirs.steps:9d} "
              f"{str(ours['converged']) + '/' + str(theirs.converged):>10s}")  # fmt: skip
    print(f"wall time: torch-sim batched {batched_s:.2f} s, atomml.relax one by one {reference_s:.2f} s")


if __name__ == "__main__":
    os.environ.setdefault("ATOMML_SMALL_SYSTEM", "0")  # atomml.relax's calculator: no compile in a demo
    _demo()
