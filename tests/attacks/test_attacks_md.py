"""Attacks on MD output and resume: a second writer, another run's output, a damaged record,
and the exactness of a resumed run (ASE and OpenMM engines)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.io import read, write

from atomml.dynamics import MDSettings, run_md
from atomml.errors import CheckpointError, OutputInUseError, ResumeMismatchError
from atomml.interfaces.ase import AtomMLCalculator
from atomml.models import create
from atomml.potential_file import load_potential, save_potential

NVE = MDSettings(ensemble="nve", timestep_fs=2.0, steps=20, interval=5, seed=1)


def _potential(seed=0, elements=(29,)):
    torch.manual_seed(seed)
    potential = create("schnet", elements=list(elements), cutoff=4.0, n_atom_basis=8, n_filters=8, n_interactions=1, n_rbf=6)
    potential.energy_scale.fill_(0.05)  # a weak random potential keeps this small MD well-behaved
    return potential


def _calc(potential, dtype=torch.float64):
    # skin=0: forces are a function of the positions alone (no neighbour-list history)
    return AtomMLCalculator(potential, device="cpu", dtype=dtype, skin=0.0)


def _cu(repeat=2):
    return bulk("Cu", cubic=True) * (repeat, repeat, repeat)


def _steps(trajectory):
    return [frame.info["step"] for frame in read(trajectory, index=":")]


def _record(trajectory):
    return json.loads(trajectory.with_name(trajectory.name + ".state.json").read_text())


def _half(settings):
    return MDSettings(**{**settings.__dict__, "steps": settings.steps // 2})


# --- one writer per output ------------------------------------------------------------------

HOLDING_RUN = """
import sys, torch
from ase.io import read
from atomml.dynamics import MDSettings, run_md
from atomml.interfaces.ase import AtomMLCalculator

def pause(atoms, step):
    if step == 10:
        print("frame", step, flush=True)
        sys.stdin.readline()

