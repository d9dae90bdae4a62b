"""The HTML summary of a screening run (atomml.screen.summary): counts, escaping, PNGs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from atomml.screen.summary import write_summary  # noqa: E402

COLUMNS = [
    "id", "source", "task", "status", "message", "formula", "atoms", "charge", "energy_eV",
    "energy_per_atom_eV", "energy_initial_eV", "fmax_eV_per_A", "steps", "uncertainty_eV", "volume_A3",
    "wall_s", "md_temperature_K", "md_epot_mean_eV", "md_epot_std_eV",
]
SETTINGS = {"potential": "ani <small>", "task": "relax", "fmax": 0.05, "max steps": 200,
            "inputs": ["mols.smi", "bulk.cif"], "structures": 9, "workers": 4, "wall time": "12.5 s"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAN = math.nan

# the uncertainty plot appears only for a committee; every plot warning is an error
pytestmark = pytest.mark.filterwarnings("error")


def _row(i, status="ok", message="", task="relax", energy=-3.0, **more):
    row = dict(
        id=f"s{i}", source=f"mols.smi:{i}", task=task, status=status, message=message, formula="H2O", atoms=3,
        charge=0.0, energy_eV=energy * 3, energy_per_atom_eV=energy, energy_initial_eV=energy * 3 + 0.5,
        fmax_eV_per_A=0.01 * (i + 1), steps=10 + i, uncertainty_eV=NAN, volume_A3=NAN, wall_s=0.1,
        md_temperature_K=NAN, md_epot_mean_eV=NAN, md_epot_std_eV=NAN,
    )
    row.update(more)
    return row


def _early_failure(i, status, message):
    row = {c: NAN for c in COLUMNS}
    row.update(id=f"s{i}", source=f"mols.smi:{i}", task="relax", status=status, message=message, formula="")
    return row


def _mixed(uncertainty: bool) -> pd.DataFrame:
    rows = [_row(i, energy=-3.0 - 0.1 * i, uncertainty_eV=0.02 * i if uncertainty else NAN) for i in range(4)]
    rows += [
        _row(4, "not_converged", "fmax 0.2 > 0.05 after 200 steps", energy=-2.5, steps=200, fmax_eV_per_A=0.2),
        _row(5, "not_converged", "fmax 0.3 > 0.05 after 200 steps", energy=-2.4, steps=200, fmax_eV_per_A=0.3),
        _early_failure(6, "bad_input", "<script>alert('x')</script> & more"),
        _early_failure(7, "unknown_element", "element Xx is not known to the potential"),
        _early_failure(8, "read_error", "could not read 'bulk.cif'"),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def _pngs(html_path):
    sources = re.findall(r'<img src="([^"]+)"', html_path.read_text())
    for src in sources:
        path = html_path.parent / src
        assert path.is_file(), src
        assert path.read_bytes()[:8] == PNG_MAGIC, src
    return sources


def test_mixed_statuses(tmp_path):
    path = write_summary(_mixed(uncertainty=False), tmp_path / "run", title="screen <test>", settings=SETTINGS)
    assert path == tmp_path / "run" / "summary.html"
    text = path.read_text()
    assert "<title>screen &lt;test&gt;</title>" in text
    for status, count in (("ok", 4), ("not_converged", 2), ("bad_input", 1), ("unknown_element", 1),
                          ("read_error", 1), ("total", 9)):
        assert re.search(rf'<td>{status}</td><td class="n">{count}</td>', text), status
    # every string is escaped: the table's messages and the settings alike
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in text
    assert "<script" not in text
    assert "ani &lt;small&gt;" in text and "mols.smi, bulk.cif" in text
    assert "could not read &#x27;bulk.cif&#x27;" in text
    sources = _pngs(path)
    assert sources == ["plots/energy.png", "plots/convergence.png", "plots/status.png"]
    assert "not a committee" in text
    assert not (tmp_path / "run" / "plots" / "uncertainty.png").exists()
    # the lowest energies first, ok rows only; failures listed with their source
    lowest = text[text.index("Lowest energy"):text.index("<h2>Failures (")]
    assert lowest.index(">s3<") < lowest.index(">s2<") < lowest.index(">s0<") and ">s4<" not in lowest
    failures = text[text.index("<h2>Failures ("):]
    assert all(f">s{i}<" in failures for i in range(4, 9)) and ">s0<" not in failures
    assert not list((tmp_path / "run").rglob("*.tmp*"))


def test_uncertainty_plot_only_for_a_committee(tmp_path):
    path = write_summary(_mixed(uncertainty=True), tmp_path, title="committee", settings=SETTINGS)
    assert "plots/uncertainty.png" in _pngs(path)
    assert "not a committee" not in path.read_text()
    # a later summary of a run without a committee leaves no stale uncertainty plot behind
    path = write_summary(_mixed(uncertainty=False), tmp_path, title="single", settings=SETTINGS)
    assert "plots/uncertainty.png" not in _pngs(path)
    assert not (tmp_path / "plots" / "uncertainty.png").exists()


def test_md_and_single_point(tmp_path):
    md = pd.DataFrame([_row(i, task="md", steps=1000, md_temperature_K=290.0 + i) for i in range(3)], columns=COLUMNS)
    path = write_summary(md, tmp_path / "md", title="md", settings={"task": "md"})
    assert _pngs(path) == ["plots/energy.png", "plots/md_temperature.png", "plots/status.png"]
    single = [_row(i, task="single-point", steps=0, fmax_eV_per_A=1.0) for i in range(3)]
    single = pd.DataFrame(single, columns=COLUMNS)
    path = write_summary(single, tmp_path / "sp", title="sp", settings={"task": "single-point"})
    assert _pngs(path) == ["plots/energy.png", "plots/status.png"]
    assert "Single-point calculations only" in path.read_text()


def test_all_failed_and_all_nan(tmp_path):
    table = [_early_failure(i, "embedding_failed", f"no conformer {i}") for i in range(3)]
    table = pd.DataFrame(table, columns=COLUMNS)
    path = write_summary(table, tmp_path, title="failed", settings={})
    text = path.read_text()
    assert re.search(r'<td>embedding_failed</td><td class="n">3</td>', text)
    assert _pngs(path) == ["plots/status.png"]
    assert "No ok structure" in text and "no conformer 2" in text


@pytest.mark.parametrize("columns", [COLUMNS, []], ids=["columns", "nothing"])
def test_empty_table(tmp_path, columns):
    path = write_summary(pd.DataFrame(columns=columns), tmp_path, title="empty", settings={"fmax": "n/a"})
    text = path.read_text()
    assert re.search(r'<td>total</td><td class="n">0</td>', text)
    assert _pngs(path) == []
    assert "The table is empty" in text


def test_many_failures_and_outliers(tmp_path):
    rng = np.random.default_rng(0)
    rows = [_row(i, energy=float(e)) for i, e in enumerate(rng.normal(-4.0, 0.2, 300))]
    rows[0]["energy_per_atom_eV"] = 1e6  # an exploded structure does not squash the histogram
    rows += [_early_failure(1000 + i, "diverged", "energy went to infinity") for i in range(250)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    path = write_summary(table, tmp_path, title="big", settings=SETTINGS)
    text = path.read_text()
    assert "the first 200 of 250" in text
    assert text.count("energy went to infinity") == 200
    assert "1 outlier (more than 5 interquartile ranges" in text
    lowest = text[text.index("Lowest energy"):text.index("<h2>Failures (")]
    assert lowest.count("<tr>") == 21  # the header and 20 rows
    for png in (tmp_path / "plots").iterdir():
        assert png.stat().st_size < 80_000, png
