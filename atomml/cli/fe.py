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
                     help="YAML protocol, or a shipped one by name (hydration, freesolv); default: hydration")
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
    fs.set_defaults(func=freesolv)


def _protocols(args: argparse.Namespace) -> tuple[Any, Any]:
    import dataclasses

    from ..fe.hydration import HydrationProtocol, default_protocol
    from ..fe.mlmm import EndStateProtocol

    mm = HydrationProtocol.from_yaml(args.protocol) if args.protocol else default_protocol()
    ml = EndStateProtocol.from_yaml(args.protocol) if args.protocol else EndStateProtocol()
    if args.force_field:
        mm = dataclasses.replace(mm, force_field=args.force_field)
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
    from ..fe import hydration as hyd
    from ..fe import mlmm

    if args.max_minutes is not None and not args.leg:
        args.parser.error("--max-minutes is the budget of each --leg: give --leg")
    if args.leg and any(leg in ML_LEGS for leg in args.leg) and not args.ml_potential:
        args.parser.error("the ml-solvent and ml-vacuum legs need --ml-potential NAME")
    mm, ml = _protocols(args)
    progress = not args.no_progress
    if args.setup_only:
        solvated, vacuum = hyd.leg_setups(args.smiles, args.output, mm)
        print(json.dumps({"smiles": args.smiles, "setup": str(solvated.prmtop.parent)}, indent=1))
        return 0
    if args.leg:
        complete = {}
        for leg in args.leg:
            if leg in ML_LEGS:
                complete[leg] = mlmm.run_ml_leg(args.smiles, args.ml_potential, args.output, ML_LEGS[leg], mm, ml,
                                                platform=args.platform, max_minutes=args.max_minutes, progress=progress,
                                                device=args.ml_device)  # fmt: skip
            else:
                complete[leg] = hyd.run_leg(args.smiles, args.output, leg, mm, platform=args.platform,
                                            max_minutes=args.max_minutes, progress=progress)  # fmt: skip
        print(json.dumps({"smiles": args.smiles, "output": str(args.output), "complete": complete}, indent=1))
        return 0
    if args.summarise:
        from ..fe.estimators import EstimatorError

        try:
            summary = _stored_summary(args, mm, ml)
        except EstimatorError as exc:  # a leg with too few samples: the message says to run it longer
            print(f"atomml fe hydration: error: {exc}", file=sys.stderr)
            return 2
    else:
        summary = hyd.hydration_free_energy(args.smiles, args.output, mm, progress=progress, platform=args.platform)
        if args.ml_potential:
            correction = mlmm.end_state_correction(args.smiles, args.ml_potential, args.output, mm, ml,
                                                   progress=progress, platform=args.platform, device=args.ml_device)  # fmt: skip
            summary = _with_ml(summary, correction, args.ml_potential)
    print(json.dumps({k: v for k, v in summary.items() if k != "protocol"}, indent=1))
    return 0


def freesolv(args: argparse.Namespace) -> int:
    from ..fe.freesolv import ML_POTENTIAL, report

    result = report(args.workdir, args.ml_potential or ML_POTENTIAL, args.protocol)
    path = result.write(args.output)
    print(result.table)
    print(f"written {path}")
    return 0
