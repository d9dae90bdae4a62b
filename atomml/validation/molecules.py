"""Molecular property benchmark: an ML potential against a reference method (GFN2-xTB).

Every property is computed twice by the same function, once with each calculator, so the
comparison is like for like: rigid torsion scans, conformer energy ranking, intermolecular
curves (H-bonded and dispersion-bound pairs within the cutoff), harmonic frequencies at each
method's own minimum, and bond stretching (spurious minima). Energies are reported in
kcal/mol, frequencies in cm^-1, distances in Å. Rows follow the shared format of
``atomml.validation`` (one plain dict per compared quantity).

The benchmark molecules are kept out of the shipped potential's training set (the module-level
lists below are what a data generator must refuse to train on). Geometries come from RDKit
(ETKDG embedding + MMFF, seeded), never from files.

Needs the ``data`` extra (rdkit, tblite for the reference) and scipy, matplotlib.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.optimize import BFGS
from ase.vibrations import Vibrations

from atomml import units

CalculatorFactory = Callable[[], Calculator]

SEED = 0xA70
# Atom indices below refer to RDKit's order after Chem.AddHs: the heavy atoms in SMILES order,
# then the hydrogens, grouped by the heavy atom that carries them.

# (name, SMILES, dihedral i-j-k-l): one rotatable bond j-k scanned per molecule
TORSIONS: list[tuple[str, str, tuple[int, int, int, int]]] = [
    ("ethyl_methyl_sulfide", "CCSC", (0, 1, 2, 3)),
    ("paracetamol", "CC(=O)Nc1ccc(O)cc1", (1, 3, 4, 5)),  # amide N - aryl bond
    ("3_chloropropanol", "OCCCCl", (0, 1, 2, 3)),
    ("biphenyl", "c1ccc(cc1)-c1ccccc1", (2, 3, 6, 7)),
]
# (name, SMILES): flexible molecules whose conformers are ranked
CONFORMER_MOLECULES: list[tuple[str, str]] = [
    ("4_chlorobutanol", "OCCCCCl"),
    ("2_2_methoxyethoxy_ethanol", "COCCOCCO"),
]
# (name, monomer A, monomer B, separations (Å, centre of mass to centre of mass)).
# A monomer is (SMILES, tail, head): the axis from tail to head (each an atom index, a tuple of
# atoms whose centroid is used, or "normal": the normal of the tail atoms' plane) is turned to
# point at the other monomer; the pair then approaches along that line, both kept rigid.
Monomer = tuple[str, int | tuple[int, ...], int | tuple[int, ...] | str]
DIMERS: list[tuple[str, Monomer, Monomer, tuple[float, float]]] = [
    ("water_dimer", ("O", 0, 1), ("O", (1, 2), 0), (2.4, 5.0)),  # O-H ... O hydrogen bond
    ("methanol_water", ("CO", 1, 5), ("O", (1, 2), 0), (2.5, 5.0)),
    ("methane_dimer", ("C", 0, 1), ("C", 0, (2, 3, 4)), (3.3, 5.0)),  # C-H into an H3 face
    ("benzene_stacked", ("c1ccccc1", (0, 1, 2, 3, 4, 5), "normal"),
     ("c1ccccc1", (0, 1, 2, 3, 4, 5), "normal"), (3.0, 5.0)),
]
# (name, SMILES): small molecules whose harmonic frequencies are compared
FREQUENCY_MOLECULES: list[tuple[str, str]] = [
    ("difluoromethane", "FCF"),
    ("2_methylfuran", "Cc1ccco1"),
    ("ethyl_methyl_sulfide", "CCSC"),
]
# (name, SMILES, bond atoms i-j): the bond is stretched by moving j's side of the molecule
BOND_SCANS: list[tuple[str, str, tuple[int, int]]] = [
    ("3_chloropropanol O-H", "OCCCCl", (0, 5)),
    ("2_methylfuran C-H", "Cc1ccco1", (0, 6)),
    ("paracetamol C=O", "CC(=O)Nc1ccc(O)cc1", (1, 2)),
    ("butanenitrile C-C", "CCCC#N", (1, 2)),
]

TARGETS = {
    "torsion": 0.3, "conformer_rmse": 0.5, "conformer_spearman": 0.9, "dimer": 0.5, "frequency": 30.0,
}
STRETCH_WINDOW = (0.9, 1.3)
MIN_FREQUENCY_CM = 50.0


def run(potential_calc: CalculatorFactory, reference_calc: CalculatorFactory, *, quick: bool = False,
        plot_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Compute every molecular property with both calculators; return the comparison rows.

    ``quick`` uses one molecule per property and few points (the CI setting).
    """
    say = progress or (lambda message: None)
    calcs = {"potential": potential_calc(), "reference": reference_calc()}
    if plot_dir is not None:
        plot_dir = Path(plot_dir)
        plot_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    say("torsion scans")
    for name, smiles, dihedral in TORSIONS[:1] if quick else TORSIONS:
        angles = np.arange(0.0, 360.0, 60.0 if quick else 15.0)
        rows += torsion_rows(name, smiles, dihedral, angles, calcs, plot_dir)
    say("conformer energies")
    for name, smiles in CONFORMER_MOLECULES[:1] if quick else CONFORMER_MOLECULES:
        rows += conformer_rows(name, smiles, 4 if quick else 25, calcs, plot_dir)
    say("intermolecular curves")
    for name, a, b, (start, stop) in DIMERS[:1] if quick else DIMERS:
        distances = np.linspace(start, stop, 6 if quick else 27)
        rows += dimer_rows(name, a, b, distances, calcs, plot_dir)
    say("harmonic frequencies")
    for name, smiles in FREQUENCY_MOLECULES[:1] if quick else FREQUENCY_MOLECULES:
        rows += frequency_rows(name, smiles, calcs, plot_dir)
    say("bond stretching")
    for name, smiles, bond in BOND_SCANS[:1] if quick else BOND_SCANS:
        scales = np.array([0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.6, 2.0]) if quick else np.linspace(0.8, 2.0, 25)
        rows += bond_rows(name, smiles, bond, scales, calcs, plot_dir)
    return rows


