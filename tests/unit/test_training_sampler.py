"""`atomml train` with an SG-MCMC sampler (optimizer.sampler): the kept weights (burn-in,
thinning) become one calibrated committee file; a run killed between checkpoints resumes to
the same samples; the sampler's settings are checked. The samplers' correctness itself is
tested against a closed-form posterior in test_sgmcmc.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import atomml
from atomml.data import Dataset
from atomml.training import TrainConfig, Trainer

SMALL = dict(hidden_channels=8, num_layers=1, num_rbf=8, cutoff=4.0)


@pytest.fixture(scope="module")
def copper() -> Dataset:
    frames = []
    for k in range(16):
        atoms = bulk("Cu", "fcc", a=3.58 + 0.01 * (k % 4), cubic=True)
        atoms.rattle(0.08, seed=k)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        frames.append(atoms)
    return Dataset.from_ase(frames)


def _config(tmp_path: Path, name: str, **changes) -> TrainConfig:
    values = dict(
        architecture="tensornet", hyperparameters=SMALL, valid_fraction=0.25, batch_size=4, lr=1e-3, sampler="psgld",
        temperature=0.1, burn_in=4, thin=2, max_steps=12, checkpoint_every=2, valid_every=6, dtype="float64",
        progress=False, output=str(tmp_path / name),
    )
    values.update(changes)
    return TrainConfig(**values)


@pytest.mark.parametrize("sampler", ["psgld", "sghmc"])
def test_the_kept_samples_are_one_calibrated_committee(copper, tmp_path, sampler, capsys):
    trainer = Trainer(_config(tmp_path, sampler, sampler=sampler, verbose=True), train_data=copper)
    report = trainer.fit()
    assert f"sampler:      {sampler} at temperature 0.1" in capsys.readouterr().err
    committee = atomml.load_potential(report["potential"])
    assert committee.committee_size == 4  # steps 6, 8, 10, 12: after burn-in 4, every 2nd
    kept = trainer.collector.committee()
    for member, state in zip(committee.model.members, kept):
        for name, value in member.state_dict().items():
            assert torch.equal(value, state[name].to(value.dtype)), name
    assert any(not torch.equal(kept[0][name], kept[-1][name]) for name in kept[0])  # the chain moved
    scale = report["calibration"]["scale"]
    assert float(committee.model.std_scale) == pytest.approx(scale) and scale > 0
    calibration = json.loads((tmp_path / sampler / "calibration" / "calibration.json").read_text())
    assert calibration["forces"]["recalibrated"]["scale"] == pytest.approx(scale)
    assert (tmp_path / sampler / "calibration" / "parity_forces.png").exists()
    out = atomml.AtomMLCalculator(committee, device="cpu")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=99)
    assert out.get_property("forces_std", atoms).shape == (4,) and np.isfinite(out.results["energy_std"])


def test_a_killed_sampling_run_resumes_to_the_same_samples(copper, tmp_path):
    straight = Trainer(_config(tmp_path, "straight"), train_data=copper)
    straight.fit()

    class Killed(Exception):
        pass

    def kill(trainer):
        if trainer.state["step"] == 9:  # checkpoints every 2 steps: step 9 is redone, with its noise
            raise Killed

    with pytest.raises(Killed):
        Trainer(_config(tmp_path, "killed"), train_data=copper, on_step=kill).fit()
    resumed = Trainer(_config(tmp_path, "killed"), train_data=copper)
    assert resumed.state["step"] == 8 and len(resumed.collector) == 2
    resumed.fit()
    assert resumed.collector.steps == straight.collector.steps
    for a, b in zip(straight.collector.committee(), resumed.collector.committee()):
        for name in a:
            assert torch.equal(a[name], b[name]), name


def test_sampler_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="'psgld' or 'sghmc'"):
        _config(tmp_path, "x", sampler="sgld")
    with pytest.raises(ValueError, match="keeps 1 samples"):
        _config(tmp_path, "x", max_steps=6, burn_in=4, thin=2)
