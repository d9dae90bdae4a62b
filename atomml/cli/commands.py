"""Implementations of the ``atomml`` subcommands."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from .. import units


def _calculator(potential: str, device: str | None, dtype: str):
    from ..interfaces.ase import AtomMLCalculator

    return AtomMLCalculator(potential, device=device, dtype=dtype)


def md(args: argparse.Namespace) -> int:
    from ase.io import read

    from ..dynamics import MDSettings, run_md

    atoms = read(args.structure, index=-1)
    if args.charge is not None:
        atoms.info["charge"] = args.charge
    settings = MDSettings(
        ensemble=args.ensemble,
        temperature=args.temperature,
        timestep_fs=args.timestep,
        steps=args.steps,
        friction_per_fs=args.friction,
        interval=args.interval,
        seed=args.seed,
    )
    if args.engine == "openmm":
        from ..dynamics.openmm import run_openmm_md

        args.trajectory = args.trajectory or "md.dcd"
        result = run_openmm_md(
            atoms, args.potential, settings, trajectory=args.trajectory, log=args.log, restart=not args.overwrite,
            progress=not args.no_progress, precision={"float32": "single", "float64": "double"}[args.dtype],
            device=args.device,
        )  # fmt: skip
    else:
        args.trajectory = args.trajectory or "md.extxyz"
        result = run_md(
            atoms,
            _calculator(args.potential, args.device, args.dtype),
            settings,
            trajectory=args.trajectory,
            log=args.log,
            restart=not args.overwrite,
            progress=not args.no_progress,
        )
    if result.resumed_from >= settings.steps:
        print(f"{args.trajectory}: already complete ({settings.steps} steps); use --overwrite to run again")
    print(json.dumps(result.summary(), indent=1))
    return 0


def train(args: argparse.Namespace) -> int:
    """Train (or resume training) from a YAML config; prints the final report as JSON."""
    from ..training import TrainConfig
    from ..training import train as run_training

    config = TrainConfig.from_yaml(args.config)
    overrides = {
        key: value
        for key, value in {
            "output": args.output, "max_minutes": args.max_minutes, "max_steps": args.max_steps, "threads": args.threads,
        }.items()
        if value is not None
    }
    if args.no_progress:
        overrides["progress"] = False
    report = run_training(config, **overrides)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one report
        print(json.dumps(report, indent=1))
    return 0


def info(args: argparse.Namespace) -> int:
    """Describe a potential file after loading it: a file that ``info`` shows is one that loads,
    and the cutoff shown is the one the loaded potential uses."""
    from ..potential_file import load_potential, read_header, resolve

    path = resolve(args.potential)
    header = read_header(path)
    potential = load_potential(path, device="cpu")
    if args.json:
        print(json.dumps(header, indent=1))
        return 0
    hp = {k: v for k, v in header["hyperparameters"].items() if k not in ("elements", "cutoff")}
    cutoff = f"{potential.cutoff} Å"
    if potential.cutoff != potential.architecture_cutoff:
        cutoff += f" (architecture {potential.architecture_cutoff} Å; energy terms reach further)"
    lines = [
        f"file:          {path} ({path.stat().st_size / 1024:.0f} KiB, format version {header['format_version']})",
        f"architecture:  {header['architecture']}  {hp}",
        f"elements:      {' '.join(header['elements'])}",
        f"cutoff:        {cutoff}",
        f"energy terms:  {_terms_line(header)}",
        f"dtype:         {header['dtype']}",
        f"atomml:        {header.get('atomml_version', '?')}",
    ]
    for key, value in header.get("metadata", {}).items():
        lines.append(f"{key + ':':<14} {value}")
    print("\n".join(lines))
    return 0


def _terms_line(header: dict) -> str:
    """The energy terms of a potential file, e.g. ``zbl (cutoff=2.0); coulomb (...) — long-range``."""
    from ..potential_file import is_long_range

    terms = header.get("energy_terms", [])
    if not terms:
        return "none"
    text = "; ".join(f"{t['name']} ({', '.join(f'{k}={v}' for k, v in t.get('config', {}).items())})" for t in terms)
    return text + (" — long-range" if is_long_range(header) else "")


DEMO_POTENTIAL = "tensornet-organic-gfn2"
DEMO_STRUCTURE = "paracetamol.extxyz"  # not among the potential's training molecules


def demo(args: argparse.Namespace) -> int:
    """Langevin MD of paracetamol, a drug-like molecule the shipped organic potential never saw
    in training, then a check of its forces against the method it was trained on (GFN2-xTB)
    on frames of that same trajectory, so the user sees how far to trust it."""
    import torch
    from ase.io import read

    from ..dynamics import MDSettings, run_md
    from ..interfaces.ase import AtomMLCalculator
    from ..resources import resource_folder

    try:
        from tblite.ase import TBLite
    except ImportError:
        raise SystemExit("atomml demo checks forces against GFN2-xTB: install tblite (pip install tblite)") from None

    atoms = read(resource_folder("md") / "structures" / DEMO_STRUCTURE)
    name = atoms.info.get("name", "molecule")
    calculator = AtomMLCalculator(DEMO_POTENTIAL, dtype=torch.float32)
    settings = MDSettings(ensemble="nvt", temperature=300.0, timestep_fs=0.5, steps=args.steps, interval=50, friction_per_fs=0.01)
    out = Path(args.output)
    print(
        f"atomml demo: {name} ({len(atoms)} atoms, not in the training set), Langevin 300 K, "
        f"{settings.steps} x {settings.timestep_fs} fs, potential {DEMO_POTENTIAL}"
    )
    reference = TBLite(method="GFN2-xTB", charge=int(atoms.info.get("charge", 0)), verbosity=0)
    force_errors: list[float] = []
    check_every = settings.interval * max(1, settings.steps // (10 * settings.interval))

    def check_forces(frame, step: int) -> None:
        if step > 0 and step % check_every == 0:
            copy = frame.copy()
            copy.calc = reference
            force_errors.append(float(np.abs(frame.get_forces() - copy.get_forces()).mean()))

    result = run_md(
        atoms, calculator, settings, out / f"{name}.extxyz", restart=False, progress=not args.no_progress, on_frame=check_forces
    )
    summary = {
        "molecule": name,
        "atoms": len(atoms),
        "steps": result.steps_done,
        "simulated_ps": round(result.steps_done * settings.timestep_fs * units.PS_PER_FS, 3),
        "ns_per_day": round(result.ns_per_day, 3),
        "mean_temperature_K": round(result.mean_temperature, 1),
        "force_mae_vs_GFN2_xTB_meV_per_A": round(1000 * float(np.mean(force_errors)), 1),
        "frames_checked_against_GFN2_xTB": len(force_errors),
        "trajectory": str(result.trajectory),
        "log": str(result.log),
    }
    print(json.dumps(summary, indent=1))
    return 0
