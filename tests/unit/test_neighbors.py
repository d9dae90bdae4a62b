"""Neighbour lists: both backends against ASE and against each other, as sets of (i, j, S).

Every comparison is on the full set of (i, j, Sx, Sy, Sz) tuples, with a separate check that
no tuple is repeated (a set would hide duplicates). Structures are small so that the whole file
runs in a few seconds; the random ones come from seeded generators.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.neighborlist import primitive_neighbor_list

from atomml.neighbors import neighbor_list

BACKENDS = ["vesin", "torch"]
ALL_PBC = [tuple(bool(b) for b in p) for p in itertools.product([False, True], repeat=3)]


def cell_for_ase(cell, pbc) -> np.ndarray:
    """ASE 3.29 can loop forever (growing memory) when a non-periodic cell vector is zero and
    the others are not axis-aligned. Its pairs do not depend on non-periodic vectors, so those
    that are zero are replaced by unit vectors orthogonal to the other vectors."""
    cell = np.array(cell, dtype=float)
    for axis in np.flatnonzero(~np.asarray(pbc, dtype=bool)):
        if np.linalg.norm(cell[axis]) == 0.0:
            others = np.delete(cell, axis, axis=0)
            _, s, vt = np.linalg.svd(others)
            rank = int(np.sum(s > 1e-9))
            cell[axis] = vt[rank] if rank < 3 else 0.0
    return cell


def ase_pairs(positions, cell, pbc, cutoff) -> set[tuple[int, int, int, int, int]]:
    pbc = np.asarray(pbc, dtype=bool)
    i, j, S = primitive_neighbor_list(
        "ijS", pbc, cell_for_ase(cell, pbc), np.asarray(positions, dtype=float), cutoff, self_interaction=False
    )
    return {(a, b, *s) for a, b, s in zip(i.tolist(), j.tolist(), S.tolist())}


def as_set(edge_index: torch.Tensor, shift: torch.Tensor) -> set[tuple[int, int, int, int, int]]:
    pairs = {(a, b, *s) for a, b, s in zip(edge_index[0].tolist(), edge_index[1].tolist(), shift.tolist())}
    assert len(pairs) == edge_index.shape[1], "the list repeats a pair"
    return pairs


def compute(backend, positions, cell, pbc, cutoff, batch=None, dtype=torch.float64):
    positions = torch.as_tensor(np.asarray(positions), dtype=dtype)
    cell = torch.as_tensor(np.asarray(cell), dtype=dtype)
    pbc = torch.as_tensor(np.asarray(pbc, dtype=bool))
    if batch is not None:
        batch = torch.as_tensor(np.asarray(batch), dtype=torch.long)
    edge_index, shift = neighbor_list(positions, cell, pbc, cutoff, batch=batch, backend=backend)
    assert edge_index.dtype == torch.int64 and shift.dtype == torch.int64
    assert edge_index.shape == (2, shift.shape[0]) and shift.shape[1:] == (3,)
    return edge_index, shift


def check_geometry(positions, cell, pbc, cutoff, edge_index, shift, batch=None):
    """r_ij shorter than the cutoff, no (i, i, 0), shifts zero along non-periodic axes, and
    every (i, j, S) has its reverse (j, i, -S)."""
    positions = np.asarray(positions, dtype=float)
    cells = np.asarray(cell, dtype=float).reshape(-1, 3, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(-1, 3)
    batch = np.zeros(len(positions), dtype=int) if batch is None else np.asarray(batch)
    i, j = edge_index.numpy()
    S = shift.numpy()
    r = positions[j] - positions[i] + np.einsum("ek,ekl->el", S, cells[batch[i]])
    assert np.all(np.linalg.norm(r, axis=1) < cutoff)
    assert np.all(batch[i] == batch[j]), "an edge joins two structures"
    assert not np.any((i == j) & np.all(S == 0, axis=1)), "an atom is its own neighbour"
    assert not np.any((S != 0) & ~pbc[batch[i]]), "a shift along a non-periodic axis"
    pairs = as_set(edge_index, shift)
    assert {(b, a, -x, -y, -z) for a, b, x, y, z in pairs} == pairs


def check_against_ase(backend, positions, cell, pbc, cutoff):
    edge_index, shift = compute(backend, positions, cell, pbc, cutoff)
    got = as_set(edge_index, shift)
    assert got == ase_pairs(positions, cell, pbc, cutoff)
    check_geometry(positions, cell, pbc, cutoff, edge_index, shift)
    return got


def random_cell(rng: np.random.Generator) -> np.ndarray:
    """A skewed triclinic cell (angles far from 90 degrees), randomly rotated, sometimes
    left-handed."""
    lengths = rng.uniform(3.0, 7.0, 3)
    cell = np.diag(lengths) + np.triu(rng.uniform(-0.8, 0.8, (3, 3)) * lengths[:, None], 1)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # orthogonal, det +1 or -1
    return cell @ rotation


def random_structure(seed: int, n_max: int = 24):
    rng = np.random.default_rng(seed)
    cell = random_cell(rng)
    positions = rng.uniform(0.0, 1.0, (int(rng.integers(2, n_max)), 3)) @ cell
    return positions, cell, float(rng.uniform(2.0, 6.0))


# --- against ASE -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pbc", ALL_PBC)
def test_random_triclinic_cells_every_pbc(backend, pbc):
    n_pairs = 0
    for seed in range(6):
        positions, cell, cutoff = random_structure(seed)
        n_pairs += len(check_against_ase(backend, positions, cell, pbc, cutoff))
    assert n_pairs > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_pbc_combinations(backend):
    rng = np.random.default_rng(1234)
    for seed in range(10):
        positions, cell, cutoff = random_structure(100 + seed)
        pbc = rng.integers(0, 2, 3).astype(bool)
        check_against_ase(backend, positions, cell, pbc, cutoff)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("zero_c", [False, True])
def test_slab(backend, zero_c):
    rng = np.random.default_rng(7)
    cell = np.array([[4.1, 0.0, 0.0], [1.7, 3.6, 0.0], [0.6, -0.4, 9.0]])
    positions = rng.uniform(0.0, 1.0, (16, 3)) @ cell
    positions[:, 2] += rng.uniform(-3.0, 3.0, 16)  # beyond the c extent: only a, b are periodic
    if zero_c:
        cell[2] = 0.0
    got = check_against_ase(backend, positions, cell, (True, True, False), 5.3)
    assert any(s[2] == 0 and (s[0] or s[1]) for s in (p[2:] for p in got))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slab_vacuum_along_each_axis(backend, axis):
    positions, cell, _ = random_structure(31)
    pbc = [True, True, True]
    pbc[axis] = False
    cell = cell.copy()
    cell[axis] = 0.0
    check_against_ase(backend, positions, cell, pbc, 4.7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("zero_ab", [False, True])
def test_wire(backend, zero_ab):
    rng = np.random.default_rng(11)
    cell = np.array([[12.0, 0.0, 0.0], [0.0, 12.0, 0.0], [0.7, 0.4, 2.6]])
    positions = rng.normal(0.0, 1.5, (10, 3)) + rng.uniform(0.0, 1.0, (10, 1)) * cell[2]
    if zero_ab:
        cell[:2] = 0.0
    got = check_against_ase(backend, positions, cell, (False, False, True), 5.9)
    assert max(abs(p[4]) for p in got) >= 2  # several images along the wire


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True), (False, True, False)])
def test_tiny_cell_many_images(backend, pbc):
    cell = np.array([[1.1, 0.0, 0.0], [0.35, 1.2, 0.0], [0.2, -0.45, 0.95]])
    positions = np.array([[0.1, 0.2, 0.3], [0.9, 0.5, 0.4], [-0.7, 1.9, 2.2]])
    got = check_against_ase(backend, positions, cell, pbc, 4.3)  # about 4x the cell
    self_images = [p for p in got if p[0] == p[1]]
    assert self_images and all(any(p[2:]) for p in self_images)
    assert max(max(abs(s) for s in p[2:]) for p in got) >= 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_atom_counts_lattice_points(backend):
    """One atom in a cubic cell of 1 Å with cutoff 2.5 Å: its neighbours are the nonzero
    lattice vectors n with |n|^2 < 6.25 (independent of ASE)."""
    span = range(-3, 4)
    expected = {(0, 0, *n) for n in itertools.product(span, span, span) if 0 < sum(x * x for x in n) < 6.25}
    edge_index, shift = compute(backend, [[0.3, -0.2, 0.7]], np.eye(3), (True, True, True), 2.5)
    assert as_set(edge_index, shift) == expected
    assert len(expected) == 80  # 6 + 12 + 8 + 6 + 24 + 24 vectors with |n|^2 = 1 ... 6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "cell, pbc", [(np.zeros((3, 3)), (False, False, False)), (np.eye(3) * 10.0, (True, True, True))]
)
def test_single_atom_without_neighbours(backend, cell, pbc):
    edge_index, shift = compute(backend, [[1.0, 2.0, 3.0]], cell, pbc, 4.0)
    assert edge_index.shape == (2, 0) and shift.shape == (0, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_isolated_atoms_far_apart(backend):
    positions = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, -250.0, 0.0], [0.0, 0.0, 1.0e4]])
    edge_index, shift = compute(backend, positions, np.zeros((3, 3)), (False, False, False), 5.0)
    assert edge_index.shape == (2, 0) and shift.shape == (0, 3)
    assert ase_pairs(positions, np.zeros((3, 3)), (False,) * 3, 5.0) == set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_crystal_atoms_on_cell_faces(backend):
    """fcc Cu (a = 3.6 Å) in its cubic cell: atoms sit exactly on faces (fractional 0 and 0.5)
    and each has 12 nearest neighbours at 2.55 Å and 6 more at 3.6 Å."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    for cutoff, per_atom in [(3.0, 12), (4.0, 18)]:
        got = check_against_ase(backend, atoms.positions, atoms.cell.array, (True,) * 3, cutoff)
        assert len(got) == per_atom * len(atoms)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True)])
