"""The hydration workflow end to end on a tiny setting (methane, few states, short sampling).

The number is not meaningful at this length; the test checks that every stage runs, that the
outputs are written (summary, plots), that the default protocol loads, and that a second run
resumes instead of starting over. FreeSolv validation is a long script run, not a CI test.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("openmm")
pytest.importorskip("rdkit")
pytest.importorskip("pymbar")


def test_hydration_workflow_tiny(tmp_path):
    from atomml.cli import main
    from atomml.fe.hydration import default_protocol

    assert default_protocol().samples == 500
    protocol = tmp_path / "tiny.yaml"
    protocol.write_text(
        "padding: 6.0\ncutoff_nm: 0.7\nelectrostatics: [1.0, 0.0]\nsterics: [1.0, 0.5, 0.0]\n"
        "samples: 12\nsteps_per_sample: 20\nequilibration_steps: 50\n"
    )
    out = tmp_path / "methane"
    argv = ["fe", "hydration", "C", "--protocol", str(protocol), "-o", str(out), "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["states"] == ["elec=1, vdw=1", "elec=0, vdw=1", "elec=0, vdw=0.5", "elec=0, vdw=0"]
    assert abs(summary["dG_hydration_kcal_per_mol"]) < 20 and summary["dG_hydration_error_kcal_per_mol"] > 0
    for leg in ("solvent", "vacuum"):
        for png in ("overlap.png", "convergence.png"):
            assert (out / leg / png).read_bytes()[:4] == b"\x89PNG"
    samples = (out / "solvent" / "window_0.u").read_bytes()
    prmtop = (out / "setup" / "solvent.prmtop").read_bytes()
    assert main(argv) == 0  # complete: reuses the set-up, resumes, samples nothing new
    assert (out / "solvent" / "window_0.u").read_bytes() == samples
    assert (out / "setup" / "solvent.prmtop").read_bytes() == prmtop
    assert json.loads((out / "summary.json").read_text())["dG_hydration_kt"] == summary["dG_hydration_kt"]


def test_protocol_refuses_unknown_keys(tmp_path):
    from atomml.fe.hydration import HydrationProtocol

    path = tmp_path / "p.yaml"
    path.write_text("samplez: 3\n")
    with pytest.raises(ValueError, match="unknown protocol keys"):
        HydrationProtocol.from_yaml(path)
