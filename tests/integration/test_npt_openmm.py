"""NPT in the OpenMM engine (Monte Carlo barostats, atomml.dynamics.npt): the cell follows the
pressure, frames carry it, a resumed run continues from the saved cell; and (slow) ASE's MTK
and OpenMM's Monte Carlo barostat give the same density of liquid copper within error."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from atomml.analysis import block_mean_and_error
from atomml.dynamics import MDSettings, run_md

pytest.importorskip("openmm")
pytest.importorskip("openmmml")
from atomml.dynamics.openmm import run_openmm_md  # noqa: E402

POTENTIAL = "tensornet-metals-emt"
KWARGS = dict(precision="double", platform="Reference", progress=False)
# liquid copper as in tests/unit/test_npt.py (the SchNet demo potential: tensornet-metals-emt
# lets two atoms of the liquid fuse at short range)
LIQUID_POTENTIAL = "schnet-cu-emt-demo"
LIQUID_T = 1500.0


def liquid_copper(n_atoms: int = 108):
    """Random copper atoms at about liquid density (13 Å³ per atom) in a cubic cell."""
    from atomml.testing import random_crystal

    return random_crystal([29], n_atoms, seed=4, min_distance=1.9, density=1 / 13.0, skew=0.0)


def mean_and_error(series, blocks: int = 10) -> tuple[float, float]:
    return block_mean_and_error(series, blocks)


def dcd_cell_lengths(path: Path, n_atoms: int) -> np.ndarray:
    """(frames, 3) cell lengths a, b, c in Å from an OpenMM DCD file (its unit-cell records)."""
    data = path.read_bytes()
    frames = struct.unpack("<i", data[8:12])[0]
    frame_size = 56 + 3 * (8 + 4 * n_atoms)
    body = data[len(data) - frames * frame_size :]
    out = []
    for k in range(frames):
        record = struct.unpack("<i6di", body[k * frame_size : k * frame_size + 56])
        out.append((record[1], record[3], record[6]))
    return np.array(out)


@pytest.mark.parametrize("barostat", ["isotropic", "full"])
def test_openmm_npt_moves_the_cell_and_resumes_from_it(barostat, tmp_path):
    """A compressed Cu crystal at 0 bar expands under the Monte Carlo barostat; the DCD frames
    carry the cell, the summary its mean. A resumed run starts from the saved cell: two steps
    after the restart, before the barostat's first move (every 3 steps, counted from the
    restart), its cell is the saved one, not the starting structure's."""
    atoms = bulk("Cu", "fcc", a=3.45, cubic=True).repeat(2)  # compressed, about 4 % below the minimum
    settings = dict(ensemble="npt", temperature=300.0, timestep_fs=2.0, interval=5, seed=2, pressure_bar=0.0,
                    barostat=barostat, barostat_interval=3)  # fmt: skip
    first = run_openmm_md(atoms, POTENTIAL, MDSettings(steps=30, **settings), tmp_path / "a.dcd", **KWARGS)
    lengths = dcd_cell_lengths(tmp_path / "a.dcd", len(atoms))
    assert lengths.shape == (7, 3) and np.allclose(lengths[0], 6.9)
    # expanded towards the minimum: 10 moves, each expansion accepted, each compression refused
    assert lengths[-1].mean() > 6.901
    assert first.mean_volume_A3 == pytest.approx(np.mean(np.prod(lengths, axis=1)), rel=1e-3 if barostat == "full" else 1e-9)
    saved = json.loads((tmp_path / "a.dcd.state.json").read_text())
    assert "<PeriodicBoxVectors>" in saved["state"]["xml"]

    resumed = run_openmm_md(atoms, POTENTIAL, MDSettings(steps=32, **settings), tmp_path / "a.dcd", **KWARGS)
    assert resumed.resumed_from == 30
    after = dcd_cell_lengths(tmp_path / "a.dcd", len(atoms))
    assert after.shape == (8, 3) and np.array_equal(after[:7], lengths)
    np.testing.assert_allclose(after[7], lengths[-1], rtol=1e-12)  # the saved cell, not 6.9 Å
    assert resumed.mean_cell_lengths_A == pytest.approx(after[7].tolist(), rel=1e-6 if barostat == "full" else 1e-12)


def test_openmm_npt_is_reproducible_from_its_seed(tmp_path):
    """The same seed gives the same Langevin + Monte Carlo barostat run (the seeds reach the
    integrator and the barostat before the Context reads them), another seed another run."""
    atoms = bulk("Cu", "fcc", a=3.45, cubic=True).repeat(2)
    logs = []
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        settings = MDSettings(ensemble="npt", temperature=300.0, timestep_fs=2.0, steps=20, interval=5, seed=seed,
                              pressure_bar=0.0, barostat_interval=2)  # fmt: skip
        run_openmm_md(atoms, POTENTIAL, settings, tmp_path / f"{name}.dcd", **KWARGS)
        logs.append((tmp_path / f"{name}.log").read_text())
    assert logs[0] == logs[1] and logs[0] != logs[2]


