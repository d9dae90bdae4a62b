"""TensorNet against torchmd-net's own TensorNet (the reference implementation), float64.

torchmd-net 3.1 runs TensorNet through warp kernels by default and keeps its original PyTorch
code as a fallback. The two agree for the O(3) model (to ~1e-9) but not for SO(3): the warp
path computes the product M·Y where the PyTorch code (and the paper) have Y·M, so an SO(3)
model gives different energies (~1e-4 relative) depending on whether warp is installed. atomml
follows the PyTorch reference; the tests compare with it for both groups (``reference`` below
switches a torchmd-net model to it) and with the default warp path for O(3).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import atomml
from atomml import testing
from atomml.graph import batch_graphs
from atomml.convert.torchmdnet import from_torchmdnet

pytest.importorskip("torchmdnet")
from torchmdnet.models import tensornet as tmd_tensornet  # noqa: E402
from torchmdnet.models.model import create_model  # noqa: E402
from torchmdnet.priors import D2, ZBL, Atomref, Coulomb  # noqa: E402

ELEMENTS = [1, 6, 7, 8, 9, 16, 17]
CUTOFF = 4.0


def torchmdnet_tensornet(group: str = "O(3)", seed: int = 0, atomref: bool = False, std: float = 1.0, prior_list=None,
                         **overrides):  # fmt: skip
    """A float64 torchmd-net TensorNet (energy + forces), weights randomised away from the
    initial values (identity layer norms, zero biases would hide mistakes)."""
    args = dict(
        model="tensornet", embedding_dimension=24, num_layers=2, num_rbf=12, rbf_type="expnorm",
        trainable_rbf=False, activation="silu", cutoff_lower=0.0, cutoff_upper=CUTOFF, max_z=20,
        max_num_neighbors=64, equivariance_invariance_group=group, derivative=True, atom_filter=-1,
        prior_model=None, output_model="Scalar", reduce_op="sum", precision=64, static_shapes=False,
    )  # fmt: skip
    args.update(overrides)
    torch.manual_seed(seed)
    prior = None
    if atomref:
        prior = Atomref(max_z=20)
        prior.atomref.weight.data.copy_(torch.randn(20, 1))
    model = create_model(args, prior_model=prior_list or prior, std=torch.tensor(std))
    with torch.no_grad():
        for p in model.representation_model.parameters():
            p.add_(0.2 * torch.randn_like(p))
        for p in model.output_model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def reference(model, monkeypatch):
    """The same model run by torchmd-net's PyTorch code instead of its warp kernels."""
    model = copy.deepcopy(model)
    for name in ("compose_tensor", "decompose_tensor", "tensor_matmul_o3", "tensor_matmul_so3"):
        monkeypatch.setattr(tmd_tensornet, name, getattr(tmd_tensornet, "_" + name))
    for module in model.modules():
        if hasattr(module, "opt"):
            module.opt = False
    return model


def run_torchmdnet(model, atoms_list, boxes=None):
    z = torch.tensor(np.concatenate([a.numbers for a in atoms_list]), dtype=torch.long)
    pos = torch.tensor(np.concatenate([a.positions for a in atoms_list]), dtype=torch.float64)
    batch = torch.cat([torch.full((len(a),), k, dtype=torch.long) for k, a in enumerate(atoms_list)])
    q = torch.tensor([float(a.info.get("charge", 0.0)) for a in atoms_list], dtype=torch.float64)
    energy, forces = model(z, pos, batch, box=boxes, q=q)
    return energy.detach().squeeze(-1).numpy(), forces.detach().numpy()


def run_atomml(potential, atoms_list):
    graph = batch_graphs([atomml.from_ase(a, dtype=torch.float64) for a in atoms_list])
    out = potential(graph)
    return out["energy"].detach().numpy(), out["forces"].detach().numpy()


def assert_same(ours, theirs, rtol):
    (e1, f1), (e2, f2) = ours, theirs
    np.testing.assert_allclose(e1, e2, rtol=rtol, atol=0)
    assert np.abs(f1 - f2).max() <= rtol * np.abs(f2).max(), np.abs(f1 - f2).max() / np.abs(f2).max()


