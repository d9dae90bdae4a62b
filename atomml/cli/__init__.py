"""The ``atomml`` command: ``atomml md``, ``atomml info``, ``atomml train``, ``atomml fe``,
``atomml validate``, ``atomml screen``, ``atomml committee``, ``atomml demo``.

An expected failure (bad input, a damaged or missing file, a folder that cannot be written,
another run holding the output, Ctrl-C) is one line on stderr and a non-zero exit: 2, or 130
for Ctrl-C. Anything else is a bug and keeps its traceback; ``atomml --debug ...`` shows the
traceback of expected failures too.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Sequence

from ..threads import available_cpus, passive_openmp

# Before anything loads torch (and with it the OpenMP runtime, which reads this once): idle
# threads sleep instead of spinning against other work on a shared machine.
OPENMP_PASSIVE = passive_openmp()

from . import commands, committee, fe, screen  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atomml", description="Atomistic machine-learning potentials.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error, expected ones included")
    sub = parser.add_subparsers(dest="command", required=True)

    md = sub.add_parser(
        "md", help="molecular dynamics of a structure with a potential (resumable)",
        description="Molecular dynamics of a structure with a potential. Writes the trajectory (extxyz frames with "
        "energy and forces; with --engine openmm a DCD and a <name>.topology.pdb to read it with), a log and a "
        "resume record: running the same command again resumes. A run that blows up stops with an error, "
        "keeping the frames before it.",
    )  # fmt: skip
    md.add_argument("structure", help="any ASE-readable structure file (the last frame is used)")
    md.add_argument("--potential", "-p", required=True, help="potential file or shipped name")
    md.add_argument("--ensemble", choices=["nve", "nvt", "npt"], default="nvt",
                    help="nve: velocity Verlet; nvt: Langevin; npt: constant pressure, periodic cells only (ase: "
                    "Nose-Hoover chains + MTK barostat; openmm: Langevin + Monte Carlo barostat) (default: %(default)s)")
    md.add_argument("--pressure", type=float, default=None, help="npt: pressure in bar (default: 1.01325, 1 atm)")
    md.add_argument("--barostat", choices=["isotropic", "full"], default=None,
                    help="npt: isotropic keeps the cell's shape and scales its size; full lets every length and angle "
                    "change, for solids (a liquid's cell has no shape to keep and drifts) (default: isotropic)")
    md.add_argument("--barostat-time", type=float, default=None,
                    help="npt, ase engine: MTK barostat time constant, fs (default: 1000)")
    md.add_argument("--thermostat-time", type=float, default=None,
                    help="npt, ase engine: Nose-Hoover chain time constant, fs (default: 100; openmm uses --friction)")
    md.add_argument("--barostat-interval", type=int, default=None,
                    help="npt, openmm engine: steps between Monte Carlo cell moves (default: 25)")
    md.add_argument("--temperature", "-T", type=float, default=300.0,
                    help="K: initial velocities and the Langevin bath (default: %(default)s)")
    md.add_argument("--timestep", type=float, default=None,
                    help="fs (default: the time step that the potential file recommends, else 1 fs)")
    md.add_argument("--steps", type=int, default=1000,
                    help="steps in all; a larger number extends a finished run (default: %(default)s)")
    md.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default: %(default)s)")
    md.add_argument("--max-force-std", type=float, default=None,
                    help="committee potentials: stop when an atom's force spread (forces_std) exceeds this, eV/Å, "
                    "keeping the frames before it; the log has the spread in two more columns (default: no limit)")
    md.add_argument("--interval", type=int, default=10,
                    help="steps between trajectory frames / checkpoints (default: %(default)s)")
    md.add_argument("--engine", choices=["ase", "openmm"], default="ase",
                    help="ase: ASE integrators, any periodicity; openmm: OpenMM through openmm-ml (DCD output) "
                    "(default: %(default)s)")
    md.add_argument("--replicas", type=int, default=1,
                    help="K independent replicas of the structure (own initial velocities and noise from --seed), all "
                    "evaluated in one batched call per step: trajectories <name>.r0.extxyz ... <name>.r<K-1>.extxyz and "
                    "one log with a replica column; nve/nvt, ase engine (default: %(default)s)")
    md.add_argument("--small-system", choices=["auto", "on", "off"], default="auto",
                    help="the compiled fixed-shape path for small molecules (atomml.fast): on, off, or auto (molecules of "
                    "up to 256 atoms; ATOMML_SMALL_SYSTEM=0 turns auto off). The first compile of a molecule size takes "
                    "about a minute on a CPU, seconds once cached; both engines (default: %(default)s)")
    md.add_argument("--trajectory", "-o", default=None,
                    help="output trajectory (default md.extxyz; md.dcd with --engine openmm)")
    md.add_argument("--log", default=None, help="log file (default: trajectory name with .log)")
    md.add_argument("--seed", type=int, default=0,
                    help="seed of the initial velocities and the Langevin noise (default: %(default)s)")
    md.add_argument("--charge", type=float, default=None, help="total charge (default: from the file, else 0)")
    md.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    md.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="precision of the network (default: %(default)s)")
    md.add_argument("--threads", type=int, default=None,
                    help=f"torch CPU threads (default: the CPUs this process may use, {available_cpus()} here)")
    md.add_argument("--overwrite", action="store_true", help="start over instead of resuming earlier output")
    md.add_argument("--no-progress", action="store_true", help="no progress bar")
    md.set_defaults(func=commands.md)

    info = sub.add_parser(
        "info", help="describe a potential: what it is, its test errors, its intended use and limits",
        description="Describe a potential file: architecture, elements and cutoff; the test errors its trainer "
        "measured, per test set and per configuration type or source (energy MAE meV/atom, force MAE meV/Å, "
        "stress MAE GPa where measured); and the intended use and limits from its model card (<name>.md "
        "beside the file, as every shipped potential has).",
    )
    info.add_argument("potential", help="potential file or shipped name")
    info.add_argument("--json", action="store_true", help="print the file's whole header as JSON instead (for programs)")
    info.set_defaults(func=commands.info)

    fe.add_parser(sub)
    screen.add_parser(sub)
    committee.add_parser(sub)

    tr = sub.add_parser(
        "train", help="train a potential from a YAML config (resumes from its checkpoint)",
        description="Train a potential from a YAML config; run again to resume from its checkpoint. Every config key "
        "(section, default, meaning): docs/training-config.md or `atomml train --list-keys`. Data from other codes: "
        "data: {energy_key: REF_energy, forces_key: REF_forces, stress_key: REF_stress}.",
    )  # fmt: skip
    tr.add_argument("config", nargs="?", help="YAML training config (examples: potentials/*.yaml)")
    tr.add_argument("--output", "-o", default=None, help="output folder (default: run.output of the config)")
    tr.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget (overrides the config)")
    tr.add_argument("--max-steps", type=int, default=None, help="step limit (overrides the config)")
    tr.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: run.threads, else the CPUs this process may use)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar (the summary and validation lines stay)")
    tr.add_argument("--list-keys", action="store_true", help="print every config key with its section, default and meaning")
    tr.set_defaults(func=commands.train)

    va = sub.add_parser(
        "validate", help="property benchmark of a potential against its reference method (EMT or GFN2-xTB)",
        description="Compute the properties users ask of a potential, with the potential and with the reference it "
        "was trained to reproduce, by the same code, and compare them against targets. Metals (--reference emt): "
        "equation of state, elastic constants, structure-type energies (bcc, hcp, sc, ordered alloys), cohesive "
        "energy, dimers and clusters, vacancies and interstitials, surface energies, phonons, shape under cell "
        "relaxation. Molecules (--reference xtb): torsion scans, conformer ranking, intermolecular curves, harmonic "
        "frequencies, bond stretching. Writes validation.json, validation.md and PNG figures.",
    )  # fmt: skip
    va.add_argument("potential", help="potential file or shipped name")
    va.add_argument("--reference", required=True, choices=["emt", "xtb"], help="the reference method")
    va.add_argument("--quick", action="store_true", help="one system per property, few points: seconds (the CI setting)")
    va.add_argument("--output", "-o", default=None, help="output folder (default: runs/validate/<potential>)")
    va.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the CPUs this process may use)")
    va.add_argument("--strict", action="store_true", help="exit 1 when a row with a target fails")
    va.set_defaults(func=commands.validate)

    demo = sub.add_parser("demo", help="the main job: a short MD run with a shipped potential")
    demo.add_argument("--steps", type=int, default=4000)
    demo.add_argument("--output", default="runs/demo", help="folder for the trajectory and log")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=commands.demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print(f"atomml {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped (``atomml info ... | head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except Exception as exc:
        message = expected_failure(exc)
        if message is None:
            raise  # a bug: the traceback is what a report needs
        if args.debug:
            traceback.print_exc()
        # one line even where a message quotes a library's multi-line error
        print(f"atomml {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


def expected_failure(exc: Exception) -> str | None:
    """The one line to show for a failure the user can act on; None for a bug."""
    from ..errors import AtomMLError

    if isinstance(exc, AtomMLError):
        return str(exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, ValueError):  # argument and config validation
        return str(exc)
    return None


def _os_error(exc: OSError) -> str:
    """What went wrong with which path, and what to do: the OS's own message says neither."""
    if exc.filename is None:  # raised by atomml with its own message
        return str(exc)
    path = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes)) else str(exc.filename)
    if isinstance(exc, FileNotFoundError):
        return f"{path}: no such file or directory; check the path"
    if isinstance(exc, PermissionError):
        if os.path.exists(path) and not os.access(path, os.R_OK):
            return f"cannot read {path}: permission denied; make it readable or copy it somewhere you can read"
        return f"cannot write to {path}: permission denied; choose a writable output folder"
    if exc.errno == errno.ENOSPC:
        return f"cannot write to {path}: no space left on the device; free some space or choose another output folder"
    return f"{path}: {exc.strerror or exc}; check the path, its permissions and the free disk space"


if __name__ == "__main__":
    sys.exit(main())
