"""Deterministic random structures for tests: molecules, triclinic crystals, slabs, wires."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms


def _place(n: int, sample, min_distance: float, rng: np.random.Generator, distance) -> np.ndarray:
    points: list[np.ndarray] = []
    tries = 0
    while len(points) < n:
        tries += 1
        if tries > 10000 * n:
            raise RuntimeError("could not place atoms; lower the density or the minimum distance")
        p = sample()
        if all(distance(p, q) >= min_distance for q in points):
            points.append(p)
    return np.array(points)


def random_molecule(
    elements: Sequence[int], n_atoms: int, seed: int = 0, min_distance: float = 0.9, density: float = 0.08
) -> Atoms:
    """A random non-periodic cluster of ``n_atoms`` (atoms at least ``min_distance`` Å apart)."""
    rng = np.random.default_rng(seed)
    size = (n_atoms / density) ** (1 / 3)
    pos = _place(n_atoms, lambda: rng.random(3) * size, min_distance, rng, lambda p, q: np.linalg.norm(p - q))
    return Atoms(numbers=rng.choice(list(elements), n_atoms), positions=pos)


def random_crystal(
    elements: Sequence[int],
    n_atoms: int,
    seed: int = 0,
    pbc: Sequence[bool] = (True, True, True),
    min_distance: float = 1.0,
    density: float = 0.06,
    skew: float = 0.3,
) -> Atoms:
    """Random atoms in a random triclinic cell, periodic along ``pbc`` (slabs, wires...).

    Along non-periodic axes the atoms stay inside the cell's extent and the cell vector is kept
    as vacuum (as ASE builds slabs).
    """
    rng = np.random.default_rng(seed)
    length = (n_atoms / density) ** (1 / 3)
    cell = np.eye(3) * length + rng.uniform(-skew, skew, (3, 3)) * length
    pbc_arr = np.asarray(pbc, dtype=bool)
    inverse = np.linalg.inv(cell)

    def distance(p: np.ndarray, q: np.ndarray) -> float:
        d = (p - q) @ inverse
        d[pbc_arr] -= np.round(d[pbc_arr])
        return float(np.linalg.norm(d @ cell))

    pos = _place(n_atoms, lambda: rng.random(3) @ cell, min_distance, rng, distance)
    return Atoms(numbers=rng.choice(list(elements), n_atoms), positions=pos, cell=cell, pbc=pbc_arr)


def random_rotation(rng: np.random.Generator, reflect: bool = False) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflect:
        q = -q
    return q


# ---------------------------------------------------------------------------------------------
# Named structure sets for comparisons with other codes and for benchmarks
# ---------------------------------------------------------------------------------------------

# Liquid water at 1 g/cm^3, written in the units used here (g/Å^3) rather than as a factor.
WATER_DENSITY_G_PER_A3 = 1.0e-24
ORGANIC_ELEMENTS = (1, 6, 7, 8)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) rotation matrices, uniform over SO(3) (from normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def water_box(n_per_side: int, seed: int = 0) -> Atoms:
    """Periodic cubic box of ``n_per_side``³ randomly oriented rigid waters on a cubic grid at
    1 g/cm³ (3 n³ atoms; edge 3.10 Å per molecule). Deterministic for a given ``seed``."""
    from ase.build import molecule

    from ..units import AVOGADRO

    rng = np.random.default_rng(seed)
    water = molecule("H2O")
    mass = float(water.get_masses().sum())  # g/mol
    spacing = (mass / AVOGADRO / WATER_DENSITY_G_PER_A3) ** (1.0 / 3.0)  # Å per molecule
    local = water.positions - water.get_center_of_mass()
    grid = np.stack(np.meshgrid(*[np.arange(n_per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = (grid + 0.5) * spacing
    positions = centres[:, None, :] + np.einsum("mab,kb->mka", random_rotations(len(centres), rng), local)
    length = n_per_side * spacing
    return Atoms(
        numbers=np.tile(water.numbers, len(centres)), positions=positions.reshape(-1, 3), cell=np.eye(3) * length, pbc=True
    )


def molecule_from_smiles(smiles: str, seed: int = 0) -> Atoms:
    """One 3D conformer of ``smiles`` with hydrogens (RDKit ETKDG, then MMFF), deterministic for
    a given ``seed``."""
    from ..mm import embedded_molecule

    mol = embedded_molecule(smiles, seed)
    return Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


ALANINE_DIPEPTIDE = "CC(=O)NC(C)C(=O)NC"  # ACE-ALA-NME, 22 atoms


def solvated(solute: Atoms, waters: int, seed: int = 0, clearance: float = 2.2) -> Atoms:
    """``solute`` at the centre of a periodic box holding exactly ``waters`` rigid waters.

    Waters sit on the grid of :func:`water_box` (1 g/cm³); the smallest near-cubic grid that
    holds ``waters`` once the sites within ``clearance`` Å of the solute are removed is used,
    and the surplus sites are left empty, chosen at random (a few per cent vacancies). With
    alanine dipeptide and 749 waters this is a 2,269-atom system, the size of openmm-ml's
    solvated alanine dipeptide test.
    """
    rng = np.random.default_rng(seed)
    n = int(np.ceil(waters ** (1.0 / 3.0)))
    for shape in sorted({(a, b, c) for a in (n, n + 1) for b in (n - 1, n, n + 1) for c in (n - 1, n, n + 1)}, key=np.prod):
        box = water_box(max(shape), seed)  # rotations of a cube's waters; the first prod(shape) are kept
        spacing = box.cell[0, 0] / max(shape)
        grid = np.stack(np.meshgrid(*[np.arange(k) for k in shape], indexing="ij"), -1).reshape(-1, 3)
        local = box.positions.reshape(-1, 3, 3)[: len(grid)]
        local = local - local.mean(axis=1, keepdims=True)  # each water about its own centre
        sites = (grid + 0.5) * spacing
        cell = np.diag(np.array(shape) * spacing)
        centred = solute.positions - solute.positions.mean(axis=0) + np.diag(cell) / 2
        molecules = sites[:, None, :] + local
        distance = np.linalg.norm(molecules[:, :, None, :] - centred[None, None, :, :], axis=-1).min(axis=(1, 2))
        free = np.flatnonzero(distance > clearance)
        if len(free) >= waters:
            keep = np.sort(rng.choice(free, size=waters, replace=False))
            water_numbers = np.tile(box.numbers[:3], waters)
            return Atoms(
                numbers=np.concatenate([solute.numbers, water_numbers]),
                positions=np.concatenate([centred, molecules[keep].reshape(-1, 3)]),
                cell=cell,
                pbc=True,
            )
    raise ValueError(f"no grid near {n}³ holds {waters} waters around this solute; ask for more waters")


def organic_molecules(
    count: int = 64, seed: int = 0, min_atoms: int = 10, max_atoms: int = 25, elements: Sequence[int] = ORGANIC_ELEMENTS
) -> list[Atoms]:
    """``count`` molecules of ASE's G2 set with ``min_atoms``-``max_atoms`` atoms of
    ``elements`` (cycled in name order), each centred, randomly rotated and displaced by
    0.02 Å (Gaussian, per component). The G2 set stops at 14 atoms."""
    from ase.build import molecule
    from ase.collections import g2

    names = sorted(n for n in g2.names if min_atoms <= len(g2[n]) <= max_atoms and set(g2[n].numbers) <= set(elements))
    if not names:
        raise ValueError(f"no G2 molecule has {min_atoms}-{max_atoms} atoms of elements {list(elements)}")
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        atoms = molecule(names[k % len(names)])
        atoms.positions = (atoms.positions - atoms.positions.mean(0)) @ random_rotations(1, rng)[0].T
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        out.append(atoms)
    return out


def larger_organic_molecules(count: int = 64, seed: int = 0) -> list[Atoms]:
    """``count`` structures of 15-26 atoms of H, C, N, O (mean ~21): the S22 complexes of that
    size (two molecules in contact, as in a binding site), biphenyl and 1,4-benzenediamine from
    ASE, cycled and randomly rotated about their centre; non-periodic."""
    from ase.build import molecule
    from ase.collections import s22

    pool = [s22[n] for n in s22.names if 15 <= len(s22[n]) <= 26] + [molecule("biphenyl"), molecule("BDA")]
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        atoms = pool[k % len(pool)].copy()
        atoms.positions = (atoms.positions - atoms.positions.mean(0)) @ random_rotations(1, rng)[0].T
        atoms.pbc = False
        atoms.cell = np.zeros((3, 3))
        out.append(atoms)
    return out


def comparison_structures() -> dict[str, Atoms]:
    """Structures for agreement checks against another code: four G2 molecules (ethanol,
    benzene, acetamide, pyridine), a 9.3 Å periodic water box (81 atoms) and a sheared 6.2 Å
    water box (24 atoms: smaller than twice a 5 Å cutoff, so many periodic images)."""
    from ase.build import molecule

    structures = {name: molecule(name) for name in ("CH3CH2OH", "C6H6", "CH3CONH2", "C5H5N")}
    structures["water_box_81"] = water_box(3, seed=1)
    sheared = water_box(2, seed=2)
    cell = np.array(sheared.cell)
    cell[1] += 0.25 * cell[0]
    cell[2] += 0.15 * cell[0] - 0.1 * cell[1]
    sheared.set_cell(cell, scale_atoms=True)
    structures["sheared_water_box_24"] = sheared
    return structures


BENCHMARK_SYSTEMS = ("ethanol", "molecules", "molecules20", "water1500", "water12000")


def benchmark_system(name: str) -> list[Atoms]:
    """The structures of a named benchmark system (one batch):

    - ``ethanol``: one 9-atom molecule, the size of an ML/MM solute;
    - ``molecules``: 64 G2 molecules of 10-14 atoms (:func:`organic_molecules`);
    - ``molecules20``: 64 structures of 15-26 atoms (:func:`larger_organic_molecules`);
    - ``water1500``, ``water12000``: one periodic water box of 1,536 or 12,288 atoms.
    """
    from ase.build import molecule

    builders = {
        "ethanol": lambda: [molecule("CH3CH2OH")],
        "molecules": lambda: organic_molecules(64),
        "molecules20": lambda: larger_organic_molecules(64),
        "water1500": lambda: [water_box(8)],
        "water12000": lambda: [water_box(16)],
    }
    if name not in builders:
        raise ValueError(f"unknown benchmark system {name!r}; choose from {BENCHMARK_SYSTEMS}")
    return builders[name]()