def row(group: str, prop: str, system: str, unit: str, reference: float | None, potential: float | None,
        error: float | None, metric: str, target: str | None = None, passed: bool | None = None,
        note: str = "") -> dict:
    """One result row in the shared format (plain floats, nothing rounded)."""
    return {"group": group, "property": prop, "system": system, "unit": unit,
            "reference": _float(reference), "potential": _float(potential), "error": _float(error),
            "metric": metric, "target": target, "passed": None if passed is None else bool(passed), "note": note}


def _float(value) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------- geometry and energies


def embed(smiles: str, n_conformers: int = 1):
    """RDKit molecule with hydrogens and ``n_conformers`` seeded ETKDG conformers, MMFF-optimised."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}; fix the benchmark list")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = SEED
    params.pruneRmsThresh = 0.1 if n_conformers > 1 else -1.0
    if not AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params):
        raise ValueError(f"RDKit could not embed {smiles!r}")
    AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
    return mol


def to_atoms(mol, conf_id: int = -1) -> Atoms:
    """ASE Atoms of one RDKit conformer, neutral (``info["charge"]`` from the formal charges)."""
    from rdkit import Chem

    atoms = Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=mol.GetConformer(conf_id).GetPositions())
    atoms.info["charge"] = Chem.GetFormalCharge(mol)
    return atoms


def energy(atoms: Atoms, calc: Calculator) -> float:
    """Single-point energy in eV (on a copy, so the caller's atoms keep no calculator)."""
    atoms = atoms.copy()
    atoms.calc = calc
    return float(atoms.get_potential_energy())


def kcal(energies_ev: Sequence[float]) -> np.ndarray:
    return np.asarray(energies_ev, dtype=float) * units.EV_TO_KCAL_PER_MOL


def centred_rmse(reference: np.ndarray, potential: np.ndarray) -> float:
    """RMSE of two curves after removing each curve's own mean (their zeros are arbitrary)."""
    return float(np.sqrt(np.mean(((potential - potential.mean()) - (reference - reference.mean())) ** 2)))


def local_minima(values: np.ndarray) -> list[int]:
    """Indices of strict interior local minima of a sampled curve."""
    v = np.asarray(values, dtype=float)
    return [k for k in range(1, len(v) - 1) if v[k] < v[k - 1] and v[k] < v[k + 1]]


def spurious_minima(reference: np.ndarray, potential: np.ndarray, tolerance: int = 1) -> list[int]:
    """The potential's local minima with no reference minimum within ``tolerance`` grid points."""
    ref = local_minima(reference)
    return [k for k in local_minima(potential) if not any(abs(k - r) <= tolerance for r in ref)]


# ---------------------------------------------------------------- properties


def torsion_rows(name, smiles, dihedral, angles, calcs, plot_dir) -> list[dict]:
    """Rigid scan of one dihedral (degrees) on the MMFF conformer: centred RMSE and barrier spans."""
    from rdkit.Chem import rdMolTransforms

    mol = embed(smiles)
    conf = mol.GetConformer()
    frames = []
    for angle in angles:
        rdMolTransforms.SetDihedralDeg(conf, *dihedral, float(angle))
        frames.append(to_atoms(mol))
    curves = {key: kcal([energy(f, calc) for f in frames]) for key, calc in calcs.items()}
    ref, pot = curves["reference"], curves["potential"]
    rmse = centred_rmse(ref, pot)
    span_ref, span_pot = np.ptp(ref), np.ptp(pot)
    if plot_dir is not None:
        plot_curves(plot_dir / f"torsion_{slug(name)}.png", angles, ref - ref.min(), pot - pot.min(),
                    "dihedral (degrees)", f"rigid torsion scan of {name} (kcal/mol)")
    note = f"{len(angles)} angles; each curve's mean removed"
    return [
        row("torsion", "rigid torsion scan", name, "kcal/mol", None, None, rmse, "rmse",
            f"<= {TARGETS['torsion']} kcal/mol", rmse <= TARGETS["torsion"], note),
        row("torsion", "torsion barrier span", name, "kcal/mol", span_ref, span_pot, span_pot - span_ref,
            "difference", note="max - min of the rigid scan"),
    ]


def conformer_rows(name, smiles, n_conformers, calcs, plot_dir) -> list[dict]:
    """Conformers optimised with the reference (fmax 0.05 eV/Å), then single points with both."""
    from scipy.stats import spearmanr

    mol = embed(smiles, n_conformers)
    frames, unconverged = [], 0
    for conf in mol.GetConformers():
        atoms = to_atoms(mol, conf.GetId())
        atoms.calc = calcs["reference"]
        unconverged += not BFGS(atoms, logfile=None).run(fmax=0.05, steps=300)
        atoms.calc = None
        frames.append(atoms)
    energies = {key: kcal([energy(f, calc) for f in frames]) for key, calc in calcs.items()}
    # Conformers that fell into the same (or a mirror-image) minimum are one point, not several.
    keep = []
    for k, e in enumerate(energies["reference"]):
        if all(abs(e - energies["reference"][j]) > 0.01 for j in keep):
            keep.append(k)
    ref = energies["reference"][keep] - energies["reference"][keep].min()
    pot = energies["potential"][keep] - energies["potential"][keep].min()
    rmse = centred_rmse(ref, pot)
    rho = float(spearmanr(ref, pot).statistic) if len(keep) >= 3 else None
    if plot_dir is not None:
        plot_parity(plot_dir / f"conformers_{slug(name)}.png", ref, pot, f"conformer energies of {name} (kcal/mol)")
    note = f"{len(keep)} distinct minima of {len(frames)} RDKit conformers, reference-optimised"
    if unconverged:
        note += f" ({unconverged} not converged in 300 steps)"
    return [
        row("conformers", "conformer relative energies", name, "kcal/mol", None, None, rmse, "rmse",
            f"<= {TARGETS['conformer_rmse']} kcal/mol", rmse <= TARGETS["conformer_rmse"], note + "; mean removed"),
        row("conformers", "conformer energy ranking", name, "", 1.0, rho, rho, "spearman",
            f"Spearman >= {TARGETS['conformer_spearman']}",
            None if rho is None else rho >= TARGETS["conformer_spearman"], note),
    ]


def oriented(monomer: Monomer, facing: float) -> Atoms:
    """Rigid monomer with its centre of mass at the origin and its axis along ``facing`` * x."""
    smiles, tail, head = monomer
    atoms = to_atoms(embed(smiles))
    pos = atoms.positions
    point = lambda spec: pos[list(np.atleast_1d(spec))].mean(axis=0)  # noqa: E731
    if head == "normal":  # the plane normal of the tail atoms (their smallest principal axis)
        ring = pos[list(np.atleast_1d(tail))]
        axis = np.linalg.svd(ring - ring.mean(axis=0))[2][2]
    else:
        axis = point(head) - point(tail)
    atoms.translate(-atoms.get_center_of_mass())
    atoms.rotate(axis, (facing, 0.0, 0.0))
    return atoms


def dimer_rows(name, a, b, distances, calcs, plot_dir) -> list[dict]:
    """Interaction energy E(AB) - E(A) - E(B) (kcal/mol) against centre-of-mass separation (Å)."""
    first, second = oriented(a, 1.0), oriented(b, -1.0)
    frames = []
    for d in distances:
        moved = second.copy()
        moved.translate((d, 0.0, 0.0))
        frames.append(first + moved)
    curves = {}
    for key, calc in calcs.items():
        curves[key] = kcal([interaction_energy(f, len(first), calc) for f in frames])
    ref, pot = curves["reference"], curves["potential"]
    rmse = float(np.sqrt(np.mean((pot - ref) ** 2)))
    if plot_dir is not None:
        plot_curves(plot_dir / f"dimer_{slug(name)}.png", distances, ref, pot, "centre-of-mass separation (Å)",
                    f"interaction energy of {name} (kcal/mol)", zero_line=True)
    note = f"{len(distances)} separations {distances[0]:.2f}-{distances[-1]:.2f} Å; rigid monomers"
    well = lambda curve: (curve.min(), distances[int(np.argmin(curve))])  # noqa: E731
    (depth_ref, at_ref), (depth_pot, at_pot) = well(ref), well(pot)
    return [
        row("intermolecular", "interaction energy curve", name, "kcal/mol", None, None, rmse, "rmse",
            f"<= {TARGETS['dimer']} kcal/mol", rmse <= TARGETS["dimer"], note),
        row("intermolecular", "well depth", name, "kcal/mol", depth_ref, depth_pot, depth_pot - depth_ref,
            "difference", note="lowest point of the sampled curve"),
        row("intermolecular", "well position", name, "Å", at_ref, at_pot, at_pot - at_ref, "difference",
            note="separation of the lowest sampled point"),
    ]


def interaction_energy(pair: Atoms, n_first: int, calc: Calculator) -> float:
    """E(AB) - E(A) - E(B) in eV for a pair whose first ``n_first`` atoms are monomer A."""
    parts = []
    for atoms in (pair, pair[:n_first], pair[n_first:]):  # the benchmark's monomers are all neutral
        atoms = atoms.copy()
        atoms.info["charge"] = 0
        parts.append(energy(atoms, calc))
    return parts[0] - parts[1] - parts[2]


def frequencies(atoms: Atoms, calc: Calculator, workdir: Path) -> tuple[np.ndarray, bool]:
    """Sorted real harmonic frequencies (cm^-1) above 50 cm^-1 at the calculator's own minimum,
    and whether that minimisation (fmax 0.005 eV/Å) converged."""
    atoms = atoms.copy()
    atoms.calc = calc
    converged = bool(BFGS(atoms, logfile=None).run(fmax=0.005, steps=500))
    vib = Vibrations(atoms, name=str(workdir / "vib"), delta=0.005, nfree=2)
    vib.run()
    freqs = vib.get_frequencies()
    real = np.sort(freqs[np.abs(freqs.imag) < 1e-8].real)
    return real[real > MIN_FREQUENCY_CM], converged


def frequency_rows(name, smiles, calcs, plot_dir) -> list[dict]:
    """MAE of the sorted frequencies, each method optimised and differentiated on its own."""
    atoms = to_atoms(embed(smiles))
    result, unconverged = {}, []
    for key, calc in calcs.items():
        with tempfile.TemporaryDirectory() as tmp:
            result[key], converged = frequencies(atoms, calc, Path(tmp))
        if not converged:
            unconverged.append(key)
    ref, pot = result["reference"], result["potential"]
    n = min(len(ref), len(pot))
    # Modes are matched by rank from the top: the stiff modes are the ones both methods resolve.
    mae = float(np.mean(np.abs(pot[len(pot) - n:] - ref[len(ref) - n:]))) if n else None
    expected = 3 * len(atoms) - 6
    note = f"{len(ref)} reference and {len(pot)} potential modes above {MIN_FREQUENCY_CM:g} cm^-1 (3N-6 = {expected})"
    if unconverged:
        note += f"; minimisation not converged for the {' and the '.join(unconverged)}"
    if plot_dir is not None and n:
        plot_parity(plot_dir / f"frequencies_{slug(name)}.png", ref[len(ref) - n:], pot[len(pot) - n:],
                    f"harmonic frequencies of {name} (cm^-1)")
    return [row("frequencies", "harmonic frequencies", name, "cm^-1", None, None, mae, "mae",
                f"<= {TARGETS['frequency']:g} cm^-1", None if mae is None else mae <= TARGETS["frequency"], note)]


def bond_rows(name, smiles, bond, scales, calcs, plot_dir) -> list[dict]:
    """Rigid stretch of one bond (scale of its MMFF length): spurious minima and near-minimum RMSE."""
    from rdkit.Chem import rdMolTransforms

    mol = embed(smiles)
    conf = mol.GetConformer()
    length = rdMolTransforms.GetBondLength(conf, *bond)
    frames = []
    for scale in scales:
        rdMolTransforms.SetBondLength(conf, *bond, float(scale * length))
        frames.append(to_atoms(mol))
    curves = {key: kcal([energy(f, calc) for f in frames]) for key, calc in calcs.items()}
    ref, pot = curves["reference"], curves["potential"]
    spurious = spurious_minima(ref, pot)
    window = (scales >= STRETCH_WINDOW[0] - 1e-9) & (scales <= STRETCH_WINDOW[1] + 1e-9)
    rmse = centred_rmse(ref[window], pot[window])
    if plot_dir is not None:
        plot_curves(plot_dir / f"bond_{slug(name)}.png", scales, ref - ref.min(), pot - pot.min(),
                    "bond length / equilibrium length", f"bond stretch {name} (kcal/mol)")
    where = ", ".join(f"{scales[k]:.2f}x" for k in spurious)
    return [
        row("bond_stretch", "local minima of the stretch curve", name, "count", len(local_minima(ref)),
            len(local_minima(pot)), len(spurious), "count", "0 spurious minima", not spurious,
            f"{len(scales)} points {scales[0]:.2f}-{scales[-1]:.2f}x of {length:.3f} Å; error = spurious minima"
            + (f" at {where}" if spurious else "")),
        row("bond_stretch", f"stretch curve {STRETCH_WINDOW[0]}-{STRETCH_WINDOW[1]}x", name, "kcal/mol",
            None, None, rmse, "rmse", note=f"{int(window.sum())} points; each curve's mean removed"),
    ]


# ---------------------------------------------------------------- figures


def slug(name: str) -> str:
    """A file-name-safe form of a system name ("paracetamol C=O" -> "paracetamol_C_O")."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path: Path, x, reference, potential, xlabel: str, title: str, zero_line: bool = False) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(x, reference, "-", color="black", label="reference")
    ax.plot(x, potential, "o--", color="tab:red", markersize=4, label="potential")
    if zero_line:
        ax.axhline(0.0, color="grey", linewidth=0.5)
    _finish(plt, fig, ax, path, xlabel, "energy (kcal/mol)", title)


def plot_parity(path: Path, reference, potential, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    lo = math.floor(min(np.min(reference), np.min(potential)))
    hi = math.ceil(max(np.max(reference), np.max(potential)))
    ax.plot([lo, hi], [lo, hi], "-", color="black", label="reference = potential")
    ax.plot(reference, potential, "o", color="tab:red", label="potential")
    _finish(plt, fig, ax, path, "reference", "potential", title)


def _finish(plt, fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    """Label, title and legend a one-panel figure, write it as PNG and close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
