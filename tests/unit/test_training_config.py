"""The training config as a user meets it: every key documented (the reference is generated
from the dataclass and checked here), misspelt or misplaced keys and hyperparameters reported
in one line with the likely meant name, a missing data file named by its config key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from atomml.cli import main
from atomml.training import TrainConfig
from atomml.training.config import SECTIONS, check_model, reference_markdown

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "training-config.md"


def test_every_key_has_one_section_a_default_and_a_meaning():
    fields = dataclasses.fields(TrainConfig)
    assert sorted(name for names in SECTIONS.values() for name in names) == sorted(f.name for f in fields)
    for f in fields:
        assert f.metadata["section"] in SECTIONS and len(f.metadata["doc"]) > 10, f.name


def test_the_reference_document_is_current_and_lists_every_key():
    """docs/training-config.md is written by `atomml train --list-keys`; a key added to the
    dataclass without regenerating it fails here."""
    text = DOC.read_text()
    assert text == reference_markdown(), "regenerate: atomml train --list-keys > docs/training-config.md"
    for section, names in SECTIONS.items():
        block = text.split(f"## `{section}`")[1].split("\n## ")[0]
        for name in names:
            assert f"| `{name}` |" in block, (section, name)
    for f in dataclasses.fields(TrainConfig):
        if f.default is not dataclasses.MISSING and f.default not in (None, "", True, False):
            assert f"| `{f.name}` | `{f.default}` |" in text, f.name  # the real default, not a copy
    readme = (ROOT / "README.md").read_text()
    assert "docs/training-config.md" in readme.split("## Data, training and shipped potentials")[1].split("\n## ")[0]


def test_list_keys_prints_the_reference(capsys):
    assert main(["train", "--list-keys"]) == 0
    assert capsys.readouterr().out == reference_markdown()


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("optimizer: {lerning_rate: 0.01}", "unknown key 'lerning_rate' in section 'optimizer'; did you mean 'lr'?"),
        ("optimizer: {learning_rate: 0.01}", "did you mean 'lr'?"),  # MACE's name for it
        ("optim: {lr: 0.01}", "unknown section 'optim'; did you mean 'optimizer'?"),
        ("loss: {lr: 0.01}", "key 'lr' belongs in section 'optimizer', not 'loss'"),
        ("stop: {max_step: 10}", "unknown key 'max_step' in section 'stop'; did you mean 'max_steps'?"),
        ("data: {enery_key: REF_energy}", "did you mean 'energy_key'?"),
        ("run: {zzz: 1}", "unknown key 'zzz' in section 'run'; valid keys: seed, dtype"),
        ("optimizer: {batch_size: sixteen}", "optimizer.batch_size must be a number, got 'sixteen'"),
        ("optimizer: {batch_size: 1.5}", "optimizer.batch_size must be a whole number"),
        ("run: {progress: maybe}", "run.progress must be true or false"),
        ("optimizer: [lr, 0.1]", "config section 'optimizer' must be a mapping"),
        ("optimizer: {lr: 0.1\n", "not valid YAML (line"),
    ],
)
def test_a_bad_key_or_value_is_one_line_naming_it(yaml, message, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml + "\n")
    with pytest.raises(ValueError) as raised:
        TrainConfig.from_yaml(path)
    assert message in str(raised.value)
    assert main(["train", str(path)]) == 2  # through the command: one line, no traceback
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.split("(")[0] in err and "Traceback" not in err


def test_numbers_written_as_yaml_strings_still_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer: {lr: 1e-3, min_lr: 1e-06}\nstop: {max_steps: 10}\n")  # YAML 1.1: strings
    config = TrainConfig.from_yaml(path)
    assert config.lr == 1e-3 and config.min_lr == 1e-6 and config.max_steps == 10


def test_a_misspelt_hyperparameter_or_architecture_is_named_before_data_is_read(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown hyperparameter 'hiden_channels' .*did you mean 'hidden_channels'"):
        check_model(TrainConfig(hyperparameters={"hiden_channels": 8}))
    with pytest.raises(ValueError, match="unknown architecture 'tensornt'; did you mean 'tensornet'"):
        check_model(TrainConfig(architecture="tensornt"))
    check_model(TrainConfig(architecture="schnet", hyperparameters={"cutoff": 4.0, "elements": [29]}))  # valid: no error
    path = tmp_path / "c.yaml"
    path.write_text("model: {hyperparameters: {hiden_channels: 8}}\ndata: {train: missing.extxyz}\n")
    assert main(["train", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'hidden_channels'" in err


def test_a_missing_data_file_names_the_config_key_not_our_generators(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("data: {train: data/mine.extxyz}\n")
    assert main(["train", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "data.train" in err and str(tmp_path / "data" / "mine.extxyz") in err and "config file's folder" in err
    assert "scripts/" not in err and "generate" not in err
