"""Version 2 of the organic reference set: what single-molecule MD does not sample (issue 23).

The version-1 set (``scripts/generate_organic_data.py``) holds MD frames and small random
displacements of single molecules. A potential trained on it alone misorders conformers, gets
rigid torsion profiles wrong and has no intermolecular attraction. This script adds, for the
*training* molecules of that script (never its held-out ones, never the molecules and pairs of the
property benchmark ``atomml.validation.molecules``), frames labelled with GFN2-xTB (tblite), with
``info["source"]``:

- ``torsion``: rigid scans of up to two rotatable bonds per molecule (single, non-ring bonds
  between atoms with other neighbours, methyl rotors included) in 30-degree steps from an MMFF
  conformer (RDKit ``SetDihedralDeg``), rattled by 0.01 Å; frames with atoms closer than 0.9 Å
  that are not bonded are skipped;
- ``conformer``: up to 20 distinct ETKDG conformers (RMSD > 0.05 Å, MMFF-relaxed), each relaxed
  further with GFN2-xTB (BFGS, fmax 0.05 eV/Å, at most 100 steps): the final geometry and those
  after 3 and 10 steps;
- ``normal_mode``: normal-mode sampling about the GFN2-xTB minimum of the first conformer: the
  finite-difference Hessian (``ase.vibrations.Vibrations``), then six frames displaced along
  every vibrational mode with a classical thermal amplitude at 300-1,200 K (Gaussian in
  mass-weighted coordinates, capped at 0.3 Å per mode);
- ``dimer``: pairs of training molecules (hydrogen-bonded, ionic, stacked aromatic and
  dispersion-bound; the list below): from eight random relative orientations (half of the
  aromatic pairs' starts stacked) at a closest contact of 2.0-2.6 Å, a GFN2-xTB relaxation of
  the complex (BFGS, fmax 0.1 eV/Å, at most 40 steps), then the relaxed complex and rigid shifts
  of the second molecule along the line between the centres of mass by -0.35 to +2.5 Å. The
  pair's ``molecule`` is ``"a+b"``, its ``smiles`` the dotted SMILES, its ``charge`` the sum;
- ``stretch`` (version 3): rigid stretches of one X-H bond and one bond between heavy atoms (not
  in a ring) per molecule, from 0.8 to 2.0 times the MMFF length (ten lengths drawn uniformly;
  RDKit ``SetBondLength`` moves the fragment on the second atom's side), so that bonds pulled
  beyond their equilibrium do not meet an empty region of the training data.

Run (from the repository root, after ``generate_organic_data.py``)::

    .venv/bin/python scripts/generate_organic_extra.py [--output data/generated/organic]
        [--seed 0] [--workers 2] [--limit K]

Writes under OUTPUT: ``extra/NAME.extxyz`` per molecule, ``pairs/A+B.extxyz`` per pair and
``stretch/NAME.extxyz`` per molecule (``.failed.json`` with the reason where xTB failed),
``organic_extra.extxyz`` (the extra and pair frames), ``organic_train_pool_v2.extxyz`` (the
version-1 pool followed by them), ``organic_stretch.extxyz``, ``organic_train_pool_v3.extxyz``
(pool v2 followed by the stretches: the training pool of the shipped potential) and
``manifest_extra.json``. Resumable like the version-1
script: every file is written atomically when finished and skipped on a rerun, and each job
draws its random numbers from its own stream, derived from ``--seed`` and its place in its list.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculatorError
from ase.io import read, write
from ase.optimize import BFGS
from ase.vibrations import Vibrations
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolTransforms
from tblite.ase import TBLite

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_organic_data import (  # noqa: E402
    HELD_OUT, TRAINING, GenerationFailed, Molecule, check_lists, labelled_frame, report_skipped)

from atomml import units  # noqa: E402
from atomml.files import concatenate, replacing, write_json, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

TORSION_STEP_DEG = 30
MAX_TORSIONS = 2
N_CONFORMERS = 20
CONFORMER_FMAX = 0.05
CONFORMER_STEPS = 100
CONFORMER_MIDWAY = (3, 10)  # steps after which a frame of the relaxation is kept too
N_NORMAL_MODE = 6
NORMAL_MODE_T_K = (300.0, 1200.0)
NORMAL_MODE_CAP_A = 0.3
MIN_CONTACT_A = 0.9
N_ORIENTATIONS = 8
CONTACT_A = (2.0, 2.6)
DIMER_FMAX = 0.1
DIMER_STEPS = 40
SHIFTS_A = (-0.35, -0.15, 0.25, 0.6, 1.0, 1.6, 2.5)
STRETCH_SCALES = (0.8, 2.0)
N_STRETCH = 10

# (first, second, kind): kind "hbond", "ionic", "stack" (aromatic: half the starts stacked) or "disp".
PAIRS = [
    ("water", "water", "hbond"), ("water", "methanol", "hbond"), ("methanol", "methanol", "hbond"),
    ("water", "ammonia", "hbond"), ("ammonia", "ammonia", "hbond"), ("methanol", "ammonia", "hbond"),
    ("formamide", "formamide", "hbond"), ("formamide", "water", "hbond"), ("formic_acid", "formic_acid", "hbond"),
    ("acetic_acid", "acetic_acid", "hbond"), ("acetic_acid", "water", "hbond"), ("water", "acetone", "hbond"),
    ("water", "formaldehyde", "hbond"), ("methanol", "formaldehyde", "hbond"), ("water", "dimethyl_ether", "hbond"),
    ("ethanol", "water", "hbond"), ("water", "pyridine", "hbond"), ("phenol", "water", "hbond"),
    ("n_methylacetamide", "n_methylacetamide", "hbond"), ("urea", "urea", "hbond"), ("acetamide", "water", "hbond"),
    ("methylamine", "water", "hbond"), ("hydrogen_sulfide", "water", "hbond"), ("water", "acetonitrile", "hbond"),
    ("imidazole", "water", "hbond"), ("2_pyridone", "2_pyridone", "hbond"), ("methanol", "acetone", "hbond"),
    ("dimethyl_sulfoxide", "water", "hbond"), ("water", "tetrahydrofuran", "hbond"),
    ("acetate", "methylammonium", "ionic"), ("formate", "ammonium", "ionic"), ("formate", "guanidinium", "ionic"),
    ("acetate", "water", "ionic"), ("methylammonium", "water", "ionic"), ("ammonium", "water", "ionic"),
    ("phenolate", "water", "ionic"), ("formate", "water", "ionic"), ("imidazolium", "water", "ionic"),
    ("acetate", "methanol", "ionic"), ("pyridinium", "water", "ionic"),
    ("benzene", "benzene", "stack"), ("pyridine", "pyridine", "stack"), ("benzene", "pyridine", "stack"),
    ("furan", "furan", "stack"), ("thiophene", "benzene", "stack"), ("pyrrole", "pyrrole", "stack"),
    ("imidazole", "benzene", "stack"), ("uracil", "uracil", "stack"), ("phenol", "benzene", "stack"),
    ("benzene", "water", "disp"), ("methane", "methane", "disp"), ("methane", "water", "disp"),
    ("ethane", "ethane", "disp"), ("benzene", "methane", "disp"), ("chloromethane", "chloromethane", "disp"),
    ("dichloromethane", "water", "disp"), ("carbon_tetrachloride", "methane", "disp"),
    ("formaldehyde", "formaldehyde", "disp"), ("acetonitrile", "acetonitrile", "disp"),
    ("fluoromethane", "water", "disp"), ("methane", "ammonia", "disp"), ("ethene", "ethene", "disp"),
    ("ethyne", "ethyne", "disp"), ("hydrogen_cyanide", "hydrogen_cyanide", "disp"), ("propane", "propane", "disp"),
]

ROTATABLE = Chem.MolFromSmarts("[!D1&!$(*#*)]-&!@[!D1&!$(*#*)]")


def benchmark_exclusions() -> tuple[set[str], set[frozenset[str]]]:
    """Canonical SMILES of the property benchmark's molecules and of its pairs: never trained on."""
    from atomml.validation import molecules as bench

    def canonical(smiles: str) -> str:
        return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))

    singles = {canonical(entry[1]) for table in (bench.TORSIONS, bench.CONFORMER_MOLECULES,
                                                 bench.FREQUENCY_MOLECULES, bench.BOND_SCANS) for entry in table}
    pairs = {frozenset((canonical(a[0]), canonical(b[0]))) for _, a, b, _ in bench.DIMERS}
    return singles, pairs


