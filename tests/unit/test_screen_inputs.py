"""Screening inputs: every kind of file, and a row (never a crash) for what cannot be read."""

from __future__ import annotations

import ase.db
import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule

from atomml.screen.inputs import fingerprint, read_records


def test_smiles_file_ids_comments_charges_and_triple_bonds(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("# SMILES id\nCC#N acetonitrile  # nitrile: '#' inside a SMILES is a bond\n\nC[NH3+],methylammonium\n"
                    "CCO\nC1CC1N( broken\n")  # fmt: skip
    records = read_records(path)
    assert [r.id for r in records] == ["acetonitrile", "methylammonium", "mols:5", "broken"]
    assert [r.source for r in records] == ["mols.smi:2", "mols.smi:4", "mols.smi:5", "mols.smi:6"]
    assert records[0].smiles == "CC#N"
    built = [r.build(seed=0) for r in records]
    assert built[0].atoms.get_chemical_formula() == "C2H3N"
    assert built[1].atoms.info["charge"] == 1 and len(built[1].atoms) == 8
    assert built[3].status == "bad_input" and "C1CC1N(" in built[3].message
    again = read_records(path)[2].build(seed=0)
    np.testing.assert_array_equal(again.atoms.positions, built[2].atoms.positions)  # seeded conformers


def test_sdf_extxyz_db_and_crystal_folder(tmp_path):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)[O-]"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    mol.SetProp("_Name", "acetate")
    flat = Chem.MolFromSmiles("CO")  # 2D coordinates only: embedded when built
    AllChem.Compute2DCoords(flat)
    with Chem.SDWriter(str(tmp_path / "mols.sdf")) as writer:
        writer.write(mol)
        writer.write(flat)

    water = molecule("H2O")
    water.info["name"] = "water"
    ase.io.write(tmp_path / "frames.extxyz", [water, molecule("CH4")], format="extxyz")

    with ase.db.connect(str(tmp_path / "structures.db")) as db:
        db.write(molecule("NH3"), name="ammonia", charge=0)
        db.write(bulk("Cu"))

    crystals = tmp_path / "crystals"
    crystals.mkdir()
    ase.io.write(crystals / "cu.cif", bulk("Cu", cubic=True))
    ase.io.write(crystals / "POSCAR", bulk("Al", cubic=True), format="vasp")
    (crystals / "notes.md").write_text("not a structure: skipped by the folder reader")
    (crystals / "bad.cif").write_text("data_bad\n_cell_length_a nonsense\n")
    (tmp_path / "odd.foo").write_text("?")

    records = read_records([tmp_path / "mols.sdf", tmp_path / "frames.extxyz", tmp_path / "structures.db", crystals,
                            tmp_path / "missing.xyz", tmp_path / "odd.foo"])  # fmt: skip
    by_id = {r.id: r for r in records}
    assert by_id["acetate"].atoms.info["charge"] == -1 and len(by_id["acetate"].atoms) == 7
    assert by_id["mols:1"].smiles == "CO" and by_id["mols:1"].build().atoms.get_chemical_formula() == "CH4O"
    assert by_id["water"].atoms.get_chemical_formula() == "H2O" and by_id["frames:1"].source == "frames.extxyz:1"
    assert by_id["ammonia"].atoms.get_chemical_formula() == "H3N" and "structures:2" in by_id
    assert by_id["cu"].atoms.pbc.all() and len(by_id["cu"].atoms) == 4
    assert len(by_id["POSCAR"].atoms) == 4 and set(by_id["POSCAR"].atoms.symbols) == {"Al"}
    assert by_id["bad"].status == "read_error" and "bad.cif" in by_id["bad"].message
    assert by_id["missing"].status == "read_error" and "no such file" in by_id["missing"].message
    assert by_id["odd"].status == "read_error" and "unknown kind of input" in by_id["odd"].message
    assert "notes" not in by_id


def test_repeated_ids_are_made_unique_and_the_fingerprint_sees_changes(tmp_path):
    path = tmp_path / "a.smi"
    path.write_text("CCO x\nCCC x\nCCCC x\n")
    records = read_records([path])
    assert [r.id for r in records] == ["x", "x#2", "x#3"]
    digest = fingerprint(records)
    assert digest == fingerprint(read_records([path]))
    path.write_text("CCO x\nCCC x\nCCCCC x\n")
    assert digest != fingerprint(read_records([path]))


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_smiles_file_has_no_records(tmp_path, text):
    path = tmp_path / "empty.smi"
    path.write_text(text)
    assert read_records([path]) == []
