"""Implementations of the ``atomml`` subcommands."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from .. import units

SMALL_SYSTEM = {"auto": "auto", "on": True, "off": False}  # --small-system -> the library's setting


def _calculator(potential: str, device: str | None, dtype: str, small_system: bool | str = "auto"):
    from ..interfaces.ase import AtomMLCalculator

    return AtomMLCalculator(potential, device=device, dtype=dtype, small_system=small_system)


def _check_replicas(args: argparse.Namespace) -> None:
    """Refuse a --replicas request that cannot run, before anything is loaded."""
    if args.replicas < 1:
        raise ValueError(f"--replicas must be at least 1, got {args.replicas}")
    if args.replicas == 1:
        return
    if args.engine == "openmm":
        raise ValueError("--replicas with --engine openmm is not supported yet: run the replicas with the ase engine "
                         "(the default), or one replica at a time in OpenMM")  # fmt: skip
    if args.ensemble == "npt":
        raise ValueError("--replicas runs nve or nvt only (the replica engine has no barostat): run npt without "
                         "--replicas (one replica)")  # fmt: skip


def _replica_evaluator(atoms, potential_name: str, replicas: int, small_system: bool | str, device: str, dtype: str):
    """The batched evaluator of ``replicas`` copies of ``atoms`` (:func:`atomml.fast.replica_evaluator`)."""
    import torch

    from ..errors import InputError
    from ..fast import replica_evaluator
    from ..graph import _ase_charge
    from ..potential_file import load_potential

    potential = load_potential(potential_name)
    if len(potential.terms) and atoms.has("initial_charges"):
        raise InputError(
            "the structure carries per-atom (initial) charges for the potential's energy terms, which --replicas "
            "does not pass on: run it without --replicas, or remove the per-atom charges"
        )
    periodic = bool(atoms.pbc.any())
    return replica_evaluator(
        potential, atoms.numbers, replicas=replicas, small_system=small_system, charge=_ase_charge(atoms),
        device=device, dtype=getattr(torch, dtype), cell=atoms.cell.array if periodic else None, pbc=atoms.pbc,
    )  # fmt: skip


def _read_structure(path: str):
    """The last frame of an ASE-readable structure file; a file that ASE cannot parse is an
    InputError that names it (a missing one, an OSError that the CLI reports with its path)."""
    from ase.io import read

    from ..errors import InputError

    try:
        return read(path, index=-1)
    except OSError as exc:
        if exc.filename is not None:
            raise  # missing, unreadable: the CLI names the path and the cause
        error = exc  # a parse error that ASE raises as IOError (extxyz's XYZError)
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for files it cannot parse
        error = exc
    raise InputError(
        f"cannot read the structure file {path} ({type(error).__name__}: {error}); give a file in a format ASE "
        "reads (extxyz, xyz, pdb, cif, POSCAR, ...), named with its usual extension"
    ) from error


def _timestep(requested: float | None, potential: str, header: dict) -> tuple[float, str]:
    """The MD time step (fs) and where it came from: --timestep, else the potential file's
    recommendation, else atomml's default."""
    from ..dynamics.frames import DEFAULT_TIMESTEP_FS, recommended_timestep

    recommended = recommended_timestep(header.get("metadata", {}))
    if requested is not None:
        if recommended is not None and requested > recommended:
            return requested, f"--timestep; {potential} recommends {recommended:g} fs"
        return requested, "--timestep"
    if recommended is not None:
        return recommended, f"recommended by {potential}"
    return DEFAULT_TIMESTEP_FS, f"default; {potential} recommends none"