def molecules(sizes, seed):
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate(sizes):
        elements = list(rng.choice(ELEMENTS, size=rng.integers(2, len(ELEMENTS) + 1), replace=False))
        out.append(testing.random_molecule(elements, n, seed=seed + k))
    return out


@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
@pytest.mark.parametrize("size", [2, 9, 31])
def test_single_molecules_match_reference(group, size, monkeypatch):
    model = torchmdnet_tensornet(group, seed=size, atomref=True, std=0.7)
    potential = from_torchmdnet(model, elements=ELEMENTS)
    for atoms in molecules([size] * 3, seed=size):
        assert_same(run_atomml(potential, [atoms]), run_torchmdnet(reference(model, monkeypatch), [atoms]), 1e-10)


@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
def test_batch_with_total_charges_matches_reference(group, monkeypatch):
    model = torchmdnet_tensornet(group, seed=3)
    potential = from_torchmdnet(model, elements=ELEMENTS)
    batch = molecules([5, 12, 1, 20, 8], seed=11)
    for atoms, charge in zip(batch, [0, 1, -1, 2, 0]):
        atoms.info["charge"] = charge
    ours = run_atomml(potential, batch)
    assert_same(ours, run_torchmdnet(reference(model, monkeypatch), batch), 1e-10)
    # the charge is felt: the same structures neutral give other energies
    for atoms in batch:
        atoms.info["charge"] = 0
    neutral = run_atomml(potential, batch)[0]
    assert np.abs(neutral[[1, 2, 3]] - ours[0][[1, 2, 3]]).min() > 1e-6


def test_default_warp_path_matches_for_o3():
    model = torchmdnet_tensornet("O(3)", seed=5, atomref=True)
    potential = from_torchmdnet(model, elements=ELEMENTS)
    batch = molecules([7, 16, 24], seed=5)
    assert_same(run_atomml(potential, batch), run_torchmdnet(model, batch), 1e-6)


@pytest.mark.parametrize("group", ["O(3)", "SO(3)"])
def test_periodic_boxes_match_reference(group, monkeypatch):
    """Boxes that torchmd-net accepts: lower-triangular, each width at least twice the cutoff."""
    model = reference(torchmdnet_tensornet(group, seed=7), monkeypatch)
    potential = from_torchmdnet(model, elements=ELEMENTS)
    cells = [np.diag([8.5, 9.0, 10.0]), np.array([[9.0, 0, 0], [2.0, 8.6, 0], [-1.5, 3.0, 9.2]])]
    for k, cell in enumerate(cells):
        atoms = testing.random_crystal([1, 6, 8], 40, seed=20 + k, density=0.06)
        atoms.set_cell(cell, scale_atoms=True)
        atoms.wrap()
        box = torch.tensor(atoms.cell.array, dtype=torch.float64)
        assert_same(run_atomml(potential, [atoms]), run_torchmdnet(model, [atoms], boxes=box), 1e-10)


def test_conversion_refuses_what_it_cannot_represent():
    model = torchmdnet_tensornet()
    model.mean = torch.tensor(1.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="per-structure mean"):
        from_torchmdnet(model)
    with pytest.raises(ValueError, match="embeds Z < 20"):
        from_torchmdnet(torchmdnet_tensornet(), elements=[1, 29])
    with pytest.raises(TypeError, match="TensorNet representation"):
        from_torchmdnet(create_model_et())


def create_model_et():
    args = dict(
        model="graph-network", embedding_dimension=8, num_layers=1, num_rbf=4, rbf_type="expnorm",
        trainable_rbf=False, activation="silu", cutoff_lower=0.0, cutoff_upper=3.0, max_z=10,
        max_num_neighbors=16, aggr="add", neighbor_embedding=False, derivative=True, atom_filter=-1,
        prior_model=None, output_model="Scalar", reduce_op="sum", precision=32,
    )  # fmt: skip
    return create_model(args)


