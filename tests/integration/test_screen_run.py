"""``atomml screen`` end to end: a two-worker local Dask cluster on a mixed set with bad inputs,
a worker killed mid-run, a whole run killed with SIGKILL and run again, and the table checked
row by row against a plain loop of ASE's FIRE over ``AtomMLCalculator``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import molecule

import atomml
from atomml.screen import report, run
from atomml.screen.inputs import smiles_to_atoms

pytest.importorskip("distributed")

POTENTIAL = "tensornet-organic-gfn2"
SMILES = [("CCO", "ethanol"), ("CC(=O)[O-]", "acetate"), ("C1CC1N(", "broken"), ("c1ccccc1", "benzene"),
          ("[Si](C)(C)(C)C", "tetramethylsilane"), ("CN", "methylamine")]  # fmt: skip
EXPECTED = {"broken": "bad_input", "tetramethylsilane": "unknown_element", "overlap": "overlapping_atoms",
            "nan": "invalid_geometry"}  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("inputs")
    smi = folder / "mols.smi"
    smi.write_text("# SMILES id\n" + "".join(f"{s} {i}\n" for s, i in SMILES))
    water = molecule("H2O")
    overlap = molecule("CH4")
    overlap.positions[1] = overlap.positions[0] + [0.02, 0, 0]
    nan = molecule("NH3")
    nan.positions[0, 0] = np.nan
    frames = []
    for name, atoms in (("water", water), ("overlap", overlap), ("nan", nan)):
        atoms.info["id"] = name
        frames.append(atoms)
    xyz = folder / "frames.extxyz"
    import ase.io

    ase.io.write(xyz, frames, format="extxyz")
    return [smi, xyz]


def _structure(row_id: str, inputs: list[Path]) -> Atoms:
    smiles = dict((i, s) for s, i in SMILES)
    if row_id in smiles:
        return smiles_to_atoms(smiles[row_id], seed=0)
    import ase.io

    return next(a for a in ase.io.read(inputs[1], index=":") if a.info["id"] == row_id)


_PLAIN: dict = {}


def _plain_relax(row_id: str, inputs: list[Path], fmax: float):
    """ASE's FIRE over AtomMLCalculator for one structure (kept: both tests compare with it)."""
    if (row_id, fmax) not in _PLAIN:
        _PLAIN[row_id, fmax] = atomml.relax(_structure(row_id, inputs), POTENTIAL, fmax=fmax, steps=200, cell=False)
    return _PLAIN[row_id, fmax]


def _check_against_plain_loop(results: pd.DataFrame, inputs: list[Path], fmax: float) -> None:
    """Every row as the plain loop gives it: ASE's FIRE over AtomMLCalculator, one at a time."""
    assert list(results["id"]) == [i for _, i in SMILES] + ["water", "overlap", "nan"]  # input order, once each
    for row in results.itertuples():
        if row.id in EXPECTED:
            assert row.status == EXPECTED[row.id], (row.id, row.message)
            assert row.message and np.isnan(row.energy_eV)
            continue
        ref = _plain_relax(row.id, inputs, fmax)
        assert row.status == "ok" and ref.converged, row.id
        assert row.steps == ref.steps, row.id
        assert row.energy_eV == pytest.approx(ref.energy, abs=5e-6), row.id
        assert row.fmax_eV_per_A == pytest.approx(np.linalg.norm(ref.forces, axis=1).max(), abs=1e-5)
        assert row.fmax_eV_per_A < fmax
        assert row.charge == (-1 if row.id == "acetate" else 0)
        assert np.isnan(row.uncertainty_eV)  # one potential, not a committee


def test_two_workers_with_one_killed_mid_run(inputs, tmp_path):
    from distributed import Client, LocalCluster

    output = tmp_path / "screen"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # fmt: skip
        pids = list(client.run(os.getpid).values())
        result: dict[str, pd.DataFrame] = {}

        def screen() -> None:
            result["table"] = run(inputs, POTENTIAL, task="relax", output=output, client=client, fmax=0.05,
                                  max_steps=200, chunk_size=1, progress=False)  # fmt: skip

        thread = threading.Thread(target=screen)
        thread.start()
        deadline = time.monotonic() + 120
        while not list((output / "chunks").glob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)  # a worker dies with chunks in flight; the nanny restarts it
        thread.join(timeout=300)
        assert not thread.is_alive()
    results = result["table"]
    assert len(list((output / "chunks").glob("*.parquet"))) == len(results)
    _check_against_plain_loop(results, inputs, fmax=0.05)
    stored = pd.read_parquet(output / "results.parquet")
    pd.testing.assert_frame_equal(stored, results)
    import ase.io

    frames = ase.io.read(output / "structures.extxyz", index=":")
    # the final structures of every structure that was screened (those refused up front have none)
    assert [f.info["id"] for f in frames] == list(results.loc[~results["id"].isin(EXPECTED), "id"])
    assert all(f.get_potential_energy() == e for f, e in zip(frames, results["energy_eV"][results["status"] == "ok"]))
    assert (output / "summary.html").exists() and (output / "plots" / "status.png").exists()
    top = report(output, sort="energy_per_atom", top=3)
    assert len(top) == 3 and list(top["energy_per_atom_eV"]) == sorted(top["energy_per_atom_eV"])


