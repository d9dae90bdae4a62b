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
