"""Other people's data: an extxyz written the way MACE users write theirs (``REF_energy`` in
info, ``REF_forces`` in arrays, ``REF_stress`` in info), labelled with ASE's EMT so that what
is read can be checked against the values that were written; and the messages when the keys
in a config match nothing in the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

import atomml
from atomml.data import load_dataset
from atomml.errors import InputError
from atomml.training import TrainConfig, Trainer

MACE_KEYS = {"energy_key": "REF_energy", "forces_key": "REF_forces", "stress_key": "REF_stress", "charge_key": "total_charge"}


@pytest.fixture(scope="module")
def mace_file(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Eight Cu/Au cells as a MACE user writes them: no calculator attached, labels under REF_*."""
    frames, energy, forces, stress = [], [], [], []
    for k in range(8):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.02 * (k % 4), cubic=True) * (2, 1, 1)
        if k % 2:
            atoms[1].symbol = "Au"
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        energy.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
        stress.append(atoms.get_stress())  # Voigt, ASE's sign
        atoms.calc = None
        atoms.info.update(REF_energy=energy[-1], REF_stress=stress[-1], total_charge=0.0, config_type="bulk")
        atoms.arrays["REF_forces"] = forces[-1]
        frames.append(atoms)
    path = tmp_path_factory.mktemp("mace") / "train.xyz"
    write(path, frames, format="extxyz")
    return path, {"energy": np.array(energy), "forces": np.concatenate(forces), "stress": np.array(stress)}


def test_labels_under_other_keys_are_read_as_written(mace_file):
    path, emt = mace_file
    assert "REF_energy=" in path.read_text().splitlines()[1]  # really a MACE-style file
    data = load_dataset(path, cache=False, **MACE_KEYS)
    np.testing.assert_allclose(data.energy, emt["energy"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(data.forces, emt["forces"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(data.stress, emt["stress"], rtol=0, atol=1e-8)
    assert "REF_energy" not in data.info[0] and data.info[0]["config_type"] == "bulk"  # a label, not an info entry
    # with our default keys the same file has no labels; its keys are recorded for the messages
    plain = load_dataset(path, cache=False)
    assert np.isnan(plain.energy).all() and np.isnan(plain.forces).all()
    assert "REF_energy" in plain.source_keys["info"] and "REF_forces" in plain.source_keys["arrays"]


def test_the_cache_is_rebuilt_when_the_keys_change(mace_file, tmp_path):
    path = tmp_path / "copy.xyz"
    path.write_bytes(mace_file[0].read_bytes())
    assert np.isnan(load_dataset(path).energy).all()  # cached without labels
    np.testing.assert_allclose(load_dataset(path, **MACE_KEYS).energy, mace_file[1]["energy"], atol=1e-6)
    assert np.isfinite(load_dataset(path, **MACE_KEYS).forces).all()  # and the new cache is used
    in_mev = load_dataset(path, energy_unit="meV", **MACE_KEYS)  # labels said to be meV: scaled, a new cache
    np.testing.assert_allclose(in_mev.energy, 1e-3 * mace_file[1]["energy"], atol=1e-9)
    np.testing.assert_allclose(in_mev.stress, 1e-3 * mace_file[1]["stress"], atol=1e-11)
    np.testing.assert_allclose(load_dataset(path, **MACE_KEYS).energy, mace_file[1]["energy"], atol=1e-6)
    with pytest.raises(InputError, match="unknown energy unit 'kcal'"):
        load_dataset(path, energy_unit="kcal", **MACE_KEYS)


def test_a_key_that_matches_nothing_lists_the_keys_in_the_file(mace_file):
    with pytest.raises(InputError) as raised:
        load_dataset(mace_file[0], cache=False, energy_key="DFT_energy")
    message = str(raised.value)
    assert "info['DFT_energy'] (data.energy_key)" in message and "REF_energy" in message and "REF_forces" in message
    assert "\n" not in message


def test_training_on_default_keys_names_the_keys_that_are_there(mace_file, tmp_path):
    """A MACE file read with our defaults: the trainer refuses with the keys it found instead of
    fitting nothing."""
    config = TrainConfig(train=str(mace_file[0]), cache=False, output=str(tmp_path / "out"), progress=False)
    with pytest.raises(InputError) as raised:
        Trainer(config)
    message = str(raised.value)
    assert "no energy labels (info['energy'], data.energy_key)" in message
    assert "REF_energy" in message and "set data.energy_key" in message


def test_training_from_a_mace_style_file_through_a_yaml_config(mace_file, tmp_path, capsys):
    path, emt = mace_file
    hyper = atomml.models.tiny_hyperparameters("tensornet", [29, 79])
    (tmp_path / "c.yaml").write_text(
        f"model: {{architecture: tensornet, hyperparameters: {json.dumps(hyper)}}}\n"
        f"data: {{train: {path}, valid_fraction: 0.25, energy_key: REF_energy, forces_key: REF_forces, "
        "stress_key: REF_stress, charge_key: total_charge}\n"
        "loss: {stress_weight: 10.0}\n"
        "optimizer: {batch_size: 3}\n"
        "stop: {max_steps: 2}\n"
        f"run: {{output: {tmp_path / 'out'}, progress: false, dtype: float64}}\n"
    )
    trainer = Trainer(TrainConfig.from_yaml(tmp_path / "c.yaml"))
    assert np.isfinite(trainer.train_data.energy).all() and np.isfinite(trainer.train_data.stress).all()
    report = trainer.fit()
    assert report["steps"] == 2 and np.isfinite(report["test"]["valid"]["force_mae_meV_per_A"])
    assert "labels:       energy 6/6 [REF_energy], forces 6/6 [REF_forces], stress 6/6 [REF_stress]" in capsys.readouterr().err
