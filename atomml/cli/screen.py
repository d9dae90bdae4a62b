"""``atomml screen``: screen many structures (single point, relaxation, cell relaxation, short MD),
batched and on Dask workers, resumable; ``atomml screen report DIR`` ranks the results."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  atomml screen mols.smi --potential tensornet-organic-gfn2 --task relax --output runs/screen
  atomml screen cifs/ --potential tensornet-metals-emt --task relax-cell --fmax 0.02 -o runs/alloys
  atomml screen frames.extxyz --potential a.safetensors --potential b.safetensors --task single-point -o runs/sp
      (two potentials: a committee; uncertainty_eV is the std of their energies)
  atomml screen mols.smi -o runs/screen --scheduler tcp://10.0.0.1:8786     (an existing Dask cluster)
  atomml screen report runs/screen --sort energy_per_atom --top 20

inputs: *.smi (SMILES [id] per line), *.sdf, *.xyz/*.extxyz, *.db (ASE database), *.cif,
POSCAR/CONTCAR/*.vasp, or folders of them. A structure that cannot be read or built, has an
element the potential does not know, or overlapping atoms becomes a row with that status.

output: results.parquet (one row per structure), structures.extxyz (final structures),
summary.html with plots/, chunks/ (what resuming uses). Running the same command again skips
the chunks that are finished; a killed run loses at most the chunks in flight.
"""


def add_parser(sub: Any) -> None:
    """The ``screen`` subcommand, added to ``sub`` (argparse subparsers)."""
    sc = sub.add_parser(
        "screen", help="screen many structures: single point, relaxation, cell relaxation or short MD (resumable)",
        usage="atomml screen INPUT... [--potential NAME_OR_FILE] [--task TASK] --output DIR [options]\n"
              "       atomml screen report DIR [--sort COLUMN] [--top N]",
        description="Screen every structure of the inputs with a potential, many structures to a forward pass, in "
                    "chunks on Dask workers (a local cluster by default). `atomml screen report DIR` prints the "
                    "best rows of a finished screening.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sc.add_argument("inputs", nargs="+", metavar="INPUT", help="structure files or folders (or: report DIR)")
    sc.add_argument("--potential", "-p", action="append", default=None,
                    help="shipped name or file (default: tensornet-organic-gfn2); give it more than once for a "
                         "committee")  # fmt: skip
    sc.add_argument("--task", choices=["single-point", "relax", "relax-cell", "md"], default="relax")
    sc.add_argument("--output", "-o", default=None, help="results folder (running again resumes)")
    where = sc.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None,
                       help="local Dask worker processes, one torch thread each (default: one per CPU); 0: in this "
                            "process, no Dask")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS", help="an existing Dask scheduler's address")
    sc.add_argument("--fmax", type=float, default=0.05, help="relaxation: largest force at convergence, eV/Å")
    sc.add_argument("--max-steps", type=int, default=500, help="relaxation: most FIRE steps")
    sc.add_argument("--md-steps", type=int, default=200, help="md: steps")
    sc.add_argument("--timestep", type=float, default=0.5, help="md: time step, fs")
    sc.add_argument("--temperature", type=float, default=300.0, help="md: Langevin temperature, K")
    sc.add_argument("--friction", type=float, default=0.01, help="md: Langevin friction, 1/fs (0: NVE)")
    sc.add_argument("--seed", type=int, default=0, help="conformer embedding and MD velocities")
    sc.add_argument("--batch-atoms", type=int, default=2048, help="most atoms in one forward pass (bounds memory)")
    sc.add_argument("--chunk-size", type=int, default=None,
                    help="structures per chunk, the unit of resuming (default: even chunks of at most 64)")
    sc.add_argument("--device", default=None, help="torch device (default: CUDA where available)")
    sc.add_argument("--overwrite", action="store_true", help="discard another screening stored in --output")
    sc.add_argument("--no-progress", action="store_true")
    sc.add_argument("--sort", default="energy_per_atom_eV", help="report: the column to sort by")
    sc.add_argument("--top", type=int, default=20, help="report: rows to show (0: all)")
    sc.add_argument("--descending", action="store_true", help="report: largest first")
    sc.add_argument("--all-statuses", action="store_true", help="report: failed rows too (default: ok rows only)")
    sc.set_defaults(func=screen, parser=sc)


def screen(args: argparse.Namespace) -> int:
    from .. import screen as sc

    if args.inputs[0] == "report":
        if len(args.inputs) != 2:
            args.parser.error("report takes one folder: atomml screen report DIR")
        table = sc.report(args.inputs[1], sort=args.sort, top=args.top or None, ascending=not args.descending,
                          status=None if args.all_statuses else "ok")  # fmt: skip
        columns = [c for c in ("id", "status", "formula", "atoms", "energy_eV", "energy_per_atom_eV", "fmax_eV_per_A",
                               "steps", "uncertainty_eV", args.sort) if c in table.columns]  # fmt: skip
        columns = list(dict.fromkeys(columns))
        print(table[columns].to_string(index=False) if len(table) else "no rows")
        return 0
    if args.output is None:
        args.parser.error("--output DIR is required (the results folder)")
    results = sc.run(
        args.inputs, args.potential or ["tensornet-organic-gfn2"], task=args.task, output=args.output,
        workers=args.workers, scheduler=args.scheduler, fmax=args.fmax, max_steps=args.max_steps,
        md_steps=args.md_steps, timestep_fs=args.timestep, temperature_K=args.temperature,
        friction_per_fs=args.friction, seed=args.seed, batch_atoms=args.batch_atoms, chunk_size=args.chunk_size,
        device=args.device, overwrite=args.overwrite, progress=not args.no_progress,
    )  # fmt: skip
    counts = results["status"].value_counts()
    parts = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"atomml screen: {len(results)} structures ({parts}); results in {args.output}/results.parquet, "
          f"summary in {args.output}/summary.html")  # fmt: skip
    return 0
