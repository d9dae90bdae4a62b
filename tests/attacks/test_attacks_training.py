"""Attacks on training runs: damaged checkpoints, checkpoints of another run, two runs on one
output folder (issue 14, items 1, 2 and 3)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import atomml
from atomml.data import Dataset
from atomml.errors import (
    AtomMLError,
    CheckpointError,
    OutputInUseError,
    ResumeMismatchError,
)
from atomml.locks import owner
from atomml.training import TrainConfig, Trainer

HOLD = "import sys, time\nfrom atomml.locks import output_lock\nwith output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"


def _copper(energy_shift: float = 0.0) -> Dataset:
    frames = []
    for k in range(8):
        atoms = bulk("Cu", "fcc", a=3.58 + 0.01 * k, cubic=True) * (2, 1, 1)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        e, f = atoms.get_potential_energy() + energy_shift, atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
        frames.append(atoms)
    return Dataset.from_ase(frames)


@pytest.fixture(scope="module")
def copper() -> Dataset:
    return _copper()


def _config(output: Path, **changes) -> TrainConfig:
    hyper = atomml.models.tiny_hyperparameters("tensornet", [29])
    return TrainConfig(**{
        "architecture": "tensornet", "hyperparameters": hyper, "valid_fraction": 0.25, "batch_size": 3, "max_steps": 2,
        "checkpoint_every": 1, "dtype": "float64", "progress": False, "output": str(output), **changes,
    })  # fmt: skip


@pytest.fixture(scope="module")
def finished(copper, tmp_path_factory) -> Trainer:
    """A finished 2-step run (made once)."""
    trainer = Trainer(_config(tmp_path_factory.mktemp("finished") / "run"), train_data=copper)
    trainer.fit()
    return trainer


@pytest.fixture
def trained(finished, copper, tmp_path) -> Trainer:
    """The finished run with its checkpoint copied to a folder of this test's own (the
    checkpoint does not depend on the folder), for the attacks to damage."""
    (tmp_path / "run").mkdir()
    shutil.copy(_checkpoint(finished), tmp_path / "run" / "checkpoint.pt")
    return Trainer(_config(tmp_path / "run"), train_data=copper)


def _checkpoint(trainer: Trainer) -> Path:
    return Path(trainer.config.output) / "checkpoint.pt"


# -- item 3: integrity ----------------------------------------------------------------------------
def test_a_flipped_byte_inside_a_weight_is_refused(trained, copper):
    path = _checkpoint(trained)
    raw = bytearray(path.read_bytes())
    name, weight = max(trained.potential.state_dict().items(), key=lambda item: item[1].numel())
    data = weight.detach().cpu().contiguous().numpy().tobytes()
    at = raw.find(data)
    assert at >= 0, f"the bytes of {name} are not stored verbatim"
    raw[at + len(data) // 2 + 7] ^= 0x40  # one bit of one byte in the middle of the tensor
    path.write_bytes(bytes(raw))
    # the attack is real: torch loads the damaged file without complaint, and a weight changed
    loaded = torch.load(path, weights_only=True)["model"][name]
    assert not torch.equal(loaded.cpu(), weight.cpu())
    with pytest.raises(CheckpointError, match="damaged.*checksum") as info:
        Trainer(_config(path.parent), train_data=copper)
    assert str(path) in str(info.value) and "delete it" in str(info.value)


def test_an_edited_step_in_the_saved_state_is_refused(trained, copper):
    path = _checkpoint(trained)
    data = torch.load(path, weights_only=True)
    state = json.loads(data["state"])
    assert state["step"] == 2
    data["state"] = json.dumps({**state, "step": 9})  # saved again without a new checksum
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="checksum"):
        Trainer(_config(path.parent), train_data=copper)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign"])
def test_truncated_garbage_or_foreign_files_are_checkpoint_errors(trained, copper, damage):
    path = _checkpoint(trained)
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save({"model": {}}, path)  # a readable torch file that is not an atomml checkpoint
    with pytest.raises(CheckpointError, match=str(path)) as info:
        Trainer(_config(path.parent), train_data=copper)
    assert isinstance(info.value, AtomMLError) and isinstance(info.value, RuntimeError)  # old except clauses still work
    assert "delete it" in str(info.value)


def test_an_intact_checkpoint_resumes_where_it_stopped(finished, trained):
    """The checksum refuses nothing intact: the weights, EMA, optimiser and state come back
    exactly (tests/unit/test_training.py checks that the resumed run equals an uninterrupted one)."""
    assert trained.state == {**finished.state, "stopped": ""}  # max_steps was the last invocation's limit
    for part in ("potential", "ema"):
        for (name, a), b in zip(getattr(finished, part).state_dict().items(), getattr(trained, part).state_dict().values()):
            assert torch.equal(a, b), (part, name)
    saved, loaded = finished.optimizer.state_dict()["state"], trained.optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k]["exp_avg"], loaded[k]["exp_avg"]) for k in saved)


# -- item 2 for training: a checkpoint of another run -------------------------------------------
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"dtype": "float32"}, "settings"),
        ({"hyperparameters": {**atomml.models.tiny_hyperparameters("tensornet", [29]), "cutoff": 4.0}}, "settings"),
        ({"train_data": "other energies"}, "training or validation data"),
        ({"train_data": "other elements"}, "training or validation data"),
    ],
    ids=["dtype", "hyperparameters", "data", "elements"],
)
def test_a_checkpoint_of_another_run_is_refused(trained, copper, change, named):
    """The config file names no data when the data are given in Python: before, another data
    set (other labels, other elements) resumed the old run silently."""
    change = dict(change)
    data = {None: copper, "other energies": _copper(energy_shift=0.1)}.get(change.pop("train_data", None))
    if data is None:
        data = _copper()
        data.numbers[::5] = 47  # some Cu become Ag
    output = _checkpoint(trained).parent
    with pytest.raises(ResumeMismatchError, match=f"different .*{named}.*start afresh"):
        Trainer(_config(output, **change), train_data=data)


# -- item 1 for training: one run per output folder ---------------------------------------------
def _holder(output: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_training_into_a_folder_another_process_writes_is_refused(copper, tmp_path):
    output = tmp_path / "run"
    proc = _holder(output)
    try:
        with pytest.raises(OutputInUseError, match=rf"training folder {output} is being written by process {proc.pid}"):
            Trainer(_config(output), train_data=copper)
        assert not output.exists(), "nothing may be written into a folder another run owns"
    finally:
        proc.kill()
        proc.wait()


def test_the_command_refuses_a_second_training_on_one_folder(copper, tmp_path):
    copper.write(tmp_path / "cu.extxyz")
    (tmp_path / "cfg.yaml").write_text(
        "model: {architecture: tensornet, hyperparameters: {hidden_channels: 8, num_layers: 1, num_rbf: 8, cutoff: 4.0}}\n"
        "data: {train: cu.extxyz, valid_fraction: 0.25}\noptimizer: {batch_size: 3}\nstop: {max_steps: 2}\n"
    )
    proc = _holder(tmp_path / "run")
    try:
        second = subprocess.run([sys.executable, "-m", "atomml.cli", "train", "cfg.yaml", "-o", "run", "--no-progress"],
                                cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                                timeout=120, check=False)  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
    assert second.returncode != 0
    assert f"is being written by process {proc.pid}" in second.stderr
    assert not (tmp_path / "run").exists()


def test_fit_holds_the_folder_for_the_whole_run(copper, tmp_path):
    seen = []
    trainer = Trainer(_config(tmp_path / "run"), train_data=copper, on_step=lambda t: seen.append(owner(t.output)))
    assert owner(tmp_path / "run") is None  # a Trainer that is not fitting holds nothing
    trainer.fit()
    assert [record["pid"] for record in seen] == [os.getpid()] * 2
    assert owner(tmp_path / "run") is None


def test_a_checkpoint_replaced_after_it_was_read_is_not_overwritten(copper, tmp_path):
    """Two Trainers made on one folder, fitted one after the other: the second must not go on
    from the state it read before the first wrote its checkpoint."""
    early = Trainer(_config(tmp_path / "run"), train_data=copper)
    Trainer(_config(tmp_path / "run"), train_data=copper).fit()
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="written by another run after this Trainer read it"):
        early.fit()
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    np.testing.assert_equal(Trainer(_config(tmp_path / "run"), train_data=copper).state["step"], 2)
