"""``atomml info``: a human-readable summary (test errors by test set, the model card's intended
use and limits) by default, the header as JSON with ``--json``."""

from __future__ import annotations

import json
import math
import re

import ase.units
import pytest
import torch

import atomml
from atomml.cli import main
from atomml.models import create


def info(capsys, *args):
    assert main(["info", *args]) == 0
    return capsys.readouterr().out


def row(output, label):
    """The numbers of the table row whose label is ``label`` (first match)."""
    for line in output.splitlines():
        if line.strip().startswith(label + " ") and re.search(r"\d", line[len(label) + 2 :]):
            return line.split()[len(label.split()):]
    raise AssertionError(f"no row {label!r} in\n{output}")


@pytest.mark.parametrize("name", ["tensornet-organic-gfn2", "tensornet-metals-emt"])
def test_the_table_shows_every_test_set_and_group_from_the_header(capsys, name):
    out = info(capsys, name)
    metrics = atomml.read_header(name)["metadata"]["test_metrics"]
    assert "energy MAE" in out and "meV/atom" in out and "force MAE" in out and "meV/Å" in out
    stress = any("stress_mae_meV_per_A3" in m for m in metrics.values())
    assert ("stress MAE" in out) == stress
    table = out[out.index("test errors") :]
    for test_set, m in metrics.items():
        expected = [str(m["structures"]), f"{m['energy_mae_meV_per_atom']:.1f}", f"{m['force_mae_meV_per_A']:.1f}"]
        if stress:
            expected.append(f"{m['stress_mae_meV_per_A3'] * 1e-3 / ase.units.GPa:.3f}")  # shown in GPa
        assert row(table, test_set) == expected
        groups = m.get("by_config_type") or m.get("by_source")
        assert groups, "the shipped files store errors per configuration type or source"
        section = table[table.index(test_set) :]
        for group, g in groups.items():
            cells = row(section, group)
            assert cells[:3] == [str(g["structures"]), f"{g['energy_mae_meV_per_atom']:.1f}", f"{g['force_mae_meV_per_A']:.1f}"]
            if stress:
                gpa = g.get("stress_mae_meV_per_A3", math.nan) * 1e-3 / ase.units.GPa
                assert cells[3] == (f"{gpa:.3f}" if "stress_mae_meV_per_A3" in g else "–")


def test_the_model_cards_use_and_limits_are_shown(capsys):
    out = info(capsys, "tensornet-organic-gfn2")
    card = (atomml.shipped_potentials()["tensornet-organic-gfn2"].with_suffix(".md")).read_text()
    use = next(line.split("|")[2] for line in card.splitlines() if line.startswith("| use |"))
    section = out[out.index("intended use and limits") :]
    assert " ".join(use.split()) in " ".join(section.split())
    summary = card.split("\n\n")[1]  # the paragraph under the title
    assert " ".join(summary.split()) in " ".join(section.split())
    assert "(dict: atomml info --json)" in out and "{'name'" not in out  # nested metadata stays out of the way


def test_a_users_file_without_card_or_metrics_says_so(capsys, tmp_path):
    torch.manual_seed(0)
    potential = create("schnet", elements=[1, 8], cutoff=3.0, n_atom_basis=8, n_filters=8, n_interactions=1, n_rbf=4,
                       metadata={"description": "my water model", "closed_shell_only": True})  # fmt: skip
    path = atomml.save_potential(potential, tmp_path / "mine")
    out = info(capsys, str(path))
    assert out.splitlines()[2] == "mine" and "my water model" in out
    assert "closed_shell_only: True" in out
    assert "test errors:   none stored in this file" in out
    assert "model card:    none (mine.md is not beside the file)" in out and "intended use and limits are unknown" in out
    (tmp_path / "mine.md").write_text("# mine\n\nFor water clusters only.\n\n| | |\n|---|---|\n| use | below 400 K |\n")
    out = info(capsys, str(path))
    assert "For water clusters only." in out and "Use: below 400 K" in out


def test_json_prints_the_header(capsys):
    out = info(capsys, "schnet-cu-emt-demo", "--json")
    assert json.loads(out) == atomml.read_header("schnet-cu-emt-demo")
