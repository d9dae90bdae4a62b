"""The OpenMM engine's output opens in other tools (a topology PDB beside the DCD), and a run
that blows up stops clearly (issue 15, items 3 and 5; the ASE engine: tests/unit/test_md_sanity.py)."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from atomml.dynamics import MDSettings
from atomml.dynamics.frames import UnstableRunError

pytest.importorskip("openmmml")

KWARGS = dict(precision="double", platform="Reference", device="cpu", progress=False)


def _cu():
    return bulk("Cu", cubic=True) * (2, 2, 2)


def _dcd(path: Path) -> tuple[int, list[np.ndarray]]:
    """(atoms, frames in Å) of a CHARMM/NAMD DCD file with a unit-cell record, read from its
    documented layout (MDTraj and MDAnalysis are not installed here)."""
    data = path.read_bytes()
    assert data[4:8] == b"CORD" and struct.unpack("<i", data[48:52])[0] == 1  # a unit cell in every frame
    title_bytes = struct.unpack("<i", data[92:96])[0]
    offset = 92 + 4 + title_bytes + 4
    n_atoms = struct.unpack("<3i", data[offset : offset + 12])[1]
    offset += 12
    frames = []
    while offset < len(data):
        offset += 56  # the unit-cell record: 4 + 6 doubles + 4
        xyz = []
        for _ in range(3):
            assert struct.unpack("<i", data[offset : offset + 4])[0] == 4 * n_atoms
            xyz.append(np.frombuffer(data, "<f4", n_atoms, offset + 4))
            offset += 4 * n_atoms + 8
        frames.append(np.stack(xyz, axis=1))
    return n_atoms, frames


def test_openmm_writes_a_topology_that_opens_its_dcd(tmp_path):
    from openmm import app, unit

    from atomml.dynamics.openmm import run_openmm_md

    atoms = _cu()
    settings = MDSettings(ensemble="nvt", timestep_fs=2.0, steps=20, interval=10)
    result = run_openmm_md(atoms, "schnet-cu-emt-demo", settings, tmp_path / "run.dcd", **KWARGS)
    assert result.topology == tmp_path / "run.topology.pdb"
    assert result.summary()["topology"] == str(result.topology)
    assert "energy_drift_eV_per_atom_per_ps" not in result.summary()  # Langevin: no drift to report
    pdb = app.PDBFile(str(result.topology))
    assert [a.element.symbol for a in pdb.topology.atoms()] == atoms.get_chemical_symbols()
    box = np.array(pdb.topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom))
    np.testing.assert_allclose(box, atoms.cell.array, atol=1e-3)
    n_atoms, frames = _dcd(result.trajectory)
    assert n_atoms == len(atoms) and len(frames) == 3
    # the DCD's first frame is the PDB's structure, atom for atom
    np.testing.assert_allclose(frames[0], pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom), atol=2e-3)


def test_openmm_run_that_blows_up_stops_and_keeps_its_frames(tmp_path):
    from atomml.dynamics.openmm import run_openmm_md

    settings = MDSettings(ensemble="nve", timestep_fs=35.0, steps=200, interval=5)
    with pytest.raises(UnstableRunError, match=r"blew up at step \d+") as error:
        run_openmm_md(_cu(), "schnet-cu-emt-demo", settings, tmp_path / "run.dcd", **KWARGS)
    kept = int(re.search(r"keep the frames up to step (\d+)", str(error.value)).group(1))
    log = np.loadtxt(tmp_path / "run.log")
    assert len(log) == len(_dcd(tmp_path / "run.dcd")[1]) == kept // 5 + 1
    assert (log[:, 5] <= settings.temperature_limit()).all()


def test_openmm_force_failure_between_frames_is_a_blow_up(tmp_path):
    """Between two frames the atoms of a 35 fs copper run collide and the potential refuses
    them: the error says the run blew up, not that the input structure is bad."""
    from atomml.dynamics.openmm import run_openmm_md

    settings = MDSettings(ensemble="nve", timestep_fs=35.0, steps=100, interval=50)
    with pytest.raises(UnstableRunError, match=r"blew up between step 0 and step 50: the potential refused the structure"):
        run_openmm_md(_cu(), "schnet-cu-emt-demo", settings, tmp_path / "run.dcd", **KWARGS)
    assert len(np.loadtxt(tmp_path / "run.log", ndmin=2)) == 1  # the frame of step 0 is kept