def test_atoms_outside_the_cell(backend, pbc):
    """Unwrapped coordinates (negative, several cells away): the same pairs as ASE, and the
    shifts differ from those of the wrapped structure by the wrap of each atom."""
    rng = np.random.default_rng(5)
    positions, cell, _ = random_structure(5)
    wrap = rng.integers(-3, 3, (len(positions), 3)) * np.asarray(pbc)
    unwrapped = positions - wrap @ cell
    assert (unwrapped < 0).any()
    got = check_against_ase(backend, unwrapped, cell, pbc, 4.5)
    wrapped = as_set(*compute(backend, positions, cell, pbc, 4.5))
    moved = {(i, j, *(np.array(s) + wrap[j] - wrap[i]).tolist()) for i, j, *s in wrapped}
    assert got == moved and len(got) > 0


# --- the two backends against each other -------------------------------------------------


def test_backends_agree_on_random_structures():
    rng = np.random.default_rng(99)
    for seed in range(20):
        positions, cell, cutoff = random_structure(200 + seed, n_max=40)
        positions = positions + rng.normal(0.0, 3.0, positions.shape)  # some outside the cell
        pbc = rng.integers(0, 2, 3).astype(bool)
        results = [as_set(*compute(b, positions, cell, pbc, cutoff)) for b in BACKENDS]
        assert results[0] == results[1]


