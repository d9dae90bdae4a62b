"""Generate the organic reference set: small molecules labelled with GFN2-xTB (tblite).

Each molecule (a fixed, hand-written list below) gets two RDKit ETKDG conformers (MMFF-relaxed);
each conformer gives Langevin MD frames at 300 K and at 600 K (GFN2-xTB forces, 0.5 fs steps)
and Gaussian-displaced frames of the relaxed conformer (RMS displacement 0.03-0.1 Å per atom).
Every frame carries the GFN2-xTB energy (eV) and forces (eV/Å) and ``info`` keys ``molecule``,
``smiles`` (canonical), ``charge`` (total, e), ``source`` ("md300" | "md600" | "displaced") and
``conformer``. Molecules are non-periodic (no cell). A separate held-out list (paracetamol among
them) is never trained on; the script refuses to run if a held-out molecule is also in the
training list (compared by canonical SMILES).

Run (from the repository root; needs the ``data`` extra: tblite, rdkit)::

    .venv/bin/python scripts/generate_organic_data.py [--output data/generated/organic]
        [--seed 0] [--workers 2] [--limit K]

``--limit K`` makes a quick smoke run: the first K training and the first 2 held-out molecules.

Writes, under OUTPUT:

- ``molecules/NAME.extxyz``: one file per finished molecule (``NAME.failed.json`` with the
  reason when its xTB calculation failed or its MD exploded: a bond stretched beyond twice its
  starting length; such a molecule is reported and left out; delete the file to retry);
- ``organic_train_pool.extxyz`` and ``organic_heldout.extxyz``: the merged training pool and
  held-out set, in list order;
- ``manifest.json``: seed, protocol, counts, molecule lists with SMILES and charges, skipped
  molecules, elapsed time and the tblite version.

Resumable: each molecule's file is written atomically (temporary file + ``os.replace``) when the
molecule is finished, and a rerun skips finished molecules. Every molecule draws its random
numbers from its own stream, derived from ``--seed`` and its place in its list, and each worker
runs tblite on one thread, so a resumed run writes the same data as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculatorError
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from rdkit import Chem
from rdkit.Chem import AllChem
from tblite.ase import TBLite
from tqdm import tqdm

from atomml import units
from atomml.analysis import BondMonitor
from atomml.files import concatenate, replacing, write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
ELEMENTS = {"H", "C", "N", "O", "F", "S", "Cl"}
MAX_ATOMS = 25

# Sampling protocol (per conformer): MD at each temperature, then displaced copies.
N_CONFORMERS = 2
TEMPERATURES_K = (300.0, 600.0)
TIMESTEP_FS = 0.5
FRICTION_PER_FS = 0.01
EQUILIBRATION_STEPS = 100
FRAME_STRIDE = 20
FRAMES_PER_TEMPERATURE = 10
N_DISPLACED = 6
DISPLACEMENT_RMS_A = (0.03, 0.10)  # root-mean-square displacement per atom, drawn per frame
MAX_BOND_STRETCH = 2.0  # a bond longer than this times its starting length: the MD exploded

# (name, SMILES). Names are file names: lower case, digits and underscores.
TRAINING = [
    # alkanes, cycloalkanes
    ("methane", "C"), ("ethane", "CC"), ("propane", "CCC"), ("butane", "CCCC"),
    ("pentane", "CCCCC"), ("neopentane", "CC(C)(C)C"),
    ("cyclopropane", "C1CC1"), ("cyclohexane", "C1CCCCC1"),
    # alkenes, alkynes
    ("ethene", "C=C"), ("propene", "C=CC"), ("e_but_2_ene", "C/C=C/C"),
    ("butadiene", "C=CC=C"), ("cyclohexene", "C1=CCCCC1"),
    ("ethyne", "C#C"), ("propyne", "CC#C"),
    # aromatics
    ("benzene", "c1ccccc1"), ("toluene", "Cc1ccccc1"),
    ("p_xylene", "Cc1ccc(C)cc1"), ("styrene", "C=Cc1ccccc1"), ("naphthalene", "c1ccc2ccccc2c1"),
    ("phenol", "Oc1ccccc1"), ("p_cresol", "Cc1ccc(O)cc1"),
    ("hydroquinone", "Oc1ccc(O)cc1"), ("4_methoxyphenol", "COc1ccc(O)cc1"), ("aniline", "Nc1ccccc1"),
    ("n_methylaniline", "CNc1ccccc1"), ("4_aminophenol", "Nc1ccc(O)cc1"), ("anisole", "COc1ccccc1"),
    ("benzyl_alcohol", "OCc1ccccc1"),
    # heteroaromatics
    ("pyridine", "c1ccncc1"), ("2_methylpyridine", "Cc1ccccn1"),
    ("pyrimidine", "c1cncnc1"), ("furan", "c1ccoc1"), ("thiophene", "c1ccsc1"),
    ("pyrrole", "c1cc[nH]c1"), ("imidazole", "c1cnc[nH]1"), ("pyrazole", "c1cn[nH]c1"), ("oxazole", "c1cocn1"),
    ("thiazole", "c1cscn1"), ("triazole_124", "c1nc[nH]n1"),
    ("indole", "c1ccc2[nH]ccc2c1"), ("2_pyridone", "O=c1cccc[nH]1"),
    ("uracil", "O=c1cc[nH]c(=O)[nH]1"), ("nicotinamide", "NC(=O)c1cccnc1"),
    ("caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"),
    # water and simple hydrides
    ("water", "O"), ("ammonia", "N"), ("hydrogen_sulfide", "S"), ("hydrogen_cyanide", "C#N"),
    # alcohols
    ("methanol", "CO"), ("ethanol", "CCO"), ("propan_1_ol", "CCCO"), ("propan_2_ol", "CC(C)O"),
    ("tert_butanol", "CC(C)(C)O"), ("ethylene_glycol", "OCCO"),
    ("glycerol", "OCC(O)CO"), ("cyclohexanol", "OC1CCCCC1"),
    # ethers
    ("dimethyl_ether", "COC"), ("diethyl_ether", "CCOCC"), ("tetrahydrofuran", "C1CCOC1"),
    ("dioxane", "C1COCCO1"),
    # aldehydes, ketones
    ("formaldehyde", "C=O"), ("acetaldehyde", "CC=O"),
    ("benzaldehyde", "O=Cc1ccccc1"), ("4_hydroxybenzaldehyde", "O=Cc1ccc(O)cc1"), ("acetone", "CC(C)=O"),
    ("cyclohexanone", "O=C1CCCCC1"),
    ("acetylacetone", "CC(=O)CC(C)=O"), ("acetophenone", "CC(=O)c1ccccc1"),
    ("4_hydroxyacetophenone", "CC(=O)c1ccc(O)cc1"),
    # carboxylic acids
    ("formic_acid", "OC=O"), ("acetic_acid", "CC(=O)O"), ("propanoic_acid", "CCC(=O)O"),
    ("oxalic_acid", "O=C(O)C(=O)O"), ("lactic_acid", "CC(O)C(=O)O"),
    ("benzoic_acid", "OC(=O)c1ccccc1"), ("4_hydroxybenzoic_acid", "O=C(O)c1ccc(O)cc1"),
    ("salicylic_acid", "O=C(O)c1ccccc1O"),
    ("methanesulfonic_acid", "CS(=O)(=O)O"),
    # esters, lactones
    ("methyl_formate", "COC=O"), ("methyl_acetate", "COC(C)=O"), ("ethyl_acetate", "CCOC(C)=O"),
    ("gamma_butyrolactone", "O=C1CCCO1"), ("methyl_benzoate", "COC(=O)c1ccccc1"),
    ("phenyl_acetate", "CC(=O)Oc1ccccc1"), ("methylparaben", "COC(=O)c1ccc(O)cc1"),
    ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"),
    # amines
    ("methylamine", "CN"), ("dimethylamine", "CNC"), ("trimethylamine", "CN(C)C"), ("ethylamine", "CCN"),
    ("diethylamine", "CCNCC"), ("ethylenediamine", "NCCN"), ("ethanolamine", "NCCO"),
    ("pyrrolidine", "C1CCNC1"), ("piperidine", "C1CCNCC1"), ("morpholine", "C1COCCN1"),
    # amides, ureas, carbamates
    ("formamide", "NC=O"), ("n_methylformamide", "CNC=O"), ("dimethylformamide", "CN(C)C=O"),
    ("acetamide", "CC(N)=O"), ("n_methylacetamide", "CNC(C)=O"), ("dimethylacetamide", "CC(=O)N(C)C"),
    ("propanamide", "CCC(N)=O"), ("2_pyrrolidinone", "O=C1CCCN1"), ("benzamide", "NC(=O)c1ccccc1"),
    ("formanilide", "O=CNc1ccccc1"), ("acetanilide", "CC(=O)Nc1ccccc1"),
    ("4_methylacetanilide", "CC(=O)Nc1ccc(C)cc1"), ("4_fluoroacetanilide", "CC(=O)Nc1ccc(F)cc1"),
    ("urea", "NC(N)=O"), ("methylurea", "CNC(N)=O"), ("hydantoin", "O=C1CNC(=O)N1"),
    ("methyl_carbamate", "COC(N)=O"), ("methyl_methylcarbamate", "CNC(=O)OC"),
    # amino acids (neutral, non-zwitterionic) and peptides
    ("glycine", "NCC(=O)O"), ("alanine", "C[C@H](N)C(=O)O"),
    ("serine", "N[C@@H](CO)C(=O)O"), ("cysteine", "N[C@@H](CS)C(=O)O"),
    ("valine", "CC(C)[C@H](N)C(=O)O"), ("proline", "OC(=O)[C@@H]1CCCN1"), ("glycylglycine", "NCC(=O)NCC(=O)O"),
    ("alanine_dipeptide", "CC(=O)N[C@@H](C)C(=O)NC"),
    # nitriles, nitro compounds
    ("acetonitrile", "CC#N"), ("propionitrile", "CCC#N"), ("acrylonitrile", "C=CC#N"),
    ("benzonitrile", "N#Cc1ccccc1"), ("nitromethane", "C[N+](=O)[O-]"),
    ("nitrobenzene", "O=[N+]([O-])c1ccccc1"),
    ("4_nitrophenol", "O=[N+]([O-])c1ccc(O)cc1"),
    # sulfur: thiols, sulfides, sulfoxides, sulfones, sulfonamides
    ("methanethiol", "CS"), ("ethanethiol", "CCS"), ("thiophenol", "Sc1ccccc1"),
    ("dimethyl_sulfide", "CSC"),
    ("dimethyl_disulfide", "CSSC"), ("thioanisole", "CSc1ccccc1"),
    ("dimethyl_sulfoxide", "CS(C)=O"), ("dimethyl_sulfone", "CS(C)(=O)=O"), ("sulfolane", "O=S1(=O)CCCC1"),
    ("methanesulfonamide", "CS(N)(=O)=O"), ("n_methylmethanesulfonamide", "CNS(C)(=O)=O"),
    ("benzenesulfonamide", "NS(=O)(=O)c1ccccc1"),
    # haloalkanes, haloalkenes, halo acids
    ("fluoromethane", "CF"), ("chloromethane", "CCl"), ("dichloromethane", "ClCCl"), ("chloroform", "ClC(Cl)Cl"),
    ("carbon_tetrachloride", "ClC(Cl)(Cl)Cl"), ("fluoroform", "FC(F)F"),
    ("chloroethane", "CCCl"), ("dichloroethane", "ClCCCl"),
    ("trifluoroethane", "CC(F)(F)F"), ("trifluoroethanol", "OCC(F)(F)F"), ("vinyl_chloride", "C=CCl"),
    ("trichloroethylene", "ClC=C(Cl)Cl"),
    ("chloroacetic_acid", "OC(=O)CCl"), ("trifluoroacetic_acid", "OC(=O)C(F)(F)F"),
    # haloarenes
    ("fluorobenzene", "Fc1ccccc1"), ("chlorobenzene", "Clc1ccccc1"),
    ("dichlorobenzene_14", "Clc1ccc(Cl)cc1"),
    ("trifluorotoluene", "FC(F)(F)c1ccccc1"), ("4_fluorophenol", "Oc1ccc(F)cc1"), ("4_chlorophenol", "Oc1ccc(Cl)cc1"),
    ("4_chloroaniline", "Nc1ccc(Cl)cc1"), ("2_chloropyridine", "Clc1ccccn1"),
    # ions
    ("formate", "O=C[O-]"), ("acetate", "CC(=O)[O-]"), ("benzoate", "[O-]C(=O)c1ccccc1"),
    ("phenolate", "[O-]c1ccccc1"), ("ammonium", "[NH4+]"), ("methylammonium", "C[NH3+]"),
    ("ethylammonium", "CC[NH3+]"), ("trimethylammonium", "C[NH+](C)C"), ("guanidinium", "NC(N)=[NH2+]"),
    ("imidazolium", "c1c[nH+]c[nH]1"), ("pyridinium", "c1cc[nH+]cc1"),
]

# Never trained on: the test of transfer to unseen molecules (paracetamol is the MD target).
HELD_OUT = [
    ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("propanoate", "CCC(=O)[O-]"),
    ("2_methylfuran", "Cc1ccco1"),
    ("3_chloropropanol", "OCCCCl"),
    ("4_fluoroaniline", "Nc1ccc(F)cc1"),
    ("ethyl_methyl_sulfide", "CCSC"),
    ("butanenitrile", "CCCC#N"),
    ("2_methylimidazole", "Cc1ncc[nH]1"),
    ("n_ethylacetamide", "CCNC(C)=O"),
    ("nitropropane", "CCC[N+](=O)[O-]"),
    ("methyl_salicylate", "COC(=O)c1ccccc1O"),
    ("isobutanol", "CC(C)CO"),
]


@dataclass(frozen=True)
class Molecule:
    """One molecule to label: ``split`` is "train" or "heldout", ``index`` its place in that list."""

    name: str
    smiles: str  # canonical
    charge: int
    n_atoms: int
    split: str
    index: int


def check_lists(training: list[tuple[str, str]], held_out: list[tuple[str, str]]) -> list[Molecule]:
    """Canonicalise both lists and check them; fail loudly on any problem, held-out overlap included."""
    molecules, problems = [], []
    for split, entries in (("train", training), ("heldout", held_out)):
        for index, (name, smiles) in enumerate(entries):
            mol = Chem.MolFromSmiles(smiles)
            if mol is None:
                problems.append(f"{name}: RDKit cannot parse SMILES {smiles!r}")
                continue
            canonical = Chem.MolToSmiles(mol)
            mol = Chem.AddHs(mol)
            symbols = {atom.GetSymbol() for atom in mol.GetAtoms()}
            electrons = sum(atom.GetAtomicNum() for atom in mol.GetAtoms()) - Chem.GetFormalCharge(mol)
            if not symbols <= ELEMENTS:
                problems.append(f"{name}: elements {sorted(symbols - ELEMENTS)} not in {sorted(ELEMENTS)}")
            if mol.GetNumAtoms() > MAX_ATOMS:
                problems.append(f"{name}: {mol.GetNumAtoms()} atoms with hydrogens, more than {MAX_ATOMS}")
            if electrons % 2:
                problems.append(f"{name}: odd electron count {electrons}; only closed shells are labelled")
            if not name.replace("_", "").isalnum() or name != name.lower():
                problems.append(f"{name}: names are file names: lower-case letters, digits and underscores")
            molecules.append(Molecule(name, canonical, Chem.GetFormalCharge(mol), mol.GetNumAtoms(), split, index))
    for key in ("name", "smiles"):
        seen: dict[str, Molecule] = {}
        for m in molecules:
            other = seen.setdefault(getattr(m, key), m)
            if other is not m:
                overlap = "heldout" in (m.split, other.split)
                problems.append(
                    f"{'held-out molecule is also in the training list' if overlap else 'duplicate'}: "
                    f"{other.name} ({other.split}) and {m.name} ({m.split}) share {key} {getattr(m, key)!r}"
                )
    if problems:
        raise SystemExit("molecule lists are inconsistent:\n  " + "\n  ".join(problems))
    return molecules


class GenerationFailed(RuntimeError):
    """xTB failed or the MD exploded; the molecule is reported and left out."""


def label_molecule(job: tuple[Molecule, int, str]) -> tuple[str, str | None]:
    """Sample and label one molecule; write its frames (or the failure reason) atomically.

    Returns (name, failure reason or None). Runs in a worker process.
    """
    molecule, seed, folder = job
    target = Path(folder) / f"{molecule.name}.extxyz"
    try:
        frames = sample_molecule(molecule, seed)
    except GenerationFailed as error:
        reason = {"molecule": molecule.name, "smiles": molecule.smiles, "reason": str(error)}
        write_text(target.with_suffix(".failed.json"), json.dumps(reason) + "\n")
        return molecule.name, str(error)
    with replacing(target) as tmp:
        write(str(tmp), frames, format="extxyz")
    return molecule.name, None


def sample_molecule(molecule: Molecule, seed: int) -> list[Atoms]:
    """Conformers -> MD at each temperature + displaced frames, all labelled with GFN2-xTB."""
    # One stream per molecule: the same numbers whatever ran before it (resume-safe).
    rng = np.random.default_rng([seed, 0 if molecule.split == "train" else 1, molecule.index])
    symbols, bonds, conformers = embed_conformers(molecule.smiles, rng)
    frames = []
    for conformer, positions in enumerate(conformers):
        start = Atoms(symbols, positions=positions)
        watch = bond_watch(start, bonds, f"conformer {conformer}")
        try:
            for temperature in TEMPERATURES_K:
                atoms = start.copy()
                atoms.calc = TBLite(method="GFN2-xTB", charge=molecule.charge, verbosity=0)
                atoms.set_constraint(FixCom())  # ASE's recommended way to keep the molecule in place
                thermalize_momenta(atoms, temperature, rng=rng)
                Stationary(atoms)
                dynamics = Langevin(atoms, TIMESTEP_FS * units.FS, temperature_K=temperature,
                                    friction=FRICTION_PER_FS / units.FS, fixcm=False, rng=rng)
                dynamics.attach(watch, interval=5, atoms=atoms)
                dynamics.run(EQUILIBRATION_STEPS)
                for _ in range(FRAMES_PER_TEMPERATURE):
                    dynamics.run(FRAME_STRIDE)
                    frames.append(labelled_frame(atoms, molecule, f"md{temperature:.0f}", conformer))
            calculator = TBLite(method="GFN2-xTB", charge=molecule.charge, verbosity=0)
            for _ in range(N_DISPLACED):
                atoms = start.copy()
                # Isotropic Gaussian with RMS length sigma per atom: sigma / sqrt(3) per Cartesian component.
                sigma = rng.uniform(*DISPLACEMENT_RMS_A)
                atoms.positions += rng.normal(0.0, sigma / np.sqrt(3.0), atoms.positions.shape)
                atoms.calc = calculator
                frames.append(labelled_frame(atoms, molecule, "displaced", conformer))
        except CalculatorError as error:  # tblite: SCF not converged, invalid input, ...
            raise GenerationFailed(f"GFN2-xTB failed on conformer {conformer}: {error}") from error
    return frames


def embed_conformers(smiles: str, rng: np.random.Generator) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """ETKDG conformers, MMFF-relaxed: (symbols, bonds (n_bonds, 2), positions (n_atoms, 3) in Å each)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(rng.integers(2**31 - 1))
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=N_CONFORMERS, params=params))
    if len(ids) < N_CONFORMERS:
        raise GenerationFailed(f"ETKDG embedded {len(ids)} of {N_CONFORMERS} conformers")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=1000)
    else:
        AllChem.UFFOptimizeMoleculeConfs(mol, maxIters=1000)
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()], dtype=int).reshape(-1, 2)
    return symbols, bonds, [mol.GetConformer(i).GetPositions() for i in ids]


