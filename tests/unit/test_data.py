"""Datasets: extxyz / ASE-db round trips, the array cache, splits and reference energies."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from atomml.data import Dataset, concatenate, group_split, load_dataset, random_split, reference_energies
from atomml.errors import InputError


def _labelled(atoms: Atoms, stress: bool) -> Atoms:
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if stress:
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(1)
    out = []
    for k in range(6):
        a = bulk("Cu", "fcc", a=3.6 + 0.02 * k, cubic=True) * (2, 1, 1)
        a.rattle(0.05, seed=k)
        a.info.update(composition="Cu", config_type="bulk", temperature=300.0 + k)
        out.append(_labelled(a, stress=True))
    slab = fcc111("Au", size=(2, 2, 3), vacuum=6.0)
    slab.info["config_type"] = "slab"
    out.append(_labelled(slab, stress=False))
    for name, charge in [("CH4", 0), ("H2O", -1)]:
        m = molecule(name)
        m.positions += rng.normal(0, 0.02, m.positions.shape)
        m.info.update(molecule=name, charge=charge)
        out.append(_labelled(m, stress=False))
    return out


@pytest.mark.parametrize("suffix", [".extxyz", ".db"])
def test_round_trip_keeps_labels_and_metadata(frames, tmp_path, suffix):
    data = Dataset.from_ase(frames)
    path = data.write(tmp_path / f"set{suffix}")
    back = load_dataset(path, cache=False)
    assert len(back) == len(frames)
    for name in ("positions", "numbers", "offsets", "cell", "pbc", "charge", "energy"):
        np.testing.assert_allclose(np.asarray(getattr(back, name), dtype=float), np.asarray(getattr(data, name), dtype=float), atol=1e-8)
    np.testing.assert_allclose(back.forces, data.forces, atol=1e-8)
    np.testing.assert_allclose(back.stress, data.stress, atol=1e-10)  # NaN where unlabelled, on both sides
    assert back.info[-1]["molecule"] == "H2O" and back.charge[-1] == -1
    assert back.info[0]["config_type"] == "bulk" and back.info[0]["temperature"] == 300.0
    assert back.pbc[6].tolist() == [True, True, False]
    atoms = back.to_ase()[6]
    assert atoms.get_potential_energy() == pytest.approx(frames[6].get_potential_energy())


def test_cache_is_used_and_refreshed(frames, tmp_path):
    path = Dataset.from_ase(frames).write(tmp_path / "set.extxyz")
    first = load_dataset(path)
    cache = tmp_path / "set.extxyz.atomml-cache"
    assert (cache / "positions.npy").exists()
    second = load_dataset(path)
    assert isinstance(second.positions, np.memmap)
    np.testing.assert_array_equal(second.positions, first.positions)
    Dataset.from_ase(frames[:3]).write(path)  # the source changes: the cache is rebuilt
    assert len(load_dataset(path)) == 3


def test_subset_batch_and_concatenate(frames):
    data = Dataset.from_ase(frames)
    sub = data.subset([7, 0, 6])
    assert sub.num_atoms.tolist() == [5, 8, 12]
    np.testing.assert_array_equal(sub.positions[:5], data.positions[data.offsets[7] : data.offsets[8]])
    graph, labels = data.batch([8, 7])
    assert graph.num_graphs == 2 and graph.batch.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert labels["forces"].shape == (8, 3) and graph.total_charge.tolist() == [-1.0, 0.0]
    both = concatenate([sub, data])
    assert len(both) == 3 + len(data) and both.num_atoms[:3].tolist() == [5, 8, 12]


def test_splits():
    parts = random_split(100, [0.8, 0.1, 0.1], seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    assert [len(p) for p in parts] == [80, 10, 10]
    groups = [f"mol{k % 10}" for k in range(100)]
    train, test = group_split(groups, [0.7, 0.3], seed=0)
    assert not {groups[i] for i in train} & {groups[i] for i in test}
    assert len({groups[i] for i in test}) == 3 and len(train) + len(test) == 100


def test_group_keys_composition_and_missing_key(frames):
    data = Dataset.from_ase(frames)
    keys = data.group_keys("composition")
    assert keys[0] == "Cu" and keys[7] == "1:4 6:1"  # CH4 has no composition entry: reduced formula
    with pytest.raises(InputError, match="molecule"):
        data.group_keys("molecule")


def test_reference_energies_recover_linear_energies():
    rng = np.random.default_rng(0)
    truth = {1: -13.6, 6: -1029.5, 8: -2041.2}
    frames = []
    for _ in range(30):
        counts = rng.integers(1, 6, size=3)
        numbers = np.repeat(list(truth), counts)
        atoms = Atoms(numbers=numbers, positions=rng.normal(0, 3, (len(numbers), 3)))
        atoms.calc = SinglePointCalculator(atoms, energy=float(sum(truth[int(z)] for z in numbers)))
        frames.append(atoms)
    fitted = reference_energies(Dataset.from_ase(frames))
    for z, e in truth.items():
        assert fitted[z] == pytest.approx(e, abs=1e-8)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "missing.extxyz")
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(InputError, match="unknown dataset format"):
        load_dataset(tmp_path / "data.csv")