def xtb(charge: int) -> TBLite:
    return TBLite(method="GFN2-xTB", charge=charge, verbosity=0)


def close_contacts(atoms: Atoms, bonds: set[tuple[int, int]]) -> bool:
    """Two atoms that are not bonded closer than MIN_CONTACT_A."""
    d = atoms.get_all_distances()
    i, j = np.nonzero(np.triu(d < MIN_CONTACT_A, 1))
    return any((a, b) not in bonds for a, b in zip(i.tolist(), j.tolist()))


def embed(smiles: str, n: int, rng: np.random.Generator) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(rng.integers(2**31 - 1))
    params.pruneRmsThresh = 0.05
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n, params=params))
    if not ids:
        raise GenerationFailed("ETKDG embedded no conformer")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=1000)
    else:
        AllChem.UFFOptimizeMoleculeConfs(mol, maxIters=1000)
    return mol


def symbols_of(mol: Chem.Mol) -> list[str]:
    return [atom.GetSymbol() for atom in mol.GetAtoms()]


def torsion_frames(molecule: Molecule, mol: Chem.Mol, rng: np.random.Generator) -> list[Atoms]:
    """Rigid scans of up to MAX_TORSIONS rotatable bonds of conformer 0."""
    matches = list(mol.GetSubstructMatches(ROTATABLE))
    # heavy-atom torsions first (both ends with a heavy neighbour besides each other), then rotors
    def heavy_neighbour(a: int, other: int) -> int | None:
        for nb in mol.GetAtomWithIdx(a).GetNeighbors():
            if nb.GetIdx() != other and nb.GetAtomicNum() > 1:
                return nb.GetIdx()
        return None

    def any_neighbour(a: int, other: int) -> int:
        return next(nb.GetIdx() for nb in mol.GetAtomWithIdx(a).GetNeighbors() if nb.GetIdx() != other)

    ranked = sorted(matches, key=lambda m: -(heavy_neighbour(m[0], m[1]) is not None) - (heavy_neighbour(m[1], m[0]) is not None))
    bonds = {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in mol.GetBonds()}
    calculator = xtb(molecule.charge)
    frames = []
    for number, (j, k) in enumerate(ranked[:MAX_TORSIONS]):
        i = heavy_neighbour(j, k)
        i = any_neighbour(j, k) if i is None else i
        m = heavy_neighbour(k, j)
        m = any_neighbour(k, j) if m is None else m
        conformer = Chem.Conformer(mol.GetConformer(0))
        for angle in range(0, 360, TORSION_STEP_DEG):
            rdMolTransforms.SetDihedralDeg(conformer, i, j, k, m, float(angle))
            atoms = Atoms(symbols_of(mol), positions=conformer.GetPositions())
            atoms.positions += rng.normal(0.0, 0.01, atoms.positions.shape)
            if close_contacts(atoms, bonds):
                continue
            atoms.calc = calculator
            frames.append(labelled_frame(atoms, molecule, "torsion", number))
    return frames


