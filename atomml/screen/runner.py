"""Screening runs: structures split into chunks, chunks run on Dask workers, each chunk's results
written whole as it finishes.

The output folder holds:

- ``manifest.json``: what is screened (a digest of the structures), how (task and settings)
  and with which potential (a digest of its weights); a re-run checks it, so that a folder never
  mixes two screenings;
- ``chunks/NNNNNN.parquet`` and ``chunks/NNNNNN.extxyz``: one chunk's rows and final
  structures, each replacing its temporary file in one ``os.replace`` (the extxyz first), so a
  chunk is either finished or absent. Re-running the same command skips finished chunks; a chunk
  that ran twice (its worker died after writing it) writes the same content again under the
  same name. Nothing is lost and nothing is counted twice;
- ``results.parquet`` (one row per structure, in input order), ``structures.extxyz`` (final
  structures with energy, forces and stress) and ``summary.html`` with ``plots/``, written
  from the chunks at the end.

Dask: by default a local cluster of ``workers`` processes (one per CPU, each running torch on
one thread); ``scheduler="tcp://host:8786"`` uses an existing cluster (the
README shows SLURM through dask-jobqueue); ``client=`` takes a ``distributed.Client``;
``workers=0`` runs the chunks in this process, without Dask. A worker that dies mid-chunk has
its chunk rerun on another worker (Dask's ``allowed-failures``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ResumeMismatchError
from ..files import concatenate, replacing, write_json
from .inputs import Record, fingerprint, read_records

TASKS = ("single-point", "relax", "relax-cell", "md")
FORMAT = 1

COLUMNS = (
    "id", "source", "task", "status", "message", "formula", "atoms", "charge", "energy_eV", "energy_per_atom_eV",
    "energy_initial_eV", "fmax_eV_per_A", "steps", "converged", "uncertainty_eV", "volume_A3", "wall_s",
    "md_temperature_K", "md_epot_mean_eV", "md_epot_std_eV", "md_drift_eV_per_atom_ps",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to screen. ``potentials``: names, paths or Potential objects (several: a committee).
    ``fmax`` eV/Å and ``max_steps`` for relaxations; ``md_steps``, ``timestep_fs``,
    ``temperature_K``, ``friction_per_fs`` for MD; ``seed`` for conformers and MD velocities;
    ``batch_atoms``: most atoms in one forward pass; ``chunk_size``: structures per chunk (the
    unit of resuming and of work sent to a worker)."""

    task: str = "relax"
    potentials: tuple[Any, ...] = ("tensornet-organic-gfn2",)
    fmax: float = 0.05
    max_steps: int = 500
    md_steps: int = 200
    timestep_fs: float = 0.5
    temperature_K: float = 300.0
    friction_per_fs: float = 0.01
    seed: int = 0
    batch_atoms: int = 2048
    chunk_size: int = 64
    device: str = "cpu"

    def check(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        if not self.fmax > 0:
            raise ValueError(f"fmax must be positive (eV/Å), got {self.fmax!r}")
        for name in ("max_steps", "md_steps", "batch_atoms", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "max_steps" else 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.potentials:
            raise ValueError("give at least one potential")

    def identity(self) -> dict[str, Any]:
        """What the results depend on (the manifest's record of the settings)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.pop("device")
        fields["potentials"] = [_potential_digest(p) for p in self.potentials]
        if self.task != "md":
            for name in ("md_steps", "timestep_fs", "temperature_K", "friction_per_fs"):
                fields.pop(name)
        if self.task not in ("relax", "relax-cell"):
            fields.pop("fmax"), fields.pop("max_steps")
        return fields


def _potential_digest(potential: Any) -> str:
    """sha256 of a potential's file, or of a Potential object's weights."""
    digest = hashlib.sha256()
    if isinstance(potential, (str, os.PathLike)):
        from ..potential_file import resolve

        with open(resolve(potential), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    else:
        for name, tensor in sorted(potential.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- one chunk (worker)

_EVALUATORS: dict[Any, Any] = {}


def _evaluator(settings: Settings) -> Any:
    """One Evaluator per worker process and potential set, loaded once and kept."""
    from ..potential import Potential
    from ..potential_file import load_potential
    from .engine import Evaluator

    key = (tuple(p if isinstance(p, (str, os.PathLike)) else id(p) for p in settings.potentials), settings.device)
    if key not in _EVALUATORS:
        loaded = [p if isinstance(p, Potential) else load_potential(p) for p in settings.potentials]
        _EVALUATORS[key] = Evaluator([p.to(settings.device).eval() for p in loaded])
    return _EVALUATORS[key]


def _undo_malloc_trim() -> None:
    """Undo Dask's ``MALLOC_TRIM_THRESHOLD_`` in this worker: the variable (which Dask's nanny
    sets to 64 KiB for the processes it starts) freezes glibc's mmap threshold at 128 KiB, so
    every mid-sized tensor is mmapped and unmapped again; a screening of drug-like molecules ran
    1.9x slower under it (57 s against 31 s, mostly system time). glibc's own dynamic threshold
    ends near 32 MiB; set that, with trimming above 64 MiB."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): the variable means nothing there
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 64 << 20)


