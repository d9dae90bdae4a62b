"""PyTorch Geometric (atomml.interfaces.pyg): graph -> Batch -> graph bit for bit, PyG's own
message-passing convention against ASE's neighbour list, a potential on a PyG Batch equal to
the same potential on atomml's batch, datasets both ways (PyG's own loader reads what atomml
writes), and `atomml train` on an InMemoryDataset laid out as PyG's MD17 (kcal/mol, `force`)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.neighborlist import neighbor_list

import atomml
from atomml.data import Dataset, load_dataset
from atomml.errors import InputError
from atomml.graph import batch_graphs, from_ase
from atomml.training import TrainConfig, Trainer
from atomml.units import EV_TO_KCAL_PER_MOL

pyg_data = pytest.importorskip("torch_geometric.data")
from torch_geometric.nn import MessagePassing  # noqa: E402

from atomml.interfaces.pyg import dataset_to_pyg, from_pyg, load_processed, to_pyg  # noqa: E402

CUTOFF = 4.0


def structures():
    """Molecules, a charged one with partial charges, and cells smaller than the cutoff under a
    non-symmetric strain (periodic images of an atom itself, a row/column mix-up would show)."""
    water = molecule("H2O")
    ion = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])  # hydroxide, closed-shell
    ion.set_initial_charges([-1.3, 0.3])
    ion.info["charge"] = -1
    copper = bulk("Cu", "fcc", a=3.6)
    copper.set_cell(copper.cell.array @ (np.eye(3) + [[0.02, 0.05, 0], [0, -0.03, 0.01], [0.04, 0, 0.01]]), scale_atoms=True)
    slab = bulk("Al", "fcc", a=4.05, cubic=True)
    slab.pbc = [True, True, False]
    for k, atoms in enumerate((water, ion, copper, slab)):
        atoms.rattle(0.05, seed=k)
    return [water, ion, copper, slab]


def assert_same_graph(a, b):
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if x is None or y is None:
            assert x is None and y is None, field.name
        else:
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), field.name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_graph_to_pyg_and_back_is_bit_identical(dtype):
    parts = [from_ase(a, dtype=dtype).with_neighbors(CUTOFF) for a in structures()]
    parts = [g.replace(partial_charges=torch.zeros(g.num_atoms, dtype=dtype)) if g.partial_charges is None else g for g in parts]
    graph = batch_graphs(parts)
    batch = to_pyg(graph)
    assert isinstance(batch, pyg_data.Batch) and batch.num_graphs == 4
    assert_same_graph(from_pyg(batch), graph)
    # the Data of each structure, and a Batch PyG makes again from them, give the same graph
    assert_same_graph(from_pyg(batch.to_data_list()), graph)
    for b, part in enumerate(parts):
        assert_same_graph(from_pyg(batch[b]), part)
    without_edges = from_pyg(batch, edges=False)
    assert without_edges.edge_index is None and torch.equal(without_edges.positions, graph.positions)


class NeighbourDistance(MessagePassing):
    """PyG's own convention: x_i is the target (row 1), x_j the source (row 0); sums |r_ij|."""

    def __init__(self):
        super().__init__(aggr="add", flow="source_to_target")

    def forward(self, data):
        shift = torch.einsum("ek,ekl->el", data.cell_shift.to(data.pos.dtype), data.cell[data.batch[data.edge_index[1]]])
        return self.propagate(data.edge_index, pos=data.pos, shift=shift)

    def message(self, pos_i, pos_j, shift):
        return (pos_j - pos_i + shift).norm(dim=1, keepdim=True)


def test_pyg_message_passing_sees_the_neighbours_ase_finds():
    """A PyG layer on the converted Batch sums, at each atom, the distances to its neighbours:
    the same sums as ASE's neighbour list (images of periodic cells included)."""
    atoms_list = structures()
    batch = to_pyg(from_ase(atoms_list).with_neighbors(CUTOFF))
    sums = NeighbourDistance()(batch).squeeze(1).numpy()
    expected = []
    for atoms in atoms_list:
        i, d = neighbor_list("id", atoms, CUTOFF)
        expected.append(np.bincount(i, weights=d, minlength=len(atoms)))
    np.testing.assert_allclose(sums, np.concatenate(expected), rtol=1e-12, atol=1e-12)


