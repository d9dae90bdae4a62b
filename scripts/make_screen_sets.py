"""Make the screening benchmark's input sets: drug-like molecules (SMILES) and Cu/Al/Ni alloy cells.

Molecules: 1,000 drug-like molecules made from a hand-typed list of well-known drugs (below; only
H, C, N, O, F, S and Cl). Each drug is cut into fragments at its BRICS bonds
(``rdkit.Chem.BRICS.BRICSDecompose``); new molecules are grown from a random fragment by joining
random fragments at compatible BRICS link sites (``BRICS.reactionDefs``: which site types bond,
and with which bond order) until a randomly drawn size is reached; the open sites left over are
closed with hydrogen (with a methyl on open acyl carbons and thioether sulfurs, with NH2 on open
sulfonyl sulfurs: capping makes no aldehydes, thiols or sulfinic acids). The drugs that pass the
filters come first, then the grown molecules in the order they were made. A molecule is kept
when it

- sanitizes in RDKit, is one fragment and has only H, C, N, O, F, S, Cl and 10-40 heavy atoms;
- is drug-like: molecular weight <= 500, Crippen logP <= 5, <= 5 H-bond donors, <= 10 H-bond
  acceptors (Lipinski, no violation allowed), <= 8 rotatable bonds, <= 4 rings;
- is new (by canonical SMILES);
- embeds: ``AllChem.EmbedMolecule(Chem.AddHs(mol), randomSeed=0) == 0`` (ETKDG) and MMFF94 has
  parameters for it and ``MMFFOptimizeMolecule`` converges within 2,000 iterations.

About 5 % of the molecules (exactly ``round(0.05 * n)``) are ions: a grown molecule with a
carboxylic acid or a basic aliphatic amine is, at random, written as its carboxylate or ammonium
(net charge -1 or +1; only one group per molecule is ionised). All other molecules are neutral and
carry no formal charges. Stereochemistry is not specified (SMILES without stereo marks).

Alloys: ``alloy_cells(n, seed)`` returns pymatgen Structures of random binary and ternary Cu/Al/Ni
alloys: fcc (70 %), bcc (15 %) and hcp (15 %, ideal c/a) lattices, supercells of the conventional
cell with 4-32 atoms (fcc 1x1x1, 1x1x2, 2x2x1, 2x2x2; bcc 2x2x1, 2x2x2, 3x2x2, 2x2x4; hcp 2x2x1,
2x2x2, 3x3x1, 4x2x2), the elements spread at random over the sites (every chosen element on at
least one site), the lattice constant from Vegard's law over the cell's composition (fcc Cu 3.61,
Al 4.05, Ni 3.52 Å; bcc and hcp cells have the same volume per atom), a random symmetric strain
(diagonal components within +-3 %, shear components within +-1 %) and a Gaussian rattle of every
atom (0.05 Å per Cartesian component). Each Structure has ``properties`` ``id`` ("alloy0001", ...)
and ``lattice`` ("fcc" | "bcc" | "hcp"); extended XYZ frames carry them in ``atoms.info``.

Both sets are deterministic for a given ``--seed`` (molecules: also for any ``--workers``).

Run (from the repository root; needs rdkit, pymatgen and ase)::

    .venv/bin/python scripts/make_screen_sets.py [--smiles-only] [--n 1000] [--seed 0]
        [--workers 2] [--output data/screen/druglike_1000.smi]
    .venv/bin/python scripts/make_screen_sets.py --alloys 500 --out alloys.extxyz [--seed 0]

The first form (the default; ``--smiles-only`` says so explicitly) writes the SMILES file, one
``SMILES id`` line per molecule (ids ``mol0001``, ...; no header), and prints a summary: counts,
heavy-atom histogram, charged molecules, time taken. The second writes ``N`` alloy cells as
extended XYZ and prints their summary; it does not touch the SMILES file. From Python::

    from make_screen_sets import alloy_cells    # with scripts/ on sys.path
    cells = alloy_cells(500, seed=0)
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# Drug-like molecules

ELEMENTS = {"H", "C", "N", "O", "F", "S", "Cl"}
HEAVY_ATOMS = (10, 40)
MAX_MW = 500.0
MAX_LOGP = 5.0
MAX_HBD = 5
MAX_HBA = 10
MAX_ROTATABLE = 8
MAX_RINGS = 4
CHARGED_SHARE = 0.05
ION_PROBABILITY = 0.2  # chance that an ionisable grown molecule is written as an ion (until the quota is full)
MAX_JOINS = 6
MMFF_MAX_ITERS = 2000
BATCH = 400  # candidates embedded per round

# (name, SMILES), typed by hand; no stereochemistry. Elements H, C, N, O, F, S, Cl only.
DRUGS = [
    ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"),
    ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("ibuprofen", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"),
    ("caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"),
    ("naproxen", "COc1ccc2cc(ccc2c1)C(C)C(=O)O"),
    ("diclofenac", "OC(=O)Cc1ccccc1Nc1c(Cl)cccc1Cl"),
    ("atenolol", "CC(C)NCC(O)COc1ccc(CC(N)=O)cc1"),
    ("propranolol", "CC(C)NCC(O)COc1cccc2ccccc12"),
    ("fluoxetine", "CNCCC(Oc1ccc(cc1)C(F)(F)F)c1ccccc1"),
    ("sertraline", "CNC1CCC(c2ccc(Cl)c(Cl)c2)c2ccccc21"),
    ("diazepam", "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21"),
    ("lidocaine", "CCN(CC)CC(=O)Nc1c(C)cccc1C"),
    ("procaine", "CCN(CC)CCOC(=O)c1ccc(N)cc1"),
    ("sulfamethoxazole", "Cc1cc(NS(=O)(=O)c2ccc(N)cc2)no1"),
    ("celecoxib", "Cc1ccc(cc1)-c1cc(nn1-c1ccc(cc1)S(N)(=O)=O)C(F)(F)F"),
    ("omeprazole", "COc1ccc2[nH]c(nc2c1)S(=O)Cc1ncc(C)c(OC)c1C"),
    ("ciprofloxacin", "OC(=O)c1cn(C2CC2)c2cc(N3CCNCC3)c(F)cc2c1=O"),
    ("nicotine", "CN1CCCC1c1cccnc1"),
    ("theophylline", "Cn1c2c(c(=O)n(C)c1=O)[nH]cn2"),
    ("salbutamol", "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1"),
    ("haloperidol", "OC1(CCN(CCCC(=O)c2ccc(F)cc2)CC1)c1ccc(Cl)cc1"),
    ("chlorpromazine", "CN(C)CCCN1c2ccccc2Sc2ccc(Cl)cc21"),
    ("imipramine", "CN(C)CCCN1c2ccccc2CCc2ccccc21"),
    ("carbamazepine", "NC(=O)N1c2ccccc2C=Cc2ccccc21"),
    ("phenytoin", "O=C1NC(=O)C(N1)(c1ccccc1)c1ccccc1"),
    ("loratadine", "CCOC(=O)N1CCC(=C2c3ccc(Cl)cc3CCc3cccnc32)CC1"),
    ("warfarin", "CC(=O)CC(c1ccccc1)c1c(O)c2ccccc2oc1=O"),
    ("indomethacin", "COc1ccc2n(C(=O)c3ccc(Cl)cc3)c(C)c(CC(=O)O)c2c1"),
    ("ketoprofen", "CC(C(=O)O)c1cccc(c1)C(=O)c1ccccc1"),
    ("metoprolol", "COCCc1ccc(OCC(O)CNC(C)C)cc1"),
    ("amlodipine", "CCOC(=O)C1=C(COCCN)NC(C)=C(C1c1ccccc1Cl)C(=O)OC"),
    ("losartan", "CCCCc1nc(Cl)c(CO)n1Cc1ccc(cc1)-c1ccccc1-c1nn[nH]n1"),
    ("furosemide", "NS(=O)(=O)c1cc(C(=O)O)c(NCc2ccco2)cc1Cl"),
    ("hydrochlorothiazide", "NS(=O)(=O)c1cc2c(cc1Cl)NCNS2(=O)=O"),
    ("tamoxifen", "CCC(=C(c1ccccc1)c1ccc(OCCN(C)C)cc1)c1ccccc1"),
    ("acyclovir", "Nc1nc2n(COCCO)cnc2c(=O)[nH]1"),
    ("benzocaine", "CCOC(=O)c1ccc(N)cc1"),
    ("isoniazid", "NNC(=O)c1ccncc1"),
    ("trimethoprim", "COc1cc(Cc2cnc(N)nc2N)cc(OC)c1OC"),
    ("sildenafil", "CCCc1nn(C)c2c1nc([nH]c2=O)-c1cc(ccc1OCC)S(=O)(=O)N1CCN(C)CC1"),
    ("venlafaxine", "COc1ccc(cc1)C(CN(C)C)C1(O)CCCCC1"),
    ("citalopram", "CN(C)CCCC1(OCc2cc(C#N)ccc21)c1ccc(F)cc1"),
    ("mirtazapine", "CN1CCN2C(C1)c1ccccc1Cc1cccnc12"),
    ("gabapentin", "NCC1(CC(=O)O)CCCCC1"),
    ("baclofen", "NCC(CC(=O)O)c1ccc(Cl)cc1"),
    ("levetiracetam", "CCC(C(N)=O)N1CCCC1=O"),
    ("modafinil", "NC(=O)CS(=O)C(c1ccccc1)c1ccccc1"),
    ("clopidogrel", "COC(=O)C(c1ccccc1Cl)N1CCc2sccc2C1"),
    ("cimetidine", "CN=C(NC#N)NCCSCc1nc[nH]c1C"),
    ("captopril", "CC(CS)C(=O)N1CCCC1C(=O)O"),
    ("enalapril", "CCOC(=O)C(CCc1ccccc1)NC(C)C(=O)N1CCCC1C(=O)O"),
    ("fluconazole", "OC(Cn1cncn1)(Cn1cncn1)c1ccc(F)cc1F"),
    ("ondansetron", "Cc1nccn1CC1CCc2c(C1=O)c1ccccc1n2C"),
    ("lamotrigine", "Nc1nnc(c(N)n1)-c1cccc(Cl)c1Cl"),
    ("methylphenidate", "COC(=O)C(c1ccccc1)C1CCCCN1"),
    ("zolpidem", "Cc1ccc(cc1)-c1nc2ccc(C)cn2c1CC(=O)N(C)C"),
    ("sumatriptan", "CNS(=O)(=O)Cc1ccc2[nH]cc(CCN(C)C)c2c1"),
    ("tramadol", "CN(C)CC1CCCCC1(O)c1cccc(OC)c1"),
    ("quetiapine", "OCCOCCN1CCN(CC1)C1=Nc2ccccc2Sc2ccccc12"),
    ("risperidone", "Cc1nc2CCCCn2c(=O)c1CCN1CCC(CC1)c1noc2cc(F)ccc12"),
    ("morphine", "CN1CCC23c4c5ccc(O)c4OC2C(O)C=CC3C1C5"),
    ("tolbutamide", "CCCCNC(=O)NS(=O)(=O)c1ccc(C)cc1"),
    ("ketamine", "CNC1(CCCCC1=O)c1ccccc1Cl"),
    ("lorazepam", "OC1N=C(c2ccccc2Cl)c2cc(Cl)ccc2NC1=O"),
    ("bupropion", "CC(NC(C)(C)C)C(=O)c1cccc(Cl)c1"),
    ("pioglitazone", "CCc1ccc(nc1)CCOc1ccc(cc1)CC1SC(=O)NC1=O"),
    ("mexiletine", "CC(N)COc1c(C)cccc1C"),
    ("ethosuximide", "CCC1(C)CC(=O)NC1=O"),
]

# Ionisable groups: the atom whose charge changes, and the charge it gets.
ACID = "[CX3](=O)[OX2H1]"  # carboxylic acid; the OH oxygen becomes O-
BASE = ("[NX3;!$(N-a);!$(N-[#6,#7,#16]=[#6,#7,#8,#16]);!$(N-[#7,#8,#16]);!$(N-C#N)"
        ";!$(N-C(F)(F)F)]")  # aliphatic amine, not amide/aniline/amidine/sulfonamide; N becomes N+


def _bond_rules() -> dict[int, list[tuple[int, str]]]:
    """BRICS link-site type -> [(partner site type, bond symbol)], from ``BRICS.reactionDefs``."""
    from rdkit.Chem import BRICS

    rules: dict[int, list[tuple[int, str]]] = {}
    for group in BRICS.reactionDefs:
        for a, b, bond in group:
            a, b = int(a.rstrip("ab")), int(b.rstrip("ab"))
            rules.setdefault(a, []).append((b, bond))
            if a != b:
                rules.setdefault(b, []).append((a, bond))
    return {k: sorted(set(v)) for k, v in sorted(rules.items())}


def fragment_library() -> list[str]:
    """The BRICS fragments (with at least one link site) of all drugs, sorted SMILES."""
    from rdkit import Chem
    from rdkit.Chem import BRICS

    fragments: set[str] = set()
    for name, smiles in DRUGS:
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise ValueError(f"{name}: bad SMILES {smiles}")
        fragments |= {f for f in BRICS.BRICSDecompose(mol) if "*" in f}
    return sorted(fragments)


def _sites(mol) -> list[tuple[int, int]]:
    """(atom index, site type) of the dummy atoms (open BRICS link sites) of ``mol``."""
    return [(a.GetIdx(), a.GetIsotope()) for a in mol.GetAtoms() if a.GetAtomicNum() == 0]


def _join(a, site_a: int, b, site_b: int, bond: str):
    """Bond ``a`` and ``b`` where their dummy atoms ``site_a`` and ``site_b`` were; None if the
    result does not sanitize."""
    from rdkit import Chem

    order = Chem.BondType.DOUBLE if bond == "=" else Chem.BondType.SINGLE
    anchor_a = a.GetAtomWithIdx(site_a).GetNeighbors()[0].GetIdx()
    anchor_b = b.GetAtomWithIdx(site_b).GetNeighbors()[0].GetIdx()
    offset = a.GetNumAtoms()
    rw = Chem.RWMol(Chem.CombineMols(a, b))
    rw.AddBond(anchor_a, anchor_b + offset, order)
    for index in sorted((site_a, site_b + offset), reverse=True):
        rw.RemoveAtom(index)
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # noqa: BLE001 - RDKit raises several sanitization errors
        return None
    return mol


# Open link sites closed with a heavy atom instead of hydrogen, by BRICS site type: acyl carbons
# (1, 6) get a methyl (no aldehydes), thioether sulfur (11) a methyl (no thiols), sulfonyl sulfur
# (12) an amino group (a sulfonamide, not a sulfinic acid).
CAPS = {1: 6, 6: 6, 11: 6, 12: 7}


def _cap(mol):
    """Close the open single-bond link sites (hydrogen, or the atom ``CAPS`` names); None if a
    double-bond site (type 7) is open."""
    from rdkit import Chem

    rw = Chem.RWMol(mol)
    for atom in rw.GetAtoms():
        if atom.GetAtomicNum() == 0:
            if any(b.GetBondType() != Chem.BondType.SINGLE for b in atom.GetBonds()):
                return None
            atom.SetAtomicNum(CAPS.get(atom.GetIsotope(), 1))
            atom.SetIsotope(0)
            atom.SetNoImplicit(False)
            atom.SetNumExplicitHs(0)
    try:
        capped = Chem.RemoveHs(rw.GetMol())
        Chem.SanitizeMol(capped)
    except Exception:  # noqa: BLE001
        return None
    return capped


def druglike(mol) -> bool:
    """The composition, size and drug-likeness filters of the module docstring."""
    from rdkit import Chem
    from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors

    if len(Chem.GetMolFrags(mol)) != 1:
        return False
    if any(a.GetSymbol() not in ELEMENTS or a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return False
    heavy = mol.GetNumHeavyAtoms()
    return (HEAVY_ATOMS[0] <= heavy <= HEAVY_ATOMS[1]
            and Descriptors.MolWt(mol) <= MAX_MW
            and Crippen.MolLogP(mol) <= MAX_LOGP
            and Lipinski.NumHDonors(mol) <= MAX_HBD
            and Lipinski.NumHAcceptors(mol) <= MAX_HBA
            and rdMolDescriptors.CalcNumRotatableBonds(mol) <= MAX_ROTATABLE
            and rdMolDescriptors.CalcNumRings(mol) <= MAX_RINGS)


def ionised(mol, rng: np.random.Generator):
    """``mol`` with one of its carboxylic acids (-> carboxylate) or basic amines (-> ammonium),
    chosen at random, ionised; None if it has neither."""
    from rdkit import Chem

    sites = [(m[2], -1) for m in mol.GetSubstructMatches(Chem.MolFromSmarts(ACID))]
    sites += [(m[0], +1) for m in mol.GetSubstructMatches(Chem.MolFromSmarts(BASE))]
    if not sites:
        return None
    index, charge = sites[int(rng.integers(len(sites)))]
    rw = Chem.RWMol(mol)
    atom = rw.GetAtomWithIdx(index)
    hydrogens = atom.GetTotalNumHs()
    atom.SetFormalCharge(charge)
    atom.SetNoImplicit(True)
    atom.SetNumExplicitHs(hydrogens + charge)
    ion = rw.GetMol()
    try:
        Chem.SanitizeMol(ion)
    except Exception:  # noqa: BLE001
        return None
    return ion


def grow(fragments: list, by_site: dict[int, list[tuple[int, int]]],
         rules: dict[int, list[tuple[int, str]]], rng: np.random.Generator):
    """One new molecule: a random start fragment joined with random compatible fragments until it
    has a randomly drawn number of heavy atoms (or no open site, or ``MAX_JOINS`` joins), open
    sites capped with H. None when the attempt fails."""
    target = int(rng.integers(HEAVY_ATOMS[0] + 2, HEAVY_ATOMS[1] - 3))
    mol = fragments[int(rng.integers(len(fragments)))]
    for _ in range(MAX_JOINS):
        open_sites = _sites(mol)
        if not open_sites or mol.GetNumHeavyAtoms() >= target:  # dummy atoms are not heavy atoms
            break
        site, kind = open_sites[int(rng.integers(len(open_sites)))]
        choices = [(f, s, bond) for p, bond in rules.get(kind, []) for f, s in by_site.get(p, [])]
        if not choices:
            break
        f, s, bond = choices[int(rng.integers(len(choices)))]
        joined = _join(mol, site, fragments[f], s, bond)
        if joined is None:
            return None
        mol = joined
    return _cap(mol)


def candidates(seed: int) -> Iterator[tuple[str, str]]:
    """Endless stream of (canonical SMILES, origin) that pass the filters, unique: the drugs
    first, then grown molecules, of which an ionisable one is an ion with ``ION_PROBABILITY``."""
    from rdkit import Chem

    seen: set[str] = set()
    for name, smiles in DRUGS:
        mol = Chem.MolFromSmiles(smiles)
        canonical = Chem.MolToSmiles(mol)
        if canonical not in seen and druglike(mol):
            seen.add(canonical)
            yield canonical, f"drug:{name}"

    rng = np.random.default_rng(seed)
    rules = _bond_rules()
    fragments = [Chem.MolFromSmiles(f) for f in fragment_library()]
    by_site: dict[int, list[tuple[int, int]]] = {}  # site type -> [(fragment, dummy atom index)]
    for i, fragment in enumerate(fragments):
        for index, kind in _sites(fragment):
            by_site.setdefault(kind, []).append((i, index))
    while True:
        mol = grow(fragments, by_site, rules, rng)
        if mol is None or not druglike(mol):
            continue
        origin = "grown"
        if rng.random() < ION_PROBABILITY:
            ion = ionised(mol, rng)
            if ion is not None and druglike(ion):
                mol, origin = ion, "grown-ion"
        Chem.RemoveStereochemistry(mol)
        canonical = Chem.MolToSmiles(mol)
        if canonical in seen:
            continue
        seen.add(canonical)
        yield canonical, origin


def embeds(smiles: str) -> bool:
    """ETKDG embedding (``randomSeed=0``) succeeds and MMFF94 relaxes the conformer to convergence."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if AllChem.EmbedMolecule(mol, randomSeed=0) != 0:
        return False
    if not AllChem.MMFFHasAllMoleculeParams(mol):
        return False
    return AllChem.MMFFOptimizeMolecule(mol, maxIters=MMFF_MAX_ITERS) == 0


