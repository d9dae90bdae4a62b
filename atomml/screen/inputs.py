"""Screening inputs: every structure of every input file becomes one :class:`Record`.

Supported inputs (by name):

- ``*.smi`` / ``*.smiles`` / ``*.txt``: one SMILES per line, optionally followed by an id
  (whitespace or comma separated; a ``#`` at the start of a line or after a space starts a
  comment, one inside a SMILES is a triple bond). Each molecule gets hydrogens and one
  RDKit conformer (ETKDG, then MMFF, seeded), its total charge from the formal charges.
- ``*.sdf`` / ``*.mol``: RDKit reads each molecule with its hydrogens and formal charges; a
  molecule without 3D coordinates gets a conformer as a SMILES would.
- ``*.xyz`` / ``*.extxyz``: every frame (ASE); the id from ``info["id"]`` or ``info["name"]``,
  the charge from ``info["charge"]`` (as :func:`atomml.graph.from_ase` reads it).
- ``*.db``: every row of an ASE database; the id from the row's ``name`` key-value pair, else
  ``stem:row``; the charge from a ``charge`` key-value pair.
- ``*.cif``, ``POSCAR*``, ``CONTCAR*``, ``*.vasp``, and folders of them: pymatgen reads each
  file (a CIF with several blocks gives one record per block).

Reading never raises for one bad structure: a record carries its ``status`` and ``message``
instead (``read_error``, ``bad_input``, ``embedding_failed``), and the screening table keeps a
row for it. Files are read where they are listed (cheap), SMILES are turned into 3D structures
where they are screened (:meth:`Record.build`, on a worker), since conformer generation costs
more than reading.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SMILES_SUFFIXES = (".smi", ".smiles", ".txt")
SDF_SUFFIXES = (".sdf", ".mol", ".sd")
XYZ_SUFFIXES = (".xyz", ".extxyz")
DB_SUFFIXES = (".db",)
CRYSTAL_SUFFIXES = (".cif", ".vasp", ".poscar")
CRYSTAL_PREFIXES = ("POSCAR", "CONTCAR")


@dataclasses.dataclass
class Record:
    """One structure to screen, or the reason there is none.

    Attributes:
        id: unique within a run (an input's own id where it has one; else ``stem:number``).
        source: where it came from, ``file:line`` (SMILES), ``file:index`` (frames, molecules,
            database rows, CIF blocks) or the file itself.
        atoms: the structure (ASE ``Atoms`` with ``info["charge"]``), None for a SMILES not yet
            built or a record that failed.
        smiles: the SMILES to build, for SMILES inputs.
        status: "" while fine, else the failure kind.
        message: what went wrong and what to do.
    """

    id: str
    source: str
    atoms: Any = None
    smiles: str | None = None
    status: str = ""
    message: str = ""

    def build(self, seed: int = 0) -> Record:
        """This record with a 3D structure: SMILES records get their conformer here."""
        if self.status or self.smiles is None or self.atoms is not None:
            return self
        try:
            atoms = smiles_to_atoms(self.smiles, seed)
        except _BuildError as exc:
            return dataclasses.replace(self, status=exc.status, message=str(exc))
        return dataclasses.replace(self, atoms=atoms)


class _BuildError(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def smiles_to_atoms(smiles: str, seed: int = 0) -> Any:
    """ASE ``Atoms`` of ``smiles`` with hydrogens, one ETKDG conformer (MMFF-optimised where MMFF
    has parameters) and ``info["charge"]`` from the formal charges."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")  # the record's message says it in one line
    try:
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise _BuildError("bad_input", f"RDKit cannot read the SMILES {smiles!r}; check it (ethanol is CCO)")
        mol = Chem.AddHs(mol)
        params = AllChem.ETKDGv3()
        params.randomSeed = int(seed)
        if AllChem.EmbedMolecule(mol, params) != 0:
            params.useRandomCoords = True  # RDKit's advice for large or strained molecules
            if AllChem.EmbedMolecule(mol, params) != 0:
                raise _BuildError("embedding_failed", f"RDKit could not embed a 3D conformer of {smiles!r}")
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    finally:
        RDLogger.EnableLog("rdApp.*")
    return mol_to_atoms(mol)


def mol_to_atoms(mol: Any) -> Any:
    """ASE ``Atoms`` of an RDKit molecule's first conformer, charge from its formal charges."""
    from ase import Atoms
    from rdkit import Chem

    positions = mol.GetConformer().GetPositions()
    atoms = Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=positions)
    atoms.info["charge"] = int(Chem.GetFormalCharge(mol))
    return atoms