def test_a_potential_takes_a_pyg_batch():
    """The same numbers as atomml's own batch, bit for bit (the potential builds its own
    neighbour list from either), and as the calculator, structure by structure."""
    atoms_list = [a for a in structures() if a.get_chemical_symbols()[0] != "Al"][:2]  # the organic potential's elements
    potential = atomml.load_potential("tensornet-organic-gfn2")
    graph = from_ase(atoms_list)
    ours = potential(graph)
    theirs = potential(to_pyg(graph))
    assert torch.equal(ours["energy"], theirs["energy"]) and torch.equal(ours["forces"], theirs["forces"])
    # a Batch made the way a PyG user makes one: pos and z, no cell, pbc or charge (neutral molecules)
    neutral = [molecule("H2O"), molecule("CH4")]
    data = [pyg_data.Data(pos=torch.tensor(a.positions), z=torch.tensor(a.numbers)) for a in neutral]
    energies = potential(pyg_data.Batch.from_data_list(data), compute_forces=False)["energy"]
    calc = atomml.AtomMLCalculator(potential, device="cpu")
    assert energies.tolist() == pytest.approx([calc.get_potential_energy(a) for a in neutral], rel=1e-6)
    with pytest.raises(InputError, match="AtomicGraph or a torch_geometric Data"):
        potential(neutral[0])


def test_from_pyg_reads_other_layouts_and_refuses_what_it_cannot():
    """OC20's layout (float `atomic_numbers`, a cell and no pbc), renamed attributes, and the
    messages for missing positions and fractional atomic numbers."""
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    data = pyg_data.Data(pos=torch.tensor(copper.positions), atomic_numbers=torch.tensor(copper.numbers, dtype=torch.float32),
                         cell=torch.tensor(copper.cell.array).unsqueeze(0), natoms=torch.tensor([4]))  # fmt: skip
    graph = from_pyg(data)
    assert graph.pbc.tolist() == [[True, True, True]] and graph.atomic_numbers.dtype == torch.long
    assert torch.equal(graph.atomic_numbers, torch.tensor(copper.numbers))
    renamed = pyg_data.Data(coords=torch.tensor(copper.positions), z=torch.tensor(copper.numbers))
    assert torch.equal(from_pyg(renamed, keys={"positions": "coords"}).positions, torch.tensor(copper.positions))
    with pytest.raises(InputError, match="no 'pos' attribute"):
        from_pyg(renamed)
    with pytest.raises(InputError, match="non-integer"):
        from_pyg(pyg_data.Data(pos=torch.zeros(1, 3), z=torch.tensor([1.5])))


def labelled_frames(n: int = 6):
    """Small CHNO molecules labelled with ASE's EMT (an independent calculator), eV."""
    frames = []
    for k in range(n):
        atoms = molecule(("H2O", "CH4", "NH3")[k % 3])
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        atoms.info.update(energy=energy, name=f"m{k}")
        atoms.arrays["forces"] = forces
        frames.append(atoms)
    return frames


def test_datasets_both_ways_and_pygs_own_loader(tmp_path):
    """Dataset -> PyG file -> Dataset gives the same arrays; PyG's InMemoryDataset.load reads
    the file atomml writes, and Dataset.from_pyg reads PyG's dataset object itself."""
    dataset = Dataset.from_ase(labelled_frames())
    path = dataset.write(tmp_path / "data.pt")
    again = load_dataset(path, cache=False)
    for name in ("positions", "numbers", "offsets", "cell", "pbc", "charge", "energy", "forces", "stress"):
        np.testing.assert_array_equal(getattr(again, name), getattr(dataset, name), err_msg=name)
    assert [entry["name"] for entry in again.info] == [entry["name"] for entry in dataset.info]
    theirs = pyg_data.InMemoryDataset()
    theirs.load(str(path))
    assert len(theirs) == len(dataset) and theirs[2].z.tolist() == dataset.numbers[dataset.offsets[2] : dataset.offsets[3]].tolist()
    np.testing.assert_array_equal(Dataset.from_pyg(theirs).energy, dataset.energy)
    assert dataset_to_pyg(dataset)[0].energy.dtype == torch.float64


