"""The atomml command: md (with kill and resume), info, and error reporting."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import read, write

import atomml
from atomml.cli import main
from atomml.dynamics import MDSettings, run_md
from atomml.models import create, tiny_hyperparameters


@pytest.fixture(scope="module")
def potential_file(tmp_path_factory):
    torch.manual_seed(0)
    potential = create("schnet", elements=[29], cutoff=4.0, n_atom_basis=8, n_filters=8, n_interactions=1, n_rbf=6)
    # a weak random potential keeps this small MD well-behaved
    potential.energy_scale.fill_(0.05)
    return atomml.save_potential(potential, tmp_path_factory.mktemp("pot") / "cu.safetensors")


@pytest.fixture
def structure(tmp_path):
    path = tmp_path / "cu.xyz"
    write(path, bulk("Cu", cubic=True) * (2, 2, 2))
    return path


def _steps(trajectory):
    return [frame.info["step"] for frame in read(trajectory, index=":")]


def test_info(potential_file, capsys):
    assert main(["info", str(potential_file)]) == 0
    text = capsys.readouterr().out
    assert "schnet" in text and "Cu" in text and "4.0 Å" in text
    assert "energy terms:  none" in text
    assert main(["info", str(potential_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "schnet"


def test_info_names_energy_terms_and_long_range(tmp_path, capsys):
    potential = create("schnet", elements=[1, 8], terms=[{"name": "zbl", "cutoff": 2.0}, {"name": "coulomb"}],
                       **tiny_hyperparameters("schnet", [1, 8]))  # fmt: skip
    assert main(["info", str(atomml.save_potential(potential, tmp_path / "p"))]) == 0
    text = capsys.readouterr().out
    assert "format version 3" in text and "zbl (cutoff=2.0); coulomb (" in text and "long-range" in text


# An absolute path on POSIX or Windows, anywhere in a string ("/home/...", "C:\\...", "D:/...").
ABSOLUTE_PATH = re.compile(r"(^|[\s'\"(=])(/[\w.-]+/|[A-Za-z]:[\\/])")


@pytest.mark.parametrize("name", sorted(atomml.shipped_potentials()))
def test_shipped_potentials_show_no_absolute_paths(name, capsys):
    """Defect 6 of issue 13: `atomml info` printed the training machine's paths."""
    metadata = json.dumps(atomml.read_header(name)["metadata"])
    assert not ABSOLUTE_PATH.search(metadata), ABSOLUTE_PATH.search(metadata)
    assert main(["info", name]) == 0
    shown = capsys.readouterr().out.splitlines()[1:]  # the first line is this machine's file path
    assert not [line for line in shown if ABSOLUTE_PATH.search(line)]


def test_info_reports_damaged_file(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    assert main(["info", str(bad)]) == 2
    assert "damaged" in capsys.readouterr().err


def test_md_nve_writes_trajectory_and_log(potential_file, structure, tmp_path, capsys):
    traj = tmp_path / "out.extxyz"
    args = ["md", str(structure), "-p", str(potential_file), "--ensemble", "nve", "--steps", "40",
            "--interval", "10", "-o", str(traj), "--no-progress", "--dtype", "float64"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps_done"] == 40 and summary["ns_per_day"] > 0
    assert _steps(traj) == [0, 10, 20, 30, 40]
    log = np.loadtxt(traj.with_suffix(".log"))
    assert log.shape == (5, 6)
    assert np.ptp(log[:, 4]) < 1e-3 * len(read(structure))  # total energy conserved
    assert main(args) == 0  # already complete: nothing is redone
    assert "already complete" in capsys.readouterr().out
    assert _steps(traj) == [0, 10, 20, 30, 40]


def test_resume_continues_the_same_nve_trajectory(potential_file, structure, tmp_path):
    atoms = read(structure)
    settings = MDSettings(ensemble="nve", steps=60, interval=10, timestep_fs=1.0)
    calc = atomml.AtomMLCalculator(str(potential_file), dtype=torch.float64)
    full = run_md(atoms, calc, settings, tmp_path / "full.extxyz", progress=False)
    # a run stopped at step 30, with a half-written frame after it, then resumed
    part = tmp_path / "part.extxyz"
    run_md(atoms, calc, MDSettings(**{**settings.__dict__, "steps": 30}), part, progress=False)
    with open(part, "a") as f:
        f.write("8\nLattice=\"garbage half frame")
    resumed = run_md(atoms, calc, settings, part, progress=False)
    assert resumed.resumed_from == 30
    assert _steps(part) == _steps(full.trajectory) == [0, 10, 20, 30, 40, 50, 60]
    np.testing.assert_allclose(read(part, -1).positions, read(full.trajectory, -1).positions, atol=1e-6)


def test_md_killed_and_resumed(potential_file, structure, tmp_path):
    traj = tmp_path / "killed.extxyz"
    cmd = [sys.executable, "-m", "atomml.cli", "md", str(structure), "-p", str(potential_file), "--steps", "100000",
           "--interval", "5", "-o", str(traj), "--no-progress", "--timestep", "0.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = traj.with_name(traj.name + ".state.json")
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["step"] >= 20:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reached = json.loads(state.read_text())["step"]
    assert reached >= 20, proc.stderr.read().decode()
    cmd[cmd.index("100000")] = str(reached + 20)
    subprocess.run(cmd, check=True, capture_output=True)
    steps = _steps(traj)
    assert steps == list(range(0, reached + 21, 5)), "frames lost or repeated across the kill"


def test_md_reports_bad_structure(potential_file, tmp_path, capsys):
    path = tmp_path / "bad.xyz"
    write(path, bulk("Cu") * (1, 1, 1))
    atoms = read(path)
    atoms.numbers[0] = 8
    write(path, atoms)
    assert main(["md", str(path), "-p", str(potential_file), "--steps", "2", "-o", str(tmp_path / "o.extxyz"), "--no-progress"]) == 2
    assert "does not know element" in capsys.readouterr().err
