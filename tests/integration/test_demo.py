"""The main job (``./demo.sh`` = ``atomml demo``) on a short setting, and the shipped potentials'
headline numbers: the model cards quote what the training script measured."""

from __future__ import annotations

import json

import numpy as np
import pytest

import atomml

pytest.importorskip("tblite")


def test_demo_runs_and_reports(tmp_path, capsys):
    from atomml.cli import main

    assert main(["demo", "--steps", "200", "--output", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["molecule"] == "paracetamol" and summary["steps"] == 200
    assert summary["ns_per_day"] > 0 and 50 < summary["mean_temperature_K"] < 600
    assert summary["frames_checked_against_GFN2_xTB"] >= 1
    # an MD run that stays near equilibrium: errors like the held-out test set's, not wild ones
    assert 0 < summary["force_mae_vs_GFN2_xTB_meV_per_A"] < 300
    assert (tmp_path / "paracetamol.extxyz").exists()


def test_demo_molecule_is_not_in_the_training_data():
    from ase.io import read

    from atomml.resources import resource_folder

    potential = atomml.load_potential("tensornet-organic-gfn2")
    molecule = read(resource_folder("md") / "structures" / "paracetamol.extxyz")
    training = potential.metadata["training_config"]
    assert "heldout" in json.dumps(training["test_sets"])
    assert molecule.info["smiles"] == "CC(=O)Nc1ccc(O)cc1"
    heldout = potential.metadata["test_metrics"]["heldout_molecules"]
    assert heldout["structures"] > 0 and np.isfinite(heldout["force_mae_meV_per_A"])


@pytest.mark.parametrize("name", ["tensornet-organic-gfn2", "tensornet-metals-emt"])
def test_shipped_potentials_have_cards_and_test_errors(name):
    path = atomml.shipped_potentials()[name]
    assert path.stat().st_size < 10 * 1024 * 1024
    card = path.with_suffix(".md").read_text()
    metrics = atomml.load_potential(name).metadata["test_metrics"]
    for values in metrics.values():
        # every test error in the header is quoted in the card (rounded to 0.1)
        assert f"{values['force_mae_meV_per_A']:.1f}" in card


def test_demo_potential_was_trained_from_its_preset():
    from atomml.resources import resource_folder
    from atomml.training import TrainConfig

    preset = TrainConfig.from_yaml(resource_folder("potentials") / "schnet-cu-emt-demo.yaml")
    stored = atomml.load_potential("schnet-cu-emt-demo").metadata["training_config"]
    for key in ("architecture", "hyperparameters", "name", "split_by", "valid_fraction", "test_fraction", "energy_weight",
                "forces_weight", "lr", "batch_size", "seed"):  # fmt: skip
        assert stored[key] == getattr(preset, key), key
    assert stored["train"].endswith("cu_emt.extxyz")
