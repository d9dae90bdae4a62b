"""Generate the metals reference set: fcc metals and their random alloys labelled with ASE's EMT.

Materials: fcc Cu, Ag, Au, Ni, Pd, Pt, Al, and for every pair of them random substitutional fcc
alloys A(1-x)B(x) with x = 0.25, 0.5, 0.75 on a lattice whose constant follows Vegard's law
(the elements' lattice constants from ``ase.data.reference_states``). For each material the
structure kinds (``info["config_type"]``) are

- ``bulk_strained``: random symmetric strain (2-3 % per component), small rattle;
- ``bulk_rattled``: Gaussian rattle of the ideal lattice;
- ``vacancy``: one or two atoms removed, rattled;
- ``slab``: fcc(111) or fcc(100) slab (``ase.build.fcc111`` / ``fcc100``), rattled, periodic in
  x and y only (pbc T T F), with a vacuum gap of 15 Å; the cell's third vector spans slab plus
  vacuum, as ``ase.build`` makes it;
- ``md``: Langevin snapshots with EMT at 300-1500 K, of bulk cells and of slabs.

Version 2 adds structures off the fcc manifold, so that a potential trained on them orders
crystal structures, binds dimers and clusters and forms defects like the reference (issue 23):

- ``phase``: bcc, hcp (c/a 1.50-1.75) and simple cubic lattices at the fcc volume per atom
  scaled by 0.88-1.12, strained (1 %) and rattled; alloys decorated at random;
- ``ordered`` (alloys only): B2 and L1_0 (c/a 0.70-1.10, through the Bain path) at x = 0.5,
  L1_2 (A3B or AB3) at x = 0.25 and 0.75, strained and rattled;
- ``cluster``: non-periodic (no cell, pbc F F F): a free atom, dimers at 1.7-5.5 Å, trimers,
  tetrahedra and 5-19-atom clusters (cut from fcc, icosahedra), rattled and scaled;
- ``large_strain``: fcc cells with volumes 0.70-1.30 of the ideal one, large normal and shear
  strains (5-10 %), and tetragonal Bain-path distortions (c/a 0.65-1.35 at constant volume);
- ``liquid``: Langevin EMT snapshots at 2,000-3,500 K (melted bulk);
- ``slab110``: fcc(110) slabs (6-9 layers), rattled;
- ``interstitial``: an extra atom at the octahedral site or as a <100> dumbbell, rattled and
  relaxed by EMT for 0-20 BFGS steps.

The structures the property benchmark (``atomml validate --reference emt``) relaxes and measures
are not in this set: it sees rattled and strained versions of the same lattice types only.

Every structure has the EMT energy (eV) and forces (eV/Å); 3D-periodic cells also the stress
(eV/Å³, Voigt order, ASE sign); slabs have no stress. ``info`` also holds ``material``,
``composition`` (chemical formula), ``elements`` (list of symbols), ``temperature`` (K, md only)
and ``surface`` (slabs). Every periodic width of every cell is at least 10.5 Å (checked), so a
model with a 5 Å cutoff never sees an atom's own image within twice its cutoff.
Pure elements get twice as many structures per kind as each alloy.

Run (from the repository root)::

    .venv/bin/python scripts/generate_metals_data.py [--output data/generated/metals]
        [--seed 0] [--workers 2] [--limit K]

``--limit K`` makes a quick smoke run with the first K pure metals and the first K alloys.

Writes, under OUTPUT: ``chunks/MATERIAL_KIND.extxyz`` (one file per material and kind),
``metals_v2.extxyz`` (all chunks merged, in a fixed order), ``metals.extxyz`` (the version-1
kinds only, as version 1 wrote it) and ``manifest.json`` (seed, counts per
kind and material, force and stress statistics, elapsed time, ASE version).

Resumable: every chunk is written atomically (temporary file + ``os.replace``) when it is
finished, and a rerun skips finished chunks. Each chunk draws its random numbers from its own
stream, derived from ``--seed`` and the chunk's material and kind, so a resumed run writes the
same data as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import itertools
import math
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc100, fcc110, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron, Octahedron
from ase.data import atomic_numbers, reference_states
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.optimize import BFGS

from atomml import units
from atomml.files import concatenate, replacing, write_json

ROOT = Path(__file__).resolve().parents[1]
METALS = ("Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al")
ALLOY_FRACTIONS = (0.25, 0.5, 0.75)  # fraction x of the second element B in A(1-x)B(x)
MIN_WIDTH_A = 10.5  # every periodic width; twice a 5 Å cutoff, with margin
VACUUM_A = 7.5  # on each side of a slab: a 15 Å gap between periodic images along z (hot slabs roughen)
MIN_GAP_A = 10.0

# Structures per material and kind (pure metals get PURE_FACTOR times as many).
COUNTS = {"bulk_strained": 4, "bulk_rattled": 4, "vacancy": 3, "slab": 4, "md": 4,
          # version 2 (issue 23): off the fcc manifold. New kinds go last: a kind's index seeds its
          # random stream, so the version-1 kinds above still give exactly the same structures.
          "phase": 6, "ordered": 4, "cluster": 7, "large_strain": 3, "liquid": 2, "slab110": 2,
          "interstitial": 2}
V1_KINDS = ("bulk_strained", "bulk_rattled", "vacancy", "slab", "md")
# Pure elements get PURE_FACTOR times as many of each kind, except these (pure count / alloy count).
PURE_COUNTS = {"ordered": 0, "cluster": 18}
PURE_FACTOR = 2
STRAIN_SIGMA = (0.02, 0.03)
RATTLE_A = {"bulk_strained": (0.01, 0.05), "bulk_rattled": (0.03, 0.12), "vacancy": (0.03, 0.10), "slab": (0.02, 0.10),
            "slab110": (0.02, 0.08)}
SLAB_LAYERS = (3, 4, 5)
MD_TEMPERATURES_K = (300.0, 1500.0)
MD_TIMESTEP_FS = 2.0
MD_FRICTION_PER_FS = 0.02
MD_STEPS = 100
MD_SLAB_EVERY = 4  # one md snapshot in this many is of a slab, the others are bulk


@dataclass(frozen=True)
class Material:
    """A pure metal or a random alloy: ``fractions`` of ``elements`` on one fcc lattice."""

    name: str
    elements: tuple[str, ...]
    fractions: tuple[float, ...]
    index: int

    @property
    def lattice_constant(self) -> float:
        """Vegard's law: the composition-weighted mean of the elements' fcc lattice constants (Å)."""
        return sum(f * reference_states[atomic_numbers[e]]["a"] for e, f in zip(self.elements, self.fractions))


def materials() -> list[Material]:
    """The pure metals, then every binary alloy A(1-x)B(x) with A before B in METALS."""
    out = [Material(m, (m,), (1.0,), i) for i, m in enumerate(METALS)]
    for a, b in itertools.combinations(METALS, 2):
        for x in ALLOY_FRACTIONS:
            name = f"{a}{round(100 * (1 - x))}{b}{round(100 * x)}"
            out.append(Material(name, (a, b), (1 - x, x), len(out)))
    return out


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell (Å): volume / area of each face pair."""
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)])


