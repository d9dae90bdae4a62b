"""The materials-facing API (issue 23, item 4): the calculator leaves the caller's Potential
alone, per-atom stresses, pymatgen input, batch evaluation and relaxation."""

from __future__ import annotations

import math

import ase.units
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.filters import FrechetCellFilter
from ase.neighborlist import neighbor_list
from ase.optimize import BFGS

import atomml
from atomml import units
from atomml.errors import InputError
from atomml.models import create, tiny_hyperparameters

ELEMENTS = [1, 6, 8, 29, 79]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create("tensornet", elements=ELEMENTS, cutoff=4.0, hidden_channels=8, num_layers=1, num_rbf=8)


def _alloy(repeat=(2, 1, 1), seed=1):
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * repeat
    atoms.symbols[1] = "Au"
    atoms.rattle(0.05, seed=seed)
    return atoms


# -- 1. the calculator copies a Potential it converts ---------------------------------------------


def test_two_calculators_from_one_potential_keep_their_own_precision(tiny):
    assert tiny.dtype == torch.float32
    atoms = _alloy()
    single = atomml.AtomMLCalculator(tiny, device="cpu", dtype=torch.float32)
    before = single.get_potential_energy(atoms)
    double = atomml.AtomMLCalculator(tiny, device="cpu", dtype=torch.float64)
    assert single.potential is tiny  # already float32 on the CPU: no copy
    assert double.potential is not tiny and tiny.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in tiny.parameters())
    assert all(p.dtype == torch.float64 for p in double.potential.parameters())
    e64 = double.get_potential_energy(atoms)
    single.reset()
    after = single.get_potential_energy(atoms)
    assert after == before  # still the float32 network, bit for bit
    assert after != e64 and after == pytest.approx(e64, rel=1e-5)


# -- 2. from_pymatgen: any iterable, disorder refused ---------------------------------------------


def test_from_pymatgen_takes_a_generator_and_refuses_disorder():
    pytest.importorskip("pymatgen")
    from pymatgen.core import Lattice, Structure

    ordered = [Structure(Lattice.cubic(a), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in (3.0, 3.2)]
    from_list = atomml.from_pymatgen(ordered)
    from_generator = atomml.from_pymatgen(s for s in ordered)
    assert from_generator.num_graphs == 2
    for field in ("positions", "cell", "atomic_numbers", "batch"):
        torch.testing.assert_close(getattr(from_generator, field), getattr(from_list, field))
    disordered = Structure(Lattice.cubic(3.0), ["Cu", {"Cu": 0.5, "Au": 0.5}], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(InputError, match=r"site 1 .*disordered.*OrderDisorderedStructureTransformation"):
        atomml.from_pymatgen(disordered)
    with pytest.raises(InputError, match="site 1"):  # also inside a batch
        atomml.from_pymatgen(iter([ordered[0], disordered]))


# -- 3. batch evaluation -------------------------------------------------------------------------


def _mixed():
    """ASE and pymatgen, crystals of different sizes, a slab and molecules without a cell."""
    from pymatgen.core import Lattice, Molecule, Structure

    slab = _alloy((1, 1, 2), seed=4)
    slab.pbc = [True, True, False]
    slab.center(vacuum=3.0, axis=2)
    return [
        _alloy(),
        molecule("H2O"),
        Structure(Lattice.cubic(3.0), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.52, 0.5]]),
        _alloy((2, 2, 1), seed=2),
        Molecule(["C", "O"], [[0, 0, 0], [1.15, 0, 0.05]]),
        slab,
        molecule("CH4"),
    ]


def test_evaluate_equals_the_calculator_structure_by_structure(tiny):
    pytest.importorskip("pymatgen")
    from pymatgen.io.ase import AseAtomsAdaptor

    structures = _mixed()
    results = [atomml.evaluate(structures, tiny, batch_size=b, device="cpu", dtype=torch.float64) for b in (1, 3, 16)]
    assert tiny.dtype == torch.float32  # the caller's potential is not converted
    calc = atomml.AtomMLCalculator(tiny, device="cpu", dtype=torch.float64)
    for k, structure in enumerate(structures):
        atoms = structure if hasattr(structure, "get_positions") else AseAtomsAdaptor.get_atoms(structure, msonable=False)
        atoms = atoms.copy()
        atoms.calc = calc
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        has_stress = atoms.pbc.any() and atoms.cell.rank == 3
        for result in results:
            assert result.natoms[k] == len(atoms)
            assert result.energy[k] == pytest.approx(energy, rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(result.forces[k], forces, rtol=0, atol=1e-10)
            if has_stress:
                np.testing.assert_allclose(result.stress[k], atoms.get_stress(), rtol=0, atol=1e-12)
            else:
                assert np.isnan(result.stress[k]).all()
    assert results[0].energy.shape == (len(structures),) and results[0].stress.shape == (len(structures), 6)
    assert np.isfinite(results[0].stress[[0, 2, 3, 5]]).all()  # the crystals and the slab have a stress
    generated = atomml.evaluate((s for s in structures), tiny, batch_size=2, device="cpu", dtype="float64", stress=False)
    np.testing.assert_allclose(generated.energy, results[1].energy, rtol=1e-12)
    assert generated.stress is None


def test_evaluate_refuses_what_it_cannot_evaluate(tiny):
    with pytest.raises(InputError, match="wrap a single structure in a list"):
        atomml.evaluate(molecule("H2O"), tiny)
    with pytest.raises(InputError, match="structure 1 is a str"):
        atomml.evaluate([molecule("H2O"), "H2O"], tiny)
    with pytest.raises(ValueError, match="batch_size"):
        atomml.evaluate([molecule("H2O")], tiny, batch_size=0)


# -- 4. relaxation --------------------------------------------------------------------------------


def _by_hand(atoms, calc, fmax):
    atoms = atoms.copy()
    atoms.calc = calc
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=fmax, steps=500)
    return atoms


