"""``atomml validate``: the property benchmark from the command line writes its table and JSON."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tblite")
pytest.importorskip("rdkit")

from atomml.cli import main  # noqa: E402
from atomml.validation import ROW_KEYS, load_report, molecules  # noqa: E402


def test_validate_quick_writes_json_table_and_figures(tmp_path, capsys):
    out = tmp_path / "val"
    code = main(["validate", "tensornet-organic-gfn2", "--reference", "xtb", "--quick", "-o", str(out),
                 "--threads", "1"])
    assert code == 0
    report = load_report(out / "validation.json")
    assert report["reference"] == "GFN2-xTB (tblite)" and report["quick"] is True
    rows = report["rows"]
    assert rows and all(tuple(r) == ROW_KEYS for r in rows)
    assert all(r["error"] is not None for r in rows)  # the shipped potential gave every property
    assert {(r["group"], r["system"]) for r in rows} >= {
        ("torsion", molecules.TORSIONS[0][0]), ("conformers", molecules.CONFORMER_MOLECULES[0][0]),
        ("intermolecular", molecules.DIMERS[0][0]), ("frequencies", molecules.FREQUENCY_MOLECULES[0][0]),
        ("bond_stretch", molecules.BOND_SCANS[0][0])}
    s = report["summary"]
    assert s["rows"] == len(rows)
    assert s["passed"] + s["failed"] == s["with_target"] == sum(r["passed"] is not None for r in rows)
    printed = capsys.readouterr().out
    assert f"{s['passed']} of {s['with_target']} rows with a target pass" in printed
    # every row is in the markdown table, with its verdict
    table = (out / "validation.md").read_text()
    for r in rows:
        assert f"| {r['system']} |" in table
    assert sorted(p.name for p in out.glob("*.png"))  # figures beside the table
    json.dumps(report)  # plain JSON values only


def test_validate_refuses_an_unknown_reference(capsys):
    with pytest.raises(SystemExit):
        main(["validate", "tensornet-organic-gfn2", "--reference", "dft"])
    assert "invalid choice: 'dft'" in capsys.readouterr().err