def check_cell(atoms: Atoms, where: str) -> None:
    """Every periodic width >= MIN_WIDTH_A; a slab has pbc T T F and a vacuum gap >= MIN_GAP_A."""
    if not atoms.pbc.any():  # a free cluster: nothing periodic to check
        return
    widths = perpendicular_widths(atoms.cell.array)
    if (widths[atoms.pbc] < MIN_WIDTH_A).any():
        raise AssertionError(f"{where}: periodic widths {widths.round(2)} (pbc {atoms.pbc}) below {MIN_WIDTH_A} Å")
    if not atoms.pbc.all():
        if list(atoms.pbc) != [True, True, False]:
            raise AssertionError(f"{where}: slab pbc {atoms.pbc}, expected T T F")
        gap = atoms.cell[2, 2] - np.ptp(atoms.positions[:, 2])
        if gap < MIN_GAP_A:
            raise AssertionError(f"{where}: vacuum gap {gap:.2f} Å below {MIN_GAP_A} Å")


def decorate(atoms: Atoms, material: Material, rng: np.random.Generator) -> Atoms:
    """Put the material's elements on the sites at random, in exact (rounded) proportions."""
    n = len(atoms)
    counts = [round(f * n) for f in material.fractions[:-1]]
    counts.append(n - sum(counts))
    symbols = np.repeat(material.elements, counts)
    atoms.set_chemical_symbols(list(symbols[rng.permutation(n)]))
    return atoms


