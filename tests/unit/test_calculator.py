"""The ASE calculator: properties, neighbour-list reuse, and ASE's MD, optimisers and filters."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.filters import FrechetCellFilter
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS, FIRE

import atomml
from atomml import units
from atomml.models import create


@pytest.fixture(scope="module")
def potential():
    torch.manual_seed(0)
    return create("schnet", elements=[1, 6, 8, 29], cutoff=4.0, n_atom_basis=16, n_filters=16, n_interactions=2, n_rbf=8)


def test_properties_match_the_potential(potential):
    atoms = bulk("Cu", cubic=True) * (2, 2, 1)
    atoms.rattle(0.05, seed=1)
    atoms.calc = atomml.AtomMLCalculator(potential, dtype=torch.float64)
    direct = potential.to(torch.float64)(atomml.from_ase(atoms), compute_stress=True)
    assert atoms.get_potential_energy() == pytest.approx(float(direct["energy"][0].detach()), rel=1e-12)
    assert atoms.get_potential_energy() == atoms.get_potential_energy(force_consistent=True)
    np.testing.assert_allclose(atoms.get_forces(), direct["forces"].detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), direct["stress"][0].detach().numpy(), rtol=1e-12, atol=1e-12)
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy(), rel=1e-10)
    potential.to(torch.float32)


def test_calculator_on_each_device_and_dtype(potential, device, dtype, tolerance):
    """The calculator on the CPU (and a GPU where present) in float32 and float64 gives the
    float64 CPU potential's numbers, within the dtype's tolerance."""
    atoms = bulk("Cu", cubic=True) * (2, 2, 1)
    atoms.rattle(0.05, seed=2)
    reference = copy.deepcopy(potential).double()(atomml.from_ase(atoms, dtype=torch.float64), compute_stress=True)
    atoms.calc = atomml.AtomMLCalculator(copy.deepcopy(potential), device=device, dtype=dtype)
    rtol, atol = tolerance
    np.testing.assert_allclose(atoms.get_potential_energy(), float(reference["energy"][0].detach()), rtol=rtol, atol=atol * len(atoms))
    np.testing.assert_allclose(atoms.get_forces(), reference["forces"].detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(atoms.get_stress(), reference["stress"][0].detach().numpy(), rtol=rtol, atol=atol)


def test_neighbor_list_reused_within_skin(potential):
    atoms = bulk("Cu", cubic=True) * (2, 2, 2)
    calc = atomml.AtomMLCalculator(potential, dtype=torch.float64, skin=1.0)
    exact = atomml.AtomMLCalculator(potential, dtype=torch.float64, skin=0.0)
    atoms.calc = calc
    rng = np.random.default_rng(0)
    for _ in range(8):
        atoms.positions += rng.normal(0, 0.04, atoms.positions.shape)
        e = atoms.get_potential_energy()
        f = atoms.get_forces()
        assert e == pytest.approx(exact.get_potential_energy(atoms), rel=1e-12)
        np.testing.assert_allclose(f, exact.get_forces(atoms), atol=1e-12)
    assert calc.neighbor_list_builds < exact.neighbor_list_builds
    atoms.positions[0] += [0.6, 0, 0]  # more than skin / 2: must rebuild
    builds = calc.neighbor_list_builds
    atoms.get_potential_energy()
    assert calc.neighbor_list_builds == builds + 1
    potential.to(torch.float32)


def test_velocity_verlet_and_langevin(potential):
    atoms = molecule("CH3CH2OH")
    atoms.calc = atomml.AtomMLCalculator(potential, dtype=torch.float64)
    e0 = atoms.get_total_energy()
    VelocityVerlet(atoms, timestep=0.25 * units.FS).run(40)
    assert abs(atoms.get_total_energy() - e0) < 1e-3
    Langevin(atoms, 0.5 * units.FS, temperature_K=300, friction=0.01 / units.FS, fixcm=False, rng=np.random.default_rng(0)).run(20)
    assert np.isfinite(atoms.get_positions()).all()
    potential.to(torch.float32)


# Relaxations need a physical potential (random weights pull atoms together): the shipped
# demo SchNet, trained on EMT copper, whose own minimum is the reference.
@pytest.mark.parametrize("optimizer", [BFGS, FIRE])
def test_optimizers_relax_positions(optimizer):
    atoms = bulk("Cu", cubic=True) * (2, 2, 2)
    atoms.rattle(0.1, seed=2)
    atoms.calc = atomml.AtomMLCalculator("schnet-cu-emt-demo", dtype=torch.float64)
    f0 = np.abs(atoms.get_forces()).max()
    assert f0 > 0.2
    optimizer(atoms, logfile=None).run(fmax=0.01, steps=500)
    assert np.abs(atoms.get_forces()).max() < 0.01


def test_frechet_cell_filter_finds_the_emt_lattice_constant():
    from ase.calculators.emt import EMT

    lattice = {}
    for name, calc in [("atomml", atomml.AtomMLCalculator("schnet-cu-emt-demo", dtype=torch.float64)), ("emt", EMT())]:
        atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 2, 2)
        atoms.rattle(0.03, seed=1)
        atoms.calc = calc
        BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=0.005, steps=300)
        assert np.abs(atoms.get_stress()).max() < 1e-3 and np.abs(atoms.get_forces()).max() < 0.005
        lattice[name] = float(np.cbrt(atoms.get_volume() / len(atoms) * 4))
    assert lattice["atomml"] == pytest.approx(lattice["emt"], rel=0.01)


def test_calculator_loads_files(tmp_path, potential):
    path = atomml.save_potential(potential, tmp_path / "p")
    atoms = molecule("H2O")
    atoms.calc = atomml.AtomMLCalculator(str(path), dtype="float32")
    assert np.isfinite(atoms.get_potential_energy())


@pytest.mark.slow
def test_compiled_architecture_gives_the_eager_results():
    """compile=True (torch.compile, dynamic shapes) gives the eager energies and forces, also
    after neighbour-list rebuilds change the number of edges, and leaves the caller's Potential
    uncompiled."""
    from atomml import load_potential
    from atomml.interfaces.ase import AtomMLCalculator

    potential = load_potential("tensornet-organic-gfn2")
    eager = AtomMLCalculator(potential, device="cpu", skin=0.3)
    compiled = AtomMLCalculator(potential, device="cpu", skin=0.3, compile=True)
    assert not hasattr(potential.model, "_orig_mod") and hasattr(compiled.potential.model, "_orig_mod")
    atoms = molecule("CH3CH2OH")
    other = atoms.copy()
    other.translate([potential.cutoff + 1.5, 0.0, 0.0])
    atoms += other  # two molecules at the edge of the cutoff: moves change the edge count
    rng = np.random.default_rng(1)
    start, edges = atoms.positions.copy(), set()
    for scale in (0.0, 0.05, 0.3, 0.6):  # the larger moves rebuild the list
        atoms.positions = start + rng.normal(0.0, scale, start.shape)
        atoms.calc = eager
        e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = compiled
        e1, f1 = atoms.get_potential_energy(), atoms.get_forces()
        edges.add(int(compiled._edges[0].shape[1]))
        assert e1 == pytest.approx(e0, abs=1e-5)
        np.testing.assert_allclose(f1, f0, atol=1e-4)
    assert len(edges) > 1 and compiled.neighbor_list_builds > 1


# Defect 1 of issue 13: a calculator that was once asked for stress (a cell relaxation) went on
# computing stress for every later structure, and refused molecules, which have no volume.
@pytest.fixture(scope="module")
def tiny_organic():
    torch.manual_seed(0)
    return create("tensornet", elements=[1, 6, 8], cutoff=4.0, hidden_channels=8, num_layers=1, num_rbf=8)


def _diamond():
    atoms = bulk("C", "diamond", a=3.57)
    atoms.rattle(0.02, seed=3)
    return atoms


@pytest.mark.parametrize("name", ["tiny", "tensornet-organic-gfn2"])
def test_energy_of_a_molecule_after_stress_of_a_crystal(name, tiny_organic):
    potential = tiny_organic if name == "tiny" else name
    calc = atomml.AtomMLCalculator(potential, dtype=torch.float64)
    crystal = _diamond()
    crystal.calc = calc
    assert np.isfinite(crystal.get_stress()).all()
    mol = molecule("CH3CH2OH")
    mol.calc = calc
    energy, forces = mol.get_potential_energy(), mol.get_forces()
    fresh = atomml.AtomMLCalculator(potential, dtype=torch.float64)
    assert energy == pytest.approx(fresh.get_potential_energy(mol), rel=1e-12)
    np.testing.assert_allclose(forces, fresh.get_forces(mol), atol=1e-12)
    assert "stress" not in calc.results


def test_stress_of_a_crystal_after_energy_of_a_molecule(tiny_organic):
    calc = atomml.AtomMLCalculator(tiny_organic, dtype=torch.float64)
    mol = molecule("CH3CH2OH")
    mol.calc = calc
    mol.get_potential_energy()
    crystal = _diamond()
    crystal.calc = calc
    fresh = atomml.AtomMLCalculator(tiny_organic, dtype=torch.float64)
    np.testing.assert_allclose(crystal.get_stress(), fresh.get_stress(crystal), rtol=1e-10, atol=1e-12)


def test_stress_of_a_structure_without_a_periodic_cell_is_not_implemented(tiny_organic):
    """ASE's convention (EMT, and ASE's cell filters expect it): PropertyNotImplementedError."""
    from ase.calculators.calculator import PropertyNotImplementedError

    calc = atomml.AtomMLCalculator(tiny_organic, dtype=torch.float64)
    mol = molecule("CH3CH2OH")
    boxed = mol.copy()
    boxed.center(vacuum=5.0)  # a 3D cell, but no periodic axis: no stress either
    for atoms in (mol, boxed):
        atoms.calc = calc
        with pytest.raises(PropertyNotImplementedError, match="periodic"):
            atoms.get_stress()
        assert np.isfinite(atoms.get_potential_energy())


def test_one_calculator_screens_mixed_periodic_and_molecular_structures(tiny_organic):
    """A screening loop: one calculator over crystals (with stress), a slab and molecules in
    any order gives what a fresh calculator gives for each structure alone."""
    slab = _diamond() * (2, 2, 1)
    slab.pbc = [True, True, False]
    slab.center(vacuum=4.0, axis=2)
    graphite_like = bulk("C", "sc", a=1.6) * (2, 2, 2)
    graphite_like.rattle(0.03, seed=4)
    structures = [_diamond(), molecule("CH3CH2OH"), graphite_like, molecule("H2O"), slab, _diamond() * (2, 1, 1),
                  molecule("CO2"), molecule("CH4")]  # fmt: skip
    shared = atomml.AtomMLCalculator(tiny_organic, dtype=torch.float64)
    for i, atoms in enumerate(structures):
        fresh = atomml.AtomMLCalculator(tiny_organic, dtype=torch.float64)
        atoms.calc = shared
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        assert energy == pytest.approx(fresh.get_potential_energy(atoms), rel=1e-12), i
        np.testing.assert_allclose(forces, fresh.get_forces(atoms), atol=1e-12, err_msg=str(i))
        if atoms.pbc.any():
            np.testing.assert_allclose(atoms.get_stress(), fresh.get_stress(atoms), rtol=1e-10, atol=1e-12, err_msg=str(i))