def relax(atoms: Atoms, fmax: float, steps: int, keep: tuple[int, ...] = ()) -> tuple[Atoms, list[Atoms]]:
    """BFGS with the attached calculator; the final geometry and copies after the steps in ``keep``."""
    kept: list[Atoms] = []
    optimizer = BFGS(atoms, logfile=None)
    optimizer.attach(lambda: kept.append(atoms.copy()) if optimizer.nsteps in keep else None)
    optimizer.run(fmax=fmax, steps=steps)
    return atoms, kept


def conformer_frames(molecule: Molecule, mol: Chem.Mol) -> tuple[list[Atoms], Atoms]:
    """Each conformer relaxed by GFN2-xTB: final and midway frames; also conformer 0's minimum."""
    frames, first = [], None
    for number, conformer in enumerate(mol.GetConformers()):
        atoms = Atoms(symbols_of(mol), positions=conformer.GetPositions())
        atoms.calc = xtb(molecule.charge)
        final, kept = relax(atoms, CONFORMER_FMAX, CONFORMER_STEPS, CONFORMER_MIDWAY)
        for frame in kept:
            frame.calc = xtb(molecule.charge)
            frames.append(labelled_frame(frame, molecule, "conformer", number))
        frames.append(labelled_frame(final, molecule, "conformer", number))
        first = final if first is None else first
    return frames, first


