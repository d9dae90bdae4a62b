"""Attacks on what a user hands the calculator: charges, far-away coordinates, singular cells."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase.io import read

from atomml.errors import InputError
from atomml.graph import from_ase
from atomml.interfaces.ase import AtomMLCalculator
from atomml.neighbors import neighbor_list
from atomml.resources import resource_folder

STRUCTURES = resource_folder("md") / "structures"


@pytest.fixture(scope="module")
def organic():
    return AtomMLCalculator("tensornet-organic-gfn2", device="cpu")  # its network reads the total charge


@pytest.fixture(scope="module")
def copper():
    return AtomMLCalculator("schnet-cu-emt-demo", device="cpu")


@pytest.fixture()
def paracetamol():
    return read(STRUCTURES / "paracetamol.extxyz")


@pytest.fixture()
def cu108():
    return read(STRUCTURES / "cu_fcc_108.extxyz")


def _energy(atoms, calculator):
    atoms.calc = calculator
    return atoms.get_potential_energy()


# -- item 6: a changed charge in atoms.info is noticed ------------------------------------------
def test_changed_charge_in_info_is_not_answered_from_the_cache(organic, paracetamol):
    paracetamol.calc = organic
    neutral = paracetamol.get_potential_energy()
    paracetamol.info["charge"] = 1
    cation = paracetamol.get_potential_energy()
    fresh = paracetamol.copy()
    assert cation == _energy(fresh, AtomMLCalculator("tensornet-organic-gfn2", device="cpu"))
    assert abs(cation - neutral) > 1e-3  # the network does read the charge: the old value was stale
    paracetamol.info["charge"] = 0
    assert paracetamol.get_potential_energy() == neutral


# -- item 7: charges are validated ---------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc", None, [1, 2], True])
def test_bad_charge_is_refused_naming_the_charge(organic, paracetamol, bad):
    paracetamol.info["charge"] = bad
    paracetamol.calc = organic
    with pytest.raises(InputError, match=r'atoms\.info\["charge"\]'):
        paracetamol.get_potential_energy()


def test_numeric_charges_of_any_type_are_accepted(organic, paracetamol):
    energies = set()
    for q in (1, 1.0, np.int64(1), np.float32(1.0), np.array(1.0)):
        paracetamol.info["charge"] = q
        energies.add(_energy(paracetamol, organic))
    assert len(energies) == 1


def test_fractional_charge_warns(organic, paracetamol):
    paracetamol.info["charge"] = 0.5
    with pytest.warns(UserWarning, match="not an integer"):
        from_ase(paracetamol)
    paracetamol.info["charge"] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_ase(paracetamol)


def test_openmm_charge_option_is_validated(paracetamol):
    pytest.importorskip("openmmml")
    from atomml.interfaces.openmm import AtomMLComputation

    with pytest.raises(InputError, match="charge option"):
        AtomMLComputation("tensornet-organic-gfn2", paracetamol.numbers, periodic=False, charge="abc", device="cpu")


# -- item 8: the result does not depend on where the structure sits ------------------------------
@pytest.mark.parametrize("shift", [1e5, 1e8])
def test_float32_molecule_far_from_the_origin(organic, paracetamol, shift):
    energy, forces = _energy(paracetamol, organic), paracetamol.get_forces()
    far = paracetamol.copy()
    far.positions += shift  # float64 resolution at 1e8 Å is 1.5e-8 Å
    assert abs(_energy(far, organic) - energy) < 1e-5
    np.testing.assert_allclose(far.get_forces(), forces, atol=1e-5)


def test_float32_crystal_with_atoms_unwrapped_by_ten_thousand_cells(copper, cu108):
    energy, forces = _energy(cu108, copper), cu108.get_forces()
    unwrapped = cu108.copy()
    unwrapped.positions[::2] += 1e4 * cu108.cell[0]
    unwrapped.positions[1::3] -= 1e4 * cu108.cell[1]
    assert abs(_energy(unwrapped, copper) - energy) < 1e-5
    np.testing.assert_allclose(unwrapped.get_forces(), forces, atol=1e-5)


# -- item 10: singular periodic cells are refused by atomml, not by the neighbour-list library ----
@pytest.mark.parametrize("make_singular", [lambda c: np.zeros((3, 3)), lambda c: np.array([c[0], c[0], c[2]])])
def test_singular_periodic_cell_gets_atomml_error_on_the_default_path(copper, cu108, make_singular):
    cu108.cell = make_singular(np.asarray(cu108.cell))
    cu108.calc = copper
    with pytest.raises(InputError, match="singular or zero.*non-zero volume"):
        cu108.get_potential_energy()


@pytest.mark.parametrize("backend", ["vesin", "torch"])
def test_neighbor_list_checks_the_cell_itself(backend):
    positions = torch.rand(4, 3, dtype=torch.float64)
    with pytest.raises(InputError, match="singular or zero"):
        neighbor_list(positions, torch.zeros(3, 3, dtype=torch.float64), torch.tensor([True, True, True]), 3.0, backend=backend)


def test_round_off_in_summed_initial_charges_does_not_warn(paracetamol):
    charges = np.full(len(paracetamol), 0.1)
    charges[-1] = -0.1 * (len(paracetamol) - 1)  # sums to ~1e-16, not exactly 0
    paracetamol.set_initial_charges(charges)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert abs(float(from_ase(paracetamol).total_charge)) < 1e-12
