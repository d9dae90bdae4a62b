"""MD that blows up stops with a clear error and keeps its frames; drift only where it means
something; frames that other tools read (issue 15, items 3 and 5; ASE engine: the OpenMM engine
is in tests/integration/test_md_outputs.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT
from ase.io import read

from atomml.cli import main
from atomml.dynamics import MDSettings, run_md
from atomml.dynamics.frames import UnstableRunError
from atomml.errors import AtomMLError, InputError
from atomml.interfaces.ase import AtomMLCalculator
from atomml.models import create


def _cu():
    return bulk("Cu", cubic=True) * (2, 2, 2)


def _record(trajectory):
    return json.loads(trajectory.with_name(trajectory.name + ".state.json").read_text())


def _kept(error: pytest.ExceptionInfo) -> int:
    return int(re.search(r"keep the frames up to step (\d+)", str(error.value)).group(1))


class _NaNAfter(EMT):
    """EMT whose forces turn to NaN after ``calls`` evaluations (a potential that breaks)."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls = calls

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls -= 1
        if self.calls < 0:
            self.results["forces"] = np.full_like(self.results["forces"], np.nan)


class _RefusesAfter(EMT):
    """EMT that refuses the structure after ``calls`` evaluations, as atomml's potentials refuse
    overlapping atoms or non-finite coordinates."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls = calls

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        self.calls -= 1
        if self.calls < 0:
            raise InputError("atoms 1 and 2 are 0.05 Å apart (overlapping atoms): fix the structure")
        super().calculate(atoms, properties, system_changes)


class _Committee(EMT):
    """EMT that reports a committee's force spread (eV/Å per atom), as committees will."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results["forces_std"] = np.full(len(self.atoms), 0.3)


def test_a_blown_up_run_stops_and_keeps_the_frames_before_it(tmp_path):
    """Cu at 300 K with a 35 fs step (velocity Verlet is unstable beyond ~1/3 of the shortest
    vibrational period, ~150 fs in Cu) heats without bound: the run stops above
    max(5 x 300, 300 + 2000) = 2300 K."""
    settings = MDSettings(ensemble="nve", temperature=300.0, timestep_fs=35.0, steps=500, interval=5)
    traj = tmp_path / "md.extxyz"
    with pytest.raises(UnstableRunError, match=r"blew up at step \d+: the temperature reached \d+ K, above the limit of 2300 K") as error:
        run_md(_cu(), EMT(), settings, traj, progress=False)
    assert isinstance(error.value, AtomMLError)  # the CLI prints it as one line
    kept = _kept(error)
    assert int(re.search(r"at step (\d+)", str(error.value)).group(1)) > kept
    frames = read(traj, index=":")
    assert [frame.info["step"] for frame in frames] == list(range(0, kept + 1, 5))
    log = np.loadtxt(traj.with_suffix(".log"))
    assert len(log) == len(frames) and (log[:, 5] <= 2300).all()
    assert _record(traj)["step"] == kept  # resuming starts from the last good frame
    with pytest.raises(UnstableRunError):  # and blows up again, rather than carrying on
        run_md(_cu(), EMT(), settings, traj, progress=False)


def test_the_same_run_with_a_higher_limit_resumes_past_it(tmp_path):
    """The limit is a stopping rule, not part of the run: raising it resumes the same output."""
    settings = MDSettings(ensemble="nve", temperature=300.0, timestep_fs=35.0, steps=500, interval=5)
    traj = tmp_path / "md.extxyz"
    with pytest.raises(UnstableRunError) as error:
        run_md(_cu(), EMT(), settings, traj, progress=False)
    higher = MDSettings(**{**settings.__dict__, "max_temperature": 1e12, "steps": _kept(error) + 3})
    assert run_md(_cu(), EMT(), higher, traj, progress=False).resumed_from == _kept(error)


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_non_finite_forces_stop_the_run(tmp_path, ensemble):
    settings = MDSettings(ensemble=ensemble, timestep_fs=2.0, steps=50, interval=10)
    traj = tmp_path / "md.extxyz"
    with pytest.raises(UnstableRunError, match="blew up at step 24: the energy or forces are not finite") as error:
        run_md(_cu(), _NaNAfter(calls=24), settings, traj, progress=False)  # 24 calls: steps 0..23
    assert _kept(error) == 20
    assert [frame.info["step"] for frame in read(traj, index=":")] == [0, 10, 20]