def test_openmm_refuses_ase_only_options(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    with pytest.raises(ValueError, match="--barostat-time applies to the ase engine"):
        run_openmm_md(atoms, POTENTIAL, MDSettings(ensemble="npt", steps=1, barostat_time_fs=500.0), tmp_path / "x.dcd", **KWARGS)
    assert not (tmp_path / "x.dcd").exists()


@pytest.mark.slow
def test_liquid_density_ase_and_openmm_agree(tmp_path):
    """Liquid Cu (108 atoms, 1,500 K, 1 atm, 12 ps each): the mean density with ASE's MTK
    barostat and with OpenMM's Monte Carlo barostat agree within 3 combined standard errors."""
    from ase.io import read

    from atomml import units
    from atomml.interfaces.ase import AtomMLCalculator

    calculator = AtomMLCalculator(LIQUID_POTENTIAL)
    melt = MDSettings(ensemble="nvt", temperature=LIQUID_T, timestep_fs=2.0, steps=500, interval=100, seed=5)
    run_md(liquid_copper(), calculator, melt, tmp_path / "melt.extxyz", progress=False)
    start = read(tmp_path / "melt.extxyz", index=-1)
    mass = start.get_masses().sum()
    common = dict(ensemble="npt", temperature=LIQUID_T, timestep_fs=2.0, steps=6000, interval=10, seed=6)

    run_md(start, calculator, MDSettings(**common, barostat_time_fs=500.0), tmp_path / "ase.extxyz", progress=False)
    ase_volumes = np.array([f.get_volume() for f in read(tmp_path / "ase.extxyz", index=":")])
    run_openmm_md(start, LIQUID_POTENTIAL, MDSettings(**common), tmp_path / "omm.dcd", precision="single", progress=False)
    omm_volumes = np.prod(dcd_cell_lengths(tmp_path / "omm.dcd", len(start)), axis=1)

    results = {}
    for name, volumes in (("ase", ase_volumes), ("openmm", omm_volumes)):
        density = mass / volumes[len(volumes) // 3 :] * units.AMU_PER_A3_TO_G_PER_CM3
        results[name] = mean_and_error(density, blocks=10)
    (d_ase, e_ase), (d_omm, e_omm) = results["ase"], results["openmm"]
    print(f"\nliquid Cu {LIQUID_T:.0f} K density: ASE MTK {d_ase:.4f} ± {e_ase:.4f}, OpenMM MC {d_omm:.4f} ± {e_omm:.4f} g/cm³")
    assert abs(d_ase - d_omm) <= 3 * np.hypot(e_ase, e_omm)


@pytest.mark.slow
@pytest.mark.parametrize("barostat", ["isotropic", "full"])
def test_openmm_crystal_relaxes_to_its_own_lattice_constant(barostat, tmp_path):
    """Cu crystal (32 atoms, 50 K, 0 bar, from +3 % volume, 12 ps): the Monte Carlo barostat's
    mean lattice constant is the potential's own T = 0 one (equation-of-state fit with the
    ASE calculator) within thermal expansion and 4 standard errors; the flexible barostat keeps
    the cubic cell cubic on average."""
    from ase.eos import EquationOfState

    from atomml.interfaces.ase import AtomMLCalculator

    calculator = AtomMLCalculator(POTENTIAL)
    volumes, energies = [], []
    for strain in np.linspace(-0.02, 0.02, 7):
        atoms = bulk("Cu", "fcc", a=3.6 * (1 + strain), cubic=True).repeat(2)
        atoms.calc = calculator
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    a0 = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()[0] ** (1 / 3) / 2
    start = bulk("Cu", "fcc", a=a0 * 1.03 ** (1 / 3), cubic=True).repeat(2)
    settings = MDSettings(ensemble="npt", temperature=50.0, timestep_fs=4.0, steps=3000, interval=10, seed=3,
                          pressure_bar=0.0, barostat=barostat, barostat_interval=10)  # fmt: skip
    run_openmm_md(start, POTENTIAL, settings, tmp_path / "npt.dcd", precision="single", progress=False)
    lengths = dcd_cell_lengths(tmp_path / "npt.dcd", len(start))[75:] / 2  # the first 3 ps left out
    a = np.cbrt(np.prod(lengths, axis=1))  # (exact for the rectangular cells; the flexible one stays nearly so)
    mean, error = mean_and_error(a)
    low, high = a0 - 4 * error, a0 * (1 + 3.4e-5 * 50.0) + 4 * error
    print(f"\nOpenMM {barostat} 50 K: mean a = {mean:.5f} ± {error:.5f} Å, lengths {np.round(lengths.mean(axis=0), 5)}; "
          f"a0 = {a0:.5f} Å; allowed [{low:.5f}, {high:.5f}]")  # fmt: skip
    assert low <= mean <= high
    if barostat == "full":
        errors = [mean_and_error(lengths[:, i])[1] for i in range(3)]
        assert np.ptp(lengths.mean(axis=0)) <= 4 * np.sqrt(2) * max(errors) + 1e-4, f"lengths ± {errors}"
