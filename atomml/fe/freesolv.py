"""The FreeSolv check: hydration free energies of methane, ethane, methanol and ethanol, MM and
ML/MM, against FreeSolv's experimental and GAFF-calculated values.

Each molecule's legs run on their own with ``atomml fe hydration SMILES -o WORKDIR/<molecule>
--protocol freesolv --leg LEG`` (``md/protocols/freesolv.yaml``: Hamiltonian replica exchange
over the default states, and the MM→ML legs' settings in its ``mm_to_ml`` section); GAFF 1.x runs
(``--force-field gaff``) go to ``WORKDIR/<molecule>_gaff``. :func:`report` analyses whatever has
been sampled in ``WORKDIR`` and gives the table (``atomml fe freesolv``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from .. import units
from .mlmm import potential_sha256

# FreeSolv 0.52 (Mobley & Guthrie 2014): experimental and GAFF-calculated ΔG_hyd, kcal/mol
MOLECULES = {
    "methane": {"smiles": "C", "experiment": 2.00, "freesolv_gaff": 2.45},
    "ethane": {"smiles": "CC", "experiment": 1.83, "freesolv_gaff": 2.46},
    "methanol": {"smiles": "CO", "experiment": -5.10, "freesolv_gaff": -3.49},
    "ethanol": {"smiles": "CCO", "experiment": -5.00, "freesolv_gaff": -3.39},
}
ML_POTENTIAL = "tensornet-organic-gfn2"
PROTOCOL = "freesolv"  # md/protocols/freesolv.yaml


def run_folder(workdir: str | os.PathLike[str], molecule: str, force_field: str = "gaff2") -> Path:
    """The runs of the default GAFF2 set-up are in ``workdir/<molecule>``, others beside them."""
    return Path(workdir) / (molecule if force_field == "gaff2" else f"{molecule}_{force_field}")


@dataclasses.dataclass(frozen=True)
class FreeSolvReport:
    """``rows``: per molecule the FreeSolv values and the summaries found (``mm``, ``mm_gaff``,
    ``ml_correction``) or why one is missing (``mm_missing``, ``ml_missing``); ``table`` the
    markdown tables (kcal/mol)."""

    rows: dict[str, dict[str, Any]]
    ml_potential: str
    workdir: str
    table: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``data/benchmarks/freesolv_hydration.json``."""
        return {"molecules": self.rows, "ml_potential": self.ml_potential, "workdir": self.workdir}

    def write(self, path: str | os.PathLike[str]) -> Path:
        from ..files import write_text

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return write_text(path, json.dumps(self.to_dict(), indent=1, default=str))


def _ps_per_state(summary: dict, steps_per_sample: int, timestep_fs: float) -> float:
    return min(summary["samples_per_state"]["solvent"]) * steps_per_sample * timestep_fs * units.PS_PER_FS


def earlier_mm_rows(path: str | os.PathLike[str], protocol: Any) -> dict[str, dict]:
    """The MM summaries (``mm``, ``mm_gaff``) per molecule of an earlier report (its JSON,
    :meth:`FreeSolvReport.write`) whose legs ran under ``protocol`` (a
    :class:`~atomml.fe.hydration.HydrationProtocol`); a report of another protocol is refused.
    The MM legs take hours and do not depend on the ML potential: a report of new ML/MM legs can
    reuse them (``atomml fe freesolv --mm-from``)."""
    from .hydration import leg_identity

    rows: dict[str, dict] = {}
    for name, row in json.loads(Path(path).read_text())["molecules"].items():
        kept = {key: row[key] for key in ("mm", "mm_gaff") if key in row}
        for key, summary in kept.items():
            # what defines a leg's samples, as resuming a leg checks it (samples and warning aside)
            force_field = "gaff" if key == "mm_gaff" else protocol.force_field
            expected = json.loads(json.dumps(leg_identity("", dataclasses.replace(protocol, force_field=force_field))))
            expected = expected["protocol"]
            ran = {k: v for k, v in summary.get("protocol", {}).items() if k not in ("samples", "warning")}
            differ = sorted(k for k in ran.keys() | expected.keys() if ran.get(k) != expected.get(k))
            if differ:
                raise ValueError(f"{path}: the {name} {key} legs ran under another protocol (differing: "
                                 f"{', '.join(differ)}); run them under this one or give its report")  # fmt: skip
        rows[name] = kept
    return rows