def test_a_structure_the_potential_refuses_mid_run_is_a_blow_up(tmp_path):
    """Not "fix the structure": the structure was fine at step 0, the dynamics broke it."""
    settings = MDSettings(ensemble="nve", timestep_fs=2.0, steps=50, interval=10)
    traj = tmp_path / "md.extxyz"
    with pytest.raises(UnstableRunError, match=r"blew up between step 20 and step 30: the potential refused the "
                       r"structure it reached \(atoms 1 and 2 are 0.05 Å apart") as error:  # fmt: skip
        run_md(_cu(), _RefusesAfter(calls=24), settings, traj, progress=False)
    assert _kept(error) == 20 and _record(traj)["step"] == 20


def test_a_committee_spread_above_the_limit_stops_the_run(tmp_path):
    """The hook for committees (``forces_std`` in the calculator's results, as
    docs/conventions name it): checked where a limit is set, ignored otherwise."""
    settings = MDSettings(ensemble="nvt", timestep_fs=2.0, steps=10, interval=5, max_forces_std=0.1)
    with pytest.raises(UnstableRunError, match=r"committee's force spread reached 0.3 eV/Å, above max_forces_std = 0.1"):
        run_md(_cu(), _Committee(), settings, tmp_path / "a.extxyz", progress=False)
    unlimited = MDSettings(**{**settings.__dict__, "max_forces_std": None})
    assert run_md(_cu(), _Committee(), unlimited, tmp_path / "b.extxyz", progress=False).steps_done == 10


def test_stopping_rules_must_be_positive():
    with pytest.raises(ValueError, match="max_temperature must be positive"):
        MDSettings(max_temperature=0)
    with pytest.raises(ValueError, match="max_forces_std must be positive"):
        MDSettings(max_forces_std=-1.0)


@pytest.mark.parametrize("ensemble, reported", [("nve", True), ("nvt", False)])
def test_energy_drift_is_reported_for_nve_only(tmp_path, ensemble, reported):
    settings = MDSettings(ensemble=ensemble, timestep_fs=2.0, steps=30, interval=5)
    result = run_md(_cu(), EMT(), settings, tmp_path / "md.extxyz", progress=False)
    assert (result.energy_drift_eV_per_atom_per_ps is not None) == reported
    assert ("energy_drift_eV_per_atom_per_ps" in result.summary()) == reported


def test_cli_prints_a_blow_up_as_one_line_and_fails(tmp_path, capsys):
    structure = tmp_path / "cu.xyz"
    _cu().write(structure)
    out = tmp_path / "md.extxyz"
    argv = ["md", str(structure), "-p", "schnet-cu-emt-demo", "--ensemble", "nve", "--timestep", "35", "--steps", "500",
            "--interval", "5", "-o", str(out), "--no-progress", "--threads", "1", "--dtype", "float64"]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 2
    finally:
        torch.set_num_threads(threads)
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 2  # the banner and the error
    assert error[1].startswith("atomml md: error: the run blew up at step") and "keep the frames up to step" in error[1]
    assert len(read(out, index=":")) >= 1


# --- frames that other tools read ---------------------------------------------------------------


def test_frames_carry_the_energy_and_forces_of_the_potential(tmp_path):
    """Read back with plain ASE: each frame's energy and forces equal the potential's at that
    frame's positions (computed anew), and the log's energy; NVT's FixCom does not alter them."""
    torch.manual_seed(0)
    potential = create("schnet", elements=[29], cutoff=4.0, n_atom_basis=8, n_filters=8, n_interactions=1, n_rbf=6)
    potential.energy_scale.fill_(0.05)
    calc = AtomMLCalculator(potential, device="cpu", dtype=torch.float64, skin=0.0)
    settings = MDSettings(ensemble="nvt", timestep_fs=2.0, steps=20, interval=10)
    traj = tmp_path / "md.extxyz"
    run_md(_cu(), calc, settings, traj, progress=False)
    frames = read(traj, index=":")
    log = np.loadtxt(traj.with_suffix(".log"))
    assert len(frames) == 3
    fresh = AtomMLCalculator(potential, device="cpu", dtype=torch.float64, skin=0.0)
    for frame, line in zip(frames, log):
        energy, forces = frame.get_potential_energy(), frame.get_forces()
        assert energy == pytest.approx(line[2], abs=1e-7)
        atoms = frame.copy()
        atoms.calc = fresh
        np.testing.assert_allclose(forces, atoms.get_forces(), atol=1e-5)  # positions are stored to 1e-8 Å
        assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-5)