def _embed_worker(smiles: str) -> bool:
    return embeds(smiles)


def make_molecules(n: int = 1000, seed: int = 0, workers: int = 2) -> tuple[list[tuple[str, str]], dict]:
    """``n`` (SMILES, origin) molecules, drugs first; and statistics of the run."""
    from rdkit import Chem

    n_charged = round(CHARGED_SHARE * n)
    stream = candidates(seed)
    chosen: list[tuple[str, str]] = []
    neutral = charged = tried = 0
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        while neutral + charged < n:
            batch = [next(stream) for _ in range(BATCH)]
            tried += len(batch)
            smiles = [s for s, _ in batch]
            ok = pool.map(_embed_worker, smiles, chunksize=8) if pool else [embeds(s) for s in smiles]
            for (s, origin), good in zip(batch, ok):
                if not good:
                    continue
                is_ion = Chem.GetFormalCharge(Chem.MolFromSmiles(s)) != 0
                if is_ion and charged < n_charged:
                    charged += 1
                elif not is_ion and neutral < n - n_charged:
                    neutral += 1
                else:
                    continue
                chosen.append((s, origin))
            if tried > 50 * n:
                raise RuntimeError(f"only {len(chosen)} molecules after {tried} candidates")
    finally:
        if pool is not None:
            pool.terminate()
    return chosen, {"candidates_embedded": tried}