def _a0(atoms):
    """Cubic lattice constant of an fcc cell of any size (from the volume per atom)."""
    return float(np.cbrt(4 * atoms.get_volume() / len(atoms)))


@pytest.fixture(scope="module")
def metals():
    return atomml.AtomMLCalculator("tensornet-metals-emt", device="cpu", dtype=torch.float64)


def test_relax_finds_the_lattice_constant_of_ases_own_cell_filter(metals):
    start = bulk("Cu", "fcc", a=3.8)
    start.rattle(0.0)
    original = (start.positions.copy(), start.cell.array.copy())
    fmax = 1e-4  # eV/Å, and eV for the cell: |stress| < 1e-4 / 11.8 eV/Å^3, so a0 to ~1e-5
    result = atomml.relax(start, metals, fmax=fmax, optimizer="FIRE", trajectory=True)
    reference = _by_hand(start, metals, fmax)
    assert result.converged and 0 < result.steps < 500
    assert _a0(result.final_structure) == pytest.approx(_a0(reference), rel=1e-4)
    assert abs(_a0(result.final_structure) - 3.8) > 0.02  # it did move: 3.8 Å is not the minimum
    assert result.energy == pytest.approx(reference.get_potential_energy(), abs=1e-6)
    assert np.abs(result.stress).max() * start.get_volume() < fmax
    # never the caller's object
    assert start.calc is None
    np.testing.assert_array_equal(start.positions, original[0])
    np.testing.assert_array_equal(start.cell.array, original[1])
    # the trajectory: every step, the start first, the final structure last
    assert len(result.trajectory) == result.steps + 1 == len(result.trajectory_energies)
    assert _a0(result.trajectory[0]) == pytest.approx(3.8)
    assert result.trajectory_energies[-1] == pytest.approx(result.energy, abs=1e-9)
    assert result.trajectory_energies[-1] < result.trajectory_energies[0]


def test_relax_pymatgen_in_pymatgen_out(metals):
    pytest.importorskip("pymatgen")
    from pymatgen.core import Lattice, Structure

    start = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.8), ["Cu"], [[0, 0, 0]])
    result = atomml.relax(start, metals, fmax=1e-3, optimizer="BFGS", trajectory=True)
    assert isinstance(result.final_structure, Structure)
    assert all(isinstance(s, Structure) for s in result.trajectory)
    assert start.lattice.a == pytest.approx(3.8)  # unchanged
    reference = _by_hand(bulk("Cu", "fcc", a=3.8, cubic=True), metals, 1e-3)
    assert result.final_structure.lattice.a == pytest.approx(_a0(reference), rel=1e-3)
    assert result.final_structure.lattice.b == pytest.approx(result.final_structure.lattice.a, rel=1e-6)
    with pytest.raises(InputError, match="cell=False"):
        atomml.relax(molecule("H2O"), metals)


# -- 5. per-atom virials --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_stresses_sum_to_the_stress(tiny, dtype):
    atoms = _alloy((2, 1, 1))
    atoms.calc = atomml.AtomMLCalculator(tiny, device="cpu", dtype=dtype)
    stresses = atoms.get_stresses()
    assert stresses.shape == (len(atoms), 6)
    # both float64 sums of float64 derivatives (the precision policy): round-off either way
    np.testing.assert_allclose(stresses.sum(axis=0), atoms.get_stress(), rtol=1e-9, atol=1e-14)
    assert np.abs(stresses - stresses.mean(axis=0)).max() > 1e-6  # a rattled alloy: atoms differ