def normal_mode_frames(molecule: Molecule, minimum: Atoms, rng: np.random.Generator) -> list[Atoms]:
    """Thermal displacements along the normal modes of the GFN2-xTB Hessian at ``minimum``."""
    atoms = minimum.copy()
    atoms.calc = xtb(molecule.charge)
    relax(atoms, 0.01, 100)
    with tempfile.TemporaryDirectory() as cache:
        vib = Vibrations(atoms, name=str(Path(cache) / "vib"), delta=0.01, nfree=2)
        vib.run()
        hessian = vib.get_vibrations().get_hessian_2d()  # eV/Å^2, (3n, 3n)
    masses = np.repeat(atoms.get_masses(), 3)
    weighted = hessian / np.sqrt(np.outer(masses, masses))
    eigenvalues, vectors = np.linalg.eigh(0.5 * (weighted + weighted.T))
    n_rigid = 5 if len(atoms) == 2 or is_linear(atoms) else 6
    keep = np.argsort(np.abs(eigenvalues))[n_rigid:]  # drop translations and rotations
    eigenvalues, vectors = eigenvalues[keep], vectors[:, keep]
    stiff = np.maximum(eigenvalues, 1e-3)  # soft and imaginary modes get the cap below
    frames = []
    for number in range(N_NORMAL_MODE):
        kT = units.BOLTZMANN_EV_PER_K * rng.uniform(*NORMAL_MODE_T_K)
        q = rng.normal(0.0, np.sqrt(kT / stiff))  # mass-weighted amplitudes, sqrt(amu) Å
        cartesian = vectors * q / np.sqrt(masses)[:, None]  # (3n, modes): each mode's displacement
        norms = np.linalg.norm(cartesian, axis=0)
        cartesian *= np.minimum(1.0, NORMAL_MODE_CAP_A / np.maximum(norms, 1e-12))
        frame = atoms.copy()
        frame.positions += cartesian.sum(axis=1).reshape(-1, 3)
        frame.calc = xtb(molecule.charge)
        frames.append(labelled_frame(frame, molecule, "normal_mode", number))
    return frames


def is_linear(atoms: Atoms) -> bool:
    centred = atoms.positions - atoms.positions.mean(axis=0)
    return np.linalg.svd(centred, compute_uv=False)[1] < 1e-3


def sample_molecule(molecule: Molecule, seed: int) -> list[Atoms]:
    rng = np.random.default_rng([seed, 2, molecule.index])
    mol = embed(molecule.smiles, N_CONFORMERS, rng)
    frames = torsion_frames(molecule, mol, rng)
    conformers, minimum = conformer_frames(molecule, mol)
    return frames + conformers + normal_mode_frames(molecule, minimum, rng)


def stretch_frames(molecule: Molecule, seed: int) -> list[Atoms]:
    """Rigid stretches of one X-H bond and one non-ring heavy-atom bond of conformer 0."""
    rng = np.random.default_rng([seed, 4, molecule.index])
    mol = embed(molecule.smiles, 1, rng)
    conformer = mol.GetConformer(0)
    bonds = [b for b in mol.GetBonds() if not b.IsInRing()]
    with_h = [b for b in bonds if 1 in (b.GetBeginAtom().GetAtomicNum(), b.GetEndAtom().GetAtomicNum())]
    heavy = [b for b in bonds if b not in with_h]
    chosen = [group[int(rng.integers(len(group)))] for group in (with_h, heavy) if group]
    calculator = xtb(molecule.charge)
    frames = []
    for number, bond in enumerate(chosen):
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if mol.GetAtomWithIdx(i).GetAtomicNum() == 1:  # move the hydrogen, not the rest
            i, j = j, i
        length = rdMolTransforms.GetBondLength(conformer, i, j)
        for scale in np.sort(rng.uniform(*STRETCH_SCALES, N_STRETCH)):
            moved = Chem.Conformer(conformer)
            rdMolTransforms.SetBondLength(moved, i, j, float(scale * length))
            atoms = Atoms(symbols_of(mol), positions=moved.GetPositions())
            atoms.calc = calculator
            frames.append(labelled_frame(atoms, molecule, "stretch", number))
    return frames


# ---- pairs ------------------------------------------------------------------------------------


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def plane_normal(positions: np.ndarray) -> np.ndarray:
    centred = positions - positions.mean(axis=0)
    return np.linalg.svd(centred)[2][2]


