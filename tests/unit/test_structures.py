"""The named structure sets of atomml.testing.structures (benchmarks, comparisons with other codes)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.data import atomic_masses

from atomml import units
from atomml.testing.structures import (
    BENCHMARK_SYSTEMS,
    benchmark_system,
    comparison_structures,
    larger_organic_molecules,
    organic_molecules,
    random_rotations,
    water_box,
)


def test_random_rotations_are_proper_rotations():
    r = random_rotations(50, np.random.default_rng(0))
    assert r.shape == (50, 3, 3)
    assert np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(r), 1.0)


def test_water_box_density_geometry_and_seed():
    box = water_box(3, seed=1)
    assert len(box) == 81 and box.pbc.all()
    assert list(box.numbers[:3]) == [8, 1, 1]
    # 1 g/cm^3 from the masses and the cell volume, computed here independently of the builder
    grams = atomic_masses[box.numbers].sum() / units.AVOGADRO
    assert grams / (box.get_volume() * 1e-24) == pytest.approx(1.0, rel=1e-9)
    # rigid waters: O-H 0.97 Å within each molecule, nothing closer than 1.3 Å between molecules
    d = box.get_all_distances(mic=True)
    molecule = np.arange(len(box)) // 3
    same = molecule[:, None] == molecule[None, :]
    oh = d[0::3][:, 1::3].diagonal(), d[0::3][:, 2::3].diagonal()
    assert np.allclose(oh, 0.9686, atol=1e-3)
    assert d[~same].min() > 1.3
    assert np.array_equal(water_box(3, seed=1).positions, box.positions)
    assert not np.allclose(water_box(3, seed=2).positions, box.positions)


def test_molecule_sets():
    small = organic_molecules(10, seed=0)
    assert len(small) == 10 and all(10 <= len(m) <= 25 and set(m.numbers) <= {1, 6, 7, 8} for m in small)
    assert np.array_equal(small[3].positions, organic_molecules(10, seed=0)[3].positions)
    larger = larger_organic_molecules(8)
    assert all(15 <= len(m) <= 26 and not m.pbc.any() for m in larger)
    with pytest.raises(ValueError, match="no G2 molecule"):
        organic_molecules(1, min_atoms=30)


def test_comparison_structures():
    structures = comparison_structures()
    assert sum(not s.pbc.any() for s in structures.values()) == 4
    sheared = structures["sheared_water_box_24"]
    assert len(sheared) == 24 and abs(sheared.cell[1, 0]) > 0  # triclinic
    assert min(sheared.cell.lengths()) < 10.0  # smaller than twice a 5 Å cutoff


def test_benchmark_systems():
    sizes = {"ethanol": 9, "water1500": 1536}
    for name, n in sizes.items():
        assert sum(len(a) for a in benchmark_system(name)) == n
    assert len(benchmark_system("molecules")) == 64
    assert set(sizes) <= set(BENCHMARK_SYSTEMS)
    with pytest.raises(ValueError, match="unknown benchmark system"):
        benchmark_system("water")
