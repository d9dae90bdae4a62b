"""atomml's SchNet and schnetpack 2.1.1's: the weight mapping and the same function.

The mapping (``atomml.convert.schnetpack``) is checked here without schnetpack: key names and
shapes as schnetpack 2.1.1 builds ``NeuralNetworkPotential(SchNet, Atomwise)`` (written out
from its source below), and a round trip. schnetpack itself lives in its own environment
(``.bench-venv/``, made by ``scripts/setup_bench_env.sh``: its pins conflict with ours), so the
comparison with it (slow) runs there in a subprocess: ``agreement_report()`` prints energies and
forces of both codes in float64 with the same weights, for four molecules and two periodic
water boxes (one sheared, smaller than twice the cutoff). It is skipped where that environment
has not been made.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from atomml.convert.schnetpack import from_schnetpack_state, to_schnetpack_state
from atomml.models import create

ROOT = Path(__file__).resolve().parents[2]
BENCH_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
SMALL = dict(cutoff=4.0, n_atom_basis=16, n_filters=12, n_rbf=6)


def schnetpack_shapes(n_atom_basis: int, n_filters: int, n_rbf: int, n_interactions: int) -> dict[str, tuple]:
    """Learned tensors of schnetpack 2.1.1's SchNet + Atomwise: ``SchNetInteraction`` has
    in2f = Dense(F, nf, bias=False), filter_network = (Dense(n_rbf, nf), Dense(nf, nf)),
    f2out = (Dense(nf, F), Dense(F, F)); ``Atomwise``'s build_mlp with 2 layers halves F."""
    f, nf = n_atom_basis, n_filters
    shapes = {"representation.embedding.weight": (100, f)}
    for k in range(n_interactions):
        block = f"representation.interactions.{k}"
        shapes[f"{block}.in2f.weight"] = (nf, f)
        for name, (n_out, n_in) in {"filter_network.0": (nf, n_rbf), "filter_network.1": (nf, nf),
                                    "f2out.0": (f, nf), "f2out.1": (f, f)}.items():  # fmt: skip
            shapes[f"{block}.{name}.weight"], shapes[f"{block}.{name}.bias"] = (n_out, n_in), (n_out,)
    for name, (n_out, n_in) in {"outnet.0": (f // 2, f), "outnet.1": (1, f // 2)}.items():
        shapes[f"output_modules.0.{name}.weight"], shapes[f"output_modules.0.{name}.bias"] = (n_out, n_in), (n_out,)
    return shapes


def _randomised(seed: int, **hyper):
    torch.manual_seed(seed)
    potential = create("schnet", elements=[1, 6, 8], **hyper)
    with torch.no_grad():  # biases start at zero: give them values, so a wrong mapping shows
        for p in potential.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return potential


@pytest.mark.parametrize("shared", [False, True])
def test_state_keys_and_shapes_are_schnetpacks(shared):
    potential = _randomised(0, n_interactions=3, shared_interactions=shared, **SMALL)
    state = to_schnetpack_state(potential)
    expected = schnetpack_shapes(SMALL["n_atom_basis"], SMALL["n_filters"], SMALL["n_rbf"], 3)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    embedding = state["representation.embedding.weight"]
    assert torch.equal(embedding[[1, 6, 8]], potential.model.embedding.weight)
    assert not embedding[[0, 2, 7, 9, 99]].any()  # rows of other elements: unused, zero
    ours = potential.model.state_dict()
    assert torch.equal(state["representation.interactions.2.filter_network.1.bias"],
                       ours[f"interactions.{0 if shared else 2}.filter_network.2.bias"])  # fmt: skip
    assert torch.equal(state["output_modules.0.outnet.1.weight"], ours["readout.2.weight"])


@pytest.mark.parametrize("shared", [False, True])
def test_round_trip_restores_every_weight(shared):
    source = _randomised(1, n_interactions=2, shared_interactions=shared, **SMALL)
    target = _randomised(2, n_interactions=2, shared_interactions=shared, **SMALL)
    from_schnetpack_state(to_schnetpack_state(source), target)
    for (key, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), key


def test_mapping_refuses_what_schnetpack_cannot_represent():
    potential = _randomised(0, n_interactions=2, **SMALL)
    state = to_schnetpack_state(potential)
    wider = _randomised(0, n_interactions=2, **{**SMALL, "n_filters": 8})
    with pytest.raises(ValueError, match="shape"):
        from_schnetpack_state(state, wider)
    deeper = _randomised(0, n_interactions=3, **SMALL)
    with pytest.raises(KeyError, match="interactions.2"):
        from_schnetpack_state(state, deeper)
    shifted = create("schnet", elements=[1, 6], atomic_energies={1: -13.6, 6: -1000.0}, **SMALL)
    with pytest.raises(ValueError, match="reference energies"):
        to_schnetpack_state(shifted)
    tensornet = create("tensornet", elements=[1, 6], hidden_channels=8, num_layers=1, num_rbf=4, cutoff=4.0)
    with pytest.raises(ValueError, match="only SchNet"):
        to_schnetpack_state(tensornet)


# ---------------------------------------------------------------------------------------------
# Against schnetpack itself, in its environment

AGREEMENT = """
import json
from atomml.convert.schnetpack import agreement_report, from_schnetpack, to_schnetpack, to_schnetpack_state
from atomml.models import create

report = agreement_report()
small = create("schnet", elements=[1, 6, 8], cutoff=4.0, n_atom_basis=16, n_filters=12, n_interactions=2, n_rbf=6)
model = to_schnetpack(small)
fixed = ("radial_basis", "cutoff_fn")
report["schnetpack_learned_shapes"] = {
    k: list(v.shape) for k, v in model.state_dict().items() if not any(f in k for f in fixed)}
report["mapped_shapes"] = {k: list(v.shape) for k, v in to_schnetpack_state(small).items()}
back = from_schnetpack(model, [1, 6, 8])
report["round_trip_max_diff"] = max(
    float((a - b).abs().max()) for a, b in zip(small.state_dict().values(), back.state_dict().values()))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def agreement() -> dict:
    if not BENCH_PYTHON.exists():
        pytest.skip("schnetpack's environment .bench-venv/ is missing: make it with scripts/setup_bench_env.sh")
    proc = subprocess.run([str(BENCH_PYTHON), "-c", AGREEMENT], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"agreement check failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mapping_matches_a_real_schnetpack_model(agreement):
    assert agreement["mapped_shapes"] == agreement["schnetpack_learned_shapes"]
    assert agreement["round_trip_max_diff"] == 0.0


@pytest.mark.slow
def test_structures_cover_molecules_and_periodic_boxes(agreement):
    structures = agreement["structures"]
    assert agreement["dtype"] == "float64"
    assert agreement["schnetpack"] == "2.1.1"
    assert sum(not s["periodic"] for s in structures.values()) >= 3
    assert sum(s["periodic"] for s in structures.values()) >= 2
    for s in structures.values():
        # non-trivial values, so that a relative difference means something
        assert abs(s["energy_schnetpack"]) > 1e-3
        assert s["forces_max_abs"] > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("quantity", ["energy", "forces"])
def test_energies_and_forces_agree_in_float64(agreement, quantity):
    for name, s in agreement["structures"].items():
        diff = s[f"{quantity}_rel_diff"]
        assert 0.0 <= diff < 1e-6, f"{name}: {quantity} relative difference {diff:.3g}"


@pytest.mark.slow
def test_architecture_exact_with_the_same_radial_buffers(agreement):
    """The ~1e-7 left above comes from the fixed Gaussian buffers, which both codes store in
    float32 but round differently; with schnetpack given atomml's buffers, the two agree to
    float64 round-off."""
    assert agreement["rbf_offsets_max_abs_diff"] < 1e-6
    assert agreement["rbf_coefficient_max_rel_diff"] < 1e-6
    synced = agreement["synced_radial_buffers"]
    assert synced["max_energy_rel_diff"] < 1e-12
    assert synced["max_forces_rel_diff"] < 1e-12