def test_sigkill_and_rerun_gives_every_structure_once(inputs, tmp_path):
    output = tmp_path / "screen"
    base = [sys.executable, "-m", "atomml.cli", "screen", *map(str, inputs), "--potential", POTENTIAL, "--task",
            "relax", "--max-steps", "200", "--chunk-size", "2", "--output", str(output), "--workers", "0",
            "--no-progress"]  # fmt: skip (in-process: the resume logic is Dask's or not; the test above kills a worker)
    command = [*base, "--fmax", "0.05"]
    env = {**os.environ, "PYTHONPATH": str(Path(atomml.__file__).parents[1])}
    process = subprocess.Popen(command, env=env, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not list((output / "chunks").glob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, mid-chunk
    process.wait()
    finished = len(list((output / "chunks").glob("*.parquet")))
    assert 1 <= finished < 5 and not (output / "results.parquet").exists()

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "structures (" in rerun.stdout
    results = pd.read_parquet(output / "results.parquet")
    assert list(results["id"]) == [i for _, i in SMILES] + ["water", "overlap", "nan"]
    assert results["id"].is_unique
    _check_against_plain_loop(results, inputs, fmax=0.05)
    # the same command on a changed setting refuses to mix two screenings in one folder
    changed = subprocess.run([*base, "--fmax", "0.01"], env=env, capture_output=True, text=True, timeout=120)
    assert changed.returncode == 2 and "holds another screening" in changed.stderr and "fmax" in changed.stderr


@pytest.mark.slow
def test_random_sigkills_then_rerun(inputs, tmp_path):
    """Killed at random moments three times (the driver, its scheduler and both workers), then run
    to the end: every structure once, with the results of a run that was never killed."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each local worker: the same arithmetic, bit for bit
    try:
        reference = run(inputs, POTENTIAL, task="relax", output=tmp_path / "reference", workers=0, fmax=0.05,
                        max_steps=200, chunk_size=1, progress=False, summary=False)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    output = tmp_path / "screen"
    command = [sys.executable, "-m", "atomml.cli", "screen", *map(str, inputs), "--potential", POTENTIAL, "--task",
               "relax", "--fmax", "0.05", "--max-steps", "200", "--chunk-size", "1", "--output", str(output),
               "--workers", "2", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(atomml.__file__).parents[1])}
    rng = np.random.default_rng(7)
    for _ in range(3):
        process = subprocess.Popen(command, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 12.0))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    results = pd.read_parquet(output / "results.parquet")
    assert list(results["id"]) == list(reference["id"])
    for column in ("status", "steps", "atoms"):
        assert list(results[column]) == list(reference[column]), column
    np.testing.assert_allclose(results["energy_eV"], reference["energy_eV"], atol=1e-9, equal_nan=True)


def test_committee_single_point_and_md_in_process(tmp_path):
    """A committee fills ``uncertainty_eV``; the MD task fills its summary columns."""
    import ase.io

    from atomml.potential_file import load_potential

    frames = [molecule("H2O"), molecule("CH4"), molecule("CH3OH")]
    path = tmp_path / "small.extxyz"
    ase.io.write(path, frames, format="extxyz")
    members = [load_potential(POTENTIAL), load_potential(POTENTIAL)]
    for p in members[1].parameters():
        p.data.mul_(1.001)  # a second, slightly different member
    table = run([path], members, task="single-point", output=tmp_path / "sp", workers=0, progress=False)
    calcs = [atomml.AtomMLCalculator(m) for m in members]
    for row, atoms in zip(table.itertuples(), frames):
        energies = [c.get_potential_energy(atoms) for c in calcs]
        assert row.status == "ok" and row.steps == 0
        assert row.energy_eV == pytest.approx(np.mean(energies), abs=2e-6)
        assert row.uncertainty_eV == pytest.approx(np.std(energies), abs=2e-6) and row.uncertainty_eV > 0
    assert (tmp_path / "sp" / "plots" / "uncertainty.png").exists()

    md = run([path], POTENTIAL, task="md", md_steps=10, temperature_K=300, output=tmp_path / "md", workers=0,
             progress=False, summary=False)  # fmt: skip
    assert list(md["status"]) == ["ok"] * 3 and list(md["steps"]) == [10] * 3
    assert np.isfinite(md[["md_temperature_K", "md_epot_mean_eV", "md_epot_std_eV"]].to_numpy()).all()