def place(first: Atoms, second: Atoms, stacked: bool, rng: np.random.Generator) -> Atoms:
    """The second monomer rotated and moved in until its closest contact with the first is 2.0-2.6 Å."""
    a = first.positions - first.get_center_of_mass()
    b = second.positions - second.get_center_of_mass()
    if stacked:  # parallel rings: turn b's ring normal onto a's, spin about it, offset in the plane
        na, nb = plane_normal(a), plane_normal(b)
        axis = np.cross(nb, na)
        if np.linalg.norm(axis) > 1e-8:
            axis /= np.linalg.norm(axis)
            angle = np.arccos(np.clip(nb @ na, -1, 1))
            b = b @ rotation_about(axis, angle).T
        b = b @ rotation_about(na, rng.uniform(0, 2 * np.pi)).T
        offset = np.cross(na, rng.normal(size=3))
        direction = na + rng.uniform(0.0, 0.4) * offset / max(np.linalg.norm(offset), 1e-8)
    else:
        b = b @ random_rotation(rng).T
        direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    target = rng.uniform(*CONTACT_A)
    distance = 12.0
    while distance > 0.5:  # move in from far away, 0.05 Å at a time, until the closest contact
        contact = np.min(np.linalg.norm(a[:, None] - (b + distance * direction)[None], axis=2))
        if contact <= target:
            break
        distance -= 0.05
    return Atoms(list(first.symbols) + list(second.symbols), positions=np.vstack([a, b + distance * direction]))


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def sample_pair(job: tuple[Molecule, Molecule, Molecule, str, int]) -> list[Atoms]:
    pair, first, second, kind, seed = job
    rng = np.random.default_rng([seed, 3, pair.index])
    monomers = []
    for molecule in (first, second):
        mol = embed(molecule.smiles, 1, rng)
        atoms = Atoms(symbols_of(mol), positions=mol.GetConformer(0).GetPositions())
        atoms.calc = xtb(molecule.charge)
        relax(atoms, 0.05, 60)
        monomers.append(atoms)
    n_first = len(monomers[0])
    frames = []
    for number in range(N_ORIENTATIONS):
        complex_ = place(monomers[0], monomers[1], kind == "stack" and number % 2 == 0, rng)
        complex_.calc = xtb(pair.charge)
        relax(complex_, DIMER_FMAX, DIMER_STEPS)
        frames.append(labelled_frame(complex_, pair, "dimer", number))
        com_a = complex_[:n_first].get_center_of_mass()
        com_b = complex_[n_first:].get_center_of_mass()
        axis = (com_b - com_a) / np.linalg.norm(com_b - com_a)
        for shift in SHIFTS_A:
            moved = complex_.copy()
            moved.positions[n_first:] += shift * axis
            if np.min(np.linalg.norm(moved.positions[:n_first, None] - moved.positions[None, n_first:], axis=2)) < 1.2:
                continue
            moved.calc = xtb(pair.charge)
            frames.append(labelled_frame(moved, pair, "dimer", number))
    return frames


# ---- driver -----------------------------------------------------------------------------------