def test_converted_potential_saves_and_loads(tmp_path):
    model = torchmdnet_tensornet(atomref=True)
    potential = from_torchmdnet(model, elements=ELEMENTS)
    path = tmp_path / "tn.safetensors"
    atomml.save_potential(potential, path)
    loaded = atomml.load_potential(path).to(torch.float64)
    atoms = molecules([10], seed=2)
    assert_same(run_atomml(loaded, atoms), run_atomml(potential, atoms), 1e-12)


def test_model_from_torchmdnet_default_training_arguments(monkeypatch):
    """torchmd-net's training script defaults (256 channels, 6 layers, --reduce-op add: an alias
    of sum in its scatter), as a user who trains with them gets."""
    from torchmdnet.scripts.train import get_argparse

    args = vars(get_argparse().parse_args(["--model", "tensornet", "--derivative", "true"]))
    assert args["reduce_op"] == "add"
    torch.manual_seed(0)
    model = reference(create_model(args).double(), monkeypatch)
    potential = from_torchmdnet(model, elements=ELEMENTS)
    assert_same(run_atomml(potential, molecules([6, 11], seed=4)), run_torchmdnet(model, molecules([6, 11], seed=4)), 1e-9)


def test_priors_convert_to_energy_terms(monkeypatch):
    """ZBL, D2, Coulomb and Atomref priors (data in Å and eV) become atomml's terms and
    references: same energies and forces. torchmd-net's Coulomb prior is 10x the physical energy
    for data in Å; the converted potential reproduces the model as trained, and says so."""
    ev = 1.602176634e-19
    prior_model = [
        ZBL(2.5, 64, atomic_number=list(range(20)), distance_scale=1e-10, energy_scale=ev),
        D2(6.0, 64, atomic_number=list(range(20)), distance_scale=1e-10, energy_scale=ev, dtype=torch.float64),
        Coulomb(0.0625, 0.375, 64, distance_scale=1e-10, energy_scale=ev),
        Atomref(max_z=20),
    ]
    prior_model[-1].atomref.weight.data.copy_(torch.randn(20, 1))
    # torchmd-net's ZBL takes its atomic numbers to the power 0.23 in float32 (test_terms.py)
    prior_model[0].atomic_number = prior_model[0].atomic_number.double()
    model = reference(torchmdnet_tensornet(seed=8, prior_list=prior_model).double(), monkeypatch)
    with pytest.warns(UserWarning, match="10 times the Coulomb energy"):
        potential = from_torchmdnet(model, elements=ELEMENTS)
    assert [type(t).__name__ for t in potential.terms] == ["ZBL", "D2", "Coulomb"] and potential.long_range
    batch = molecules([7, 15, 3], seed=9)
    rng = np.random.default_rng(9)
    for atoms in batch:
        atoms.set_initial_charges(rng.normal(scale=0.3, size=len(atoms)))
    charges = torch.tensor(np.concatenate([a.get_initial_charges() for a in batch]))
    z = torch.tensor(np.concatenate([a.numbers for a in batch]))
    pos = torch.tensor(np.concatenate([a.positions for a in batch]))
    index = torch.cat([torch.full((len(a),), k) for k, a in enumerate(batch)])
    energy, forces = model(z, pos, index, extra_args={"partial_charges": charges})
    theirs = energy.detach().squeeze(-1).numpy(), forces.detach().numpy()
    # total charges as torchmd-net saw them (none): the per-atom charges alone
    for atoms in batch:
        atoms.info["charge"] = 0.0
    # 1e-8: torchmd-net's ZBL constant has nine digits (test_terms.py)
    assert_same(run_atomml(potential, batch), theirs, 1e-8)
    # the terms matter: without them the energies differ
    potential.terms = torch.nn.ModuleList()
    assert np.abs(run_atomml(potential, batch)[0] - theirs[0]).min() > 1e-3


def test_old_converter_path_warns_and_gives_the_same_function():
    import atomml.models.tensornet as old_home

    with pytest.warns(DeprecationWarning, match="atomml.convert.torchmdnet"):
        assert old_home.from_torchmdnet is from_torchmdnet
