"""The trainer: loss goes down, outputs are written, resume is exact, 2 processes == 1 process."""

from __future__ import annotations

import json
import os
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
from atomml.errors import ResumeMismatchError
from atomml.training import TrainConfig, Trainer

SMALL = dict(hidden_channels=8, num_layers=1, num_rbf=8, cutoff=4.0)


@pytest.fixture(scope="module")
def copper() -> Dataset:
    frames = []
    for k in range(24):
        atoms = bulk("Cu", "fcc", a=3.58 + 0.01 * (k % 6), cubic=True) * (2, 2, 2)
        if k % 3 == 0:
            atoms[0].symbol = "Ag"
        atoms.rattle(0.08, seed=k)
        atoms.info["config_type"] = "alloy" if k % 3 == 0 else "pure"
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        frames.append(atoms)
    return Dataset.from_ase(frames)


def _config(tmp_path: Path, name: str, **changes) -> TrainConfig:
    values = dict(
        architecture="tensornet", hyperparameters=SMALL, valid_fraction=0.25, batch_size=6, lr=5e-3, stress_weight=100.0,
        max_steps=12, checkpoint_every=2, valid_every=6, dtype="float64", progress=False, output=str(tmp_path / name),
    )
    values.update(changes)
    return TrainConfig(**values)


# every registered architecture that takes energy terms (a committee takes none: test_committee.py)
@pytest.mark.parametrize("architecture", [a for a in atomml.models.available() if a != "committee"])
def test_every_architecture_trains_with_an_energy_term(architecture, copper, tmp_path):
    """The tiny preset of each architecture, with a ZBL term: a few steps lower the loss, and the
    saved potential (terms included) reloads with the errors the trainer reported."""
    hyper = atomml.models.tiny_hyperparameters(architecture, [29, 47])
    config = _config(tmp_path, architecture, architecture=architecture, hyperparameters=hyper,
                     terms=[{"name": "zbl", "cutoff": 2.0}], max_steps=16, valid_every=16)  # fmt: skip
    trainer = Trainer(config, train_data=copper)
    before = trainer._sharded_errors(trainer.valid_data)
    report = trainer.fit()
    assert report["test"]["valid"]["force_mae_meV_per_A"] < before["force_mae_meV_per_A"]
    saved = atomml.load_potential(Path(config.output) / "potential.safetensors", dtype=torch.float64)
    assert [t["name"] for t in atomml.read_header(Path(config.output) / "potential.safetensors")["energy_terms"]] == ["zbl"]
    again = atomml.training.evaluate(saved, trainer.valid_data)[0]
    assert again["force_mae_meV_per_A"] == pytest.approx(report["test"]["valid"]["force_mae_meV_per_A"], rel=1e-6)