class MD17Like(pyg_data.InMemoryDataset):
    """Laid out as PyG's MD17: z, pos, energy (kcal/mol) and force (kcal/mol/Å); QM9's table
    y of 19 targets as well, with the energy in eV in column 7 (U0)."""

    def __init__(self, root, frames=None):
        self.frames = frames
        super().__init__(root)
        self.load(self.processed_paths[0])

    @property
    def processed_file_names(self):
        return ["data.pt"]

    def process(self):
        data_list = []
        for atoms in self.frames:
            y = torch.zeros(1, 19, dtype=torch.float64)
            y[0, 7] = atoms.info["energy"]
            data_list.append(pyg_data.Data(
                z=torch.tensor(atoms.numbers), pos=torch.tensor(atoms.positions),
                energy=torch.tensor([atoms.info["energy"] * EV_TO_KCAL_PER_MOL]),
                force=torch.tensor(atoms.arrays["forces"] * EV_TO_KCAL_PER_MOL), y=y, idx=torch.tensor([len(data_list)]),
            ))  # fmt: skip
        self.save(data_list, self.processed_paths[0])


def test_atomml_train_on_a_pyg_dataset(tmp_path, capsys):
    """The dataset's root folder in a training config, with MD17's keys and unit: the labels
    the trainer reads are the EMT values in eV, and training runs."""
    frames = labelled_frames(8)
    root = tmp_path / "md17like"
    dataset = MD17Like(root, frames)
    energies = [a.info["energy"] for a in frames]
    read = load_dataset(root, cache=False, energy_unit="kcal/mol", energy_key="energy", forces_key="force")
    np.testing.assert_allclose(read.energy, energies, rtol=1e-14)
    np.testing.assert_allclose(read.forces, np.concatenate([a.arrays["forces"] for a in frames]), rtol=1e-14, atol=1e-14)
    assert read.info[3] == {"idx": 3}
    np.testing.assert_array_equal(load_dataset(root / "processed" / "data.pt", cache=False, energy_key="y[7]").energy, energies)
    np.testing.assert_array_equal(Dataset.from_pyg(dataset, energy_key="energy").energy, read.energy * EV_TO_KCAL_PER_MOL)
    with pytest.raises(InputError, match=r"'forces_of' \(data.forces_key\).*its attributes: energy, force, idx, pos, y, z"):
        load_dataset(root, cache=False, forces_key="forces_of")

    hyper = atomml.models.tiny_hyperparameters("tensornet", [1, 6, 7, 8])
    (tmp_path / "c.yaml").write_text(
        f"model: {{architecture: tensornet, hyperparameters: {json.dumps(hyper)}}}\n"
        f"data: {{train: {root}, valid_fraction: 0.25, energy_key: energy, forces_key: force, energy_unit: kcal/mol}}\n"
        "optimizer: {batch_size: 3}\n"
        "stop: {max_steps: 2}\n"
        f"run: {{output: {tmp_path / 'out'}, progress: false}}\n"
    )
    trainer = Trainer(TrainConfig.from_yaml(tmp_path / "c.yaml"))
    assert sorted(trainer.train_data.energy.tolist() + trainer.valid_data.energy.tolist()) == pytest.approx(sorted(energies), rel=1e-12)
    report = trainer.fit()
    assert report["steps"] == 2 and np.isfinite(report["test"]["valid"]["force_mae_meV_per_A"])
    assert "labels:       energy 6/6 [energy], forces 6/6 [force]" in capsys.readouterr().err


def test_a_pyg_file_that_needs_code_to_load_is_refused(tmp_path):
    """torch.load(weights_only=True): a file that would run code when unpickled is an error,
    and the code does not run (PyG's own loader would fall back to a full unpickle)."""
    marker = tmp_path / "ran"
    torch.save((Payload(str(marker)), None), tmp_path / "evil.pt")
    with pytest.raises(InputError, match="loads without running code"):
        load_processed(tmp_path / "evil.pt")
    assert not marker.exists()
    (tmp_path / "damaged.pt").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="damaged.pt"):
        load_dataset(tmp_path / "damaged.pt", cache=False)


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))
