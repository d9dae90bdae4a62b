#!/usr/bin/env python
"""Relax many structures at once with torch-sim's batched FIRE and an atomml potential.

``relax(structures, potential, fmax=..., max_steps=..., cell=...)`` is the helper a benchmark
imports to set torch-sim's batched relaxation against :func:`atomml.relax` (ASE's FIRE, one
structure at a time). Each kind of structure goes through one ``torch_sim.optimize`` call with
an in-flight autobatcher: batches of at most ``max_atoms`` atoms, each structure swapped out
as soon as it has converged (checked after every step) and the next one swapped in.

The convergence rule is ASE's: a structure has converged when the largest row norm of the
forces the optimiser moves along is below ``fmax``. torch-sim's FIRE runs in its ASE flavour
(``md_flavor="ase_fire"``, ASE's default parameters), and ``steps`` counts steps as ASE's
``opt.nsteps`` does (0 for a structure that has converged at the start). Run as a script for a
demo on five molecules (seconds on two CPU cores)::

    .venv/bin/python scripts/torchsim_relax.py
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from typing import Any

import numpy as np
import torch


def relax(
    structures: list[Any],
    potential: Any,
    *,
    fmax: float,
    max_steps: int,
    cell: bool,
    max_atoms: int = 4096,
) -> list[dict[str, Any]]:
    """Relax every structure with torch-sim's batched FIRE; results in the input's order.

    Periodic structures (pbc along all three axes) relax their positions and, with
    ``cell=True``, their cell (torch-sim's ``frechet_cell_fire``, the algorithm of ASE's
    ``FrechetCellFilter``); molecules (no periodic axis) relax their positions (torch-sim's
    ``fire``). Each kind goes through one ``torch_sim.optimize`` call. A total charge is read
    as :func:`atomml.from_ase` reads it (``atoms.info["charge"]``, else the initial charges).
    The caller's ``Atoms`` are not changed, and torch's thread settings are left as they are.

    Convergence: ASE's FIRE criterion, the largest row norm of the forces the optimiser moves
    along below ``fmax`` (strictly), checked before the first step and after every step
    (:func:`optimizer_force_rows`). With ``cell=False``, and for molecules, the rows are the
    atomic forces. With ``cell=True`` they are the rows of ASE's ``FrechetCellFilter.get_forces``
    as torch-sim's ``frechet_cell_fire`` forms them: the atomic forces times the deformation
    gradient, and three rows of cell forces (the derivative of the energy with respect to the
    log of the deformation gradient, divided by the number of atoms, ASE's ``exp_cell_factor``).

    Batching: in one batch with no swaps, each structure follows the path it follows alone.
    Swaps are not neutral in torch-sim 0.3.0: in the step after a structure enters a batch
    (its velocities not yet set), torch-sim's ASE-flavoured FIRE skips, for every structure of
    the batch, the power check, the velocity mixing and the dt/alpha update (and, with a cell,
    the deformation gradient on the atomic forces). A structure's steps and final energy then
    depend a little on its batch mates (31 molecules, fmax 0.05, batches of at most 40 atoms:
    up to 10 more steps than alone, final energies within 2e-3 eV).

    Args:
        structures: ASE ``Atoms``.
        potential: an :class:`~atomml.interfaces.torch_sim.AtomMLModel` (used as it is; it must
            compute stress for ``cell=True``), or a :class:`~atomml.potential.Potential`, file
            path or shipped name (wrapped in one with its defaults: float64 geometry, the
            potential's network dtype, CUDA if available).
        fmax: convergence threshold, eV/Å.
        max_steps: most FIRE steps per structure.
        cell: relax the cells of periodic structures too.
        max_atoms: most atoms in one batch (torch-sim's autobatcher, ``memory_scales_with="n_atoms"``).

    Returns:
        One dict per structure: ``energy`` (eV), ``fmax`` (largest atomic force norm, eV/Å),
        ``steps`` (FIRE steps taken, as ASE's ``nsteps``), ``converged`` (the criterion above)
        and ``atoms`` (a copy of the input with the relaxed positions and cell).

    Raises:
        atomml.InputError: a structure periodic along only some axes (torch-sim 0.3.0 has one
            periodicity flag per batch), one with ASE constraints (torch-sim's FIRE has none),
            or one larger than ``max_atoms``.
    """
    from atomml.errors import InputError
    from atomml.interfaces.torch_sim import AtomMLModel

    if not fmax > 0:
        raise ValueError(f"fmax must be positive (eV/Å), got {fmax!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_steps must be a non-negative integer, got {max_steps!r}")
    if isinstance(max_atoms, bool) or not isinstance(max_atoms, int) or max_atoms < 1:
        raise ValueError(f"max_atoms must be a positive integer, got {max_atoms!r}")
    structures = list(structures)
    groups: dict[bool, list[int]] = {True: [], False: []}
    for i, atoms in enumerate(structures):
        if atoms.pbc.any() and not atoms.pbc.all():
            raise InputError(
                f"structure {i} is periodic along some axes only (pbc={atoms.pbc.tolist()}): torch-sim 0.3.0 "
                "has one periodicity flag for all axes; relax it with atomml.relax"
            )
        if atoms.constraints:
            raise InputError(f"structure {i} has ASE constraints, which torch-sim's FIRE does not apply: relax it with atomml.relax")
        if len(atoms) > max_atoms:
            raise InputError(f"structure {i} has {len(atoms)} atoms, more than max_atoms={max_atoms}: raise max_atoms")
        groups[bool(atoms.pbc.all())].append(i)
    if isinstance(potential, AtomMLModel):
        model = potential
        if cell and groups[True] and not model.compute_stress:
            raise ValueError("cell=True needs stress: give an AtomMLModel with compute_stress=True")
    else:
        model = AtomMLModel(potential, compute_stress=cell and bool(groups[True]))
    results: list[dict[str, Any]] = [{} for _ in structures]
    for periodic, indices in groups.items():
        if indices:
            done = _relax_group([structures[i] for i in indices], model, fmax, max_steps, cell and periodic, max_atoms)
            for i, result in zip(indices, done):
                results[i] = result
    return results


def optimizer_force_rows(state: Any) -> torch.Tensor:
    """(B,) per system of a FIRE state, the largest row norm of the forces that the optimiser
    moves along: what ASE's FIRE compares with ``fmax`` (see :func:`relax`)."""
    from torch_sim.optimizers import FrechetCellFIREState

    forces = state.forces
    if isinstance(state, FrechetCellFIREState):
        deform = state.deform_grad()
        forces = torch.bmm(forces.unsqueeze(1), deform[state.system_idx]).squeeze(1)
    per_system = torch.zeros(state.cell.shape[0], dtype=forces.dtype, device=forces.device)
    per_system = per_system.scatter_reduce(0, state.system_idx, forces.norm(dim=1), reduce="amax")
    if isinstance(state, FrechetCellFIREState):
        per_system = torch.maximum(per_system, state.cell_forces.norm(dim=2).amax(dim=1))
    return per_system


def _relax_group(
    structures: list[Any], model: Any, fmax: float, max_steps: int, cell: bool, max_atoms: int
) -> list[dict[str, Any]]:
    """Relax structures that share one periodicity: one ``torch_sim.optimize`` call."""
    import torch_sim as ts
    from torch_sim.autobatching import InFlightAutoBatcher

    from atomml.graph import from_ase
    from atomml.interfaces.torch_sim import with_charge

    optimizer = functools.partial(ts.optimizers.frechet_cell_fire if cell else ts.optimizers.fire, md_flavor="ase_fire")
    init_fn, _ = optimizer(model=model)
    charges = [float(from_ase(atoms).total_charge[0]) for atoms in structures]
    charged = any(charges)

    # The initial state of every structure, a batch of at most max_atoms atoms at a time. ASE's
    # FIRE checks convergence before its first step; torch-sim's optimize checks only after a
    # step, so structures that have converged at the start never enter it.
    initial: list[Any] = []
    for chunk in _chunks([len(atoms) for atoms in structures], max_atoms):
        state = ts.io.atoms_to_state([structures[i] for i in chunk], model.device, model.dtype)
        if charged:
            state = with_charge(state, [charges[i] for i in chunk])
        state = init_fn(state)
        if charged:  # the optimiser's state class knows nothing of the charge: give it back
            state = with_charge(state, [charges[i] for i in chunk])
        initial.extend(state.split())

    final = list(initial)
    steps = [0] * len(structures)
    todo = [i for i, state in enumerate(initial) if not bool(optimizer_force_rows(state)[0] < fmax)]
    if todo and max_steps > 0:
        batcher = InFlightAutoBatcher(model, memory_scales_with="n_atoms", max_memory_scaler=max_atoms)
        with warnings.catch_warnings():
            # optimize also counts steps over all batches together and warns at every step past
            # max_steps; the per-structure limit is the autobatcher's (max_steps swaps of one step)
            warnings.filterwarnings("ignore", message="Optimize has reached max steps")
            relaxed = ts.optimize(
                ts.state.concatenate_states([initial[i] for i in todo]),
                model,
                optimizer=optimizer,
                convergence_fn=lambda state, last_energy=None: optimizer_force_rows(state) < fmax,
                autobatcher=batcher,
                max_steps=max_steps,
                steps_between_swaps=1,
            )
        for k, (i, state) in enumerate(zip(todo, relaxed.split())):
            final[i] = state
            steps[i] = int(batcher.swap_attempts[k])  # one step per swap
    return [_result(structures[i], state, steps[i], fmax) for i, state in enumerate(final)]


def _chunks(sizes: list[int], max_atoms: int) -> list[list[int]]:
    """Consecutive indices, grouped so that each group's sizes sum to at most ``max_atoms``."""
    chunks: list[list[int]] = [[]]
    total = 0
    for i, size in enumerate(sizes):
        if chunks[-1] and total + size > max_atoms:
            chunks.append([])
            total = 0
        chunks[-1].append(i)
        total += size
    return chunks


def _result(atoms: Any, state: Any, steps: int, fmax: float) -> dict[str, Any]:
    relaxed = atoms.copy()
    relaxed.set_cell(state.row_vector_cell[0].detach().cpu().double().numpy())
    relaxed.positions = state.positions.detach().cpu().double().numpy()
    return {
        "energy": float(state.energy[0]),
        "fmax": float(state.forces.norm(dim=1).max()),
        "steps": steps,
        "converged": bool(optimizer_force_rows(state)[0] < fmax),
        "atoms": relaxed,
    }


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
