"""The HTML summary of a screening run: ``summary.html`` and its PNG plots.

:func:`write_summary` turns the results table of ``atomml screen`` (one row per structure, the
columns of ``results.parquet``) into ``folder/summary.html``, which refers to PNGs in
``folder/plots/`` by relative paths: no JavaScript, a little inline CSS, readable offline and
easy to attach or copy as a folder. It shows

- the title and the run's settings (every key and value of ``settings``, as given);
- the number of structures per status;
- plots, each with a one-line caption: the energy per atom of the structures that finished (ok,
  and not converged in another colour); the relaxation convergence (optimizer steps, final fmax
  against steps with the fmax threshold) or, for MD, the mean temperatures; the count per status;
  the committee uncertainty where the potential was a committee (else a sentence says it was not);
- the 20 ok structures with the lowest energy per atom, and the failures (first 200).

Every string from the table or the settings is HTML-escaped. The HTML and each PNG are written
whole or not at all (:mod:`atomml.files`), and plots a previous summary left that this one does
not draw are removed, so the folder never mixes two runs. Empty tables, tables where everything
failed and all-NaN columns give a complete page: a plot with nothing to show is replaced by a
sentence. matplotlib is imported on the first call only, and no pyplot state is touched (safe
beside other threads drawing).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atomml.files import replacing, write_text

if TYPE_CHECKING:
    import pandas

__all__ = ["write_summary", "PLOTS", "LOWEST", "MAX_FAILURES"]

LOWEST = 20  # ok rows with the lowest energy per atom in the table
MAX_FAILURES = 200  # failures listed
DPI = 110
RELAX_TASKS = ("relax", "relax-cell")
# file names under plots/ that this module writes (and removes when a new summary omits them)
PLOTS = ("energy.png", "convergence.png", "md_temperature.png", "status.png", "uncertainty.png")
OK_COLOUR, NOT_CONVERGED_COLOUR = "tab:blue", "tab:orange"

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .2em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.ok td:first-child { color: #276227; } tr.bad td:first-child { color: #a01c1c; }
figure { margin: 1em 0; } figcaption { font-size: .9em; color: #444; }
img { max-width: 100%; } p.note { color: #555; font-style: italic; }
td.msg { max-width: 40em; overflow-wrap: anywhere; white-space: pre-wrap; }
"""


# -- the table ----------------------------------------------------------------------------------


def _numbers(results: pandas.DataFrame, column: str) -> np.ndarray:
    """``column`` as floats (NaN where missing, not a number, or the column is absent)."""
    if column not in results.columns:
        return np.full(len(results), np.nan)
    values = [_float(v) for v in results[column].tolist()]
    return np.asarray(values, dtype=float).reshape(len(results))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _strings(results: pandas.DataFrame, column: str) -> np.ndarray:
    """``column`` as str ("" where missing or NaN, or the column is absent)."""
    if column not in results.columns:
        return np.full(len(results), "", dtype=object)
    return np.asarray([_text(v) for v in results[column].tolist()], dtype=object).reshape(len(results))


def _text(value: Any) -> str:
    """``value`` as str; "" for None, NaN, NaT and pandas' NA."""
    if value is None:
        return ""
    try:
        if value != value:  # NaN, NaT
            return ""
    except TypeError:  # pandas.NA has no truth value
        return ""
    except ValueError:  # an array
        pass
    return str(value)


def _status_counts(status: np.ndarray) -> list[tuple[str, int]]:
    """(status, count): ok first, then by count, most frequent first, ties by name."""
    names, counts = np.unique(status.astype(str), return_counts=True) if len(status) else ([], [])
    pairs = [(str(n) or "(none)", int(c)) for n, c in zip(names, counts)]
    return sorted(pairs, key=lambda p: (p[0] != "ok", -p[1], p[0]))


# -- plots --------------------------------------------------------------------------------------