calc = AtomMLCalculator(sys.argv[2], device="cpu", dtype=torch.float64)
settings = MDSettings(ensemble="nve", steps=20, interval=10)
run_md(read(sys.argv[1]), calc, settings, sys.argv[3], progress=False, on_frame=pause)
"""


def test_second_md_process_on_one_output_is_refused_and_the_first_run_stays_whole(tmp_path):
    """Run A holds its run open at step 10; run B (the command line, even with --overwrite)
    starts on the same output: B is refused and touches nothing, A finishes a whole run."""
    structure, potential = tmp_path / "cu.xyz", save_potential(_potential(), tmp_path / "cu.safetensors")
    write(structure, _cu())
    traj = tmp_path / "md.extxyz"
    first = subprocess.Popen([sys.executable, "-c", HOLDING_RUN, str(structure), str(potential), str(traj)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert first.stdout.readline().split() == ["frame", "10"]
        before = traj.read_bytes()
        second = subprocess.run(
            [sys.executable, "-m", "atomml.cli", "md", str(structure), "-p", str(potential), "--ensemble", "nve",
             "--steps", "20", "--interval", "10", "-o", str(traj), "--no-progress", "--dtype", "float64", "--overwrite"],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode != 0
        assert f"is being written by process {first.pid}" in second.stderr
        assert traj.read_bytes() == before
        first.stdin.write("go on\n")
        first.stdin.flush()
        assert first.wait(timeout=120) == 0
    finally:
        first.kill()
        first.wait()
    assert _steps(traj) == [0, 10, 20]
    record = _record(traj)
    assert record["step"] == 20 and record["trajectory_bytes"] == traj.stat().st_size
    assert record["log_bytes"] == traj.with_suffix(".log").stat().st_size


def _wait_until(condition, what, alive=None, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        assert alive is None or alive.poll() is None, f"it stopped while waiting for {what}: {alive.stderr.read()}"
        time.sleep(0.1)


def test_the_same_command_started_twice_at_once_runs_once(tmp_path):
    """The issue's reproduction: two identical ``atomml md`` commands started together on one
    output. One runs, the other is refused while it does; killed and resumed, the run's frames
    follow each other without repeats or gaps."""
    structure, potential = tmp_path / "cu.xyz", save_potential(_potential(), tmp_path / "cu.safetensors")
    write(structure, _cu())
    traj = tmp_path / "md.extxyz"
    cmd = [sys.executable, "-m", "atomml.cli", "md", str(structure), "-p", str(potential), "--steps", "100000",
           "--interval", "5", "-o", str(traj), "--no-progress", "--device", "cpu"]  # fmt: skip
    runs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        _wait_until(lambda: any(run.poll() is not None for run in runs), "one of two runs on one output to be refused")
        refused = next(run for run in runs if run.poll() is not None)
        winner = next(run for run in runs if run is not refused)
        assert refused.returncode != 0 and winner.poll() is None
        assert f"is being written by process {winner.pid}" in refused.stderr.read()
        state = traj.with_name(traj.name + ".state.json")
        _wait_until(lambda: state.exists() and _record(traj)["step"] >= 10, "the running one to reach step 10", winner)
    finally:
        for run in runs:
            run.kill()
            run.wait()
    reached = _record(traj)["step"]
    cmd[cmd.index("100000")] = str(reached + 10)
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert _steps(traj) == list(range(0, reached + 11, 5))


HOLD_LOCK = "import sys, time\nfrom atomml.locks import output_lock\nwith output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"


@pytest.mark.parametrize("engine", ["ase", "openmm"])
def test_md_refuses_an_output_locked_by_another_process_before_touching_it(tmp_path, engine):
    traj = tmp_path / ("md.extxyz" if engine == "ase" else "md.dcd")
    traj.write_bytes(b"another run's frames")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(traj)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputInUseError, match=f"MD trajectory {re.escape(str(traj))} is being written by process {holder.pid}"):
            if engine == "ase":
                run_md(_cu(), EMT(), NVE, traj, restart=False, progress=False)
            else:
                from atomml.dynamics import run_openmm_md

                run_openmm_md(_cu(), _potential(), NVE, traj, restart=False, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert traj.read_bytes() == b"another run's frames"


# --- resuming another run's output ----------------------------------------------------------


def _runs(case):
    """(atoms, calculator, settings) of a reference run, and of a run that differs from it in
    one respect (``case``)."""
    if case in ("potential", "dtype"):
        reference = (_cu(), _calc(_potential()), NVE)
        other = _calc(_potential(seed=1)) if case == "potential" else _calc(_potential(), dtype=torch.float32)
        return reference, (_cu(), other, NVE)
    atoms, settings = _cu(), NVE
    if case == "charge":
        atoms.info["charge"] = 1.0
    elif case == "elements":
        atoms.numbers[::2] = 47  # Ag atoms, same count, same positions
    elif case == "atoms":
        atoms = _cu(3)
    elif case == "positions":
        atoms.positions[0] += 0.1
    elif case == "settings":
        settings = MDSettings(**{**NVE.__dict__, "timestep_fs": 1.0})
    return (_cu(), EMT(), NVE), (atoms, EMT(), settings)


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("potential", "the potential differs"),
        ("dtype", r"the precision differs \(float64 then, float32 now\)"),
        ("charge", r"the total charge differs \(0.0 then, 1.0 now\)"),
        ("elements", "the elements differ"),
        ("atoms", "it was run on a structure of 32 atoms, this one has 108"),
        ("positions", "the starting positions differ"),
        ("settings", r"the MD settings differ \(timestep_fs: 2.0 then, 1.0 now\)"),
    ],
)
def test_resume_refuses_output_of_another_run_and_leaves_it_alone(tmp_path, case, says):
    traj = tmp_path / "md.extxyz"
    (atoms, calc, settings), other = _runs(case)
    run_md(atoms, calc, _half(settings), traj, progress=False)
    before = traj.read_bytes()
    atoms, calc, settings = other
    with pytest.raises(ResumeMismatchError, match=rf"{re.escape(str(traj))} belongs to another run: {says}\. .*--overwrite"):
        run_md(atoms, calc, settings, traj, progress=False)
    assert traj.read_bytes() == before
    run_md(atoms, calc, settings, traj, restart=False, progress=False)  # starting over works
    assert _steps(traj) == [0, 5, 10, 15, 20]


def test_resume_tells_foreign_calculators_apart(tmp_path):
    traj = tmp_path / "md.extxyz"
    run_md(_cu(), EMT(), _half(NVE), traj, progress=False)
    with pytest.raises(ResumeMismatchError, match="the potential differs"):
        run_md(_cu(), LennardJones(sigma=2.3, epsilon=0.4, rc=5.0), NVE, traj, progress=False)
    assert run_md(_cu(), EMT(), NVE, traj, progress=False).resumed_from == 10


def test_resume_accepts_the_same_potential_however_it_is_given(tmp_path):
    """The identity is the potential's content: the object, or the same potential saved and
    loaded again, resume each other's runs."""
    potential = _potential()
    traj = tmp_path / "md.extxyz"
    run_md(_cu(), _calc(potential), _half(NVE), traj, progress=False)
    reloaded = load_potential(save_potential(potential, tmp_path / "p.safetensors"))
    assert run_md(_cu(), _calc(reloaded), NVE, traj, progress=False).resumed_from == 10


# --- damaged records and files --------------------------------------------------------------


def _finished_half_run(tmp_path):
    traj = tmp_path / "md.extxyz"
    run_md(_cu(), EMT(), _half(NVE), traj, progress=False)
    return traj, traj.with_name(traj.name + ".state.json")