def bond_watch(start: Atoms, bonds: np.ndarray, where: str) -> Callable[[Atoms], None]:
    """An MD observer that fails the molecule when a bond stretches beyond MAX_BOND_STRETCH
    times its starting length, or the positions stop being finite."""
    monitor = BondMonitor.from_bonds(start, bonds, stretch=MAX_BOND_STRETCH)

    def check(atoms: Atoms) -> None:
        event = monitor.check(atoms)
        if event is None:
            return
        if event.kind == "non-finite":
            raise GenerationFailed(f"{where}: non-finite positions (MD exploded)")
        raise GenerationFailed(
            f"{where}: bond {event.symbols[0]}{event.i}-{event.symbols[1]}{event.j} stretched "
            f"{event.distance / event.start_distance:.2f}x its starting length (MD exploded or a bond broke)"
        )

    return check


def labelled_frame(atoms: Atoms, molecule: Molecule, source: str, conformer: int) -> Atoms:
    """A bare copy of ``atoms`` carrying its (computed) energy and forces and the info keys."""
    # apply_constraint=False: the MD runs with FixCom, and ASE would otherwise return the forces
    # with FixCom's mass-weighted projection applied (up to ~0.5 eV/Å off the GFN2-xTB forces)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces(apply_constraint=False)
    if not (np.isfinite(energy) and np.isfinite(forces).all()):
        raise GenerationFailed(f"{source}, conformer {conformer}: non-finite GFN2-xTB energy or forces")
    frame = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions.copy())
    frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
    frame.info.update(molecule=molecule.name, smiles=molecule.smiles, charge=molecule.charge, source=source,
                      conformer=conformer)
    return frame