def _figure(height: float = 3.4, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend or state is touched

    fig = Figure(figsize=(5.6 * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _save(fig, path: Path) -> None:
    """The PNG goes to a temporary name beside ``path`` and replaces it in one ``os.replace``."""
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _bins(values: np.ndarray, most: int = 40) -> np.ndarray:
    n = max(1, int(math.ceil(math.sqrt(len(values)))))
    return np.histogram_bin_edges(values, bins=min(most, max(5, n)))


def _plot_energy(path: Path, energy: np.ndarray, status: np.ndarray) -> str | None:
    """Histogram of the energy per atom, ok and not converged; None when there is none."""
    groups = [
        (label, colour, energy[(status == s) & np.isfinite(energy)])
        for s, label, colour in (("ok", "ok", OK_COLOUR), ("not_converged", "not converged", NOT_CONVERGED_COLOUR))
    ]
    groups = [g for g in groups if len(g[2])]
    if not groups:
        return None
    every = np.concatenate([g[2] for g in groups])
    # a few exploded structures would squash everything else into one bin: leave out the values
    # more than 5 interquartile ranges beyond the quartiles, and say how many
    q1, q3 = np.percentile(every, [25, 75])
    spread = 5 * (q3 - q1)
    shown = (every >= q1 - spread) & (every <= q3 + spread) if spread > 0 else np.ones(len(every), bool)
    edges = _bins(every[shown])
    fig, (ax,) = _figure()
    ax.hist([g[2] for g in groups], bins=edges, color=[g[1] for g in groups], label=[g[0] for g in groups],
            stacked=True)
    ax.set(xlabel="energy per atom (eV)", ylabel="structures", title="energy per atom")
    ax.legend()
    _save(fig, path)
    left_out = int((~shown).sum())
    plural = "s" if left_out > 1 else ""
    outside = (f"; {left_out} outlier{plural} (more than 5 interquartile ranges beyond the quartiles) not drawn"
               if left_out else "")
    return (f"Distribution of the final energy per atom (eV) of the {len(every)} structures that finished "
            f"(stacked: ok, and not converged){outside}.")


def _plot_convergence(path: Path, steps: np.ndarray, fmax: np.ndarray, status: np.ndarray,
                      threshold: float) -> str | None:
    """Optimizer steps and final fmax against steps of the relaxations; None without any."""
    has_steps = np.isfinite(steps)
    if not has_steps.any():
        return None
    fig, (ax_steps, ax_fmax) = _figure(ncols=2)
    ax_steps.hist(steps[has_steps], bins=_bins(steps[has_steps]), color="tab:gray")
    ax_steps.set(xlabel="optimizer steps", ylabel="relaxations", title="steps per relaxation")
    points = has_steps & np.isfinite(fmax)
    labelled = False
    for s, label, colour in (("ok", "ok", OK_COLOUR), ("not_converged", "not converged", NOT_CONVERGED_COLOUR)):
        chosen = points & (status == s)
        if chosen.any():
            ax_fmax.scatter(steps[chosen], fmax[chosen], s=9, alpha=0.7, color=colour, label=label)
            labelled = True
    other = points & (status != "ok") & (status != "not_converged")
    if other.any():
        ax_fmax.scatter(steps[other], fmax[other], s=9, alpha=0.7, color="tab:red", label="other failures")
        labelled = True
    if math.isfinite(threshold) and threshold > 0:
        ax_fmax.axhline(threshold, color="k", ls="--", lw=1, label=f"fmax threshold {threshold:g} eV/Å")
        labelled = True
    drawn = fmax[points]
    if len(drawn) and (drawn > 0).all():
        ax_fmax.set_yscale("log")
    ax_fmax.set(xlabel="optimizer steps", ylabel="final fmax (eV/Å)", title="final max force")
    if labelled:
        ax_fmax.legend(fontsize="small")
    _save(fig, path)
    limit = f" and the fmax threshold ({threshold:g} eV/Å, dashed)" if math.isfinite(threshold) else ""
    return (f"Left: optimizer steps of the {int(has_steps.sum())} relaxations; right: final max force "
            f"against steps{limit}.")


def _plot_md_temperature(path: Path, temperature: np.ndarray) -> str | None:
    finite = temperature[np.isfinite(temperature)]
    if not len(finite):
        return None
    fig, (ax,) = _figure()
    ax.hist(finite, bins=_bins(finite), color="tab:red")
    ax.set(xlabel="mean temperature (K)", ylabel="trajectories", title="MD mean temperature")
    _save(fig, path)
    return f"Mean temperature (K) of each of the {len(finite)} short MD runs."


def _plot_status(path: Path, counts: list[tuple[str, int]]) -> str | None:
    if not counts:
        return None
    fig, (ax,) = _figure(height=max(1.6, 0.8 + 0.32 * len(counts)))
    names = [name for name, _ in counts][::-1]  # ok on top
    values = [n for _, n in counts][::-1]
    colours = [OK_COLOUR if n == "ok" else NOT_CONVERGED_COLOUR if n == "not_converged" else "tab:red"
               for n in names]
    bars = ax.barh(names, values, color=colours)
    ax.bar_label(bars, padding=2, fontsize="small")
    ax.set_xlim(0, max(values) * 1.15)
    ax.set(xlabel="structures", title="structures per status")
    _save(fig, path)
    return "Number of structures per status: ok, and each kind of failure."


def _plot_uncertainty(path: Path, uncertainty: np.ndarray) -> str | None:
    finite = np.isfinite(uncertainty)
    if not finite.any():
        return None
    fig, (ax,) = _figure()
    ax.hist(uncertainty[finite], bins=_bins(uncertainty[finite]), color="tab:purple")
    ax.set(xlabel="committee std of the energy (eV)", ylabel="structures", title="committee uncertainty")
    _save(fig, path)
    return (f"Committee uncertainty: the standard deviation (eV) of the member energies, "
            f"{int(finite.sum())} structures.")


# -- HTML ---------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _number(value: float, digits: int = 4) -> str:
    if not math.isfinite(value):
        return ""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits else f"{value:.3g}"


def _table(header: Iterable[str], rows: Iterable[Iterable[tuple[str, str]]],
           row_classes: list[str] | None = None) -> str:
    """``rows`` of (already escaped cell, CSS class or "") pairs."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(f'<td class="{c}">{text}</td>' if c else f"<td>{text}</td>" for text, c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _settings_table(settings: Mapping[str, Any]) -> str:
    if not settings:
        return '<p class="note">No settings were recorded.</p>'
    rows = []
    for key, value in settings.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(_text(v) for v in value)
        rows.append([(_e(key), ""), (_e(value), "")])
    return _table(("setting", "value"), rows)


def write_summary(results: pandas.DataFrame, folder: Path, *, title: str, settings: dict) -> Path:
    """Write ``folder/summary.html`` and its PNGs in ``folder/plots/``; return the HTML's path.

    ``results``: the screening table, one row per structure (``id``, ``source``, ``task``,
    ``status``, ``message``, ``formula``, ``atoms``, ``energy_per_atom_eV``, ``fmax_eV_per_A``,
    ``steps``, ``uncertainty_eV``, ``md_temperature_K``, ...); absent columns read as empty.
    ``settings``: what the run used, shown as given (its ``"fmax"``, if a number, is the
    threshold drawn on the convergence plot). ``title`` heads the page.
    """
    folder = Path(folder)
    plots = folder / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    settings = dict(settings or {})
    n = len(results)

    status = _strings(results, "status")
    status[status == ""] = "(none)"
    task = _strings(results, "task")
    energy = _numbers(results, "energy_per_atom_eV")
    steps = _numbers(results, "steps")
    fmax = _numbers(results, "fmax_eV_per_A")
    uncertainty = _numbers(results, "uncertainty_eV")
    temperature = _numbers(results, "md_temperature_K")
    counts = _status_counts(status)
    threshold = _float(settings.get("fmax"))

    relax = np.isin(task, RELAX_TASKS)
    md = task == "md"
    sections: list[str] = []
    written: set[str] = set()

    def figure(name: str, heading: str, caption: str | None, missing: str) -> None:
        if caption is None:
            sections.append(f"<h2>{_e(heading)}</h2>\n<p class=\"note\">{_e(missing)}</p>")
            return
        written.add(name)
        sections.append(
            f"<h2>{_e(heading)}</h2>\n<figure><img src=\"plots/{_e(name)}\" alt=\"{_e(heading)}\">"
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )

    figure("energy.png", "Energy per atom", _plot_energy(plots / "energy.png", energy, status),
           "No structure finished with an energy: no energy distribution to show.")
    if relax.any():
        figure("convergence.png", "Relaxation convergence",
               _plot_convergence(plots / "convergence.png", np.where(relax & np.isfinite(fmax), steps, np.nan), fmax,
                                 status, threshold),  # rows refused before relaxing have no fmax
               "No relaxation recorded its steps: no convergence to show.")
    if md.any():
        figure("md_temperature.png", "MD temperature",
               _plot_md_temperature(plots / "md_temperature.png", np.where(md, temperature, np.nan)),
               "No MD run recorded a temperature.")
    if n and not relax.any() and not md.any():
        sections.append("<h2>Convergence</h2>\n<p class=\"note\">Single-point calculations only: "
                        "no optimizer or MD convergence to show.</p>")
    figure("status.png", "Failures by cause", _plot_status(plots / "status.png", counts),
           "The table is empty: no structures.")
    figure("uncertainty.png", "Uncertainty", _plot_uncertainty(plots / "uncertainty.png", uncertainty),
           "No finite uncertainty: the potential is not a committee, so there is no uncertainty estimate.")
    for stale in set(PLOTS) - written:  # a previous summary's plot that this one does not show
        (plots / stale).unlink(missing_ok=True)

    status_rows = [
        [(_e(name), ""), (str(count), "n"), (f"{100 * count / n:.1f} %", "n")] for name, count in counts
    ] + [[("total", ""), (str(n), "n"), ("100.0 %" if n else "", "n")]]
    status_classes = [("ok" if name == "ok" else "bad") for name, _ in counts] + [""]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">\n<head>\n<meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style>\n</head>\n<body>",
        f"<h1>{_e(title)}</h1>",
        "<h2>Settings</h2>",
        _settings_table(settings),
        "<h2>Structures by status</h2>",
        _table(("status", "structures", "share"), status_rows, row_classes=status_classes),
        *sections,
        _lowest_table(results, status, energy, uncertainty),
        _failures_table(results, status),
        "</body>\n</html>\n",
    ]
    return write_text(folder / "summary.html", "\n".join(parts))


def _lowest_table(results: pandas.DataFrame, status: np.ndarray, energy: np.ndarray,
                  uncertainty: np.ndarray) -> str:
    heading = f"<h2>Lowest energy per atom ({LOWEST} first, ok only)</h2>"
    chosen = np.flatnonzero((status == "ok") & np.isfinite(energy))
    if not len(chosen):
        return heading + '\n<p class="note">No ok structure with an energy.</p>'
    chosen = chosen[np.argsort(energy[chosen], kind="stable")][:LOWEST]
    text = {c: _strings(results, c) for c in ("id", "source", "formula", "task")}
    number = {c: _numbers(results, c) for c in ("atoms", "energy_eV", "fmax_eV_per_A", "steps", "volume_A3")}
    columns = [("id", "id"), ("source", "source"), ("formula", "formula"), ("task", "task"), ("atoms", "atoms"),
               ("energy_per_atom_eV", "energy / atom (eV)"), ("energy_eV", "energy (eV)"),
               ("fmax_eV_per_A", "fmax (eV/Å)"), ("steps", "steps")]
    if np.isfinite(number["volume_A3"][chosen]).any():
        columns.append(("volume_A3", "volume (Å³)"))
    if np.isfinite(uncertainty[chosen]).any():
        columns.append(("uncertainty_eV", "uncertainty (eV)"))
    values = {**number, "energy_per_atom_eV": energy, "uncertainty_eV": uncertainty}
    rows = []
    for i in chosen:
        row = []
        for key, _ in columns:
            if key in text:
                row.append((_e(text[key][i]), ""))
            else:
                row.append((_number(values[key][i], 6 if key == "energy_per_atom_eV" else 4), "n"))
        rows.append(row)
    return heading + "\n" + _table([label for _, label in columns], rows)


def _failures_table(results: pandas.DataFrame, status: np.ndarray) -> str:
    failed = np.flatnonzero(status != "ok")
    if not len(failed):
        return "<h2>Failures</h2>\n<p class=\"note\">No failures.</p>" if len(status) else ""
    shown = failed[:MAX_FAILURES]
    more = f" (the first {MAX_FAILURES} of {len(failed)})" if len(failed) > MAX_FAILURES else f" ({len(failed)})"
    text = {c: _strings(results, c) for c in ("id", "source", "message")}
    rows = [[(_e(text["id"][i]), ""), (_e(text["source"][i]), ""), (_e(status[i]), ""),
             (_e(text["message"][i]), "msg")] for i in shown]
    return f"<h2>Failures{_e(more)}</h2>\n" + _table(("id", "source", "status", "message"), rows)
