from ase.units import create_units

from atomml import units


def test_conversions_match_codata_2018_as_in_ase():
    codata = create_units("2018")
    assert abs(units.EV_TO_KJ_PER_MOL - 96.485332) < 1e-6
    assert abs(units.EV_TO_KJ_PER_MOL - codata["eV"] / codata["kJ"] * codata["mol"]) < 1e-9
    assert abs(units.FS - codata["fs"]) / codata["fs"] < 1e-12
    assert abs(units.BOLTZMANN_EV_PER_K - codata["kB"]) / codata["kB"] < 1e-12
    assert abs(units.EV_PER_A3_TO_GPA - 1 / codata["GPa"]) < 1e-9