def bulk_cell(material: Material, rng: np.random.Generator, strain: np.ndarray | None = None) -> Atoms:
    """Conventional cubic cells, optionally strained, repeated until every width >= MIN_WIDTH_A."""
    unit = bulk(material.elements[0], "fcc", a=material.lattice_constant, cubic=True)
    unit.arrays.pop("initial_magmoms", None)  # bulk() gives Ni a magnetic moment; EMT has none
    if strain is not None:
        unit.set_cell(unit.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    reps = [math.ceil(MIN_WIDTH_A / w) for w in perpendicular_widths(unit.cell.array)]
    return decorate(unit.repeat(reps), material, rng)


def slab_cell(material: Material, surface: str, layers: int, rng: np.random.Generator) -> Atoms:
    """An fcc(111) or fcc(100) slab, wide enough in x and y, with VACUUM_A on each side."""
    build = {"fcc111": fcc111, "fcc100": fcc100, "fcc110": fcc110}[surface]
    a = material.lattice_constant
    one = build(material.elements[0], size=(1, 1, layers), a=a, vacuum=VACUUM_A)
    n = max(math.ceil(MIN_WIDTH_A / w) for w in perpendicular_widths(one.cell.array)[:2])
    atoms = build(material.elements[0], size=(n, n, layers), a=a, vacuum=VACUUM_A)
    atoms.info.clear()  # ase.build leaves adsorbate_info, which extxyz cannot store
    atoms.arrays.pop("tags", None)
    return decorate(atoms, material, rng)


# ---- version 2 kinds (issue 23): off the fcc manifold --------------------------------------

PHASE_VOLUME_SCALE = (0.88, 1.12)  # of the fcc volume per atom
LIQUID_TEMPERATURES_K = (2000.0, 3500.0)
LIQUID_STEPS = 150


def repeat_to_width(unit: Atoms) -> Atoms:
    """Repeat a unit cell until every periodic width is at least MIN_WIDTH_A."""
    reps = [math.ceil(MIN_WIDTH_A / w) for w in perpendicular_widths(unit.cell.array)]
    return unit.repeat(reps)


def fcc_volume(material: Material) -> float:
    """Volume per atom (Å^3) of the material's fcc lattice (Vegard's law)."""
    return material.lattice_constant**3 / 4.0


def small_strain(rng: np.random.Generator, sigma: float) -> np.ndarray:
    strain = rng.normal(0.0, sigma, (3, 3))
    return np.eye(3) + 0.5 * (strain + strain.T)


def phase_structure(material: Material, index: int, rng: np.random.Generator) -> tuple[Atoms, dict]:
    """bcc, hcp or simple cubic at a scaled fcc volume per atom, strained and rattled."""
    lattice = ("bcc", "hcp", "sc")[index % 3]
    volume = fcc_volume(material) * rng.uniform(*PHASE_VOLUME_SCALE)
    element = material.elements[0]
    if lattice == "bcc":
        unit = bulk(element, "bcc", a=(2 * volume) ** (1 / 3), cubic=True)
    elif lattice == "sc":
        unit = bulk(element, "sc", a=volume ** (1 / 3))
    else:
        covera = rng.uniform(1.50, 1.75)
        a = (2 * volume / (covera * math.sqrt(3) / 2)) ** (1 / 3)  # two atoms per hexagonal cell
        unit = bulk(element, "hcp", a=a, c=covera * a, orthorhombic=True)
    unit.arrays.pop("initial_magmoms", None)
    unit.set_cell(unit.cell.array @ small_strain(rng, 0.01), scale_atoms=True)
    atoms = decorate(repeat_to_width(unit), material, rng)
    atoms.positions += rng.normal(0.0, rng.uniform(0.02, 0.08), atoms.positions.shape)
    return atoms, {"lattice": lattice}


def ordered_unit(material: Material, lattice: str, covera: float) -> Atoms:
    """The conventional cell of an ordered binary at the material's Vegard volume per atom."""
    a_el, b_el = material.elements
    v = fcc_volume(material)
    if lattice == "B2":  # CsCl: A at the corner, B at the body centre
        a = (2 * v) ** (1 / 3)
        return Atoms([a_el, b_el], scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=[a, a, a], pbc=True)
    if lattice == "L1_0":  # CuAu: alternating (001) layers of A and B; c/a 1 is fcc, 1/sqrt(2) bcc
        a = (4 * v / covera) ** (1 / 3)
        return Atoms([a_el, a_el, b_el, b_el], cell=[a, a, covera * a], pbc=True,
                     scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    # L1_2 (Cu3Au): the minority element at the cube corner, the majority on the face centres
    major, minor = (a_el, b_el) if material.fractions[0] > 0.5 else (b_el, a_el)
    a = (4 * v) ** (1 / 3)
    return Atoms([minor, major, major, major], cell=[a, a, a], pbc=True,
                 scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def ordered_structure(material: Material, index: int, rng: np.random.Generator) -> tuple[Atoms, dict]:
    """B2 / L1_0 at x = 0.5, L1_2 otherwise; volume scaled, strained, rattled."""
    if abs(material.fractions[1] - 0.5) < 1e-9:
        lattice = ("B2", "L1_0")[index % 2]
    else:
        lattice = "L1_2"
    covera = rng.uniform(0.70, 1.10) if lattice == "L1_0" else 1.0
    unit = ordered_unit(material, lattice, covera)
    scale = rng.uniform(0.96, 1.04)
    unit.set_cell(unit.cell.array * scale @ small_strain(rng, 0.01), scale_atoms=True)
    atoms = repeat_to_width(unit)
    atoms.positions += rng.normal(0.0, rng.uniform(0.02, 0.06), atoms.positions.shape)
    return atoms, {"lattice": lattice}


def free_cluster(symbols: list[str], positions: np.ndarray) -> Atoms:
    """A non-periodic cluster centred in a (nominal) box."""
    # no cell, like the molecules of the organic set (the atomic-graph contract's non-periodic case)
    return Atoms(symbols, positions=positions - positions.mean(axis=0))


def cluster_structure(material: Material, index: int, rng: np.random.Generator) -> tuple[Atoms, dict]:
    """Free atoms, dimers, trimers, tetrahedra and small clusters (pure: 18 per element; alloys 7)."""
    pure = len(material.elements) == 1
    # (kind, size) schedule: pure metals 1 atom + 8 dimers + 3 trimers + 2 tetrahedra + 4 clusters
    schedule = (["atom"] + ["dimer"] * 8 + ["trimer"] * 3 + ["tetramer"] * 2 + ["cluster"] * 4) if pure else \
        (["dimer"] * 3 + ["trimer"] + ["tetramer"] + ["cluster"] * 2)
    shape = schedule[index % len(schedule)]
    nn = material.lattice_constant / math.sqrt(2)  # the fcc nearest-neighbour distance
    elements = list(material.elements)
    if shape == "atom":
        atoms = free_cluster([elements[0]], np.zeros((1, 3)))
    elif shape == "dimer":
        # half near the bond length (0.75-1.2 of the fcc nearest-neighbour distance), half beyond
        d = rng.uniform(0.66 * nn, 1.2 * nn) if index % 2 else rng.uniform(1.2 * nn, 5.5)
        symbols = elements if not pure else elements * 2
        atoms = free_cluster(symbols[:2], np.array([[0.0, 0.0, 0.0], [0.0, 0.0, d]]))
    elif shape in ("trimer", "tetramer"):
        n = 3 if shape == "trimer" else 4
        unit = np.array([[0, 0, 0], [1, 0, 0], [0.5, math.sqrt(3) / 2, 0], [0.5, math.sqrt(3) / 6, math.sqrt(2 / 3)]])
        positions = unit[:n] * nn * rng.uniform(0.85, 1.1) + rng.normal(0.0, 0.1, (n, 3))
        atoms = decorate(free_cluster([elements[0]] * n, positions), material, rng)
    else:
        size = int(rng.integers(5, 20))
        if rng.random() < 0.5:
            seed = Icosahedron(elements[0], 2, latticeconstant=material.lattice_constant)  # 13 atoms
        else:
            seed = Octahedron(elements[0], 3, 1, latticeconstant=material.lattice_constant)  # 13 atoms
        big = Icosahedron(elements[0], 3, latticeconstant=material.lattice_constant)  # 55: for > 13
        source = seed if size <= len(seed) else big
        centre = source.positions.mean(axis=0)
        keep = np.argsort(np.linalg.norm(source.positions - centre, axis=1))[:size]
        positions = (source.positions[keep] - centre) * rng.uniform(0.92, 1.05)
        positions += rng.normal(0.0, 0.05, positions.shape)
        atoms = decorate(free_cluster([elements[0]] * size, positions), material, rng)
    return atoms, {"shape": shape}


def large_strain_structure(material: Material, index: int, rng: np.random.Generator) -> tuple[Atoms, dict]:
    """fcc far from equilibrium: volume scans, large strains and shears, Bain-path tetragonality."""
    variant = ("volume", "shear", "bain")[index % 3]
    if variant == "volume":
        deformation = np.eye(3) * rng.uniform(0.70, 1.30) ** (1 / 3)
    elif variant == "shear":
        deformation = small_strain(rng, rng.uniform(0.05, 0.10))
    else:
        covera = rng.uniform(0.65, 1.35)  # c/a of the conventional cell; 1/sqrt(2) is bcc
        deformation = np.diag([covera ** (-1 / 3), covera ** (-1 / 3), covera ** (2 / 3)])
    atoms = bulk_cell(material, rng, deformation - np.eye(3))
    atoms.positions += rng.normal(0.0, rng.uniform(0.01, 0.05), atoms.positions.shape)
    return atoms, {"deformation": variant}


def liquid_structure(material: Material, index: int, rng: np.random.Generator) -> tuple[Atoms, dict]:
    """A melt: Langevin EMT at 2,000-3,500 K from the fcc lattice expanded by 4 % in volume."""
    temperature = float(rng.uniform(*LIQUID_TEMPERATURES_K))
    atoms = bulk_cell(material, rng, np.eye(3) * (1.04 ** (1 / 3) - 1.0))
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature, rng=rng)
    Stationary(atoms)
    Langevin(atoms, MD_TIMESTEP_FS * units.FS, temperature_K=temperature, friction=MD_FRICTION_PER_FS / units.FS,
             fixcm=False, rng=rng).run(LIQUID_STEPS)
    return atoms, {"temperature": round(temperature, 1)}


def interstitial_structure(material: Material, index: int, rng: np.random.Generator) -> tuple[Atoms, dict]:
    """One extra atom at an octahedral site or as a <100> dumbbell, relaxed for 0-20 EMT steps."""
    site = ("octahedral", "dumbbell")[index % 2]
    atoms = bulk_cell(material, rng)
    a = material.lattice_constant
    element = str(rng.choice(material.elements))
    if site == "octahedral":  # the octahedral site at (a/2, 0, 0) of the first conventional cell
        atoms += Atoms(element, positions=[[a / 2, 0.0, 0.0]])
    else:  # <100> dumbbell: move atom 0 by -d and add one at +d along z, about its site
        d = 0.3 * a
        origin = atoms.positions[0].copy()
        atoms.positions[0] = origin - [0.0, 0.0, d]
        atoms += Atoms(element, positions=[origin + [0.0, 0.0, d]])
    atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    steps = int(rng.integers(0, 21))
    if steps:
        atoms.calc = EMT()
        BFGS(atoms, logfile=None).run(fmax=0.01, steps=steps)
    return atoms, {"site": site, "relax_steps": steps}


V2_BUILDERS = {"phase": phase_structure, "ordered": ordered_structure, "cluster": cluster_structure,
               "large_strain": large_strain_structure, "liquid": liquid_structure,
               "interstitial": interstitial_structure}


def make_structure(material: Material, kind: str, rng: np.random.Generator, index: int = 0) -> tuple[Atoms, dict]:
    """One unlabelled structure of ``kind`` and the info keys that describe how it was made."""
    info: dict = {}
    if kind == "bulk_strained":
        strain = rng.normal(0.0, rng.uniform(*STRAIN_SIGMA), (3, 3))
        atoms = bulk_cell(material, rng, 0.5 * (strain + strain.T))
    elif kind in ("bulk_rattled", "vacancy"):
        atoms = bulk_cell(material, rng)
        if kind == "vacancy":
            del atoms[list(rng.choice(len(atoms), size=int(rng.integers(1, 3)), replace=False))]
    elif kind == "slab":
        info["surface"] = str(rng.choice(["fcc111", "fcc100"]))
        atoms = slab_cell(material, info["surface"], int(rng.choice(SLAB_LAYERS)), rng)
    elif kind == "slab110":
        info["surface"] = "fcc110"
        atoms = slab_cell(material, "fcc110", int(rng.integers(6, 10)), rng)
    elif kind in V2_BUILDERS:
        atoms, info = V2_BUILDERS[kind](material, index, rng)
    else:
        raise ValueError(f"unknown structure kind {kind!r}")
    if kind in RATTLE_A:
        atoms.positions += rng.normal(0.0, rng.uniform(*RATTLE_A[kind]), atoms.positions.shape)
    return atoms, info


def md_snapshot(material: Material, slab: bool, rng: np.random.Generator) -> tuple[Atoms, dict]:
    """A Langevin EMT snapshot at a temperature drawn from MD_TEMPERATURES_K, bulk or slab."""
    temperature = float(rng.uniform(*MD_TEMPERATURES_K))
    info: dict = {"temperature": round(temperature, 1)}
    if slab:
        info["surface"] = str(rng.choice(["fcc111", "fcc100"]))
        atoms = slab_cell(material, info["surface"], int(rng.choice(SLAB_LAYERS)), rng)
    else:
        atoms = bulk_cell(material, rng)
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature, rng=rng)
    Stationary(atoms)
    Langevin(atoms, MD_TIMESTEP_FS * units.FS, temperature_K=temperature, friction=MD_FRICTION_PER_FS / units.FS,
             fixcm=False, rng=rng).run(MD_STEPS)
    return atoms, info


def label(atoms: Atoms, material: Material, kind: str, info: dict) -> Atoms:
    """A bare copy with EMT energy, forces and (3D-periodic cells only) stress, plus info keys."""
    atoms.calc = EMT()
    frame = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions.copy(), cell=atoms.cell.array.copy(),
                  pbc=atoms.pbc.copy())
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress(voigt=True)
    frame.calc = SinglePointCalculator(frame, **results)
    frame.info.update(config_type=kind, material=material.name, composition=frame.get_chemical_formula(),
                      elements=list(material.elements), **info)
    check_cell(frame, f"{material.name} {kind}")
    return frame