def summarise(path: Path) -> dict:
    """Read a merged file back (as a user would) and count frames, atoms and force sizes."""
    frames = read(str(path), ":", format="extxyz") if path.stat().st_size else []
    for atoms in frames:
        for key in ("molecule", "smiles", "charge", "source", "conformer"):
            if key not in atoms.info:
                raise RuntimeError(f"{path}: a frame of {atoms.info.get('molecule')} lacks info[{key!r}]")
    forces = np.concatenate([atoms.get_forces() for atoms in frames]) if frames else np.zeros((0, 3))
    norms = np.linalg.norm(forces, axis=1)
    return {
        "frames": len(frames),
        "atoms": len(forces),
        "molecules": len({atoms.info["molecule"] for atoms in frames}),
        "frames_by_source": {s: sum(a.info["source"] == s for a in frames) for s in ("md300", "md600", "displaced")},
        "force_norm_mean_eV_per_A": float(norms.mean()) if len(norms) else None,
        "force_norm_max_eV_per_A": float(norms.max()) if len(norms) else None,
        "energy_per_atom_range_eV": [float(min(a.get_potential_energy() / len(a) for a in frames)),
                                     float(max(a.get_potential_energy() / len(a) for a in frames))] if frames else None,
    }


def report_skipped(result: tuple[str, str | None]) -> None:
    """Say which molecule (or pair) a worker left out, and why."""
    if result[1] is not None:
        tqdm.write(f"SKIPPED {result[0]}: {result[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "data" / "generated" / "organic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="smoke run: first K training + first 2 held-out")
    args = parser.parse_args()

    molecules = check_lists(TRAINING, HELD_OUT)
    train = [m for m in molecules if m.split == "train"]
    held_out = [m for m in molecules if m.split == "heldout"]
    if args.limit is not None:
        train, held_out = train[: args.limit], held_out[:2]
    folder = args.output / "molecules"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.tmp*"):  # left by a killed run
        stale.unlink()

    def finished(m: Molecule) -> bool:
        return (folder / f"{m.name}.extxyz").exists() or (folder / f"{m.name}.failed.json").exists()

    pending = [m for m in train + held_out if not finished(m)]
    print(f"{len(train)} training + {len(held_out)} held-out molecules; {len(pending)} to label, "
          f"{len(train) + len(held_out) - len(pending)} already finished (resume); {args.workers} workers")

    from workers import run_jobs

    elapsed = run_jobs(label_molecule, [(m, args.seed, str(folder)) for m in pending], args.workers, "mol",
                       report_skipped)

    skipped = {}
    for m in train + held_out:
        failed = folder / f"{m.name}.failed.json"
        if failed.exists():
            skipped[m.name] = json.loads(failed.read_text())["reason"]
    outputs = {"train": args.output / "organic_train_pool.extxyz", "heldout": args.output / "organic_heldout.extxyz"}
    summary = {}
    for split, members in (("train", train), ("heldout", held_out)):
        concatenate([folder / f"{m.name}.extxyz" for m in members if m.name not in skipped], outputs[split])
        summary[split] = summarise(outputs[split])

    manifest = {
        "description": "small organic molecules, GFN2-xTB energies (eV) and forces (eV/Å) from tblite; "
                       "generated by scripts/generate_organic_data.py",
        "seed": args.seed,
        "limit": args.limit,
        "tblite_version": version("tblite"),
        "rdkit_version": version("rdkit"),
        "ase_version": version("ase"),
        "protocol": {
            "conformers": N_CONFORMERS,
            "conformer_method": "RDKit ETKDGv3, MMFF94-relaxed (UFF where MMFF lacks parameters)",
            "temperatures_K": list(TEMPERATURES_K), "timestep_fs": TIMESTEP_FS, "friction_per_fs": FRICTION_PER_FS,
            "equilibration_steps": EQUILIBRATION_STEPS, "frame_stride": FRAME_STRIDE,
            "frames_per_temperature": FRAMES_PER_TEMPERATURE, "displaced_frames": N_DISPLACED,
            "displacement_rms_per_atom_A": list(DISPLACEMENT_RMS_A), "max_bond_stretch": MAX_BOND_STRETCH,
        },
        "files": {split: path.name for split, path in outputs.items()},
        "counts": summary,
        "molecules": {
            split: [{"name": m.name, "smiles": m.smiles, "charge": m.charge, "n_atoms": m.n_atoms}
                    for m in members if m.name not in skipped]
            for split, members in (("train", train), ("heldout", held_out))
        },
        "skipped": skipped,
        "elapsed_s_this_run": round(elapsed, 1),
        "molecules_labelled_this_run": len(pending),
        "workers": args.workers,
    }
    write_json(args.output / "manifest.json", manifest, indent=2)
    for split in ("train", "heldout"):
        s = summary[split]
        print(f"{split}: {s['molecules']} molecules, {s['frames']} frames, {s['atoms']} atoms, "
              f"mean |F| {s['force_norm_mean_eV_per_A']} eV/Å -> {outputs[split]}")
    if skipped:
        print(f"skipped {len(skipped)} molecules: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    print(f"labelled {len(pending)} molecules in {elapsed:.1f} s ({args.workers} workers)")


if __name__ == "__main__":
    main()
