"""The precision policy (atomml.potential): a float32 network, float64 geometry and sums.

The checks of issue 25, on the shipped float32 potentials: a 2,269-atom solvated alanine
dipeptide (openmm-ml's whole-system test size) translated through the periodic box, in ASE and
in OpenMM; the total against the float64 sum of the per-atom energies; the float32 network
against the same network in float64; and additivity of a 10,192-atom metal supercell.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase.build import bulk

import atomml
from atomml import units
from atomml.interfaces.ase import AtomMLCalculator
from atomml.testing.structures import ALANINE_DIPEPTIDE, molecule_from_smiles, solvated

ORGANIC = "tensornet-organic-gfn2"
SHIFTS = (0.0, 9.0, 18.0)  # Å: 0.9 and 1.8 nm, as in the openmm-ml check
SPREAD = 1e-4  # eV for 2,269 atoms: a float32 sum of -1.0e5 eV spreads by ~1e-2 eV


@pytest.fixture(scope="module")
def box():
    pytest.importorskip("rdkit")
    atoms = solvated(molecule_from_smiles(ALANINE_DIPEPTIDE), waters=749)
    assert len(atoms) == 2269
    return atoms


@pytest.fixture(scope="module")
def float32():
    return AtomMLCalculator(ORGANIC, device="cpu", dtype=torch.float32)


def _evaluate(atoms, calculator, shift=0.0):
    atoms = atoms.copy()
    atoms.positions += shift
    atoms.calc = calculator
    return atoms.get_potential_energy(), atoms.get_potential_energies(), atoms.get_forces()


def test_float32_total_does_not_depend_on_where_the_box_sits(box, float32):
    totals = [_evaluate(box, float32, shift)[0] for shift in SHIFTS]
    assert max(totals) - min(totals) <= SPREAD, totals


def test_total_is_the_float64_sum_of_the_per_atom_energies(box, float32):
    energy, energies, forces = _evaluate(box, float32)
    assert energies.dtype == forces.dtype == np.float64
    assert abs(energy - math.fsum(energies)) <= 1e-6


def test_float32_network_agrees_with_the_float64_network(box, float32):
    """Bound: float32's own error. Each atom's energy carries the rounding of a float32 network
    output of a few eV (eps32 = 1.2e-7: ~1e-7 eV per atom, 1e-6 stated); forces of up to
    ~10 eV/Å carry ~1e-6 eV/Å (1e-4 stated, the worst atom over many float32 products)."""
    e32, per_atom32, f32 = _evaluate(box, float32)
    e64, per_atom64, f64 = _evaluate(box, AtomMLCalculator(ORGANIC, device="cpu", dtype=torch.float64))
    assert abs(e32 - e64) / len(box) <= 1e-6
    assert np.abs(per_atom32 - per_atom64).max() <= 1e-5
    assert np.abs(f32 - f64).max() <= 1e-4


def test_openmm_whole_system_ml_translated(box):
    """openmm-ml's check: the whole periodic system ML, translated; OpenMM sums in double."""
    openmm = pytest.importorskip("openmm")
    pytest.importorskip("openmmml")
    from openmm import unit
    from openmmml import MLPotential

    from atomml.dynamics.openmm import topology

    system = MLPotential("atomml", potential=ORGANIC).createSystem(topology(box), precision="single", device="cpu")
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPeriodicBoxVectors(*(v * 0.1 for v in box.cell.array))
    totals = []
    for shift in SHIFTS:
        context.setPositions((box.positions + shift) * 0.1)
        energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        totals.append(energy * units.KJ_PER_MOL_TO_EV)
    assert max(totals) - min(totals) <= SPREAD, totals


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_metal_supercell_of_ten_thousand_atoms_is_additive(dtype):
    """A 10,192-atom Cu supercell against 2,548 times its 4-atom cubic cell.

    The sum is exact in both dtypes: the total equals the compensated sum of its per-atom
    energies (before the policy a float32 total was off by 1.5e-3 eV). Additivity is 1e-6
    relative with a float64 network; a float32 network adds its own rounding, which depends on
    the order in which each atom's messages are summed (atoms in identical environments differ by
    ~3e-7 eV): bounded per atom by 1e-7 eV, 2.8e-8 measured. The EMT-trained total is small
    (-5.6 meV per atom), so that is ~5e-6 relative here, and far below 1e-6 of a cohesive-energy
    scale total (-3.5 eV per atom)."""
    unit_cell = bulk("Cu", "fcc", a=3.61, cubic=True)
    calculator = AtomMLCalculator("tensornet-metals-emt", device="cpu", dtype=dtype)
    unit_cell.calc = calculator
    per_cell = unit_cell.get_potential_energy()
    repeat = (14, 14, 13)
    big = unit_cell.repeat(repeat)
    assert len(big) == 10192
    with torch.no_grad():
        out = calculator.potential(atomml.from_ase(big), compute_forces=False)
    total, energies = float(out["energy"][0]), out["energies"].numpy()
    assert out["energy"].dtype == torch.float64
    assert abs(total - math.fsum(energies)) <= 1e-9 * np.abs(energies).sum()
    additivity = abs(total - np.prod(repeat) * per_cell)
    if dtype == torch.float64:
        assert additivity <= 1e-6 * abs(total)
    else:
        assert additivity <= 1e-7 * len(big)


def test_reference_energies_stay_float64_through_dtype_changes():
    from atomml.models import create, tiny_hyperparameters

    reference = -1034.123456789012  # eV: float32 would keep ~-1034.1234
    potential = create(
        "schnet", elements=[6], atomic_energies={6: reference}, energy_shift=1e-9, **tiny_hyperparameters("schnet", [6])
    )
    potential = potential.float().to(torch.float32).double().float()
    assert potential.dtype == torch.float32
    assert potential.atomic_energies.dtype == torch.float64 and float(potential.atomic_energies[0]) == reference
    assert float(potential.energy_shift) == 1e-9
