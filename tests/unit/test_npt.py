"""NPT with the ASE engine (atomml.dynamics.npt): the barostat finds the potential's own
lattice constant, keeps a cubic crystal cubic, holds the set pressure in a liquid, and resumes
exactly.

References are independent of the integrator: the potential's T = 0 lattice constant from an
equation-of-state fit (ase.eos), and for the liquid the virial pressure of a plain NVT run at
the NPT run's mean volume. Tolerances come from the run's own statistical error (block
averages) plus, for the crystal, the largest thermal expansion that fcc copper can show at the
run's temperature.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.eos import EquationOfState
from ase.io import read, write

from atomml import units
from atomml.analysis import block_mean_and_error
from atomml.dynamics import MDSettings, npt, run_md
from atomml.interfaces.ase import AtomMLCalculator

POTENTIAL = "tensornet-metals-emt"  # trained on EMT stress too
CELLS = 2  # 2x2x2 conventional cells: 32 atoms
# Linear thermal expansion coefficient bound for fcc Cu: 1.7e-5 /K at room temperature (less
# below it); twice that bounds a potential fitted to EMT copper.
ALPHA_MAX_PER_K = 3.4e-5


@pytest.fixture(scope="module")
def calculator():
    return AtomMLCalculator(POTENTIAL)


@pytest.fixture(scope="module")
def own_minimum(calculator):
    """(a0 in Å, bulk modulus in eV/Å³) of the potential at T = 0, from a Birch–Murnaghan fit."""
    volumes, energies = [], []
    for strain in np.linspace(-0.02, 0.02, 7):
        atoms = crystal(3.6 * (1 + strain))
        atoms.calc = calculator
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    v0, _, modulus = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    return v0 ** (1 / 3) / CELLS, modulus


def crystal(a: float) -> Atoms:
    return bulk("Cu", "fcc", a=a, cubic=True).repeat(CELLS)


def mean_and_error(series, blocks: int = 5) -> tuple[float, float]:
    return block_mean_and_error(series, blocks)


def npt_cells(atoms, calculator, settings, path):
    """The cells of an NPT run's frames (read back from its trajectory) and its result."""
    result = run_md(atoms, calculator, settings, path, progress=False)
    return np.array([frame.cell.array for frame in read(path, index=":")]), result


def lattice_constants(cells):
    return np.cbrt(np.abs(np.linalg.det(cells))) / CELLS


# --- settings and refusals ---------------------------------------------------------------------


def test_npt_options_only_for_npt_and_in_range():
    with pytest.raises(ValueError, match="--pressure applies only to the npt ensemble"):
        MDSettings(ensemble="nvt", pressure_bar=1.0)
    with pytest.raises(ValueError, match="barostat must be one of isotropic, full"):
        MDSettings(ensemble="npt", barostat="anisotropic")
    with pytest.raises(ValueError, match="--barostat-time must be a positive time"):
        MDSettings(ensemble="npt", barostat_time_fs=0.0)
    with pytest.raises(ValueError, match="--barostat-interval must be at least 1"):
        MDSettings(ensemble="npt", barostat_interval=0)
    with pytest.raises(ValueError, match="above 0 K"):
        MDSettings(ensemble="npt", temperature=0.0)
    with pytest.raises(ValueError, match="finite"):
        MDSettings(ensemble="npt", pressure_bar=float("nan"))
    assert MDSettings(ensemble="npt").pressure_bar is None  # None: 1 atm
    assert npt.pressure_bar(MDSettings(ensemble="npt")) == 1.01325


def test_ase_engine_refuses_what_it_cannot_run(calculator, tmp_path):
    from ase.constraints import FixAtoms

    settings = MDSettings(ensemble="npt", steps=2)
    out = tmp_path / "x.extxyz"
    with pytest.raises(ValueError, match="--barostat-interval applies to the openmm engine"):
        run_md(crystal(3.6), calculator, MDSettings(ensemble="npt", barostat_interval=10), out, progress=False)
    slab = crystal(3.6)
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match="periodic in all three directions"):
        run_md(slab, calculator, settings, out, progress=False)
    fixed = crystal(3.6)
    fixed.set_constraint(FixAtoms([0]))
    with pytest.raises(ValueError, match="does not support constraints .*FixAtoms"):
        run_md(fixed, calculator, settings, out, progress=False)
    assert not out.exists()  # refused before any output