def _row(record: Record, task: str) -> dict[str, Any]:
    row: dict[str, Any] = {c: math.nan for c in COLUMNS}
    row.update(id=record.id, source=record.source, task=task, status=record.status, message=record.message,
               formula="", atoms=0, steps=0, converged=False)  # fmt: skip
    if record.atoms is not None:
        atoms = record.atoms
        row.update(formula=atoms.get_chemical_formula(), atoms=len(atoms), charge=float(atoms.info.get("charge", 0.0)))
    return row


def screen_chunk(
    index: int, records: Sequence[Record], settings: Settings, output: str, threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:  # fmt: skip
    """Screen one chunk and write ``chunks/{index:06d}.parquet`` (and ``.extxyz``); returns the
    number of rows. A chunk already written is not screened again."""
    import pandas as pd

    from .engine import Job, md, relax, single_point

    folder = Path(output) / "chunks"
    table = folder / f"{index:06d}.parquet"
    if table.exists():
        return len(records)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    _undo_malloc_trim()
    evaluator = _evaluator(settings)
    rows, jobs, structures, charges = [], [], {}, {}
    for k, record in enumerate(records):
        started = time.perf_counter()
        record = record.build(settings.seed)
        row = _row(record, settings.task)
        row["wall_s"] = time.perf_counter() - started
        rows.append(row)
        if record.status:
            continue
        atoms = record.atoms
        try:
            from ..graph import _ase_charge

            charge = charges[k] = _ase_charge(atoms)
        except InputError as exc:
            row.update(status="bad_input", message=" ".join(str(exc).split()))
            continue
        job = Job(key=k, numbers=atoms.numbers.copy(), positions=np.array(atoms.positions, dtype=np.float64),
                  cell=np.array(atoms.cell.array, dtype=np.float64), pbc=atoms.pbc.copy(), charge=charge)  # fmt: skip
        problem = evaluator.check(job)
        if problem is not None:
            row.update(status=problem[0], message=problem[1])
            continue
        jobs.append(job)
    if progress is not None:
        progress(len(records) - len(jobs))

    def done(job: Job) -> None:
        row = rows[job.key]
        volume = abs(float(np.linalg.det(job.cell))) if job.periodic else math.nan
        row.update(
            status=job.status, message=job.message, energy_eV=job.energy, energy_per_atom_eV=job.energy / job.natoms,
            energy_initial_eV=job.energy_initial, fmax_eV_per_A=job.fmax, steps=job.steps,
            converged=job.status == "ok" and settings.task in ("relax", "relax-cell"), uncertainty_eV=job.uncertainty,
            volume_A3=volume, wall_s=row["wall_s"] + job.wall, **job.md,
        )  # fmt: skip
        structures[job.key] = _final_atoms(job, row, charges[job.key])
        if progress is not None:
            progress(1)

    s = settings
    if s.task == "single-point":
        single_point(jobs, evaluator, max_atoms=s.batch_atoms, done=done)
    elif s.task in ("relax", "relax-cell"):
        relax(jobs, evaluator, fmax=s.fmax, max_steps=s.max_steps, cell=s.task == "relax-cell",
              max_atoms=s.batch_atoms, done=done)  # fmt: skip
    else:
        md(jobs, evaluator, steps=s.md_steps, timestep_fs=s.timestep_fs, temperature_K=s.temperature_K,
           friction_per_fs=s.friction_per_fs, seed=s.seed, max_atoms=s.batch_atoms, done=done)  # fmt: skip

    import ase.io

    folder.mkdir(parents=True, exist_ok=True)
    with replacing(folder / f"{index:06d}.extxyz") as tmp:
        ase.io.write(tmp, [structures[k] for k in sorted(structures)], format="extxyz")
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    with replacing(table) as tmp:
        frame.to_parquet(tmp, index=False)
    return len(rows)


def _final_atoms(job: Any, row: dict[str, Any], charge: float) -> Any:
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = Atoms(numbers=job.numbers, positions=job.positions, cell=job.cell, pbc=job.pbc)
    atoms.info.update(id=row["id"], source=row["source"], status=row["status"], charge=charge)
    results: dict[str, Any] = {}
    if np.isfinite(job.energy):
        results["energy"] = job.energy
        if job.forces is not None:
            results["forces"] = job.forces
        if job.stress is not None:
            results["stress"] = job.stress
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


# ----------------------------------------------------------------------------- the run (driver)


def run(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    potential: Any = "tensornet-organic-gfn2",
    *,
    task: str = "relax",
    output: str | os.PathLike[str] = "screen",
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    fmax: float = 0.05,
    max_steps: int = 500,
    md_steps: int = 200,
    timestep_fs: float = 0.5,
    temperature_K: float = 300.0,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    batch_atoms: int = 2048,
    chunk_size: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    summary: bool = True,
) -> Any:
    """Screen every structure of ``inputs`` and return the results table (a pandas DataFrame,
    also written to ``output/results.parquet``).

    Args:
        inputs: files or folders (see :mod:`atomml.screen.inputs`).
        potential: a shipped name, a file or a Potential; a list of them is a committee (mean
            energy and forces, the std of the energies as ``uncertainty_eV``).
        task: "single-point", "relax" (positions), "relax-cell" (positions and cell of periodic
            structures; molecules relax their positions) or "md" (Langevin, summary statistics).
        output: the results folder; running again with the same arguments resumes.
        client: a ``distributed.Client`` to run on (then ``workers`` and ``scheduler`` are
            ignored).
        workers: local Dask worker processes, one torch thread each (default: one per CPU this
            process may use); 0 runs in this process without Dask.
        scheduler: address of an existing Dask scheduler, e.g. "tcp://10.0.0.1:8786".
        fmax, max_steps: relaxation convergence (eV/Å, largest force, with ``relax-cell`` on ASE
            ``FrechetCellFilter``'s forces) and step limit.
        md_steps, timestep_fs, temperature_K, friction_per_fs: the MD task.
        seed: conformer embedding and MD velocities.
        batch_atoms: most atoms in one forward pass (bounds memory).
        chunk_size: structures per chunk; default: the structures split evenly into chunks of at
            most 64 (:func:`default_chunk_size`; it depends on the number of structures only, so
            that a re-run with other workers resumes the same chunks).
        device: torch device on the workers (default: CUDA where available, else CPU).
        overwrite: start again in a folder that holds another screening.
        progress: a progress bar with ETA on stderr.
        summary: write ``summary.html`` with PNG plots.
    """
    from ..locks import output_lock
    from ..threads import available_cpus

    potentials = tuple(potential) if isinstance(potential, (list, tuple)) else (potential,)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = Settings(task=task, potentials=potentials, fmax=fmax, max_steps=max_steps, md_steps=md_steps,
                        timestep_fs=timestep_fs, temperature_K=temperature_K, friction_per_fs=friction_per_fs,
                        seed=seed, batch_atoms=batch_atoms, chunk_size=chunk_size or 1, device=device)  # fmt: skip
    settings.check()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers must be a non-negative integer (0: in this process), got {workers!r}")
    started = time.perf_counter()
    inputs = [str(i) for i in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
    records = read_records(inputs)
    if not records:
        raise InputError(f"no structures in {inputs}: give SMILES, SDF, extxyz, ASE database or CIF/POSCAR inputs")
    if chunk_size is None:
        settings = dataclasses.replace(settings, chunk_size=default_chunk_size(len(records)))
    chunk_size = settings.chunk_size
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    with output_lock(folder, "screening output"):
        _check_manifest(folder, records, settings, inputs, overwrite)
        chunks = [records[i : i + chunk_size] for i in range(0, len(records), chunk_size)]
        for stale in (folder / "chunks").glob("*.tmp*"):  # left by a killed run or worker
            stale.unlink(missing_ok=True)
        finished = {i for i in range(len(chunks)) if (folder / "chunks" / f"{i:06d}.parquet").exists()}
        todo = [i for i in range(len(chunks)) if i not in finished]
        cpus = available_cpus()
        if workers is None:
            workers = cpus
        with _progress_bar(len(records), progress) as bar:
            bar.update(sum(len(chunks[i]) for i in finished))
            if finished and progress:
                bar.write(f"atomml screen: {len(finished)} of {len(chunks)} chunks already finished in {folder}; "
                          "screening the rest")  # fmt: skip
            if todo and client is None and scheduler is None and workers == 0:
                for i in todo:
                    screen_chunk(i, chunks[i], settings, str(folder), progress=bar.update)
            elif todo:
                # one torch thread per local worker: on CPUs more processes beat more threads for
                # batches of small structures (a 1,065-atom batch of drug-like molecules ran 1.8x
                # slower on 2 threads than on 1 on the 2-core machine of scripts/bench_screen.py)
                threads = 1 if client is None and scheduler is None and device == "cpu" else None
                _run_on_dask(chunks, todo, settings, folder, client, workers, scheduler, threads, bar)
        results = _assemble(folder, len(chunks))
        if summary:
            from .summary import write_summary

            write_summary(results, folder, title=f"atomml screen: {task} of {len(results)} structures",
                          settings=_summary_settings(settings, inputs, len(results), workers, client, scheduler,
                                                     time.perf_counter() - started))  # fmt: skip
    return results


def default_chunk_size(count: int, most: int = 64) -> int:
    """Chunks of at most ``most`` structures, all of nearly the same size: 200 structures make 4
    chunks of 50, not 3 of 64 and one of 8, which would leave one of two workers idle for a
    quarter of the run. Larger chunks batch better (a chunk's last structures relax in a
    shrinking batch); smaller ones resume and balance better."""
    return max(1, math.ceil(count / math.ceil(count / most)))


def _summary_settings(settings: Settings, inputs: list[str], count: int, workers: Any, client: Any, scheduler: Any,
                      wall: float) -> dict[str, Any]:  # fmt: skip
    names = [p if isinstance(p, (str, os.PathLike)) else type(p).__name__ for p in settings.potentials]
    shown: dict[str, Any] = {
        "potential": ", ".join(str(n) for n in names), "task": settings.task,
        "inputs": ", ".join(inputs),
        "structures": count,
        "workers": "existing client" if client is not None else scheduler or workers,
        "wall time (this run)": f"{wall:.1f} s",
    }  # fmt: skip
    if settings.task in ("relax", "relax-cell"):
        shown.update(fmax=settings.fmax, max_steps=settings.max_steps)
    if settings.task == "md":
        shown.update(md_steps=settings.md_steps, timestep_fs=settings.timestep_fs,
                     temperature_K=settings.temperature_K, friction_per_fs=settings.friction_per_fs)  # fmt: skip
    return shown


def _check_manifest(folder: Path, records: Sequence[Record], settings: Settings, inputs: list[str], overwrite: bool) -> None:
    manifest = {
        "format": FORMAT,
        "settings": settings.identity(),
        "structures": len(records),
        "structures_digest": fingerprint(records),
        "inputs": inputs,
    }
    path = folder / "manifest.json"
    if path.exists() and not overwrite:
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            stored = None
        if stored is not None:
            different = [k for k in ("format", "settings", "structures", "structures_digest") if stored.get(k) != manifest[k]]
            if not different:
                return
            detail = different
            if "settings" in different:
                s_old, s_new = stored.get("settings", {}), manifest["settings"]
                detail = [f"{k}: {s_old.get(k)!r} -> {s_new.get(k)!r}" for k in sorted(set(s_old) | set(s_new))
                          if s_old.get(k) != s_new.get(k)] + [d for d in different if d != "settings"]  # fmt: skip
            raise ResumeMismatchError(
                f"{folder} holds another screening (differs in {'; '.join(str(d) for d in detail)}); "
                "use another --output, or --overwrite to discard it and start again"
            )
    for stale in ("chunks", "plots"):
        shutil.rmtree(folder / stale, ignore_errors=True)
    for stale in ("results.parquet", "structures.extxyz", "summary.html"):
        (folder / stale).unlink(missing_ok=True)
    write_json(path, manifest)


def _run_on_dask(chunks: list[list[Record]], todo: list[int], settings: Settings, folder: Path, client: Any,
                 workers: int, scheduler: str | None, threads: int | None, bar: Any) -> None:  # fmt: skip
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster = None
    own = client is None
    if own:
        if scheduler is not None:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)  # fmt: skip
            client = Client(cluster)
    try:
        tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
        futures = {
            client.submit(screen_chunk, i, chunks[i], settings, str(folder.resolve()), threads,
                          key=f"atomml-screen-{tag}-{i}", pure=False): i
            for i in todo
        }  # fmt: skip
        for future in as_completed(futures):
            bar.update(future.result())
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="structure", desc="screen", disable=not enabled, file=sys.stderr, smoothing=0.1)