def summarise_molecules(molecules: list[tuple[str, str]]) -> str:
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    mols = [Chem.MolFromSmiles(s) for s, _ in molecules]
    heavy = [m.GetNumHeavyAtoms() for m in mols]
    charges = Counter(Chem.GetFormalCharge(m) for m in mols)
    elements = Counter(e for m in mols for e in {a.GetSymbol() for a in m.GetAtoms()})
    origins = Counter(o.split(":")[0] for _, o in molecules)
    lines = [f"{len(mols)} molecules: {origins.get('drug', 0)} drugs, {origins.get('grown', 0)} grown neutral, "
             f"{origins.get('grown-ion', 0)} grown ions",
             "net charge: " + ", ".join(f"{q:+d}: {c}" for q, c in sorted(charges.items())),
             "molecules containing: " + ", ".join(f"{e} {elements[e]}" for e in ("C", "N", "O", "F", "S", "Cl")),
             f"heavy atoms: min {min(heavy)}, median {int(np.median(heavy))}, max {max(heavy)}; "
             f"MW median {np.median([Descriptors.MolWt(m) for m in mols]):.0f}",
             "heavy-atom histogram:"]
    for low in range(HEAVY_ATOMS[0], HEAVY_ATOMS[1] + 1, 5):
        high = min(low + 4, HEAVY_ATOMS[1])
        count = sum(low <= h <= high for h in heavy)
        lines.append(f"  {low:2d}-{high:2d}: {count:4d} {'#' * round(count / 5)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Alloy cells

FCC_A = {"Cu": 3.61, "Al": 4.05, "Ni": 3.52}  # Å
METALS = ("Cu", "Al", "Ni")
LATTICES = (("fcc", 0.70), ("bcc", 0.15), ("hcp", 0.15))
SUPERCELLS = {
    "fcc": ((1, 1, 1), (1, 1, 2), (2, 2, 1), (2, 2, 2)),  # 4, 8, 16, 32 atoms
    "bcc": ((2, 2, 1), (2, 2, 2), (3, 2, 2), (2, 2, 4)),  # 8, 16, 24, 32 atoms
    "hcp": ((2, 2, 1), (2, 2, 2), (3, 3, 1), (4, 2, 2)),  # 8, 16, 18, 32 atoms
}
BASIS = {
    "fcc": [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    "bcc": [[0, 0, 0], [0.5, 0.5, 0.5]],
    "hcp": [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]],
}
HCP_C_OVER_A = float(np.sqrt(8 / 3))
STRAIN = 0.03  # diagonal strain components within +-STRAIN
SHEAR = 0.01  # off-diagonal strain components within +-SHEAR
RATTLE_A = 0.05  # Gaussian sigma per Cartesian component, Å


def _unit_cell(kind: str, volume_per_atom: float) -> Lattice:
    if kind == "fcc":
        return Lattice.cubic((4 * volume_per_atom) ** (1 / 3))
    if kind == "bcc":
        return Lattice.cubic((2 * volume_per_atom) ** (1 / 3))
    # hcp: 2 atoms in a * a * sin(120°) * c
    a = (2 * volume_per_atom / (np.sqrt(3) / 2 * HCP_C_OVER_A)) ** (1 / 3)
    return Lattice.hexagonal(a, HCP_C_OVER_A * a)


def alloy_cells(n: int = 500, seed: int = 0) -> list[Structure]:
    """``n`` random Cu/Al/Ni alloy cells (half binary, half ternary), as the module docstring
    describes; deterministic for ``seed``. ``properties``: ``id`` (alloy0001, ...), ``lattice``."""
    rng = np.random.default_rng(seed)
    kinds = [k for k, _ in LATTICES]
    weights = np.array([w for _, w in LATTICES])
    cells = []
    for i in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        scaling = SUPERCELLS[kind][int(rng.integers(len(SUPERCELLS[kind])))]
        n_atoms = len(BASIS[kind]) * int(np.prod(scaling))
        n_elements = 2 if i % 2 == 0 else 3
        elements = sorted(rng.choice(METALS, size=n_elements, replace=False).tolist(), key=METALS.index)
        # every element on at least one site; the rest by random fractions
        fractions = rng.dirichlet(np.ones(n_elements))
        counts = np.ones(n_elements, dtype=int)
        counts += rng.multinomial(n_atoms - n_elements, fractions)
        species = np.repeat(elements, counts)
        rng.shuffle(species)
        # Vegard's law on the fcc lattice constant, then the same volume per atom for every lattice
        a_fcc = sum(c * FCC_A[e] for e, c in zip(elements, counts)) / n_atoms
        lattice = _unit_cell(kind, a_fcc ** 3 / 4)
        cell = Structure(lattice, [elements[0]] * len(BASIS[kind]), BASIS[kind])
        cell.make_supercell(scaling)
        strain = np.diag(rng.uniform(-STRAIN, STRAIN, 3))
        shear = np.triu(rng.uniform(-SHEAR, SHEAR, (3, 3)), 1)
        deformation = np.eye(3) + strain + shear + shear.T
        matrix = cell.lattice.matrix @ deformation  # rows are lattice vectors; deformation is symmetric
        cartesian = cell.frac_coords @ matrix + rng.normal(0.0, RATTLE_A, (n_atoms, 3))
        cells.append(Structure(Lattice(matrix), species.tolist(), cartesian, coords_are_cartesian=True,
                               properties={"id": f"alloy{i + 1:04d}", "lattice": kind}))
    return cells


def write_alloys(cells: list[Structure], path: Path) -> None:
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    from atomml.files import replacing

    frames = []
    for cell in cells:
        atoms = AseAtomsAdaptor.get_atoms(cell)
        atoms.info = {"id": cell.properties["id"], "lattice": cell.properties["lattice"],
                      "composition": cell.composition.formula.replace(" ", "")}
        frames.append(atoms)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        write(tmp, frames, format="extxyz")


def summarise_alloys(cells: list[Structure]) -> str:
    sizes = Counter(len(c) for c in cells)
    kinds = Counter(c.properties["lattice"] for c in cells)
    systems = Counter("-".join(sorted(c.composition.chemical_system.split("-"), key=METALS.index)) for c in cells)
    atoms = Counter(str(s.specie) for c in cells for s in c)
    total = sum(atoms.values())
    volume = [c.volume / len(c) for c in cells]
    return "\n".join([
        f"{len(cells)} cells, {total} atoms",
        "lattices: " + ", ".join(f"{k} {kinds[k]}" for k, _ in LATTICES),
        "atoms per cell: " + ", ".join(f"{k}: {v}" for k, v in sorted(sizes.items())),
        "systems: " + ", ".join(f"{k} {v}" for k, v in sorted(systems.items(), key=lambda kv: (len(kv[0]), kv[0]))),
        "atoms by element: " + ", ".join(f"{e} {atoms[e]} ({atoms[e] / total:.0%})" for e in METALS),
        f"volume per atom: {min(volume):.2f}-{max(volume):.2f} Å^3",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smiles-only", action="store_true", help="write the SMILES file (the default)")
    mode.add_argument("--alloys", type=int, metavar="N", help="write N alloy cells to --out instead")
    parser.add_argument("--out", type=Path, help="extended XYZ file for --alloys")
    parser.add_argument("--n", type=int, default=1000, help="number of molecules")
    parser.add_argument("--output", type=Path, default=ROOT / "data" / "screen" / "druglike_1000.smi")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes for the embedding check")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.alloys is not None:
        if args.out is None:
            parser.error("--alloys needs --out FILE.extxyz")
        cells = alloy_cells(args.alloys, args.seed)
        write_alloys(cells, args.out)
        print(summarise_alloys(cells))
        print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
        return
    if args.out is not None:
        parser.error("--out is for --alloys; the SMILES file is --output")

    from atomml.files import write_text

    molecules, stats = make_molecules(args.n, args.seed, args.workers)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.output, "".join(f"{s} mol{i + 1:04d}\n" for i, (s, _) in enumerate(molecules)))
    print(summarise_molecules(molecules))
    print(f"{stats['candidates_embedded']} candidates embedded for {len(molecules)} kept")
    print(f"wrote {args.output} in {time.perf_counter() - start:.1f} s ({args.workers} workers)")


if __name__ == "__main__":
    main()
