#!/usr/bin/env python
"""Cost of a committee call against one member and against a loop over K separate potentials.

    .venv/bin/python scripts/bench_committee.py --output data/benchmarks/committee_cost.json

K copies of the shipped ``tensornet-organic-gfn2`` (weights perturbed by 1e-3, so that the
members differ) are joined by ``atomml.models.committee_of``; each call is energy and forces of
one structure through ``Potential.forward`` (neighbour list built in the call), one torch thread.
Structures: aspirin (21 atoms, RDKit conformer) and water boxes of 3^3, 4^3 and 8^3 molecules
(81, 192, 1,536 atoms, periodic). Methods, each the best of ``--repeats`` calls after a warm-up:

- ``single``: one member;
- ``loop``: K separate potentials called one after another (K neighbour lists; what a user
  without committees does, and what ``atomml screen``'s committee evaluator does);
- ``committee_batched``: the committee with its members batched by ``torch.func.vmap``;
- ``committee_sequential``: the committee with its members one after another on the shared
  neighbour list;
- ``committee_auto``: the committee's default (batched up to
  ``atomml.models.committee.BATCHED_MEMBER_ATOMS`` members x atoms).

Ratios are over ``single`` (the issue's targets: at most 1.1 K on ~1,500 atoms, 0.5 K on aspirin).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

import numpy as np
import torch


def aspirin():
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    return Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def water_box(n: int):
    from ase import Atoms
    from ase.build import molecule

    water, rng = molecule("H2O"), np.random.default_rng(0)
    length = 3.0 * n  # 3 Å per molecule: liquid density
    symbols, positions = [], []
    for x in range(n):
        for y in range(n):
            for z in range(n):
                for atom in water:
                    symbols.append(atom.symbol)
                    positions.append(atom.position + 3.0 * np.array([x, y, z]) + rng.normal(0, 0.05, 3))
    return Atoms(symbols, positions=positions, cell=[length] * 3, pbc=True)


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--boxes", type=int, nargs="*", default=[3, 4, 8], help="water boxes of n^3 molecules")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from atomml.graph import from_ase
    from atomml.models import committee_of
    from atomml.potential_file import load_potential

    single = load_potential("tensornet-organic-gfn2")
    torch.manual_seed(0)
    members = [copy.deepcopy(single) for _ in range(args.members)]
    for member in members:
        with torch.no_grad():
            for p in member.model.parameters():
                p.add_(1e-3 * torch.randn_like(p))
    committee = committee_of(members)

    def committee_call(graph, mode):
        committee.model.batched = mode
        return committee(graph)

    rows = []
    for name, atoms in [("aspirin", aspirin())] + [(f"water_{n}^3", water_box(n)) for n in args.boxes]:
        graph = from_ase([atoms])
        repeats = args.repeats if len(atoms) < 500 else max(1, args.repeats - 1)
        times = {
            "single": best_of(lambda: single(graph), repeats),
            "loop": best_of(lambda: [m(graph) for m in members], repeats),
            "committee_batched": best_of(lambda: committee_call(graph, True), repeats),
            "committee_sequential": best_of(lambda: committee_call(graph, False), repeats),
            "committee_auto": best_of(lambda: committee_call(graph, "auto"), repeats),
        }
        row = {"structure": name, "atoms": len(atoms), "seconds": times,
               "ratio_over_single": {k: v / times["single"] for k, v in times.items()},
               "ratio_over_single_per_member": {k: v / times["single"] / args.members for k, v in times.items()}}  # fmt: skip
        rows.append(row)
        print(json.dumps({"structure": name, "atoms": len(atoms), **{k: round(v, 2) for k, v in row["ratio_over_single"].items()}}))
    result = {"members": args.members, "torch_threads": 1, "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "load_average": list(os.getloadavg()), "rows": rows}  # fmt: skip
    text = json.dumps(result, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
