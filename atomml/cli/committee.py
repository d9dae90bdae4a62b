"""``atomml committee``: join trained potentials into one committee file, and calibrate its
spread on labelled data (:mod:`atomml.models.committee`, :mod:`atomml.uncertainty.committees`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EPILOG = """\
examples:
  atomml committee join runs/seed0/potential.safetensors runs/seed1/potential.safetensors \\
      runs/seed2/potential.safetensors -o committee.safetensors
  atomml committee calibrate committee.safetensors --data valid.extxyz -o committee.safetensors \\
      --report runs/calibration

join: members of one architecture, hyperparameters and element list, trained on the same data
(e.g. `atomml train` with different run.seed): a deep ensemble. The committee's energy and
forces are the members' mean; the calculator adds energy_std and forces_std.

calibrate: fits one factor s on the data's force components (energies where there are no
forces) so that the spread times s matches the errors (Gaussian likelihood), stores s in the
output file, and writes calibration.json and PNG plots (calibration curve, RMSE vs RMV, parity
with error bars) to --report. Use data the members were not trained on.
"""


def add_parser(sub: Any) -> None:
    """The ``committee`` subcommand, added to ``sub`` (argparse subparsers)."""
    co = sub.add_parser(
        "committee", help="join potentials into a committee file; calibrate its spread on labelled data",
        description="Committees (deep ensembles): one file of K members evaluated together, whose spread is the "
                    "potential's uncertainty.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    actions = co.add_subparsers(dest="action", required=True)
    join = actions.add_parser("join", help="join K trained potentials into one committee file")
    join.add_argument("members", nargs="+", help="potential files (at least two)")
    join.add_argument("--output", "-o", required=True, help="the committee file to write")
    join.set_defaults(func=run_join)
    cal = actions.add_parser("calibrate", help="fit the spread's scale on labelled data; store it; write the report")
    cal.add_argument("potential", help="committee potential file")
    cal.add_argument("--data", required=True, help="labelled structures (extxyz, ASE .db or PyG .pt), not used in training")
    cal.add_argument("--output", "-o", required=True, help="the calibrated committee file to write (may be the input)")
    cal.add_argument("--report", default=None, help="folder for calibration.json and the plots (default: beside --output)")
    cal.add_argument("--energy-key", default="energy", help="label keys, as data.energy_key of a training config")
    cal.add_argument("--forces-key", default="forces")
    cal.add_argument("--energy-unit", default="eV", help="unit of the labels (as data.energy_unit)")
    cal.add_argument("--batch-size", type=int, default=16, help="structures per call (default: %(default)s)")
    cal.set_defaults(func=run_calibrate)


def run_join(args: argparse.Namespace) -> int:
    from ..models import committee_of
    from ..potential_file import load_potential, save_potential

    members = [load_potential(path) for path in args.members]
    path = save_potential(committee_of(members, metadata={"committee_of": [str(p) for p in args.members]}), args.output)
    print(f"{path}: a committee of {len(members)} {members[0].architecture} members", file=sys.stderr)
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..data import load_dataset
    from ..potential_file import load_potential, save_potential
    from ..uncertainty.committees import calibrate, predictions, write_calibration

    potential = load_potential(args.potential)
    if potential.committee_size is None:
        raise ValueError(f"{args.potential} is a single model: calibrate a committee (atomml committee join)")
    data = load_dataset(args.data, energy_key=args.energy_key, forces_key=args.forces_key, energy_unit=args.energy_unit)
    p = predictions(potential, data, batch_size=args.batch_size)
    result = calibrate(p)
    with torch.no_grad():
        potential.model.std_scale.fill_(result["scale"])
    output = save_potential(potential, args.output)
    report = write_calibration(result, p, args.report or Path(output).with_suffix("").with_name(Path(output).stem + "_calibration"))
    summary = {"output": str(output), "report": str(report), "scale": result["scale"], "fitted_on": result["fitted_on"]}
    for name in ("forces", "energy"):
        if name in result:
            raw, cal = result[name]["raw"], result[name]["recalibrated"]
            summary[name] = {"coverage_95_raw": raw.coverage, "coverage_95": cal.coverage, "nll_raw": raw.nll,
                             "nll": cal.nll, "miscalibration_area": cal.miscalibration_area, "spearman": cal.spearman}  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0
