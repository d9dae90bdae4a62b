import pytest
from ase.units import create_units

from atomml import units


def test_conversions_match_codata_2018_as_in_ase():
    codata = create_units("2018")
    assert abs(units.EV_TO_KJ_PER_MOL - 96.485332) < 1e-6
    assert abs(units.EV_TO_KJ_PER_MOL - codata["eV"] / codata["kJ"] * codata["mol"]) < 1e-9
    assert abs(units.FS - codata["fs"]) / codata["fs"] < 1e-12
    assert abs(units.BOLTZMANN_EV_PER_K - codata["kB"]) / codata["kB"] < 1e-12
    assert abs(units.EV_PER_A3_TO_GPA - 1 / codata["GPa"]) < 1e-9


def test_kt_equals_ase_and_openmm_at_room_temperature():
    """kT at 298.15 K from CODATA 2018 in eV (ASE's kB), kJ/mol (OpenMM's R T, the molar gas
    constant of the same CODATA set) and kcal/mol (thermochemical calorie)."""
    codata = create_units("2018")
    assert units.kt(298.15, "eV") == pytest.approx(codata["kB"] * 298.15, rel=1e-12)
    assert units.kt(298.15) == pytest.approx(2.4789570296023884, rel=1e-12)  # 8.314462618... J/mol/K x 298.15 K
    assert units.kt(298.15, "kcal/mol") == pytest.approx(units.kt(298.15) / 4.184, rel=1e-12)
    openmm = pytest.importorskip("openmm")
    rt = (openmm.unit.MOLAR_GAS_CONSTANT_R * 298.15 * openmm.unit.kelvin).value_in_unit(openmm.unit.kilojoule_per_mole)
    assert units.kt(298.15) == pytest.approx(rt, rel=1e-9)
    with pytest.raises(ValueError, match="kT unit must be one of"):
        units.kt(300.0, "kJ")