def report(workdir: str | os.PathLike[str], potential: str = ML_POTENTIAL, protocol: str | os.PathLike[str] = PROTOCOL,
           mm_from: str | os.PathLike[str] | None = None) -> FreeSolvReport:  # fmt: skip
    """Summarise every molecule's legs stored in ``workdir`` (see the module doc) under the
    protocol file ``protocol`` (a path or a shipped name); the ML/MM rows use ``potential``.
    ``mm_from``: an earlier report's JSON whose MM rows stand in where ``workdir`` holds no MM
    legs of a molecule (:func:`earlier_mm_rows`; the row's ``mm_source`` names the file)."""
    from .hydration import HydrationProtocol, summarise
    from .mlmm import EndStateProtocol, summarise_ml

    mm, ml = HydrationProtocol.from_yaml(protocol), EndStateProtocol.from_yaml(protocol)
    earlier = earlier_mm_rows(mm_from, mm) if mm_from is not None else {}
    workdir = Path(workdir)
    rows, table, gaff_table = {}, [], []
    for name, molecule in MOLECULES.items():
        folder = run_folder(workdir, name)
        row: dict[str, Any] = {**molecule}
        try:
            row["mm"] = summarise(molecule["smiles"], folder, mm)
        except (OSError, ValueError, RuntimeError) as exc:
            if "mm" in earlier.get(name, {}):
                row.update(earlier[name], mm_source=str(mm_from))
            else:
                row["mm_missing"] = str(exc)
        gaff_folder = run_folder(workdir, name, "gaff")
        if "mm" in row and (gaff_folder / "solvent").exists() and (gaff_folder / "vacuum").exists():
            row["mm_gaff"] = summarise(molecule["smiles"], gaff_folder, dataclasses.replace(mm, force_field="gaff"))
        if "mm_gaff" in row:
            g = row["mm_gaff"]
            gaff_table.append(f"| {name} | {molecule['freesolv_gaff']:.2f} | {g['dG_hydration_kcal_per_mol']:.2f} ± "
                              f"{g['dG_hydration_error_kcal_per_mol']:.2f} | {row['mm']['dG_hydration_kcal_per_mol']:.2f} ± "
                              f"{row['mm']['dG_hydration_error_kcal_per_mol']:.2f} | "
                              f"{_ps_per_state(g, mm.steps_per_sample, mm.timestep_fs):.0f} ps/state |")  # fmt: skip
        try:
            row["ml_correction"] = summarise_ml(molecule["smiles"], potential, folder, mm, ml)
            row["ml_correction"]["potential_sha256"] = potential_sha256(potential)
        except (OSError, ValueError, RuntimeError) as exc:
            row["ml_missing"] = str(exc)
        rows[name] = row
        table.append(_row(name, row, mm, ml))
    header = ("| molecule | exp. | FreeSolv GAFF | atomml MM (GAFF2) | MM sampling | MM→ML ΔΔG | ML sampling | "
              "ML/MM ΔG | flags |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    text = f"kcal/mol, {mm.temperature:g} K\n" + header + "\n" + "\n".join(table)
    if gaff_table:
        text += ("\n\nGAFF 1.x (FreeSolv's force field), same charges and protocol\n"
                 "| molecule | FreeSolv GAFF | atomml MM (GAFF) | atomml MM (GAFF2) | water sampling |\n|---|---|---|---|---|\n"
                 + "\n".join(gaff_table))  # fmt: skip
    shown = workdir.resolve().relative_to(Path.cwd()) if workdir.resolve().is_relative_to(Path.cwd()) else workdir
    return FreeSolvReport(rows, potential, str(shown), text)


def _row(name: str, row: dict, mm: Any, ml: Any) -> str:
    """One molecule's line of the main table."""
    mm_summary, cor = row.get("mm", {}), row.get("ml_correction", {})
    mm_value, mm_error = mm_summary.get("dG_hydration_kcal_per_mol"), mm_summary.get("dG_hydration_error_kcal_per_mol")
    cells = [name, f"{row['experiment']:.2f}", f"{row['freesolv_gaff']:.2f}"]
    if mm_value is not None:
        ns = mm_summary["simulated_ns_per_leg"]
        cells += [f"{mm_value:.2f} ± {mm_error:.2f}",
                  f"{_ps_per_state(mm_summary, mm.steps_per_sample, mm.timestep_fs):.0f} ps/state; "
                  f"{ns['solvent']:.1f} ns water, {ns['vacuum']:.1f} ns vacuum"]  # fmt: skip
    else:
        cells += ["—", "—"]
    if cor:
        c, ce = cor["ddG_mm_to_ml_kcal_per_mol"], cor["ddG_mm_to_ml_error_kcal_per_mol"]
        cells += [f"{c:+.2f} ± {ce:.2f}",
                  f"{_ps_per_state(cor, ml.steps_per_sample, ml.timestep_fs):.0f} ps/state; "
                  f"{cor['simulated_ns_per_leg']['solvent']:.2f} ns water",
                  "—" if mm_value is None else f"{mm_value + c:.2f} ± {(mm_error**2 + ce**2) ** 0.5:.2f}"]  # fmt: skip
    else:
        cells += ["—", "—", "—"]
    cells.append(str(len(mm_summary.get("flags", []) + cor.get("flags", []))))
    return "| " + " | ".join(cells) + " |"
