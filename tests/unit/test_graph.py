"""Building graphs from ASE and pymatgen, batching, and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule

import atomml
from atomml.graph import batch_graphs, check_graph


def test_from_ase_fields():
    water = molecule("H2O")
    water.info["charge"] = -1
    g = atomml.from_ase(water, dtype=torch.float32)
    assert g.positions.dtype == torch.float32 and g.positions.shape == (3, 3)
    assert g.atomic_numbers.tolist() == [8, 1, 1]
    assert g.batch.tolist() == [0, 0, 0]
    assert g.cell.shape == (1, 3, 3) and g.pbc.tolist() == [[False, False, False]]
    assert g.total_charge.tolist() == [-1.0]
    np.testing.assert_allclose(g.positions.numpy(), water.positions, rtol=1e-6)


def test_charge_from_initial_charges():
    atoms = molecule("CH4")
    atoms.set_initial_charges([1.0, 0, 0, 0, 0])
    assert atomml.from_ase(atoms).total_charge.tolist() == [1.0]


def test_batch_of_ase_structures_with_per_axis_pbc():
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    crystal = bulk("Cu", cubic=True)
    g = atomml.from_ase([slab, crystal, molecule("H2O")])
    assert g.num_graphs == 3 and g.num_atoms == len(slab) + 4 + 3
    assert g.pbc.tolist() == [[True, True, False], [True, True, True], [False, False, False]]
    assert g.batch.tolist() == [0] * len(slab) + [1] * 4 + [2] * 3
    assert torch.equal(g.atoms_per_graph(), torch.tensor([len(slab), 4, 3]))
    parts = g.split()
    assert [p.num_atoms for p in parts] == [len(slab), 4, 3]
    assert torch.equal(parts[1].cell[0], g.cell[1])


def test_batch_offsets_edges():
    a = atomml.from_ase(molecule("H2O")).with_neighbors(2.0)
    b = atomml.from_ase(molecule("CH4")).with_neighbors(2.0)
    g = batch_graphs([a, b])
    assert g.num_edges == a.num_edges + b.num_edges
    assert int(g.edge_index[:, a.num_edges :].min()) == 3
    direct = atomml.from_ase([molecule("H2O"), molecule("CH4")]).with_neighbors(2.0)
    pairs = lambda x: set(map(tuple, x.edge_index.T.tolist()))  # noqa: E731
    assert pairs(g) == pairs(direct)


def test_from_pymatgen_structure_and_molecule():
    from pymatgen.core import Lattice, Molecule, Structure

    structure = Structure(Lattice.cubic(3.6), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0]])
    g = atomml.from_pymatgen(structure)
    assert g.pbc.tolist() == [[True, True, True]]
    np.testing.assert_allclose(g.cell[0].numpy(), np.eye(3) * 3.6)
    np.testing.assert_allclose(g.positions[1].numpy(), [1.8, 1.8, 0.0])
    mol = Molecule(["O", "H", "H"], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], charge=1)
    gm = atomml.from_pymatgen(mol)
    assert gm.pbc.tolist() == [[False, False, False]] and gm.total_charge.tolist() == [1.0]
    both = atomml.from_pymatgen([structure, mol])
    assert both.num_graphs == 2 and both.batch.tolist() == [0, 0, 1, 1, 1]
    # same structure through ASE gives the same graph
    from pymatgen.io.ase import AseAtomsAdaptor

    via_ase = atomml.from_ase(AseAtomsAdaptor.get_atoms(structure))
    torch.testing.assert_close(via_ase.positions, g.positions)
    torch.testing.assert_close(via_ase.cell, g.cell)


def test_to_changes_float_fields_only():
    g = atomml.from_ase(molecule("H2O"), dtype=torch.float64).to(dtype=torch.float32)
    assert g.positions.dtype == torch.float32 and g.cell.dtype == torch.float32
    assert g.atomic_numbers.dtype == torch.int64 and g.pbc.dtype == torch.bool


@pytest.mark.parametrize(
    "atoms, message",
    [
        (Atoms(), "no atoms"),
        (Atoms("H2", positions=[[0, 0, 0], [np.inf, 0, 0]]), "non-finite"),
        (Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=[[2, 0, 0], [0, 2, 0], [0, 0, 0]], pbc=True), "singular"),
        (Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=[[2, 0, 0], [2, 0, 0], [0, 0, 2]], pbc=[True, True, False]), "singular"),
    ],
)
def test_check_graph_errors(atoms, message):
    with pytest.raises(atomml.InputError, match=message):
        check_graph(atomml.from_ase(atoms))


def test_zero_vacuum_vector_is_fine_when_not_periodic():
    atoms = Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=[[2, 0, 0], [0, 2, 0], [0, 0, 0]], pbc=[True, True, False])
    check_graph(atomml.from_ase(atoms))  # must not raise
    assert atomml.from_ase(atoms).with_neighbors(1.5).num_edges > 0


def test_singular_cell_found_inside_a_batch():
    good = bulk("Cu", cubic=True)
    bad = Atoms("H", positions=[[0, 0, 0]], cell=[[2, 0, 0], [0, 2, 0], [2, 2, 0]], pbc=True)
    with pytest.raises(atomml.InputError, match="structure 2"):
        check_graph(atomml.from_ase([good, molecule("H2O"), bad]))
    check_graph(atomml.from_ase([good, molecule("H2O"), fcc111("Cu", size=(1, 1, 2), vacuum=3.0)]))