def run_job(job: tuple) -> tuple[str, str | None]:
    """One molecule or pair: sample, label, write atomically (or the failure reason)."""
    what, target = job[0], Path(job[-1])
    try:
        if what == "molecule":
            frames = sample_molecule(job[1], job[2])
        elif what == "stretch":
            frames = stretch_frames(job[1], job[2])
        else:
            frames = sample_pair(job[1:-1])
    except (GenerationFailed, CalculatorError, ValueError, np.linalg.LinAlgError) as error:
        write_text(target.with_suffix(".failed.json"), json.dumps({"name": target.stem, "reason": str(error)}) + "\n")
        return target.stem, str(error)
    with replacing(target) as tmp:
        write(str(tmp), frames, format="extxyz")
    return target.stem, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "data" / "generated" / "organic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="smoke run: first K molecules and first K pairs")
    args = parser.parse_args()

    molecules = check_lists(TRAINING, HELD_OUT)
    train = {m.name: m for m in molecules if m.split == "train"}
    held_out = {m.smiles for m in molecules if m.split == "heldout"}
    singles, bench_pairs = benchmark_exclusions()
    clash = sorted(m.name for m in train.values() if m.smiles in singles)
    if clash:
        raise SystemExit(f"training molecules {clash} are property-benchmark molecules: remove them from one list")
    pairs, excluded = [], []
    for index, (a, b, kind) in enumerate(PAIRS):
        first, second = train[a], train[b]  # KeyError: a pair member that is not a training molecule
        if frozenset((first.smiles, second.smiles)) in bench_pairs or {first.smiles, second.smiles} & held_out:
            excluded.append(f"{a}+{b}")
            continue
        pair = Molecule(f"{a}+{b}", f"{first.smiles}.{second.smiles}", first.charge + second.charge,
                        first.n_atoms + second.n_atoms, "train", index)
        pairs.append((pair, first, second, kind))
    chosen = list(train.values())
    if args.limit is not None:
        chosen, pairs = chosen[: args.limit], pairs[: args.limit]
    for folder in ("extra", "pairs", "stretch"):
        (args.output / folder).mkdir(parents=True, exist_ok=True)
        for stale in (args.output / folder).glob("*.tmp*"):
            stale.unlink()
    jobs = [("molecule", m, args.seed, str(args.output / "extra" / f"{m.name}.extxyz")) for m in chosen]
    jobs += [("pair", p, a, b, kind, args.seed, str(args.output / "pairs" / f"{p.name}.extxyz")) for p, a, b, kind in pairs]
    jobs += [("stretch", m, args.seed, str(args.output / "stretch" / f"{m.name}.extxyz")) for m in chosen]

    def finished(target: str) -> bool:
        return Path(target).exists() or Path(target).with_suffix(".failed.json").exists()

    pending = [job for job in jobs if not finished(job[-1])]
    print(f"{len(chosen)} molecules + {len(pairs)} pairs ({len(excluded)} pairs excluded as benchmark or held-out "
          f"systems: {', '.join(excluded) or 'none'}); {len(pending)} to label; {args.workers} workers")
    from workers import run_jobs

    elapsed = run_jobs(run_job, pending, args.workers, "job", report_skipped)

    done = [Path(job[-1]) for job in jobs if Path(job[-1]).exists() and job[0] != "stretch"]
    stretched = [Path(job[-1]) for job in jobs if Path(job[-1]).exists() and job[0] == "stretch"]
    skipped = {Path(job[-1]).stem: json.loads(Path(job[-1]).with_suffix(".failed.json").read_text())["reason"]
               for job in jobs if Path(job[-1]).with_suffix(".failed.json").exists()}
    extra = args.output / "organic_extra.extxyz"
    concatenate(done, extra)
    pool_v1 = args.output / "organic_train_pool.extxyz"
    pool_v2 = args.output / "organic_train_pool_v2.extxyz"
    concatenate([pool_v1, extra], pool_v2)
    stretch = args.output / "organic_stretch.extxyz"
    concatenate(stretched, stretch)
    concatenate([pool_v2, stretch], args.output / "organic_train_pool_v3.extxyz")
    frames = read(str(extra), ":", format="extxyz") + read(str(stretch), ":", format="extxyz")
    by_source = {s: sum(f.info["source"] == s for f in frames)
                 for s in ("torsion", "conformer", "normal_mode", "dimer", "stretch")}
    manifest = {
        "description": "version-2 additions to the organic set: torsion scans, xTB-relaxed conformers, normal-mode "
                       "samples and molecular pairs, GFN2-xTB (tblite); generated by scripts/generate_organic_extra.py",
        "seed": args.seed, "limit": args.limit, "tblite_version": version("tblite"), "rdkit_version": version("rdkit"),
        "protocol": {"torsion_step_deg": TORSION_STEP_DEG, "max_torsions": MAX_TORSIONS, "conformers": N_CONFORMERS,
                     "conformer_fmax": CONFORMER_FMAX, "conformer_steps": CONFORMER_STEPS, "conformer_frames_after_steps": list(CONFORMER_MIDWAY),
                     "normal_mode_frames": N_NORMAL_MODE, "normal_mode_T_K": list(NORMAL_MODE_T_K),
                     "orientations": N_ORIENTATIONS, "contact_A": list(CONTACT_A), "dimer_fmax": DIMER_FMAX,
                     "dimer_steps": DIMER_STEPS, "shifts_A": list(SHIFTS_A), "stretch_scales": list(STRETCH_SCALES),
                     "stretch_frames_per_bond": N_STRETCH},
        "pairs": [{"name": p.name, "kind": kind, "charge": p.charge} for p, _, _, kind in pairs],
        "excluded_pairs": excluded, "frames": len(frames), "frames_by_source": by_source, "skipped": skipped,
        "files": {"extra": extra.name, "pool_v2": pool_v2.name, "stretch": stretch.name,
                  "pool_v3": "organic_train_pool_v3.extxyz"}, "elapsed_s_this_run": round(elapsed, 1),
    }
    write_json(args.output / "manifest_extra.json", manifest, indent=2)
    print(f"{len(frames)} extra frames {by_source} -> {extra}; pool v2 -> {pool_v2}; {len(skipped)} skipped")


if __name__ == "__main__":
    main()
