"""Attacks on free-energy legs: two processes on one leg, a leg resumed or summarised with
another molecule, protocol or potential, legs sharing one set-up (issue 14, items 1 and 2).

The legs here are methane's vacuum legs on OpenMM's Reference platform: a second each."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from atomml.errors import OutputInUseError, ResumeMismatchError
from atomml.fe.hydration import HydrationProtocol, leg_setups, run_leg, summarise
from atomml.fe.mlmm import EndStateProtocol, ml_leg_identity, run_ml_leg
from atomml.fe.sampling import sample_windows
from atomml.locks import owner

openmm = pytest.importorskip("openmm")
pytest.importorskip("rdkit")
pytest.importorskip("pymbar")

HOLD = ("import sys, time\nfrom atomml.locks import output_lock\nwith output_lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n    time.sleep(float(sys.argv[2]))\nprint(time.time(), flush=True)\n")  # fmt: skip


def _holder(output, seconds: float = 60.0) -> subprocess.Popen:
    """Another process holding ``output``'s lock for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def tiny() -> HydrationProtocol:
    return HydrationProtocol.default(padding=6.0, cutoff_nm=0.7, electrostatics=[1.0, 0.0], sterics=[1.0, 0.5, 0.0],
                                     samples=3, steps_per_sample=10, equilibration_steps=10)  # fmt: skip


@pytest.fixture
def sampled(tmp_path, tiny):
    """A folder whose methane vacuum leg is sampled."""
    assert run_leg("C", tmp_path, "vacuum", tiny, platform="Reference", progress=False)
    return tmp_path


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- item 1: one writer per leg ---------------------------------------------------------------
def test_a_leg_another_process_samples_is_refused_before_anything_is_written(tmp_path, tiny):
    proc = _holder(tmp_path / "vacuum")
    try:
        with pytest.raises(OutputInUseError, match=f"is being written by process {proc.pid}"):
            run_leg("C", tmp_path, "vacuum", tiny, platform="Reference", progress=False)
    finally:
        _stop(proc)
    assert not (tmp_path / "setup").exists() and not (tmp_path / "vacuum").exists()


def _oscillator():
    system = openmm.System()
    system.addParticle(12.0)
    force = openmm.CustomExternalForce("0.5*k*(x^2 + y^2 + z^2)")
    force.addGlobalParameter("k", 200.0)
    force.addParticle(0, [])
    system.addForce(force)
    return system


def _sample(folder, callback=None):
    return sample_windows(_oscillator(), [[0.01, 0.0, 0.0]] * openmm.unit.nanometer, [200.0, 400.0],
                          lambda context, k: context.setParameter("k", k), folder, samples=2, steps_per_sample=5,
                          equilibration_steps=5, platform="Reference", progress=False, callback=callback)  # fmt: skip


def test_a_sampler_holds_its_folder_and_refuses_a_second_writer(tmp_path):
    owners = []
    _sample(tmp_path / "a", callback=lambda done: owners.append(owner(tmp_path / "a")["pid"]))
    assert owners == [os.getpid()] * 4 and owner(tmp_path / "a") is None
    proc = _holder(tmp_path / "b")
    try:
        with pytest.raises(OutputInUseError, match="sampling folder"):
            _sample(tmp_path / "b")
    finally:
        _stop(proc)
    assert not (tmp_path / "b").exists()


def test_legs_side_by_side_wait_for_the_shared_setup(tmp_path, tiny, capfd):
    """A leg that finds another one making the set-up waits for it instead of failing (or
    writing the same files at once)."""
    proc = _holder(tmp_path / "setup", seconds=2.0)
    try:
        leg_setups("C", tmp_path, tiny)
        released = float(proc.stdout.readline())  # when the other process let go of the set-up
    finally:
        _stop(proc)
    assert "waiting" in capfd.readouterr().err
    record = tmp_path / "setup" / "setup.json"
    assert json.loads(record.read_text())["smiles"] == "C"
    assert record.stat().st_mtime >= released, "the set-up was made while another process held it"


# -- item 2: a leg resumed or summarised as another run ----------------------------------------
def test_resuming_a_leg_with_another_schedule_is_refused(sampled, tiny):
    """Before: the same number of states passed the settings check, and a larger ``samples``
    appended samples of other states to the old ones."""
    before = _files(sampled / "vacuum")
    other = dataclasses.replace(tiny, sterics=(1.0, 0.4, 0.0), samples=tiny.samples + 2)
    with pytest.raises(ResumeMismatchError, match=r"differing: identity\.protocol\.sterics.*delete"):
        run_leg("C", sampled, "vacuum", other, platform="Reference", progress=False)
    assert _files(sampled / "vacuum") == before


def test_another_molecule_in_a_folder_with_sampled_legs_is_refused(sampled, tiny):
    """Before: the set-up was made anew for ethane under methane's stored legs."""
    setup = _files(sampled / "setup")
    with pytest.raises(ResumeMismatchError, match=r"identity\.smiles"):
        run_leg("CC", sampled, "vacuum", tiny, platform="Reference", progress=False)
    with pytest.raises(ResumeMismatchError, match="share one set-up"):  # a leg not sampled yet
        run_leg("CC", sampled, "solvent", tiny, platform="Reference", progress=False)
    assert _files(sampled / "setup") == setup
    assert not (sampled / "solvent").exists()


def test_summarising_with_another_protocol_is_refused(sampled, tiny):
    with pytest.raises(ResumeMismatchError, match=r"vacuum holds samples .*identity\.protocol\.temperature"):
        summarise("C", sampled, dataclasses.replace(tiny, temperature=310.0))


def test_an_ml_leg_of_another_potential_is_refused(tmp_path, tiny):
    """The ML leg's record names the potential's weights by their hash: another file is
    refused before the set-up or the mixed system is made."""
    path = EndStateProtocol(samples=2)
    leg = tmp_path / "ml_vacuum"
    leg.mkdir()
    (leg / "run.json").write_text(json.dumps({"identity": ml_leg_identity("C", "tensornet-organic-gfn2", tiny, path)}))
    with pytest.raises(ResumeMismatchError, match=r"identity\.potential_sha256"):
        run_ml_leg("C", "tensornet-metals-emt", tmp_path, "vacuum", tiny, path, platform="Reference", progress=False)
    assert not (tmp_path / "setup").exists()
    # the samples and compile settings are not part of what must match
    same = ml_leg_identity("C", "tensornet-organic-gfn2", tiny, dataclasses.replace(path, samples=9, compile=True))
    assert json.loads(json.dumps(same)) == json.loads((leg / "run.json").read_text())["identity"]