def _assemble(folder: Path, count: int) -> Any:
    """results.parquet and structures.extxyz from the chunks, in input order."""
    import pandas as pd

    tables = [pd.read_parquet(folder / "chunks" / f"{i:06d}.parquet") for i in range(count)]
    results = pd.concat(tables, ignore_index=True)
    with replacing(folder / "results.parquet") as tmp:
        results.to_parquet(tmp, index=False)
    concatenate([folder / "chunks" / f"{i:06d}.extxyz" for i in range(count)], folder / "structures.extxyz")
    return results


def report(output: str | os.PathLike[str], *, sort: str = "energy_per_atom_eV", top: int | None = 20,
           ascending: bool = True, status: str | None = "ok") -> Any:  # fmt: skip
    """The results of a finished screening in ``output``, sorted by ``sort`` (any column; NaN
    last), the ``top`` first rows (None: all), only rows of ``status`` (None: all)."""
    import pandas as pd

    path = Path(output) / "results.parquet"
    if not path.exists():
        raise InputError(f"{path} does not exist: run `atomml screen ... --output {output}` to the end first")
    results = pd.read_parquet(path)
    aliases = {"energy": "energy_eV", "energy_per_atom": "energy_per_atom_eV", "fmax": "fmax_eV_per_A",
               "uncertainty": "uncertainty_eV", "wall": "wall_s"}  # fmt: skip
    column = aliases.get(sort, sort)
    if column not in results.columns:
        raise InputError(f"no column {sort!r} in {path}; columns: {', '.join(results.columns)}")
    if status is not None:
        results = results[results["status"] == status]
    results = results.sort_values(column, ascending=ascending, na_position="last", kind="stable")
    return results if top is None else results.head(top)
