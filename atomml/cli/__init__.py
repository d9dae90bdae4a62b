"""The ``atomml`` command: ``atomml md``, ``atomml info``, ``atomml demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import commands, fe


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atomml", description="Atomistic machine-learning potentials.")
    sub = parser.add_subparsers(dest="command", required=True)

    md = sub.add_parser("md", help="molecular dynamics of a structure with a potential (resumable)")
    md.add_argument("structure", help="any ASE-readable structure file (last frame is used)")
    md.add_argument("--potential", "-p", required=True, help="potential file or shipped name")
    md.add_argument("--ensemble", choices=["nve", "nvt"], default="nvt", help="nve: velocity Verlet; nvt: Langevin")
    md.add_argument("--temperature", "-T", type=float, default=300.0, help="K (initial velocities and bath)")
    md.add_argument("--timestep", type=float, default=1.0, help="fs")
    md.add_argument("--steps", type=int, default=1000)
    md.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    md.add_argument("--interval", type=int, default=10, help="steps between trajectory frames / checkpoints")
    md.add_argument("--engine", choices=["ase", "openmm"], default="ase",
                    help="ase: ASE integrators, any periodicity; openmm: OpenMM through openmm-ml (DCD output)")
    md.add_argument("--trajectory", "-o", default=None,
                    help="output trajectory (default md.extxyz; md.dcd with --engine openmm)")
    md.add_argument("--log", default=None, help="log file (default: trajectory name with .log)")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--charge", type=float, default=None, help="total charge (default: from the file, else 0)")
    md.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    md.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    md.add_argument("--overwrite", action="store_true", help="start over instead of resuming earlier output")
    md.add_argument("--no-progress", action="store_true")
    md.set_defaults(func=commands.md)

    info = sub.add_parser("info", help="describe a potential file")
    info.add_argument("potential", help="potential file or shipped name")
    info.add_argument("--json", action="store_true", help="print the header as JSON")
    info.set_defaults(func=commands.info)

    fe.add_parser(sub)

    tr = sub.add_parser("train", help="train a potential from a YAML config (resumes from its checkpoint)")
    tr.add_argument("config", help="YAML training config (see potentials/*.yaml)")
    tr.add_argument("--output", "-o", default=None, help="output folder (default: run.output of the config)")
    tr.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget (overrides the config)")
    tr.add_argument("--max-steps", type=int, default=None, help="step limit (overrides the config)")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=commands.train)

    demo = sub.add_parser("demo", help="the main job: a short MD run with a shipped potential")
    demo.add_argument("--steps", type=int, default=4000)
    demo.add_argument("--output", default="runs/demo", help="folder for the trajectory and log")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=commands.demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..errors import InputError, PotentialFileError

    try:
        return int(args.func(args) or 0)
    except (InputError, PotentialFileError, FileNotFoundError, ValueError) as exc:
        print(f"atomml {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