def _max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_loss_decreases_and_outputs_are_written(copper, tmp_path):
    config = _config(tmp_path, "run", max_steps=None, max_epochs=12, valid_every=None, dtype="float32", stress_weight=3000.0,
                     report_by="config_type")
    trainer = Trainer(config, train_data=copper, test_data={"again": copper})
    before = trainer._sharded_errors(trainer.valid_data)
    report = trainer.fit()
    after = report["test"]["valid"]
    assert report["stopped"] == "max_epochs" and report["epochs"] == 12
    assert after["force_mae_meV_per_A"] < 0.5 * before["force_mae_meV_per_A"]
    history = trainer.state["history"]
    assert history[-1]["valid_loss"] < 0.5 * history[0]["valid_loss"]  # the weighted loss that is minimised
    assert after["stress_mae_meV_per_A3"] < before["stress_mae_meV_per_A3"]
    by_type = report["test"]["again"]["by_config_type"]
    assert by_type["alloy"]["structures"] == 8 and by_type["pure"]["structures"] == 16
    mixed = (8 * by_type["alloy"]["force_mae_meV_per_A"] + 16 * by_type["pure"]["force_mae_meV_per_A"]) / 24
    assert mixed == pytest.approx(report["test"]["again"]["force_mae_meV_per_A"])  # all structures have 32 atoms
    out = Path(config.output)
    for name in ("metrics.json", "log.csv", "checkpoint.pt", "parity_valid.png", "parity_again.png", "potential.safetensors"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "parity_valid.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "log.csv").read_text().splitlines()) == 13  # header + one row per epoch
    saved = atomml.load_potential(out / "potential.safetensors")
    assert saved.metadata["test_metrics"]["valid"]["force_mae_meV_per_A"] == pytest.approx(after["force_mae_meV_per_A"])
    # the saved file gives the errors the report claims
    again = atomml.training.evaluate(saved, trainer.valid_data)[0]
    assert again["force_mae_meV_per_A"] == pytest.approx(after["force_mae_meV_per_A"], rel=1e-5)


def test_resume_after_a_kill_is_exact(copper, tmp_path):
    straight = Trainer(_config(tmp_path, "straight"), train_data=copper)
    straight.fit()

    class Killed(Exception):
        pass

    def kill(trainer):
        if trainer.state["step"] == 9:  # between checkpoints (every 2 steps): step 9 is redone
            raise Killed

    with pytest.raises(Killed):
        Trainer(_config(tmp_path, "killed"), train_data=copper, on_step=kill).fit()
    resumed = Trainer(_config(tmp_path, "killed"), train_data=copper)
    assert resumed.state["step"] == 8
    resumed.fit()
    assert _max_difference(straight.potential, resumed.potential) == 0.0
    assert _max_difference(straight.ema, resumed.ema) == 0.0
    assert straight.state["history"] == resumed.state["history"][: len(straight.state["history"])] or all(
        {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
        for a, b in zip(straight.state["history"], resumed.state["history"])
    )


def test_resume_refuses_a_changed_config(copper, tmp_path):
    Trainer(_config(tmp_path, "a", max_steps=2), train_data=copper).fit()
    with pytest.raises(ResumeMismatchError, match="different settings"):
        Trainer(_config(tmp_path, "a", lr=1e-2), train_data=copper)
    (tmp_path / "a" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="damaged"):
        Trainer(_config(tmp_path, "a"), train_data=copper)


def test_same_result_with_seed(copper, tmp_path):
    a = Trainer(_config(tmp_path, "s1", max_steps=4), train_data=copper)
    a.fit()
    b = Trainer(_config(tmp_path, "s2", max_steps=4), train_data=copper)
    b.fit()
    assert _max_difference(a.potential, b.potential) == 0.0


def test_second_stage_starts_from_the_first(copper, tmp_path):
    first = Trainer(_config(tmp_path, "stage1", max_steps=4), train_data=copper)
    first.fit()
    saved = tmp_path / "stage1" / "potential.safetensors"
    second = Trainer(_config(tmp_path, "stage2", init_from=str(saved), lr=1e-3), train_data=copper)
    assert _max_difference(second.potential, atomml.load_potential(saved)) == 0.0
    assert second.potential.metadata["initialised_from"] == saved.name  # outside the working directory: the name
    with pytest.raises(ValueError, match="differ"):
        Trainer(_config(tmp_path, "bad", init_from=str(saved), hyperparameters={**SMALL, "hidden_channels": 16}), train_data=copper)


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_saved_metadata_holds_no_absolute_paths(copper, tmp_path, monkeypatch):
    """Defect 6 of issue 13: `atomml info` showed the training machine's absolute paths. Paths
    under the working directory are stored relative to it; others by file name only."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "data").mkdir(parents=True)
    elsewhere.mkdir()
    copper.write(project / "data" / "cu.extxyz")
    copper.subset(np.arange(4)).write(elsewhere / "extra.extxyz")
    (project / "cfg.yaml").write_text(
        "model: {architecture: tensornet, hyperparameters: {hidden_channels: 8, num_layers: 1, num_rbf: 8, cutoff: 4.0}}\n"
        f"data: {{train: data/cu.extxyz, valid_fraction: 0.25, test_sets: {{extra: {elsewhere / 'extra.extxyz'}}}}}\n"
        "optimizer: {batch_size: 6}\n"
        "stop: {max_steps: 2}\n"
        f"run: {{output: {project / 'runs' / 'first'}, progress: false}}\n"
    )
    monkeypatch.chdir(project)
    first = Trainer(TrainConfig.from_yaml("cfg.yaml"))
    assert Path(first.config.train).is_absolute()  # resolved against the config's folder to read it
    first.fit()
    header = atomml.read_header(project / "runs" / "first" / "potential.safetensors")
    absolute = [s for s in _strings(header["metadata"]) if os.path.isabs(s)]
    assert not absolute, f"absolute paths in the potential's metadata: {absolute}"
    stored = header["metadata"]["training_config"]
    assert stored["train"] == os.path.join("data", "cu.extxyz")
    assert stored["test_sets"] == {"extra": "extra.extxyz"}
    assert stored["output"] == os.path.join("runs", "first")
    staged = Trainer(_config(tmp_path, "stage2", init_from=str(project / "runs" / "first" / "potential.safetensors")),
                     train_data=copper)
    assert staged.potential.metadata["initialised_from"] == os.path.join("runs", "first", "potential.safetensors")


def test_config_yaml_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {architecture: tensornet, hidden: 3}\n")
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ValueError, match="cosine"):
        TrainConfig(scheduler="cosine")


def test_shipped_presets_parse():
    presets = sorted(Path(atomml.resources.resource_folder("potentials")).glob("*.yaml"))
    assert presets, "no training presets in potentials/"
    for path in presets:
        config = TrainConfig.from_yaml(path)
        assert config.architecture in atomml.models.ARCHITECTURES


def test_two_processes_match_one(copper, tmp_path):
    """torchrun with 2 gloo processes takes the same steps as 1 process (same global batch)."""
    copper.write(tmp_path / "cu.extxyz")
    (tmp_path / "cfg.yaml").write_text(
        "model: {architecture: tensornet, hyperparameters: {hidden_channels: 8, num_layers: 1, num_rbf: 8, cutoff: 4.0}}\n"
        "data: {train: cu.extxyz, valid_fraction: 0.25}\n"
        "loss: {stress_weight: 100.0}\n"
        "optimizer: {batch_size: 6, lr: 0.005}\n"
        "stop: {max_steps: 6}\n"
        "run: {dtype: float64, valid_every: 3, progress: false}\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "atomml.cli", "train", "cfg.yaml", "--no-progress"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517", "-m", "atomml.cli"]
    one = subprocess.run([*cli, "-o", "one"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([*torchrun, *cli[3:], "-o", "two"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    report = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert report["processes"] == 2 and report["steps"] == 6
    a = atomml.load_potential(tmp_path / "one" / "potential.safetensors")
    b = atomml.load_potential(tmp_path / "two" / "potential.safetensors")
    # the same arithmetic up to the order of the gradient sum (float64 round-off)
    assert _max_difference(a, b) < 1e-12
    assert np.isclose(report["test"]["valid"]["force_mae_meV_per_A"],
                      json.loads((tmp_path / "one" / "metrics.json").read_text())["test"]["valid"]["force_mae_meV_per_A"], rtol=1e-9)


def test_the_run_tells_the_user_what_it_does(copper, tmp_path, capsys, monkeypatch):
    """Issue 15, item 6: a start-up summary, a line per validation in the units of metrics.json,
    a progress bar with its total, the training loss in log.csv and a learning-curve PNG; the
    plots' titles carry the metrics file's numbers and units."""
    from matplotlib.axes import Axes

    titles: list[str] = []
    original = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda ax, text, *a, **k: (titles.append(text), original(ax, text, *a, **k))[1])
    sums = {}
    config = _config(tmp_path, "told", max_steps=4, valid_every=2, progress=True)
    trainer = Trainer(config, train_data=copper, on_step=lambda t: sums.__setitem__(t.state["step"], t.state["loss_sum"]))
    report = trainer.fit()
    err = capsys.readouterr().err
    parameters = sum(p.numel() for p in trainer.potential.parameters())
    cu, ag = trainer.potential.atomic_energies.tolist()
    for line in (f"tensornet, {parameters:,} parameters, float64, device cpu, {torch.get_num_threads()} CPU threads",
                 "structures:   train 18 (576 atoms), valid 6 (192 atoms)", "elements:     Cu Ag",
                 f"reference energies (eV, least squares on the training set): Cu {cu:.4f}, Ag {ag:.4f}",
                 "budget:       stop at the first of 4 steps, 1000 epochs of 3 steps", "4/4"):  # fmt: skip
        assert line in err, line
    history = trainer.state["history"]
    assert [row["step"] for row in history] == [2, 4]
    last = history[-1]
    assert (f"step 4 (epoch 1): valid energy MAE {last['energy_mae_meV_per_atom']:.3g} meV/atom, force MAE "
            f"{last['force_mae_meV_per_A']:.3g} meV/Å, stress MAE {gpa(last['stress_mae_meV_per_A3']):.3g} GPa") in err
    # the training loss of a row is the mean over the steps since the validation before
    assert history[0]["train_loss"] == pytest.approx(sums[2] / 2) and history[1]["train_loss"] == pytest.approx(sums[4] / 2)
    out = Path(config.output)
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    assert {"train_loss", "energy_rmse_meV_per_atom", "force_rmse_meV_per_A"} <= set(header)
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    valid = report["test"]["valid"]
    assert f"energy MAE {valid['energy_mae_meV_per_atom']:.3g} meV/atom" in titles
    assert f"force MAE {valid['force_mae_meV_per_A']:.3g} meV/Å" in titles
    assert f"stress MAE {gpa(valid['stress_mae_meV_per_A3']):.3g} GPa" in titles
    assert {"valid energy error (meV/atom)", "valid force error (meV/Å)", "valid stress error (meV/Å³)"} <= set(titles)


def gpa(mev_per_a3: float) -> float:
    """meV/Å³ to GPa with ASE's own unit (independent of atomml.units)."""
    import ase.units

    return mev_per_a3 * 1e-3 / ase.units.GPa


def test_progress_bar_total_from_the_step_epoch_or_time_budget(copper, tmp_path):
    from atomml.training.console import Progress

    def bar(**limits):
        trainer = Trainer(_config(tmp_path, "bar", **{"max_steps": None, **limits}), train_data=copper)
        progress = Progress(trainer, enabled=True)
        total, unit = progress.bar.total, progress.bar.unit
        progress.close()
        return total, unit

    assert bar(max_steps=5, max_minutes=3.0) == (5, "step")
    assert bar(max_epochs=4) == (4 * 3, "step")  # 18 training structures, batches of 6
    assert bar(max_minutes=1.2) == (72, "s")  # a time budget: the bar runs over seconds, its ETA is the time left


def test_default_threads_are_the_cpus_the_process_may_use(copper, tmp_path, monkeypatch):
    import atomml.threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(atomml.threads, "available_cpus", lambda *a: 1)
        Trainer(_config(tmp_path, "t1"), train_data=copper)
        assert torch.get_num_threads() == 1
        Trainer(_config(tmp_path, "t2", threads=2), train_data=copper)
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(atomml.training.trainer, "available_cpus", lambda *a: 4)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: the CPUs are shared among the processes
        Trainer(_config(tmp_path, "t3"), train_data=copper)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