def _damage(state, how):
    if how == "garbage":
        state.write_bytes(b"\x00\xff{not json")
    elif how == "step changed":
        state.write_text(state.read_text().replace('"step": 10', '"step": 15'))
    elif how == "positions changed":  # one base64 digit of the float64 bytes
        record = json.loads(state.read_text())
        data = record["state"]["positions"]["float64"]
        record["state"]["positions"]["float64"] = ("B" if data[0] == "A" else "A") + data[1:]
        state.write_text(json.dumps(record))
    elif how == "older format":
        record = json.loads(state.read_text())
        settings = {**NVE.__dict__, "steps": 10}
        state.write_text(json.dumps({"settings": settings, "step": 10, "trajectory_bytes": record["trajectory_bytes"], "log_bytes": record["log_bytes"]}))
    elif how == "not a record":
        state.write_text("[1, 2, 3]")


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("garbage", "the resume state cannot be read"),
        ("step changed", "does not match its checksum, it is damaged"),
        ("positions changed", "does not match its checksum, it is damaged"),
        ("older format", "written by an older atomml"),
        ("not a record", "is not an atomml MD resume state"),
    ],
)
def test_damaged_or_old_resume_record_is_refused_clearly(tmp_path, how, says):
    traj, state = _finished_half_run(tmp_path)
    _damage(state, how)
    with pytest.raises(CheckpointError, match=rf"{says}.*--overwrite"):
        run_md(_cu(), EMT(), NVE, traj, progress=False)


def test_trajectory_shorter_than_its_record_is_refused(tmp_path):
    """A trajectory cut by hand (or replaced) would be 'extended' with zero bytes."""
    traj, _ = _finished_half_run(tmp_path)
    data = traj.read_bytes()
    traj.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"trajectory {re.escape(str(traj))} holds {len(data) // 2} bytes, but the resume state records {len(data)}"):
        run_md(_cu(), EMT(), NVE, traj, progress=False)
    traj.unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        run_md(_cu(), EMT(), NVE, traj, progress=False)


# --- exactness ------------------------------------------------------------------------------


def _keep_last_frame():
    last = {}

    def keep(atoms, step):
        last.update(step=step, positions=atoms.get_positions(), momenta=atoms.get_momenta(), cell=atoms.cell.array.copy())

    return keep, last


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path, ensemble):
    """N steps straight, and N/2 steps (with a half-written frame after them, as a kill
    leaves) resumed to N: the same positions and momenta, to the last bit (float64)."""
    settings = MDSettings(**{**NVE.__dict__, "ensemble": ensemble})
    potential = _potential()
    keep, straight = _keep_last_frame()
    run_md(_cu(), _calc(potential), settings, tmp_path / "straight.extxyz", progress=False, on_frame=keep)
    part = tmp_path / "part.extxyz"
    run_md(_cu(), _calc(potential), _half(settings), part, progress=False)
    with open(part, "a") as f:
        f.write('32\nLattice="half a frame')
    keep, resumed = _keep_last_frame()
    assert run_md(_cu(), _calc(potential), settings, part, progress=False, on_frame=keep).resumed_from == 10
    assert straight["step"] == resumed["step"] == 20
    for key in ("positions", "momenta", "cell"):
        assert np.array_equal(straight[key], resumed[key]), key
    assert part.read_bytes() == (tmp_path / "straight.extxyz").read_bytes()
    assert part.with_suffix(".log").read_text() == (tmp_path / "straight.log").read_text()


# --- the OpenMM engine ------------------------------------------------------------------------


def _openmm_run(potential, settings, traj, precision="double"):
    from atomml.dynamics import run_openmm_md

    return run_openmm_md(_cu(), potential, settings, traj, progress=False, precision=precision, platform="Reference", device="cpu")


def _openmm_state(traj):
    import openmm
    from openmm import unit

    state = openmm.XmlSerializer.deserialize(_record(traj)["state"]["xml"])
    return (state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))  # fmt: skip


def test_openmm_resume_refuses_another_potential_or_precision(tmp_path):
    pytest.importorskip("openmmml")
    traj = tmp_path / "md.dcd"
    _openmm_run(_potential(), _half(NVE), traj)
    before = traj.read_bytes()
    with pytest.raises(ResumeMismatchError, match="belongs to another run: the potential differs"):
        _openmm_run(_potential(seed=1), NVE, traj)
    with pytest.raises(ResumeMismatchError, match=r"the precision differs \(double then, single now\)"):
        _openmm_run(_potential(), NVE, traj, precision="single")
    assert traj.read_bytes() == before
    file = save_potential(_potential(), tmp_path / "p.safetensors")  # the same potential, as a file
    assert _openmm_run(file, NVE, traj).resumed_from == 10


def test_openmm_nve_resume_is_bit_exact(tmp_path):
    """On the Reference platform in double precision a resumed NVE run ends where the
    uninterrupted one does, to the last bit (the XML state carries 17 digits)."""
    pytest.importorskip("openmmml")
    potential = _potential()
    _openmm_run(potential, NVE, tmp_path / "straight.dcd")
    _openmm_run(potential, _half(NVE), tmp_path / "part.dcd")
    assert _openmm_run(potential, NVE, tmp_path / "part.dcd").resumed_from == 10
    for straight, resumed in zip(_openmm_state(tmp_path / "straight.dcd"), _openmm_state(tmp_path / "part.dcd")):
        assert np.array_equal(straight, resumed)
    assert (tmp_path / "part.log").read_text() == (tmp_path / "straight.log").read_text()