def read_records(inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[Record]:
    """Every structure of ``inputs`` (files or folders, in the order given) as records with
    unique ids; a missing or unreadable file is a record with ``status="read_error"``."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    records: list[Record] = []
    for item in inputs:
        records.extend(_records_of(Path(item)))
    return _unique_ids(records)


def _records_of(path: Path) -> Iterator[Record]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _kind(p) is not None)
        if not files:
            yield Record(
                id=path.name, source=str(path), status="read_error",
                message=f"folder {path} holds no structure files (CIF, POSCAR/CONTCAR, *.vasp, SMILES, SDF, "
                        "extxyz or ASE database)",
            )  # fmt: skip
        for file in files:
            yield from _records_of(file)
        return
    if not path.exists():
        yield Record(id=path.stem, source=str(path), status="read_error", message=f"{path}: no such file or folder")
        return
    kind = _kind(path)
    reader = {"smiles": _smiles, "sdf": _sdf, "xyz": _xyz, "db": _db, "crystal": _crystal}.get(kind or "")
    if reader is None:
        yield Record(
            id=path.stem, source=str(path), status="read_error",
            message=f"{path}: unknown kind of input; give .smi, .sdf, .xyz/.extxyz, .db, .cif, POSCAR/CONTCAR or "
                    "*.vasp files, or a folder of them",
        )  # fmt: skip
        return
    try:
        yield from reader(path)
    except Exception as exc:  # a file that cannot be read at all: one row says so
        yield Record(id=path.stem, source=str(path), status="read_error", message=f"{path}: {_one_line(exc)}")


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in SMILES_SUFFIXES:
        return "smiles"
    if suffix in SDF_SUFFIXES:
        return "sdf"
    if suffix in XYZ_SUFFIXES:
        return "xyz"
    if suffix in DB_SUFFIXES:
        return "db"
    if suffix in CRYSTAL_SUFFIXES or path.name.upper().startswith(CRYSTAL_PREFIXES):
        return "crystal"
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _smiles(path: Path) -> Iterator[Record]:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = re.split(r"\s#", line, maxsplit=1)[0].strip()  # "#" is a triple bond inside a SMILES
        if not text or text.startswith("#"):
            continue
        fields = text.replace(",", " ").split()
        smiles = fields[0]
        ident = fields[1] if len(fields) > 1 else f"{path.stem}:{number}"
        yield Record(id=ident, source=f"{path.name}:{number}", smiles=smiles)


def _sdf(path: Path) -> Iterator[Record]:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        supplier = Chem.SDMolSupplier(str(path), removeHs=False)
        for index in range(len(supplier)):
            mol = supplier[index]
            source = f"{path.name}:{index}"
            if mol is None:
                yield Record(id=f"{path.stem}:{index}", source=source, status="read_error",
                             message=f"{source}: RDKit cannot read this molecule (bad valence or a damaged block)")  # fmt: skip
                continue
            name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") else ""
            ident = name or f"{path.stem}:{index}"
            if mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D():
                yield Record(id=ident, source=source, smiles=Chem.MolToSmiles(mol))
            else:
                yield Record(id=ident, source=source, atoms=mol_to_atoms(mol))
    finally:
        RDLogger.EnableLog("rdApp.*")


def _info_id(info: dict[str, Any]) -> str | None:
    for key in ("id", "name"):
        if key in info and str(info[key]).strip():
            return str(info[key]).strip()
    return None


def _xyz(path: Path) -> Iterator[Record]:
    import ase.io

    for index, atoms in enumerate(ase.io.iread(str(path), index=":")):
        atoms.calc = None  # stored energies and forces are not this potential's
        ident = _info_id(atoms.info) or f"{path.stem}:{index}"
        yield Record(id=ident, source=f"{path.name}:{index}", atoms=atoms)


def _db(path: Path) -> Iterator[Record]:
    import ase.db

    with ase.db.connect(str(path)) as db:
        for row in db.select():
            atoms = row.toatoms()
            pairs = dict(row.key_value_pairs)
            if "charge" in pairs:
                atoms.info["charge"] = pairs["charge"]
            ident = _info_id(pairs) or f"{path.stem}:{row.id}"
            yield Record(id=ident, source=f"{path.name}:{row.id}", atoms=atoms)


def _crystal(path: Path) -> Iterator[Record]:
    from pymatgen.io.ase import AseAtomsAdaptor

    if path.suffix.lower() == ".cif":
        import warnings

        from pymatgen.io.cif import CifParser

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about every rounding it applies
            structures = CifParser(str(path)).parse_structures(primitive=False)
    else:
        from pymatgen.core import Structure

        structures = [Structure.from_file(str(path))]
    for index, structure in enumerate(structures):
        ident = path.stem if len(structures) == 1 else f"{path.stem}:{index}"
        source = path.name if len(structures) == 1 else f"{path.name}:{index}"
        if not structure.is_ordered:
            yield Record(id=ident, source=source, status="bad_input",
                         message=f"{source}: disordered sites (partial occupancies); order the structure first, e.g. "
                                 "with pymatgen's OrderDisorderedStructureTransformation")  # fmt: skip
            continue
        atoms = AseAtomsAdaptor.get_atoms(structure, msonable=False)
        atoms.calc = None
        yield Record(id=ident, source=source, atoms=atoms)


def _unique_ids(records: Iterable[Record]) -> list[Record]:
    """Ids as given where unique; a repeated id gets ``#2``, ``#3``, ... in order of appearance."""
    seen: dict[str, int] = {}
    out = []
    for record in records:
        count = seen.get(record.id, 0) + 1
        seen[record.id] = count
        out.append(record if count == 1 else dataclasses.replace(record, id=f"{record.id}#{count}"))
    return out


def fingerprint(records: Sequence[Record]) -> str:
    """A digest of what the records hold (ids, sources, SMILES, numbers, positions, cells,
    charges): a resumed run checks that it screens the same structures in the same order."""
    import hashlib

    digest = hashlib.sha256()
    for r in records:
        digest.update(f"{r.id}\x00{r.source}\x00{r.smiles}\x00{r.status}\x00".encode())
        if r.atoms is not None:
            digest.update(np.ascontiguousarray(r.atoms.numbers, dtype=np.int64).tobytes())
            digest.update(np.ascontiguousarray(r.atoms.positions, dtype=np.float64).tobytes())
            digest.update(np.ascontiguousarray(r.atoms.cell.array, dtype=np.float64).tobytes())
            digest.update(np.ascontiguousarray(r.atoms.pbc, dtype=bool).tobytes())
            digest.update(repr(r.atoms.info.get("charge")).encode())
    return digest.hexdigest()
