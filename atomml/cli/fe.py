"""``atomml fe``: free energies. ``atomml fe hydration`` (a molecule's hydration free energy,
whole or one leg at a time) and ``atomml fe freesolv`` (the FreeSolv check's table)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HYDRATION_EPILOG = """\
what it does:
  with none of --setup-only, --leg, --summarise: set up, run every leg (resuming what is
  stored in OUTPUT) and print the summary (also written to OUTPUT/summary.json, and the MM->ML
  correction to OUTPUT/ml_correction.json with --ml-potential).
  The molecule and --ml-potential are checked first (seconds). Progress goes to stderr: each
  set-up stage, the time the legs will take (timed on this machine before sampling, and again
  after each leg's first samples) and a progress bar per leg. Ctrl-C stops within seconds,
  keeping what was sampled; the same command resumes.

a first look in minutes (numbers NOT converged) before a long run:
  atomml fe hydration CCO -o runs/ethanol_quick --protocol quick
  atomml fe hydration CCO -o runs/ethanol --samples 100      (fewer samples per state)

one leg at a time (side by side, on other machines, within a wall-clock budget):
  atomml fe hydration CCO -o runs/ethanol --setup-only
  atomml fe hydration CCO -o runs/ethanol --leg solvent --platform CUDA --max-minutes 60
  atomml fe hydration CCO -o runs/ethanol --leg vacuum
  atomml fe hydration CCO -o runs/ethanol --leg ml-solvent --ml-potential tensornet-organic-gfn2
  atomml fe hydration CCO -o runs/ethanol --summarise [--ml-potential tensornet-organic-gfn2]
  A leg stopped by its budget resumes when run again; --summarise analyses whatever the legs
  stored so far and flags legs stopped early.
"""

FREESOLV_EPILOG = """\
the legs of the FreeSolv check run one at a time, e.g. for methane (SMILES C; ethane CC,
methanol CO, ethanol CCO):
  atomml fe hydration C -o runs/freesolv/methane --protocol freesolv --leg solvent --max-minutes 60
  atomml fe hydration C -o runs/freesolv/methane --protocol freesolv --leg ml-vacuum \\
      --ml-potential tensornet-organic-gfn2
  atomml fe hydration C -o runs/freesolv/methane_gaff --protocol freesolv --force-field gaff --leg vacuum
"""

MM_LEGS = {"solvent": "solvent", "vacuum": "vacuum"}
ML_LEGS = {"ml-solvent": "solvent", "ml-vacuum": "vacuum"}


def add_parser(sub: Any) -> None:
    """The ``fe`` subcommand and its own subcommands, added to ``sub`` (argparse subparsers)."""
    fe = sub.add_parser("fe", help="free energies")
    fe_sub = fe.add_subparsers(dest="fe_command", required=True)
    hyd = fe_sub.add_parser(
        "hydration", help="hydration free energy of a molecule (GAFF2/AM1-BCC, TIP3P, MBAR), whole or one leg at a time",
        epilog=HYDRATION_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    hyd.add_argument("smiles", help="the molecule as SMILES")
    hyd.add_argument("--protocol", default=None,
                     help="YAML protocol, or a shipped one by name: hydration (the default), freesolv, or quick "
                          "(minutes; not converged: a first look)")
    hyd.add_argument("--samples", type=int, default=None,
                     help="samples per state of every leg (replica-exchange iterations), instead of the protocol's; "
                          "a larger number later extends the run")
    hyd.add_argument("--output", "-o", default="runs/hydration", help="folder for set-up, samples, plots, summary")
    hyd.add_argument("--ml-potential", default=None,
                     help="also the ML/MM value: MM->ML end-state correction with this atomml potential")
    only = hyd.add_mutually_exclusive_group()
    only.add_argument("--setup-only", action="store_true", help="only make the set-up (before running legs side by side)")
    only.add_argument("--leg", action="append", choices=[*MM_LEGS, *ML_LEGS], default=None,
                      help="only sample this leg (resumable; may be given more than once); ml-* legs need --ml-potential")
    only.add_argument("--summarise", action="store_true", help="only analyse the samples the legs stored so far")
    hyd.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of each --leg (resume later)")
    hyd.add_argument("--platform", default=None, help="OpenMM platform, e.g. CUDA, CPU (default: the fastest)")
    hyd.add_argument("--ml-device", default=None, help="torch device of the ML solute (default: CUDA if there is one)")
    hyd.add_argument("--threads", type=int, default=None,
                     help="CPU threads of OpenMM's CPU platform and of torch (default: the CPUs this process may use)")
    hyd.add_argument("--force-field", choices=["gaff2", "gaff"], default=None,
                     help="the solute's MM parameters, instead of the protocol's (gaff: GAFF 1.x, as FreeSolv)")
    hyd.add_argument("--no-progress", action="store_true")
    hyd.set_defaults(func=hydration, parser=hyd)

    fs = fe_sub.add_parser(
        "freesolv", help="the FreeSolv check's table (methane, ethane, methanol, ethanol; MM and ML/MM) from stored legs",
        epilog=FREESOLV_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    fs.add_argument("--workdir", default="runs/freesolv", help="folder of the molecules' runs (WORKDIR/<molecule>)")
    fs.add_argument("--protocol", default="freesolv", help="the protocol the legs ran with (default: freesolv)")
    fs.add_argument("--ml-potential", default=None, help="the ML/MM legs' potential (default: tensornet-organic-gfn2)")
    fs.add_argument("--output", default="data/benchmarks/freesolv_hydration.json", help="the table as JSON")
    fs.add_argument("--mm-from", default=None, metavar="JSON",
                    help="an earlier table's JSON whose MM rows stand in for molecules without MM legs in the workdir "
                         "(the same protocol only): new ML/MM legs without rerunning the hours of MM legs")  # fmt: skip
    fs.set_defaults(func=freesolv)


def _protocols(args: argparse.Namespace) -> tuple[Any, Any]:
    import dataclasses

    from ..fe.hydration import HydrationProtocol, default_protocol
    from ..fe.mlmm import EndStateProtocol

    mm = HydrationProtocol.from_yaml(args.protocol) if args.protocol else default_protocol()
    ml = EndStateProtocol.from_yaml(args.protocol) if args.protocol else EndStateProtocol()
    if args.force_field:
        mm = dataclasses.replace(mm, force_field=args.force_field)
    if args.samples is not None:
        mm, ml = dataclasses.replace(mm, samples=args.samples), dataclasses.replace(ml, samples=args.samples)
    return mm, ml


def _with_ml(summary: dict, correction: dict, potential: str) -> dict:
    """The hydration summary with the ML/MM value: the MM one plus the MM->ML correction."""
    import numpy as np

    summary["ml_mm"] = {
        "potential": potential,
        "ddG_mm_to_ml_kcal_per_mol": correction["ddG_mm_to_ml_kcal_per_mol"],
        "ddG_mm_to_ml_error_kcal_per_mol": correction["ddG_mm_to_ml_error_kcal_per_mol"],
        "dG_hydration_kcal_per_mol": summary["dG_hydration_kcal_per_mol"] + correction["ddG_mm_to_ml_kcal_per_mol"],
        "dG_hydration_error_kcal_per_mol": float(np.hypot(summary["dG_hydration_error_kcal_per_mol"],
                                                          correction["ddG_mm_to_ml_error_kcal_per_mol"])),
        "flags": correction["flags"],
    }  # fmt: skip
    return summary


def _stored_summary(args: argparse.Namespace, mm: Any, ml: Any) -> dict:
    """The summary of the samples stored in the output folder (``--summarise``)."""
    from pathlib import Path

    from ..fe import hydration as hyd
    from ..fe import mlmm

    needed = [*MM_LEGS] + ([*ML_LEGS] if args.ml_potential else [])
    missing = [leg for leg in needed if not (Path(args.output) / leg.replace("-", "_") / "run.json").exists()]
    if missing:
        legs = " ".join(f"--leg {leg}" for leg in missing)
        raise FileNotFoundError(f"{args.output} holds no samples of the {', '.join(missing)} leg(s): run "
                                f"atomml fe hydration {args.smiles} -o {args.output} {legs} first")  # fmt: skip
    summary = hyd.summarise(args.smiles, args.output, mm)
    if args.ml_potential:
        summary = _with_ml(summary, mlmm.summarise_ml(args.smiles, args.ml_potential, args.output, mm, ml), args.ml_potential)
    return summary


def hydration(args: argparse.Namespace) -> int:
    from ..fe import interrupt

    if args.max_minutes is not None and not args.leg:
        args.parser.error("--max-minutes is the budget of each --leg: give --leg")
    if args.leg and any(leg in ML_LEGS for leg in args.leg) and not args.ml_potential:
        args.parser.error("the ml-solvent and ml-vacuum legs need --ml-potential NAME")
    for option in ("samples", "threads"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            args.parser.error(f"--{option} must be at least 1, got {getattr(args, option)}")
    mm, ml = _protocols(args)
    _check_inputs(args)  # seconds, before anything is written
    threads = _set_threads(args.threads, torch=bool(args.ml_potential))
    with interrupt.deferred():
        try:
            return _hydration(args, mm, ml, threads)
        except KeyboardInterrupt:
            print(f"atomml fe hydration: interrupted; what was sampled is kept in {args.output}. "
                  f"To resume, run the same command: {resume_command(args)}", file=sys.stderr)  # fmt: skip
            return 130


def _check_inputs(args: argparse.Namespace) -> None:
    """The molecule (parses, one molecule, GAFF's elements) and the ML potential (exists, has
    the molecule's elements, takes its charge): refused in seconds, not after hours of MM legs."""
    from ..mm import check_molecule

    check_molecule(args.smiles)
    if args.ml_potential and not args.summarise:
        from ..fe.mlmm import check_potential

        check_potential(args.ml_potential, args.smiles)


def _set_threads(threads: int | None, torch: bool) -> int:
    """Use ``threads`` (default: the CPUs this process may use) in OpenMM's CPU platform and,
    where an ML potential runs, in torch."""
    import openmm

    from ..threads import available_cpus, set_threads

    threads = available_cpus() if threads is None else threads
    if torch:
        set_threads(threads)
    openmm.Platform.getPlatformByName("CPU").setPropertyDefaultValue("Threads", str(threads))
    return threads


def resume_command(args: argparse.Namespace) -> str:
    """The ``atomml fe hydration`` command line of ``args``: run again, it resumes."""
    import shlex

    words = ["atomml", "fe", "hydration", args.smiles]
    for action in args.parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flag, value = max(action.option_strings, key=len), getattr(args, action.dest)
        if isinstance(action, argparse._StoreTrueAction):
            words += [flag] if value else []
        elif isinstance(action, argparse._AppendAction):
            for item in value or []:
                words += [flag, str(item)]
        elif value is not None and value != action.default:
            words += [flag, str(value)]
    return shlex.join(words)


def _legs(args: argparse.Namespace) -> list[str]:
    return list(dict.fromkeys(args.leg)) if args.leg else [*MM_LEGS] + ([*ML_LEGS] if args.ml_potential else [])


def _hydration(args: argparse.Namespace, mm: Any, ml: Any, threads: int) -> int:
    from ..fe import hydration as hyd

    log, progress = hyd.announce, not args.no_progress
    if mm.warning:
        log(f"NOTE: {mm.warning}")
    if args.setup_only:
        solvated, vacuum = hyd.leg_setups(args.smiles, args.output, mm, log)
        print(json.dumps({"smiles": args.smiles, "setup": str(solvated.prmtop.parent)}, indent=1))
        return 0
    if args.summarise:
        from ..fe.estimators import EstimatorError

        try:
            summary = _stored_summary(args, mm, ml)
        except EstimatorError as exc:  # a leg with too few samples: the message says to run it longer
            print(f"atomml fe hydration: error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({k: v for k, v in summary.items() if k != "protocol"}, indent=1))
        return 0
    legs = _legs(args)
    _check_resumable(args, legs, mm, ml)
    seconds = _estimate(args, legs, mm, ml, threads, log, progress)
    complete = {}
    for i, leg in enumerate(legs):
        later = sum(seconds[other] for other in legs[i + 1 :])
        complete[leg] = _run_leg(args, leg, mm, ml, log, progress, later)
    if args.leg:
        print(json.dumps({"smiles": args.smiles, "output": str(args.output), "complete": complete}, indent=1))
        return 0
    summary = _stored_summary(args, mm, ml)
    print(json.dumps({k: v for k, v in summary.items() if k != "protocol"}, indent=1))
    return 0


def _check_resumable(args: argparse.Namespace, legs: list[str], mm: Any, ml: Any) -> None:
    """Refuse a leg that another process samples or that holds another run, before any work
    (the legs check again when they start)."""
    from pathlib import Path

    from ..fe.hydration import leg_identity
    from ..fe.mlmm import ml_leg_identity
    from ..fe.sampling import check_resumable

    for leg in legs:
        if leg in ML_LEGS:
            identity = ml_leg_identity(args.smiles, args.ml_potential, mm, ml)
        else:
            identity = leg_identity(args.smiles, mm)
        check_resumable(Path(args.output) / leg.replace("-", "_"), identity)


def _run_leg(args: argparse.Namespace, leg: str, mm: Any, ml: Any, log: Any, progress: bool, later: float) -> bool:
    from ..fe import hydration as hyd
    from ..fe import mlmm

    if leg in ML_LEGS:
        return mlmm.run_ml_leg(args.smiles, args.ml_potential, args.output, ML_LEGS[leg], mm, ml,
                               platform=args.platform, max_minutes=args.max_minutes, progress=progress,
                               device=args.ml_device, log=log, later_seconds=later)  # fmt: skip
    return hyd.run_leg(args.smiles, args.output, leg, mm, platform=args.platform, max_minutes=args.max_minutes,
                       progress=progress, log=log, later_seconds=later)  # fmt: skip


def _estimate(args: argparse.Namespace, legs: list[str], mm: Any, ml: Any, threads: int, log: Any,
              progress: bool) -> dict[str, float]:  # fmt: skip
    """Each leg's wall time, timed on this machine (making the set-up first), and what it was told."""
    from ..fe import hydration as hyd
    from ..fe import mlmm
    from ..fe.cost import duration
    from ..units import NS_PER_FS

    seconds, parts = {}, []
    for leg in legs:
        if leg in ML_LEGS:
            seconds[leg] = mlmm.ml_leg_seconds(args.smiles, args.ml_potential, args.output, ML_LEGS[leg], mm, ml,
                                               args.platform, args.ml_device, progress, log)  # fmt: skip
            states, samples, steps, equilibration = len(ml.lambdas), ml.samples, ml.steps_per_sample, ml.equilibration_steps
            timestep = ml.timestep_fs
        else:
            seconds[leg] = hyd.run_leg_seconds(args.smiles, args.output, leg, mm, args.platform, progress, log)
            states, samples, steps, equilibration = len(mm.schedule), mm.samples, mm.steps_per_sample, mm.equilibration_steps
            timestep = mm.timestep_fs
        ns = states * (equilibration + samples * steps) * timestep * NS_PER_FS
        left = "done" if seconds[leg] == 0 else f"about {duration(seconds[leg])}"
        parts.append(f"{leg} {states} states x {samples} samples ({ns:.3g} ns): {left}")
    budget = f" (each stops after --max-minutes {args.max_minutes:g})" if args.max_minutes is not None else ""
    total = sum(seconds.values())
    shorter = " Shorter: --protocol quick, --samples N, --leg ... --max-minutes M." if total > 15 * 60 else ""
    log(f"time to sample, timed on this machine with {threads} CPU threads: {'; '.join(parts)}; in all about "
        f"{duration(total)}{budget}.{shorter}")  # fmt: skip
    return seconds


def freesolv(args: argparse.Namespace) -> int:
    from ..fe.freesolv import ML_POTENTIAL, report

    result = report(args.workdir, args.ml_potential or ML_POTENTIAL, args.protocol, args.mm_from)
    path = result.write(args.output)
    print(result.table)
    print(f"written {path}")
    return 0