def generate_chunk(job: tuple[Material, str, int, int, str]) -> str:
    """Make and label one (material, kind) chunk; write it atomically. Runs in a worker process."""
    material, kind, kind_index, seed, folder = job
    rng = np.random.default_rng([seed, material.index, kind_index])
    count = chunk_count(material, kind)
    frames = []
    for k in range(count):
        if kind == "md":
            atoms, info = md_snapshot(material, slab=k % MD_SLAB_EVERY == MD_SLAB_EVERY - 1, rng=rng)
        else:
            atoms, info = make_structure(material, kind, rng, k)
        frames.append(label(atoms, material, kind, info))
    target = chunk_path(Path(folder), material, kind)
    with replacing(target) as tmp:
        write(str(tmp), frames, format="extxyz")
    return target.name


def chunk_count(material: Material, kind: str) -> int:
    """Structures of ``kind`` for ``material`` (0: the kind does not apply, no chunk)."""
    if len(material.elements) == 1:
        return PURE_COUNTS.get(kind, COUNTS[kind] * PURE_FACTOR)
    return COUNTS[kind]


def chunk_path(folder: Path, material: Material, kind: str) -> Path:
    return folder / f"{material.name}_{kind}.extxyz"


def summarise(path: Path) -> dict:
    """Read the merged file back (as a user would), re-check every cell and count what is there."""
    frames = read(str(path), ":", format="extxyz")
    for atoms in frames:
        check_cell(atoms, f"{path} {atoms.info['material']} {atoms.info['config_type']}")
    forces = np.linalg.norm(np.concatenate([a.get_forces() for a in frames]), axis=1)
    stress = np.array([a.get_stress() for a in frames if a.pbc.all()])
    return {
        "structures": len(frames),
        "atoms": int(sum(len(a) for a in frames)),
        "atoms_per_structure_range": [min(len(a) for a in frames), max(len(a) for a in frames)],
        "by_config_type": {k: sum(a.info["config_type"] == k for a in frames) for k in COUNTS},
        "with_stress": len(stress),
        "slabs_without_stress": sum(not a.pbc.all() for a in frames),
        "force_norm_mean_eV_per_A": float(forces.mean()),
        "force_norm_max_eV_per_A": float(forces.max()),
        "stress_abs_mean_GPa": float(np.abs(stress).mean() * units.EV_PER_A3_TO_GPA) if len(stress) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "data" / "generated" / "metals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="smoke run: first K pure metals + first K alloys")
    args = parser.parse_args()

    chosen = materials()
    if args.limit is not None:
        pure = [m for m in chosen if len(m.elements) == 1]
        alloys = [m for m in chosen if len(m.elements) > 1]
        chosen = pure[: args.limit] + alloys[: args.limit]
    folder = args.output / "chunks"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.tmp*"):  # left by a killed run
        stale.unlink()
    chunks = [(m, kind, k) for m in chosen for k, kind in enumerate(COUNTS) if chunk_count(m, kind)]
    pending = [(m, kind, k, args.seed, str(folder)) for m, kind, k in chunks
               if not chunk_path(folder, m, kind).exists()]
    print(f"{len(chosen)} materials x {len(COUNTS)} kinds = {len(chunks)} chunks; {len(pending)} to generate, "
          f"{len(chunks) - len(pending)} already finished (resume); {args.workers} workers")

    from workers import run_jobs

    elapsed = run_jobs(generate_chunk, pending, args.workers, "chunk")

    # metals.extxyz keeps version 1 (the first five kinds: what the version-1 presets train on);
    # metals_v2.extxyz holds every kind, in the same material-by-material order
    output = args.output / "metals_v2.extxyz"
    concatenate([chunk_path(folder, m, kind) for m, kind, _ in chunks], output)
    concatenate([chunk_path(folder, m, kind) for m, kind, _ in chunks if kind in V1_KINDS], args.output / "metals.extxyz")
    summary = summarise(output)
    manifest = {
        "description": "fcc metals and random binary fcc alloys, ASE EMT energies (eV), forces (eV/Å) and "
                       "stress (eV/Å³, 3D-periodic cells only); generated by scripts/generate_metals_data.py",
        "seed": args.seed,
        "limit": args.limit,
        "ase_version": version("ase"),
        "protocol": {
            "counts_per_material": COUNTS, "pure_factor": PURE_FACTOR, "pure_counts": PURE_COUNTS, "alloy_fractions": list(ALLOY_FRACTIONS),
            "lattice_constant": "Vegard's law over ase.data.reference_states",
            "min_periodic_width_A": MIN_WIDTH_A, "slab_vacuum_each_side_A": VACUUM_A, "slab_layers": list(SLAB_LAYERS),
            "strain_sigma": list(STRAIN_SIGMA), "rattle_sigma_A": RATTLE_A,
            "md_temperatures_K": list(MD_TEMPERATURES_K), "md_timestep_fs": MD_TIMESTEP_FS,
            "md_friction_per_fs": MD_FRICTION_PER_FS, "md_steps": MD_STEPS, "md_slab_every": MD_SLAB_EVERY,
        },
        "file": output.name,
        "counts": summary,
        "materials": [{"name": m.name, "elements": list(m.elements), "fractions": list(m.fractions),
                       "lattice_constant_A": round(m.lattice_constant, 4)} for m in chosen],
        "elapsed_s_this_run": round(elapsed, 1),
        "chunks_generated_this_run": len(pending),
        "workers": args.workers,
    }
    write_json(args.output / "manifest.json", manifest, indent=2)
    print(f"{summary['structures']} structures, {summary['atoms']} atoms, mean |F| "
          f"{summary['force_norm_mean_eV_per_A']:.3f} eV/Å, by kind {summary['by_config_type']} -> {output}")
    print(f"generated {len(pending)} chunks in {elapsed:.1f} s ({args.workers} workers)")


if __name__ == "__main__":
    main()
