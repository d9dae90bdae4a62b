"""Train the small shipped demo potential: SchNet on copper labelled with ASE's EMT.

    .venv/bin/python scripts/train_demo_potential.py [--seed 0] [--structures 240] [--regenerate]

Works in the repository root (paths in the potential's header are relative to it). Writes the
training data, ``data/generated/schnet-cu-emt-demo/cu_emt.extxyz`` (kept if it
exists; ``--regenerate`` writes it again), trains with the preset, as
``atomml train potentials/schnet-cu-emt-demo.yaml``, and copies the result to
``potentials/schnet-cu-emt-demo.safetensors``. The data: 32-atom fcc Cu cells with a random
symmetric strain (σ = 2 %), each either rattled (0.02-0.15 Å, ``config_type`` "rattled") or
taken after 20-60 Langevin steps of 2 fs at 300-1200 K under EMT ("md"); energies, forces and
stress from EMT. Reproducible from the seed; the training budget is wall-clock, so the result
depends on the machine's speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from atomml import units
from atomml.cli import main as atomml_main
from atomml.files import replacing
from atomml.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
NAME = "schnet-cu-emt-demo"
DATA = ROOT / "data" / "generated" / NAME / "cu_emt.extxyz"


def generate(n_structures: int, rng: np.random.Generator) -> list[Atoms]:
    """Strained + rattled fcc Cu (32 atoms) and Langevin snapshots at 300-1200 K, EMT-labelled."""
    frames = []
    for k in range(n_structures):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        strain = np.eye(3) + rng.normal(0, 0.02, (3, 3))
        atoms.set_cell(atoms.cell @ (0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.calc = EMT()
        if k % 2 == 0:
            atoms.rattle(stdev=rng.uniform(0.02, 0.15), seed=int(rng.integers(1 << 31)))
            kind = "rattled"
        else:
            temperature = rng.uniform(300, 1200)
            thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
            Langevin(atoms, 2 * units.FS, temperature_K=temperature, friction=0.02 / units.FS, fixcm=False,
                     rng=rng).run(int(rng.integers(20, 60)))  # fmt: skip
            kind = "md"
        frame = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True, info={"config_type": kind})
        frame.calc = SinglePointCalculator(
            frame, energy=atoms.get_potential_energy(), forces=atoms.get_forces(), stress=atoms.get_stress()
        )
        frames.append(frame)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data generator")
    parser.add_argument("--structures", type=int, default=240)
    parser.add_argument("--regenerate", action="store_true", help="write the data again even if it exists")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.regenerate or not DATA.exists():
        DATA.parent.mkdir(parents=True, exist_ok=True)
        frames = generate(args.structures, np.random.default_rng(args.seed))
        with replacing(DATA) as tmp:
            write(str(tmp), frames, format="extxyz")
        print(f"wrote {len(frames)} structures to {DATA.relative_to(ROOT)}", flush=True)
    preset = Path("potentials") / f"{NAME}.yaml"
    code = atomml_main(["train", str(preset), "--no-progress"])
    if code:
        raise SystemExit(code)
    output = Path(TrainConfig.from_yaml(preset).output)
    shutil.copyfile(output / f"{NAME}.safetensors", Path("potentials") / f"{NAME}.safetensors")
    print(f"copied to potentials/{NAME}.safetensors", flush=True)


if __name__ == "__main__":
    main()