def test_pressure_and_density_units():
    import ase.units

    # ASE's units are CODATA 2014, atomml's 2018: the same to 1e-7
    assert units.BAR_TO_EV_PER_A3 == pytest.approx(ase.units.bar, rel=1e-7)
    a = 3.615  # fcc Cu, 4 atoms per cubic cell: 8.93 g/cm³
    means = npt.cell_means([np.eye(3) * a], np.full(4, 63.546))
    assert means["mean_density_g_per_cm3"] == pytest.approx(4 * 63.546 * ase.units._amu * 1e3 / (a * 1e-8) ** 3, rel=1e-7)
    assert means["mean_cell_lengths_A"] == [a, a, a] and means["mean_cell_angles_deg"] == [90.0, 90.0, 90.0]


# --- crystal -----------------------------------------------------------------------------------


def crystal_settings(barostat: str, steps: int, temperature: float = 50.0) -> MDSettings:
    # 0 bar; the cell mass of MTK is (3N+3) kT pdamp²: in a stiff solid at 50 K, pdamp = 500 fs
    # gives a volume oscillation of about 50 fs, resolved by 4 fs steps
    return MDSettings(
        ensemble="npt", temperature=temperature, timestep_fs=4.0, steps=steps, interval=5, seed=1,
        pressure_bar=0.0, barostat=barostat, barostat_time_fs=500.0, thermostat_time_fs=100.0,
    )  # fmt: skip


def check_lattice_constant(a_series, a0, a_start, temperature):
    """The mean lattice constant of the equilibrated part matches the T = 0 one within thermal
    expansion (0 to ALPHA_MAX x T) and 4 standard errors, and the run moved there from ``a_start``."""
    mean, error = mean_and_error(a_series)
    low, high = a0 - 4 * error, a0 * (1 + ALPHA_MAX_PER_K * temperature) + 4 * error
    assert low <= mean <= high, f"mean a = {mean:.5f} ± {error:.5f} Å, T = 0 minimum {a0:.5f} Å: outside [{low:.5f}, {high:.5f}]"
    assert abs(mean - a0) < 0.2 * abs(a_start - a0), f"from {a_start:.4f} Å the run reached only {mean:.4f} Å (a0 = {a0:.4f})"
    return mean, error


def check_cubic(lengths, blocks: int = 5):
    """The mean cell lengths (a series of shape (frames, 3)) agree within 4 combined standard errors."""
    stats = [mean_and_error(lengths[:, i], blocks) for i in range(3)]
    for i, j in ((0, 1), (1, 2), (0, 2)):
        (m_i, e_i), (m_j, e_j) = stats[i], stats[j]
        assert abs(m_i - m_j) <= 4 * np.hypot(e_i, e_j) + 1e-4, f"mean cell lengths (mean, error) {stats} differ"
    return stats


