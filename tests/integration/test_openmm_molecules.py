"""``molecule_topology``: ASE Atoms, SDF files, RDKit molecules and SMILES as OpenMM topologies
whose energies and forces in OpenMM equal the ASE calculator's on the same positions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read

import atomml
from atomml import units
from atomml.errors import InputError
from atomml.mm import embedded_molecule
from atomml.models import create
from atomml.testing.structures import molecule_from_smiles, random_rotations, solvated

openmm = pytest.importorskip("openmm")
pytest.importorskip("openmmml")
Chem = pytest.importorskip("rdkit.Chem")
from openmm import unit  # noqa: E402
from openmmml import MLPotential  # noqa: E402

from atomml.interfaces.openmm import molecule_topology  # noqa: E402

KJ_PER_MOL_NM = units.EV_TO_KJ_PER_MOL * units.NM_TO_ANGSTROM  # per eV/Å
PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"


@pytest.fixture(scope="module")
def potential_file(tmp_path_factory):
    torch.manual_seed(0)
    potential = create("tensornet", elements=[1, 6, 7, 8], cutoff=4.0, hidden_channels=16, num_rbf=8,
                       metadata={"name": "tiny-organic", "closed_shell_only": True})  # fmt: skip
    return atomml.save_potential(potential, tmp_path_factory.mktemp("pot") / "tiny-organic")


def openmm_energy_forces(potential_file, molecule):
    system = MLPotential("atomml", potential=str(potential_file)).createSystem(
        molecule.topology, precision="double", charge=molecule.charge, device="cpu"
    )
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    box = molecule.topology.getPeriodicBoxVectors()
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(molecule.positions)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))  # fmt: skip


def ase_energy_forces(potential_file, atoms):
    atoms = atoms.copy()
    atoms.calc = atomml.AtomMLCalculator(str(potential_file), dtype=torch.float64, device="cpu")
    return atoms.get_potential_energy() * units.EV_TO_KJ_PER_MOL, atoms.get_forces() * KJ_PER_MOL_NM


def angstrom(molecule):
    return np.asarray(molecule.positions.value_in_unit(unit.angstrom))


def assert_same(got, expected, rotation=None):
    (e1, f1), (e2, f2) = got, expected
    if rotation is not None:  # OpenMM's frame is the ASE frame rotated: r' = r @ rotation.T
        f2 = f2 @ rotation.T
    assert e1 == pytest.approx(e2, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(f1, f2, rtol=1e-8, atol=1e-8 * np.abs(f2).max())


def test_smiles_gives_the_rdkit_molecule_with_its_bonds(potential_file):
    molecule = molecule_topology(PARACETAMOL)
    reference = molecule_from_smiles(PARACETAMOL)  # the same conformer (ETKDG + MMFF, seed 0)
    np.testing.assert_allclose(angstrom(molecule), reference.positions, atol=1e-9)
    atoms = list(molecule.topology.atoms())
    assert [a.element.atomic_number for a in atoms] == reference.numbers.tolist()
    assert [a.name for a in atoms[:4]] == ["C1", "C2", "O1", "N1"]
    assert {a.residue.name for a in atoms} == {"MOL"} and molecule.topology.getPeriodicBoxVectors() is None
    mol = Chem.AddHs(Chem.MolFromSmiles(PARACETAMOL))
    assert molecule.topology.getNumBonds() == mol.GetNumBonds() == 20
    assert sorted(str(b.type) for b in molecule.topology.bonds()).count("Aromatic") == 6
    assert molecule.charge == 0
    assert_same(openmm_energy_forces(potential_file, molecule), ase_energy_forces(potential_file, reference))


def test_an_sdf_file_read_by_ase_and_by_the_helper_gives_the_same_energy(potential_file, tmp_path):
    path = tmp_path / "ion.sdf"
    mol = embedded_molecule("C[NH3+]")  # methylammonium, charge +1
    Chem.MolToMolFile(mol, str(path))
    molecule = molecule_topology(path)
    atoms = read(path)  # ASE's own SDF reader
    atoms.info["charge"] = 1
    assert molecule.charge == 1
    assert molecule.topology.getNumBonds() == mol.GetNumBonds() == 7
    np.testing.assert_allclose(angstrom(molecule), atoms.positions, atol=1e-9)
    assert_same(openmm_energy_forces(potential_file, molecule), ase_energy_forces(potential_file, atoms))
    with pytest.warns(UserWarning, match="19 electrons"):  # without its charge the ion is a radical
        neutral = ase_energy_forces(potential_file, Atoms(atoms.numbers, atoms.positions))
    # the charge reaches OpenMM: its energy is the ion's, not the neutral's
    assert abs(openmm_energy_forces(potential_file, molecule)[0] - neutral[0]) > 1e-6


def test_periodic_atoms_give_residues_bonds_and_a_rotated_box(potential_file):
    atoms = solvated(molecule_from_smiles("CCO"), 20)
    rotation = random_rotations(1, np.random.default_rng(3))[0]
    atoms.set_cell(atoms.cell.array @ rotation.T, scale_atoms=True)  # not lower-triangular any more
    molecule = molecule_topology(atoms)
    residues = list(molecule.topology.residues())
    assert [r.name for r in residues] == ["MOL"] + ["HOH"] * 20
    assert molecule.topology.getNumBonds() == 8 + 2 * 20
    box = np.asarray(molecule.topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom))
    assert np.allclose(np.triu(box, 1), 0) and np.allclose(np.abs(box), np.abs(atoms.cell.standard_form()[0]))
    _, q = atoms.cell.standard_form()
    assert_same(openmm_energy_forces(potential_file, molecule), ase_energy_forces(potential_file, atoms), rotation=q)


def test_molecule_atoms_keep_their_charge_and_order(potential_file):
    atoms = molecule_from_smiles("CC(=O)[O-]")
    atoms.info["charge"] = -1
    molecule = molecule_topology(atoms)
    assert molecule.charge == -1 and [r.name for r in molecule.topology.residues()] == ["MOL"]
    assert [a.element.atomic_number for a in molecule.topology.atoms()] == atoms.numbers.tolist()
    assert_same(openmm_energy_forces(potential_file, molecule), ase_energy_forces(potential_file, atoms))


def test_a_radical_in_openmm_warns_once(potential_file):
    molecule = molecule_topology("[CH3]")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        energy_forces = openmm_energy_forces(potential_file, molecule)
    messages = [str(w.message) for w in record if "odd number" in str(w.message)]
    assert len(messages) == 1 and "9 electrons" in messages[0], messages
    assert np.isfinite(energy_forces[0])


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="fully periodic or a non-periodic"):
        molecule_topology(Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]], cell=[5, 5, 5], pbc=[True, True, False]))
    with pytest.raises(FileNotFoundError, match="no such file"):
        molecule_topology(tmp_path / "missing.sdf")
    with pytest.raises(ValueError, match="cannot read the SMILES"):
        molecule_topology("C1CC")
    with pytest.raises(InputError, match="no 3D coordinates"):
        molecule_topology(Chem.MolFromSmiles("CCO"))
    with pytest.raises(TypeError, match="ASE Atoms, an RDKit molecule"):
        molecule_topology(42)
