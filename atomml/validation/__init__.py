"""Property benchmarks: a potential judged by the properties its users compute.

Held-out force errors say how well a potential fits structures like its training data. Users ask
other questions: which crystal structure is stable, what a vacancy costs, how stiff the metal is,
which conformer is lowest, whether two molecules attract. :func:`validate` computes such
properties twice, with the potential and with the reference method it was trained to reproduce,
by the same code, and compares them against stated targets:

- ``reference="emt"`` (ASE's EMT; :mod:`atomml.validation.metals`): equation of state, elastic
  constants, structure-type energy differences (bcc, hcp, simple cubic, ordered alloys) with the
  lattice relaxed, cohesive energy, dimers and small clusters, vacancies and interstitials,
  surface energies, phonons, and the shape of ordered structures under cell relaxation;
- ``reference="xtb"`` (GFN2-xTB through tblite; :mod:`atomml.validation.molecules`): rigid torsion
  scans, conformer energy ranking, intermolecular curves (hydrogen-bonded and dispersion-bound
  pairs), harmonic frequencies and bond stretching without spurious minima.

Each result is a row (a plain dict): ``group``, ``property``, ``system``, ``unit``,
``reference``, ``potential``, ``error`` (potential - reference for a scalar, else the error
metric named in ``metric``: rmse, mae, spearman or count), ``target`` (text), ``passed`` (bool,
or None where no target is set) and ``note``.

From the command line::

    atomml validate tensornet-metals-emt --reference emt -o runs/validate/metals
    atomml validate tensornet-organic-gfn2 --reference xtb --quick

writes ``validation.json`` (the rows and a summary), ``validation.md`` (the table) and PNG
figures into the output folder. ``--quick`` is the CI setting: one system per property, few
points, seconds; the full benchmark takes minutes (``scripts/validate_potentials.py`` runs it for
the shipped potentials and keeps the results in ``data/benchmarks/``).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..files import write_json, write_text

# reference name -> (property module, what it is, the packages it needs)
REFERENCES = {
    "emt": ("metals", "ASE EMT", ("ase",)),
    "xtb": ("molecules", "GFN2-xTB (tblite)", ("tblite", "rdkit")),
}
ROW_KEYS = ("group", "property", "system", "unit", "reference", "potential", "error", "metric", "target",
            "passed", "note")


def reference_calculator(reference: str) -> Callable[[], Any]:
    """A factory of the reference method's ASE calculator."""
    if reference == "emt":
        from ase.calculators.emt import EMT

        return EMT
    if reference == "xtb":
        try:
            from tblite.ase import TBLite
        except ImportError as exc:  # pragma: no cover - tblite is in the data extra
            raise ImportError("the xtb reference needs tblite: pip install 'atomml[data]'") from exc
        return lambda: TBLite(method="GFN2-xTB", verbosity=0)
    raise ValueError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")


@dataclass
class ValidationReport:
    """The rows of one benchmark run and what produced them."""

    potential: str
    reference: str
    quick: bool
    rows: list[dict]
    elapsed_s: float
    environment: dict = field(default_factory=dict)

    @property
    def summary(self) -> dict:
        """Counts of rows that pass, fail and have no target; the failing rows' names."""
        judged = [r for r in self.rows if r["passed"] is not None]
        failed = [r for r in judged if not r["passed"]]
        return {
            "rows": len(self.rows), "with_target": len(judged), "passed": len(judged) - len(failed),
            "failed": len(failed), "failing": [f"{r['property']} ({r['system']})" for r in failed],
        }

    def to_dict(self) -> dict:
        return {"potential": self.potential, "reference": REFERENCES[self.reference][1], "quick": self.quick,
                "summary": self.summary, "elapsed_s": round(self.elapsed_s, 1), "environment": self.environment,
                "rows": self.rows}

    def markdown(self, failing_only: bool = False) -> str:
        """The rows as a markdown table (values rounded for display only)."""
        head = ("| property | system | reference | potential | error | target | pass |\n"
                "|---|---|---|---|---|---|---|")
        lines = [head]
        for r in self.rows:
            if failing_only and r["passed"] is not False:
                continue
            metric = "" if r["metric"] == "difference" else f" ({r['metric']})"
            verdict = {True: "yes", False: "**no**", None: "–"}[r["passed"]]
            unit = f" [{r['unit']}]" if r["unit"] else ""
            lines.append(
                f"| {r['property']}{unit} | {r['system']} | {show_value(r['reference'])} | {show_value(r['potential'])} "
                f"| {show_value(r['error'])}{metric} | {r['target'] or '–'} | {verdict} |"
            )
        return "\n".join(lines)


def show_value(value: float | None) -> str:
    """A benchmark value for display: four significant digits, a dash for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


def _versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for package in ("atomml", "torch", "ase", "tblite"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def validate(
    potential: Any,
    reference: str,
    *,
    quick: bool = False,
    output: str | Path | None = None,
    dtype: Any = None,
    progress: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Compute the property benchmark of ``potential`` against ``reference`` ("emt" or "xtb").

    ``potential``: a shipped name, a file or a :class:`~atomml.Potential`. ``quick``: the CI
    setting (one system per property, seconds). ``output``: a folder for ``validation.json``,
    ``validation.md`` and the PNG figures (nothing is written without it). ``dtype``: the
    network's precision (default: the file's, float32). Returns a :class:`ValidationReport`.
    """
    import importlib

    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    from ..interfaces.ase import AtomMLCalculator

    module = importlib.import_module(f"{__name__}.{REFERENCES[reference][0]}")
    options = {} if dtype is None else {"dtype": dtype}
    calculator = AtomMLCalculator(potential, **options)  # one object, reused for every structure
    name = str(calculator.potential.metadata.get("name") or potential)
    folder = None if output is None else Path(output)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = module.run(lambda: calculator, reference_calculator(reference), quick=quick, plot_dir=folder,
                      progress=progress)
    for row in rows:
        if tuple(row) != ROW_KEYS:
            raise AssertionError(f"benchmark row with keys {tuple(row)}, expected {ROW_KEYS}")
    report = ValidationReport(name, reference, quick, rows, time.perf_counter() - start, _versions())
    if folder is not None:
        write_json(folder / "validation.json", report.to_dict(), indent=1)
        write_text(folder / "validation.md", f"# {name} against {REFERENCES[reference][1]}\n\n{report.markdown()}\n")
    return report


def load_report(path: str | Path) -> dict:
    """A ``validation.json`` written by :func:`validate`."""
    return json.loads(Path(path).read_text())