@pytest.mark.parametrize("barostat", ["isotropic", "full"])
def test_strained_crystal_relaxes_to_its_own_lattice_constant(barostat, calculator, own_minimum, tmp_path):
    """From +3 % volume at 50 K and 0 bar, the mean lattice constant of the second half of the
    run is the potential's own T = 0 one (within thermal expansion and statistical error); the
    full-cell barostat keeps the cubic crystal cubic on average."""
    a0, _ = own_minimum
    a_start = a0 * 1.03 ** (1 / 3)
    settings = crystal_settings(barostat, steps=150)
    cells, result = npt_cells(crystal(a_start), calculator, settings, tmp_path / "npt.extxyz")
    equilibrated = cells[len(cells) // 2 :]
    check_lattice_constant(lattice_constants(equilibrated), a0, a_start, settings.temperature)
    assert result.mean_volume_A3 == pytest.approx(np.abs(np.linalg.det(cells)).mean(), rel=1e-12)  # the summary's means
    if barostat == "full":
        check_cubic(np.linalg.norm(equilibrated, axis=2) / CELLS)
        angles = np.array(result.mean_cell_angles_deg)
        assert np.abs(angles - 90.0).max() < 0.5, f"mean cell angles {angles} are not 90°"
    else:  # isotropic: the shape stays exactly cubic
        assert np.allclose(cells[:, ~np.eye(3, dtype=bool)], 0.0) and np.allclose(cells[:, 0, 0], cells[:, 2, 2])


@pytest.mark.parametrize("barostat", ["isotropic", "full"])
def test_npt_resumes_exactly_with_cell_and_barostat_state(barostat, calculator, tmp_path):
    """20 steps straight and 10 + 10 steps give the same log and the same final positions,
    momenta and cell, bit for bit: the resume record carries the thermostat and barostat
    chains and the cell variables of the MTK integrator (without them the cell momentum
    restarts at zero and the runs part)."""
    atoms = crystal(3.66)
    atoms.rattle(0.02, seed=2)
    settings = dict(ensemble="npt", temperature=300.0, timestep_fs=4.0, interval=5, seed=3, pressure_bar=0.0,
                    barostat=barostat, barostat_time_fs=200.0)  # fmt: skip
    straight = tmp_path / "a.extxyz"
    run_md(atoms, calculator, MDSettings(steps=20, **settings), straight, progress=False)
    parts = tmp_path / "b.extxyz"
    run_md(atoms, calculator, MDSettings(steps=10, **settings), parts, progress=False)
    resumed = run_md(atoms, calculator, MDSettings(steps=20, **settings), parts, progress=False)
    assert resumed.resumed_from == 10
    assert (tmp_path / "a.log").read_text() == (tmp_path / "b.log").read_text()
    a_state = json.loads((tmp_path / "a.extxyz.state.json").read_text())["state"]
    b_state = json.loads((tmp_path / "b.extxyz.state.json").read_text())["state"]
    assert a_state == b_state  # positions, momenta, cell and the integrator's variables, as float64 bytes
    first = read(straight, index=":")
    assert not np.allclose(first[-1].cell.array, first[0].cell.array)  # the cell did move


def test_cli_npt_summary_and_frames_carry_the_cell(tmp_path, capsys):
    from atomml.cli import main

    structure = tmp_path / "cu.extxyz"
    write(structure, crystal(3.7))
    out = tmp_path / "run.extxyz"
    argv = ["md", str(structure), "-p", POTENTIAL, "--ensemble", "npt", "--pressure", "0", "--barostat", "full",
            "--barostat-time", "200", "--temperature", "100", "--timestep", "4", "--steps", "10", "--interval", "5",
            "-o", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    frames = read(out, index=":")
    volumes = [f.get_volume() for f in frames]
    assert len(frames) == 3 and len({round(v, 9) for v in volumes}) == 3  # each frame has its own cell
    assert summary["mean_volume_A3"] == pytest.approx(np.mean(volumes), rel=1e-9)
    assert len(summary["mean_cell_lengths_A"]) == 3 and summary["mean_density_g_per_cm3"] > 0
    assert "stress" in frames[-1].calc.results  # the NPT frames carry the stress they were run with

    assert main(["md", str(structure), "-p", POTENTIAL, "--pressure", "1", "-o", str(tmp_path / "x.extxyz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--pressure applies only to the npt ensemble" in err


# --- longer checks (run by hand: -m slow) ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("barostat", ["isotropic", "full"])
@pytest.mark.parametrize("start_strain", [0.0, 0.03])
def test_crystal_lattice_constant_long(start_strain, barostat, calculator, own_minimum, tmp_path):
    """The CI test at 2,000 steps (8 ps; 16 ps for the full cell; the first quarter left out),
    from the T = 0 lattice and from +3 % volume; the T = 0 lattice constant of the fit agrees
    with a cell relaxation (FrechetCellFilter)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    a0, modulus = own_minimum
    relaxed = crystal(3.6)
    relaxed.calc = calculator
    BFGS(FrechetCellFilter(relaxed), logfile=None).run(fmax=1e-5)
    assert np.cbrt(relaxed.get_volume()) / CELLS == pytest.approx(a0, abs=2e-4)

    a_start = a0 * (1 + start_strain) ** (1 / 3)
    # the full cell's shear modes are soft (C11 - C12 is a fifth of B) and slow: twice as long
    settings = crystal_settings(barostat, steps=4000 if barostat == "full" else 2000)
    cells, _ = npt_cells(crystal(a_start), calculator, settings, tmp_path / "npt.extxyz")
    equilibrated = cells[len(cells) // 4 :]
    mean, error = mean_and_error(lattice_constants(equilibrated), blocks=10)
    low, high = a0 - 4 * error, a0 * (1 + ALPHA_MAX_PER_K * settings.temperature) + 4 * error
    lengths = np.linalg.norm(equilibrated, axis=2) / CELLS
    stats = [mean_and_error(lengths[:, i], blocks=10) for i in range(3)]
    print(f"\nNPT {barostat} 50 K from a = {a_start:.5f} Å: mean a = {mean:.5f} ± {error:.5f} Å "
          f"(lengths {[f'{m:.5f} ± {e:.5f}' for m, e in stats]}); "
          f"a0 = {a0:.5f} Å (relaxed cell {np.cbrt(relaxed.get_volume()) / CELLS:.5f}); "
          f"B = {modulus * units.EV_PER_A3_TO_GPA:.1f} GPa; allowed [{low:.5f}, {high:.5f}]")  # fmt: skip
    assert low <= mean <= high
    if barostat == "full":
        check_cubic(lengths, blocks=10)


# The liquid runs with the SchNet demo potential: tensornet-metals-emt has a hole at short range
# (a 2.7 eV barrier near 1.7 Å, lower energy inside it), into which two atoms of liquid copper
# fall within about 2 ps at 1,500 K.
LIQUID_POTENTIAL = "schnet-cu-emt-demo"
LIQUID_T = 1500.0  # K; the random start below melts at once and diffuses (checked)


def liquid_copper(n_atoms: int = 108) -> Atoms:
    """Random copper atoms at about liquid density (13 Å³ per atom) in a cubic cell."""
    from atomml.testing import random_crystal

    return random_crystal([29], n_atoms, seed=4, min_distance=1.9, density=1 / 13.0, skew=0.0)


def equilibrated_liquid(calculator, tmp_path):
    """Liquid Cu after 1 ps of Langevin MD at LIQUID_T, and the NPT settings (1 atm) for it."""
    melt = MDSettings(ensemble="nvt", temperature=LIQUID_T, timestep_fs=2.0, steps=500, interval=100, seed=5)
    run_md(liquid_copper(), calculator, melt, tmp_path / "melt.extxyz", progress=False)
    settings = MDSettings(ensemble="npt", temperature=LIQUID_T, timestep_fs=2.0, steps=6000, interval=10, seed=6,
                          barostat_time_fs=500.0)  # fmt: skip
    return read(tmp_path / "melt.extxyz", index=-1), settings


@pytest.mark.slow
def test_liquid_holds_the_set_pressure(tmp_path):
    """Liquid Cu (108 atoms, 1,500 K, 1 atm, 12 ps): the mean virial pressure (kinetic part
    included) of an NVT run at the NPT run's mean volume equals the set pressure within 3
    standard errors: the NVT run's own, and what the error of the mean volume means in pressure
    (bulk modulus from the NPT volume fluctuations, B = kT <V> / var(V))."""
    calculator = AtomMLCalculator(LIQUID_POTENTIAL)
    start, settings = equilibrated_liquid(calculator, tmp_path)
    cells, _ = npt_cells(start, calculator, settings, tmp_path / "npt.extxyz")
    frames = read(tmp_path / "npt.extxyz", index=":")
    skip = len(cells) // 3
    volumes = np.abs(np.linalg.det(cells[skip:]))
    v_mean, v_error = mean_and_error(volumes, blocks=10)
    kt = units.BOLTZMANN_EV_PER_K * LIQUID_T
    modulus = kt * v_mean / volumes.var()  # eV/Å³
    msd = np.mean(np.sum((frames[-1].positions - frames[skip].positions) ** 2, axis=1))
    assert msd > 5.0, f"mean squared displacement {msd:.2f} Å² over 8 ps: not a liquid"

    at_mean = frames[-1].copy()
    at_mean.set_cell(at_mean.cell.array * np.cbrt(v_mean / at_mean.get_volume()), scale_atoms=True)
    pressures = []

    def pressure(atoms, step):
        if step >= 1000:
            pressures.append(-np.trace(atoms.get_stress(voigt=False, include_ideal_gas=True)) / 3)

    nvt = MDSettings(ensemble="nvt", temperature=LIQUID_T, timestep_fs=2.0, steps=6000, interval=10, seed=7)
    run_md(at_mean, calculator, nvt, tmp_path / "nvt.extxyz", progress=False, on_frame=pressure)
    p_mean, p_error = mean_and_error(pressures, blocks=10)
    p_from_volume = modulus * v_error / v_mean
    error = np.hypot(p_error, p_from_volume)
    target = npt.pressure_bar(settings) * units.BAR_TO_EV_PER_A3
    gpa = units.EV_PER_A3_TO_GPA
    print(f"\nliquid Cu {LIQUID_T:.0f} K, {len(start)} atoms: NPT mean volume {v_mean / len(start):.3f} ± "
          f"{v_error / len(start):.3f} Å³/atom (B = {modulus * gpa:.1f} GPa, MSD {msd:.1f} Å²); NVT pressure there "
          f"{p_mean * gpa:.3f} ± {p_error * gpa:.3f} GPa (± {p_from_volume * gpa:.3f} GPa from the volume's error); "
          f"target {target * gpa:.6f} GPa")  # fmt: skip
    assert abs(p_mean - target) <= 3 * error