def test_auto_backend_matches_vesin_on_cpu():
    positions, cell, cutoff = random_structure(3)
    auto = as_set(*compute("auto", positions, cell, (True, False, True), cutoff))
    assert auto == as_set(*compute("vesin", positions, cell, (True, False, True), cutoff))
    assert auto


# --- batches, dtypes, layout -------------------------------------------------------------


def make_batch():
    """Structures of different kinds, with one atom, with no pairs, and with many images."""
    structures = []
    for k, seed in enumerate(range(300, 306)):
        positions, cell, _ = random_structure(seed)
        structures.append((positions, cell, ALL_PBC[(3 * k + 1) % 8]))
    structures.append((np.array([[0.2, 0.1, 0.4]]), np.eye(3) * 1.3, (True, True, True)))
    structures.append((np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]]), np.zeros((3, 3)), (False,) * 3))
    structures.append((np.array([[0.0, 0.0, 0.0]]), np.eye(3) * 20.0, (True,) * 3))
    return structures


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_equals_per_structure_lists(backend):
    cutoff = 4.2
    structures = make_batch()
    positions = np.concatenate([s[0] for s in structures])
    cells = np.stack([s[1] for s in structures])
    pbc = np.array([s[2] for s in structures])
    batch = np.concatenate([np.full(len(s[0]), b) for b, s in enumerate(structures)])
    edge_index, shift = compute(backend, positions, cells, pbc, cutoff, batch=batch)
    check_geometry(positions, cells, pbc, cutoff, edge_index, shift, batch=batch)

    expected, offset = set(), 0
    for pos, cell, p in structures:
        single = as_set(*compute(backend, pos, cell, p, cutoff))
        assert single == ase_pairs(pos, cell, p, cutoff)
        expected |= {(i + offset, j + offset, *s) for i, j, *s in single}
        offset += len(pos)
    assert as_set(edge_index, shift) == expected
    assert len(expected) > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_sorted_by_i(backend):
    structures = make_batch()
    positions = np.concatenate([s[0] for s in structures])
    batch = np.concatenate([np.full(len(s[0]), b) for b, s in enumerate(structures)])
    edge_index, _ = compute(
        backend, positions, np.stack([s[1] for s in structures]), np.array([s[2] for s in structures]), 4.2, batch=batch
    )
    i = edge_index[0]
    assert i.numel() > 100
    assert bool((i[1:] >= i[:-1]).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_same_pairs_as_float64_away_from_the_cutoff(backend):
    rng = np.random.default_rng(17)
    cell = random_cell(rng) * 2.0
    positions = rng.uniform(-0.2, 1.2, (120, 3)) @ cell
    pbc = (True, False, True)
    # round the input to float32 first so that both runs see the same structure
    positions = positions.astype(np.float32).astype(np.float64)
    cell = cell.astype(np.float32).astype(np.float64)
    # the cutoff goes in the middle of the widest gap between pair distances near 4 Å, so that
    # float32 rounding (about 1e-6 Å here) cannot move a pair across it
    d = np.sort(primitive_neighbor_list("d", np.array(pbc), cell, positions, 4.5))
    window = d[(d > 3.5) & (d < 4.5)]
    k = int(np.argmax(np.diff(window)))
    cutoff = float(window[k] + window[k + 1]) / 2.0
    assert window[k + 1] - window[k] > 1e-3
    single = as_set(*compute(backend, positions, cell, pbc, cutoff, dtype=torch.float32))
    double = as_set(*compute(backend, positions, cell, pbc, cutoff, dtype=torch.float64))
    assert single == double
    assert len(double) == int(np.sum(d < cutoff))


@pytest.mark.parametrize("backend", BACKENDS)
def test_vectors_within_cutoff_and_pairs_reversible(backend):
    positions, cell, _ = random_structure(77, n_max=60)
    cutoff = 5.5
    edge_index, shift = compute(backend, positions, cell, (True, True, False), cutoff)
    assert edge_index.shape[1] > 50
    check_geometry(positions, cell, (True, True, False), cutoff, edge_index, shift)


def test_torch_backend_on_each_device_matches_the_cpu(device):
    structures = make_batch()
    positions = torch.tensor(np.concatenate([s[0] for s in structures]))
    cells = torch.tensor(np.stack([s[1] for s in structures]))
    pbc = torch.tensor(np.array([s[2] for s in structures]))
    batch = torch.tensor(np.concatenate([np.full(len(s[0]), b) for b, s in enumerate(structures)]))
    cpu = neighbor_list(positions, cells, pbc, 4.2, batch=batch, backend="torch")
    moved = neighbor_list(positions.to(device), cells.to(device), pbc.to(device), 4.2, batch=batch.to(device), backend="torch")
    assert moved[0].device.type == device.type
    assert as_set(moved[0].cpu(), moved[1].cpu()) == as_set(*cpu)


# --- errors ------------------------------------------------------------------------------


def test_unknown_backend_raises():
    with pytest.raises(ValueError, match="nonsense"):
        compute("nonsense", [[0.0, 0.0, 0.0]], np.eye(3) * 5.0, (True,) * 3, 2.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cutoff", [0.0, -1.0])
def test_nonpositive_cutoff_raises(backend, cutoff):
    with pytest.raises(ValueError, match="cutoff"):
        compute(backend, [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.eye(3) * 5.0, (True,) * 3, cutoff)


@pytest.mark.parametrize("backend", ["torch", "vesin"])
@pytest.mark.parametrize("bad", ["position", "cell", "cutoff"])
def test_non_finite_input_is_rejected(backend, bad):
    positions = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    cell, cutoff = np.eye(3) * 5.0, 2.0
    if bad == "position":
        positions[2, 0] = np.nan
    elif bad == "cell":
        cell[1, 1] = np.inf
    else:
        cutoff = float("nan")
    with pytest.raises(ValueError, match="finite|NaN"):
        compute(backend, positions, cell, (True,) * 3, cutoff)


def test_pairs_come_in_one_order_whatever_the_positions():
    """By i, j, then shift (periodic images of one pair in a cell smaller than the cutoff
    included): a Verlet-skin list built at another step, filtered to the cutoff, then sums the
    same edges in the same order (a resumed MD run stays bit-identical to an uninterrupted one)."""
    rng = np.random.default_rng(3)
    for cell, n in ((np.eye(3) * 3.1, 4), (np.eye(3) * 9.0, 60)):
        positions = torch.tensor(rng.uniform(0, cell[0, 0], (n, 3)))
        edge_index, shift = neighbor_list(positions, torch.tensor(cell), torch.ones(3, dtype=torch.bool), 5.0)
        keys = np.column_stack([edge_index.T.numpy(), shift.numpy()])
        assert (np.lexsort(keys.T[::-1]) == np.arange(len(keys))).all()
