"""The version-2 metals data (issue 23) and the split that keeps earlier test structures unseen."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def metals():
    return load_script("generate_metals_data")


def material(metals, name):
    return next(m for m in metals.materials() if m.name == name)


def structures(metals, mat, kind, count=None):
    """The first ``count`` labelled structures of a chunk, drawn as the generator draws them."""
    rng = np.random.default_rng([0, mat.index, list(metals.COUNTS).index(kind)])
    n = metals.chunk_count(mat, kind) if count is None else count
    frames = []
    for k in range(n):
        atoms, info = metals.make_structure(mat, kind, rng, k)
        frames.append(metals.label(atoms, mat, kind, info))
    return frames


def test_version_1_kinds_keep_their_random_streams(metals):
    """New kinds are appended: the version-1 kinds keep their index, so their data is unchanged."""
    assert list(metals.COUNTS)[:5] == list(metals.V1_KINDS)


def test_phases_have_the_lattice_they_name_and_the_fcc_volume_range(metals):
    cu = material(metals, "Cu")
    frames = structures(metals, cu, "phase", 6)
    assert [f.info["lattice"] for f in frames] == ["bcc", "hcp", "sc"] * 2
    fcc_volume = metals.fcc_volume(cu)
    for f in frames:
        ratio = f.get_volume() / len(f) / fcc_volume
        assert 0.85 < ratio < 1.16, (f.info["lattice"], ratio)  # 0.88-1.12 times a 1 % strain
        assert f.pbc.all() and "stress" in f.calc.results
    # bcc: 8 nearest neighbours at sqrt(3)/2 a before the rattle; sc: 6 at a
    bcc = frames[0]
    d = bcc.get_distances(0, range(1, len(bcc)), mic=True)
    a = (2 * fcc_volume * (bcc.get_volume() / len(bcc) / fcc_volume)) ** (1 / 3)
    assert np.sum(d < 0.95 * a) == 8


def test_ordered_alloys_have_their_composition_and_are_absent_for_pure_metals(metals):
    assert metals.chunk_count(material(metals, "Cu"), "ordered") == 0
    cuau = structures(metals, material(metals, "Cu50Au50"), "ordered", 2)
    assert [f.info["lattice"] for f in cuau] == ["B2", "L1_0"]
    for f in cuau:
        symbols = f.get_chemical_symbols()
        assert symbols.count("Cu") == symbols.count("Au")
    # B2 is ordered: the 8 nearest neighbours of a Cu atom are all Au
    b2 = cuau[0]
    d = b2.get_distances(0, range(1, len(b2)), mic=True)
    nearest = np.argsort(d)[:8] + 1
    assert b2.symbols[0] == "Cu" and set(b2.symbols[nearest]) == {"Au"}
    cu3au = structures(metals, material(metals, "Cu75Au25"), "ordered", 1)[0]
    assert cu3au.info["lattice"] == "L1_2"
    symbols = cu3au.get_chemical_symbols()
    assert symbols.count("Cu") == 3 * symbols.count("Au")


def test_clusters_are_free_and_span_atoms_dimers_and_small_clusters(metals):
    frames = structures(metals, material(metals, "Cu"), "cluster")
    shapes = [f.info["shape"] for f in frames]
    assert shapes.count("atom") == 1 and shapes.count("dimer") == 8
    for f in frames:
        assert not f.pbc.any() and "stress" not in f.calc.results
    atom = frames[shapes.index("atom")]
    from ase.calculators.emt import EMT

    bulk_cu = metals.bulk("Cu", "fcc", a=3.59)
    bulk_cu.calc = EMT()
    # EMT's cohesive energy of Cu is about 3.5 eV: the free atom sits that far above the bulk
    assert atom.get_potential_energy() - bulk_cu.get_potential_energy() == pytest.approx(3.5, abs=0.1)
    dimers = [f for f in frames if f.info["shape"] == "dimer"]
    lengths = [f.get_distance(0, 1) for f in dimers]
    assert min(lengths) < 2.6 and max(lengths) > 3.5  # near the bond and beyond it


def test_generation_is_reproducible(metals):
    cu = material(metals, "Cu")
    first = structures(metals, cu, "large_strain", 3)
    again = structures(metals, cu, "large_strain", 3)
    for a, b in zip(first, again):
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.cell.array, b.cell.array)
    assert [f.info["deformation"] for f in first] == ["volume", "shear", "bain"]


def _frames(rng, n, start=0):
    out = []
    for k in range(n):
        atoms = Atoms("H2", positions=rng.normal(size=(2, 3)) + 10 * (start + k))
        atoms.calc = SinglePointCalculator(atoms, energy=float(k), forces=np.zeros((2, 3)))
        out.append(atoms)
    return out


def test_a_grown_pool_keeps_the_earlier_split(tmp_path):
    """Structures of the earlier pool stay in their earlier part; the new ones are split too."""
    trainer = load_script("train_shipped_potentials")
    from atomml.data import load_dataset
    from atomml.training import TrainConfig

    rng = np.random.default_rng(0)
    old = _frames(rng, 40)
    new = _frames(rng, 60, start=40)
    write(tmp_path / "v1.extxyz", old)
    mixed = old[:20] + new[:30] + old[20:] + new[30:]  # the grown pool interleaves old and new
    write(tmp_path / "v2.extxyz", mixed)
    fractions = {"valid_fraction": 0.1, "test_fraction": 0.2, "split_by": "structure"}
    earlier = TrainConfig(train=str(tmp_path / "v1.extxyz"), **fractions)
    config = TrainConfig(train=str(tmp_path / "v2.extxyz"), **fractions)
    old_pool, pool = load_dataset(earlier.train), load_dataset(config.train)
    old_parts = trainer.split_indices(earlier, old_pool)
    _, parts = trainer.chain_split([earlier, config])
    keys = trainer.structure_keys(pool)
    old_keys = trainer.structure_keys(old_pool)
    for old_part, part in zip(old_parts, parts):
        assert {old_keys[i] for i in old_part} <= {keys[i] for i in part}
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(pool)))  # each structure once
    new_in_test = [i for i in parts[2] if keys[i] not in set(old_keys)]
    assert 6 <= len(new_in_test) <= 18  # about 20 % of the 60 new ones


def test_copies_of_a_training_structure_never_reach_a_test_set(tmp_path):
    """A structure held twice: wherever a random split put its copies, both end up in training."""
    trainer = load_script("train_shipped_potentials")
    from atomml.training import TrainConfig

    rng = np.random.default_rng(1)
    frames = _frames(rng, 30)
    doubled = frames + [frames[k] for k in range(30)]  # every structure twice
    write(tmp_path / "v1.extxyz", doubled)
    write(tmp_path / "v2.extxyz", doubled + _frames(rng, 20, start=30))
    fractions = {"valid_fraction": 0.2, "test_fraction": 0.2, "split_by": "structure"}
    chain = [TrainConfig(train=str(tmp_path / f"{v}.extxyz"), **fractions) for v in ("v1", "v2")]
    for presets in (chain[:1], chain):
        pool, parts = trainer.chain_split(presets)
        parts = trainer.without_training_copies(pool, parts)
        keys = trainer.structure_keys(pool)
        train = {keys[b] for b in parts[0]}
        assert not train & {keys[b] for b in np.concatenate(parts[1:])}
    # growing the pool keeps every earlier training structure in training
    old_pool, old_parts = trainer.chain_split(chain[:1])
    old_keys = trainer.structure_keys(old_pool)
    pool, parts = trainer.chain_split(chain)
    keys = trainer.structure_keys(pool)
    assert {old_keys[b] for b in old_parts[0]} <= {keys[b] for b in parts[0]}