def _zbl_pair(r, zi, zj, cutoff):
    """ZBL pair energy (eV) written from its definition (atomml/terms/zbl.py's docstring)."""
    x = r * (zi**0.23 + zj**0.23) / (0.8854 * units.BOHR_RADIUS_ANGSTROM)
    phi = 0.1818 * np.exp(-3.2 * x) + 0.5099 * np.exp(-0.9423 * x) + 0.2802 * np.exp(-0.4029 * x) + 0.02817 * np.exp(-0.2016 * x)
    return units.COULOMB_EV_ANGSTROM * zi * zj / r * phi * 0.5 * (np.cos(np.pi * r / cutoff) + 1)


def test_stresses_of_a_pair_potential_are_the_analytic_ones():
    """A potential that is a ZBL pair term only (the network's readout zeroed): per-atom
    virials as ASE's LennardJones writes them, sigma_i = 1/(2V) sum_j V'(r_ij) r_ij ⊗ r_ij / r_ij,
    with V' by central differences of the pair energy written out here."""
    cutoff = 2.6
    potential = create("schnet", elements=ELEMENTS, terms=[{"name": "zbl", "cutoff": cutoff}],
                       **tiny_hyperparameters("schnet", ELEMENTS)).double()  # fmt: skip
    torch.nn.init.zeros_(potential.model.readout[-1].weight)
    torch.nn.init.zeros_(potential.model.readout[-1].bias)
    atoms = bulk("Cu", "fcc", a=3.3, cubic=True)  # compressed: nearest neighbours at 2.33 Å
    atoms.symbols[2] = "Au"
    atoms.rattle(0.08, seed=5)
    atoms.calc = atomml.AtomMLCalculator(potential, device="cpu", dtype=torch.float64)
    i, j, d, vec = neighbor_list("ijdD", atoms, cutoff)
    assert len(i) > 0
    z = atoms.numbers.astype(float)
    h = 1e-5
    slope = (_zbl_pair(d + h, z[i], z[j], cutoff) - _zbl_pair(d - h, z[i], z[j], cutoff)) / (2 * h)
    outer = (slope / d)[:, None, None] * vec[:, :, None] * vec[:, None, :]
    expected = np.zeros((len(atoms), 3, 3))
    np.add.at(expected, i, 0.5 * outer)
    expected /= atoms.get_volume()
    voigt = np.stack([expected[:, a, b] for a, b in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))], axis=1)
    stresses = atoms.get_stresses()
    assert np.abs(voigt).max() > 1e-3
    np.testing.assert_allclose(stresses, voigt, rtol=0, atol=1e-8 * np.abs(voigt).max())


def test_calculator_reused_for_stress_stresses_then_energy(tiny):
    """The reuse order that broke before: stress, then stresses, then energy only of another
    structure (a crystal, then a molecule): each as a fresh calculator gives it."""
    def fresh():
        return atomml.AtomMLCalculator(tiny, device="cpu", dtype=torch.float64)

    calc = fresh()
    first, second, mol = _alloy(), _alloy((1, 2, 1), seed=7), molecule("H2O")
    stress = calc.get_stress(first)
    np.testing.assert_allclose(stress, fresh().get_stress(first), rtol=1e-12, atol=1e-15)
    stresses = calc.get_stresses(first)
    np.testing.assert_allclose(stresses, fresh().get_stresses(first), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stresses.sum(axis=0), stress, rtol=1e-9, atol=1e-14)
    assert calc.get_potential_energy(second) == pytest.approx(fresh().get_potential_energy(second), rel=1e-12)
    np.testing.assert_allclose(calc.get_forces(second), fresh().get_forces(second), atol=1e-12)
    assert "stresses" not in calc.results  # not computed when not asked for
    assert calc.get_potential_energy(mol) == pytest.approx(fresh().get_potential_energy(mol), rel=1e-12)
    with pytest.raises(PropertyNotImplementedError, match="stresses is defined only for a periodic"):
        calc.get_stresses(mol)
    assert math.isfinite(calc.get_potential_energy(mol))


# -- 6. stress in GPa in the CLI ------------------------------------------------------------------


def test_atomml_info_shows_stress_errors_in_gpa(capsys, tmp_path):
    from atomml.cli import main

    metrics = {"structures": 10, "energy_mae_meV_per_atom": 1.0, "force_mae_meV_per_A": 20.0, "stress_mae_meV_per_A3": 0.5}
    potential = create("schnet", elements=[29], **tiny_hyperparameters("schnet", [29]),
                       metadata={"test_metrics": {"valid": metrics}})  # fmt: skip
    path = atomml.save_potential(potential, tmp_path / "cu")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    header, unit_line, row = (line.split() for line in out[out.index("test errors") :].splitlines()[1:4])
    assert header[-2:] == ["stress", "MAE"] and unit_line[-1] == "GPa" and "meV/Å³" not in out
    assert row == ["valid", "10", "1.0", "20.0", f"{0.5e-3 / ase.units.GPa:.3f}"]  # ASE's GPa as the reference