def md(args: argparse.Namespace) -> int:
    import sys

    import torch

    from ..dynamics import MDSettings, run_md
    from ..dynamics.resume import total_charge
    from ..potential_file import read_header
    from ..threads import set_threads

    _check_replicas(args)
    threads = set_threads(args.threads)
    atoms = _read_structure(args.structure)
    if args.charge is not None:
        atoms.info["charge"] = args.charge
    header = read_header(args.potential)
    timestep, timestep_source = _timestep(args.timestep, args.potential, header)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = MDSettings(
        ensemble=args.ensemble,
        temperature=args.temperature,
        timestep_fs=timestep,
        steps=args.steps,
        friction_per_fs=args.friction,
        interval=args.interval,
        seed=args.seed,
        pressure_bar=args.pressure,
        barostat=args.barostat,
        barostat_time_fs=args.barostat_time,
        thermostat_time_fs=args.thermostat_time,
        barostat_interval=args.barostat_interval,
        max_forces_std=args.max_force_std,
    )
    args.trajectory = args.trajectory or ("md.dcd" if args.engine == "openmm" else "md.extxyz")
    small_system = SMALL_SYSTEM[args.small_system]
    evaluator = None
    if args.replicas > 1:
        from ..dynamics.replicas import replica_trajectories

        evaluator = _replica_evaluator(atoms, args.potential, args.replicas, small_system, device, args.dtype)
        paths = replica_trajectories(args.trajectory, args.replicas)
        path_name = "small-system path" if type(evaluator).__name__ == "SmallSystemPath" else "general path"
        output = f"{args.replicas} replicas ({path_name}, one batched call per step), output {paths[0]} ... {paths[-1]}"
    else:
        output = f"output {args.trajectory}"
    print(
        f"atomml md: potential {args.potential} ({' '.join(header['elements'])}), engine {args.engine}, device {device}, "
        f"{args.dtype}, {threads} thread{'s' * (threads != 1)}, charge {total_charge(atoms)}, "
        f"{settings.ensemble.upper()} {settings.temperature:g} K, timestep {timestep:g} fs ({timestep_source}), "
        f"{settings.steps} steps, {output}",
        file=sys.stderr,
    )
    if evaluator is not None:
        from ..dynamics.replicas import run_replicas

        result = run_replicas(
            atoms, evaluator, settings, trajectory=args.trajectory, log=args.log, restart=not args.overwrite,
            progress=not args.no_progress, replicas=args.replicas,
        )  # fmt: skip
    elif args.engine == "openmm":
        from ..dynamics.openmm import run_openmm_md

        result = run_openmm_md(
            atoms, args.potential, settings, trajectory=args.trajectory, log=args.log, restart=not args.overwrite,
            progress=not args.no_progress, precision={"float32": "single", "float64": "double"}[args.dtype],
            device=device, small_system=small_system,
        )  # fmt: skip
    else:
        result = run_md(
            atoms,
            _calculator(args.potential, device, args.dtype, small_system),
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
    from ..training.config import reference_markdown

    if args.list_keys:
        print(reference_markdown(), end="")
        return 0
    if not args.config:
        raise ValueError("atomml train needs a YAML config file (examples: potentials/*.yaml; keys: atomml train --list-keys)")
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
    and the cutoff shown is the one the loaded potential uses. Human-readable: what it is, the
    test errors its trainer measured (per test set, and per configuration type or source), and
    the model card's intended use and limits; ``--json``: the header as JSON."""
    from ..potential_file import load_potential, read_header, resolve

    path = resolve(args.potential)
    header = read_header(path)
    potential = load_potential(path, device="cpu")
    if args.json:
        print(json.dumps(header, indent=1))
        return 0
    meta = dict(header.get("metadata", {}))
    hp = {k: v for k, v in header["hyperparameters"].items() if k not in ("elements", "cutoff")}
    cutoff = f"{potential.cutoff} Å"
    if potential.cutoff != potential.architecture_cutoff:
        cutoff += f" (architecture {potential.architecture_cutoff} Å; energy terms reach further)"
    name = meta.pop("name", path.name.removesuffix(".safetensors"))
    lines = [  # the file's path on this machine first, and only there
        f"file:          {path} ({path.stat().st_size / 1024:.0f} KiB, format version {header['format_version']})",
        "", name, *_wrap(meta.pop("description", ""), ""), "",
        f"architecture:  {header['architecture']}  {hp}",
        f"elements:      {' '.join(header['elements'])}",
        f"cutoff:        {cutoff}",
        f"energy terms:  {_terms_line(header)}",
        f"dtype:         {header['dtype']}",
        f"atomml:        {header.get('atomml_version', '?')}",
    ]
    training = meta.pop("training", None)
    if isinstance(training, dict):
        lines.append(f"training:      {_training_line(training)}")
    metrics = meta.pop("test_metrics", None)
    for key, value in meta.items():  # anything else the trainer or the author stored
        shown = value if not isinstance(value, (dict, list)) else f"({type(value).__name__}: atomml info --json)"
        lines.append(f"{key + ':':<14} {shown}")
    lines += ["", *_metrics_lines(metrics), "", *_card_lines(path)]
    print("\n".join(lines))
    return 0


def validate(args: argparse.Namespace) -> int:
    """The property benchmark of a potential against its reference method (atomml.validation)."""
    from ..threads import set_threads
    from ..validation import REFERENCES, validate as run_validation

    set_threads(args.threads)
    output = Path(args.output) if args.output else Path("runs") / "validate" / Path(args.potential).stem
    print(f"atomml validate: {args.potential} against {REFERENCES[args.reference][1]} "
          f"({'quick' if args.quick else 'full'} benchmark) -> {output}", flush=True)
    report = run_validation(args.potential, args.reference, quick=args.quick, output=output,
                            progress=lambda message: print(f"  {message} ...", flush=True))
    print(report.markdown())
    s = report.summary
    print(f"{s['passed']} of {s['with_target']} rows with a target pass ({s['rows']} rows, "
          f"{report.elapsed_s:.0f} s); table, JSON and figures in {output}")
    return 0 if not args.strict or s["failed"] == 0 else 1


def _wrap(text: str, indent: str = "  ", width: int = 100) -> list[str]:
    import textwrap

    return textwrap.wrap(" ".join(str(text).split()), width, initial_indent=indent, subsequent_indent=indent)


def _training_line(training: dict) -> str:
    """e.g. ``10686 steps, 20 epochs, 35 min; 8190 training / 455 validation structures; 194,945 parameters``."""
    parts = []
    run = [f"{training[k]} {label}" for k, label in (("steps", "steps"), ("epochs", "epochs")) if k in training]
    if "train_seconds" in training:
        run.append(f"{training['train_seconds'] / 60:.0f} min")
    if run:
        parts.append(", ".join(run))
    if "train_structures" in training:
        parts.append(f"{training['train_structures']} training / {training.get('valid_structures', '?')} validation structures")
    if "parameters" in training:
        parts.append(f"{training['parameters']:,} parameters")
    return "; ".join(parts) or "(atomml info --json)"


METRIC_COLUMNS = (  # (header key, column title, unit, format)
    ("structures", "structures", "", "{:d}"),
    ("energy_mae_meV_per_atom", "energy MAE", "meV/atom", "{:.1f}"),
    ("force_mae_meV_per_A", "force MAE", "meV/Å", "{:.1f}"),
    ("stress_mae_meV_per_A3", "stress MAE", "GPa", "{:.3f}"),
)
# stored in the units the trainer measures in, shown in the ones materials people read
METRIC_SCALES = {"stress_mae_meV_per_A3": units.EV_PER_MEV * units.EV_PER_A3_TO_GPA}  # meV/Å³ -> GPa


def _metrics_lines(metrics: object) -> list[str]:
    """The test errors stored by the trainer (``metadata.test_metrics``) as a table: one row per
    test set, then one per configuration type or source within it."""
    if not isinstance(metrics, dict) or not metrics:
        return ["test errors:   none stored in this file (atomml train stores those it measures)"]
    rows: list[tuple[str, dict]] = []
    for test_set, m in metrics.items():
        if not isinstance(m, dict):
            continue
        rows.append((test_set, m))
        groups = m.get("by_config_type") or m.get("by_source") or {}
        rows += [(f"  {group}", g) for group, g in groups.items() if isinstance(g, dict)]
    label = max([len("test set"), *(len(r[0]) for r in rows)])
    columns = [c for c in METRIC_COLUMNS if any(c[0] in m for _, m in rows)]  # stress only where measured

    def cell(m: dict, key: str, fmt: str) -> str:
        value = m.get(key)
        if not isinstance(value, (int, float)):
            return "–"
        return fmt.format(int(value)) if fmt == "{:d}" else fmt.format(value * METRIC_SCALES.get(key, 1.0))

    widths = [max(len(title), len(unit)) + 2 for _, title, unit, _ in columns]
    lines = ["test errors (measured by the trainer on structures it did not train on):",
             "  " + "test set".ljust(label) + "".join(t.rjust(w) for (_, t, _, _), w in zip(columns, widths)),
             "  " + "".ljust(label) + "".join(u.rjust(w) for (_, _, u, _), w in zip(columns, widths))]  # fmt: skip
    for name, m in rows:
        lines.append("  " + name.ljust(label) + "".join(cell(m, k, f).rjust(w) for (k, _, _, f), w in zip(columns, widths)))
    return lines


def _card_lines(path: Path) -> list[str]:
    """Intended use and limits from the model card beside the file (``<name>.md``, as every
    shipped potential has, written by ``scripts/write_model_cards.py``): its opening paragraph
    and its ``use`` row."""
    card = path.with_suffix(".md")
    if not card.is_file():
        return [f"model card:    none ({card.name} is not beside the file): intended use and limits are unknown; "
                "check the training data above before trusting it outside them"]  # fmt: skip
    text = card.read_text(encoding="utf-8").splitlines()
    body = [line for line in text if not line.startswith("#")]
    paragraph: list[str] = []
    for line in body:
        if line.strip() and not line.startswith("|"):
            paragraph.append(line)
        elif paragraph:
            break
    use = [line.split("|")[2] for line in text if line.startswith("| use |")]
    lines = [f"intended use and limits (model card {card.name}, beside the file):", *_wrap(" ".join(paragraph))]
    if use:
        lines += ["", *_wrap("Use: " + use[0])]
    return lines


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
