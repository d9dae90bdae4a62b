"""SchNet weights between atomml and schnetpack 2 (``schnetpack.representation.SchNet``).

atomml's SchNet is schnetpack's layer for layer (see :mod:`atomml.models.schnet`), so the
learned weights map one to one:

==========================================  ==============================================
atomml (``Potential.model``)                schnetpack ``NeuralNetworkPotential``
==========================================  ==============================================
``embedding.weight`` (n_elements, F)        ``representation.embedding.weight`` (100, F),
                                            row k at Z = elements[k]
``interactions.k.in2f``                     ``representation.interactions.k.in2f``
``interactions.k.filter_network.0 / .2``    ``representation.interactions.k.filter_network.0 / .1``
``interactions.k.f2out.0 / .2``             ``representation.interactions.k.f2out.0 / .1``
``readout.0 / .2``                          ``output_modules.0.outnet.0 / .1``
==========================================  ==============================================

(atomml keeps the activation as a module between two linear layers, hence indices 0 and 2.)
The Gaussian centres and widths and the cutoff are fixed buffers that both codes build from
(n_rbf, cutoff); they are compared, not copied. schnetpack's ``Atomwise`` readout defaults to
SiLU: :func:`schnetpack_model` builds it with shifted softplus, as atomml's readout is.

The state-dict mapping (:func:`to_schnetpack_state`, :func:`from_schnetpack_state`) needs no
schnetpack; the functions that build or read schnetpack modules import it when called.
schnetpack 2.1.1 conflicts with atomml's pins and lives in its own environment
(``scripts/setup_bench_env.sh`` makes ``.bench-venv/``); :func:`agreement_report` is the check
that the two codes compute the same energies and forces, run there.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ase import Atoms

    from ..potential import Potential

SCHNETPACK_MAX_Z = 100  # rows of schnetpack SchNet's default nuclear embedding
# atomml (sub-)layer -> schnetpack (sub-)layer inside one interaction block, and the readout
_BLOCK_LAYERS = {"in2f": "in2f", "filter_network.0": "filter_network.0", "filter_network.2": "filter_network.1",
                 "f2out.0": "f2out.0", "f2out.2": "f2out.1"}  # fmt: skip
_READOUT_LAYERS = {"readout.0": "output_modules.0.outnet.0", "readout.2": "output_modules.0.outnet.1"}
# schnetpack buffers that are built from the hyperparameters, not learned
_FIXED_BUFFERS = ("representation.radial_basis.widths", "representation.radial_basis.offsets",
                  "representation.cutoff_fn.cutoff")  # fmt: skip


def _key_map(n_interactions: int, shared: bool) -> dict[str, str]:
    """schnetpack key -> atomml key (within ``Potential.model``) for every learned tensor.

    With shared interactions atomml stores one block and schnetpack lists the same block at
    every index: each schnetpack index maps to atomml's block 0."""
    out = {}
    for k in range(n_interactions):
        ours = 0 if shared else k
        for a, b in _BLOCK_LAYERS.items():
            for p in ("weight", "bias"):
                if not (a == "in2f" and p == "bias"):  # in2f has no bias in either code
                    out[f"representation.interactions.{k}.{b}.{p}"] = f"interactions.{ours}.{a}.{p}"
    for a, b in _READOUT_LAYERS.items():
        for p in ("weight", "bias"):
            out[f"{b}.{p}"] = f"{a}.{p}"
    return out


def _require_schnet(potential: Potential) -> None:
    if potential.architecture != "schnet":
        raise ValueError(f"only SchNet maps to schnetpack's SchNet; this potential is a {potential.architecture}")
    if float(potential.energy_scale) != 1.0 or float(potential.energy_shift) != 0.0 or bool(potential.atomic_energies.any()):
        raise ValueError(
            "the potential has an energy scale, shift or atomic reference energies, which a schnetpack "
            "NeuralNetworkPotential without postprocessors does not represent; convert a potential without them"
        )
    if max(potential.elements) >= SCHNETPACK_MAX_Z:
        raise ValueError(f"schnetpack's embedding covers Z < {SCHNETPACK_MAX_Z}; the potential has Z={max(potential.elements)}")


def to_schnetpack_state(potential: Potential) -> dict[str, torch.Tensor]:
    """The learned tensors of an atomml SchNet potential under schnetpack's state-dict keys
    (``NeuralNetworkPotential`` as :func:`schnetpack_model` builds it).

    Embedding rows of elements the potential does not know are zero (never used). Load with
    ``load_state_dict(state, strict=False)``: the fixed radial-basis and cutoff buffers are
    not included (:func:`copy_to_schnetpack` does this and checks them)."""
    _require_schnet(potential)
    hp = potential.hyperparameters
    ours = potential.model.state_dict()
    embedding = ours["embedding.weight"]
    table = embedding.new_zeros((SCHNETPACK_MAX_Z, embedding.shape[1]))
    table[list(potential.elements)] = embedding
    state = {"representation.embedding.weight": table}
    for theirs, key in _key_map(hp["n_interactions"], hp.get("shared_interactions", False)).items():
        state[theirs] = ours[key].detach().clone()
    return state


def from_schnetpack_state(state: dict[str, torch.Tensor], potential: Potential) -> None:
    """Load schnetpack-keyed tensors (a ``NeuralNetworkPotential.state_dict()``) into the
    atomml SchNet ``potential``, in place: the rows of schnetpack's embedding at the
    potential's elements, and every linear layer. Shapes must agree."""
    _require_schnet(potential)
    hp = potential.hyperparameters
    shared = hp.get("shared_interactions", False)
    new = {"embedding.weight": state["representation.embedding.weight"][list(potential.elements)]}
    for theirs, key in _key_map(hp["n_interactions"], shared).items():
        if theirs not in state:
            raise KeyError(f"schnetpack state has no {theirs!r}: not a SchNet NeuralNetworkPotential of this size")
        if shared and key in new and not torch.equal(new[key], state[theirs]):
            raise ValueError(f"{theirs}: the shared interaction blocks of the schnetpack model differ")
        new[key] = state[theirs]
    target = potential.model.state_dict()
    for key, value in new.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise ValueError(f"{key}: schnetpack has shape {tuple(value.shape)}, atomml {tuple(target[key].shape)}")
    with torch.no_grad():
        for key, value in new.items():
            target[key].copy_(value.to(target[key].dtype))


# ---------------------------------------------------------------------------------------------
# With schnetpack installed
# ---------------------------------------------------------------------------------------------


def import_schnetpack() -> Any:
    """``import schnetpack`` (2.1.1 imports ``T_co`` from torch's dataloader, which torch
    removed: it is defined there first)."""
    import torch.utils.data.dataloader as dataloader

    if not hasattr(dataloader, "T_co"):
        dataloader.T_co = typing.TypeVar("T_co", covariant=True)
    try:
        import schnetpack
        import schnetpack.interfaces.ase_interface  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"schnetpack is not importable ({exc}); make its environment with scripts/setup_bench_env.sh "
            "and run with .bench-venv/bin/python"
        ) from exc
    return schnetpack


def schnetpack_model(
    cutoff: float = 5.0, n_atom_basis: int = 128, n_filters: int = 128, n_interactions: int = 6, n_rbf: int = 20,
    shared_interactions: bool = False,
) -> torch.nn.Module:  # fmt: skip
    """schnetpack ``NeuralNetworkPotential`` (PairwiseDistances -> SchNet -> Atomwise ->
    Forces, eval mode) with atomml's SchNet function: Gaussian RBF, cosine cutoff, and
    shifted softplus in the readout (schnetpack's default there is SiLU). Defaults are
    schnetpack's SchNet hyperparameters."""
    spk = import_schnetpack()
    from schnetpack.nn.activations import shifted_softplus

    representation = spk.representation.SchNet(
        n_atom_basis=n_atom_basis,
        n_interactions=n_interactions,
        radial_basis=spk.nn.GaussianRBF(n_rbf=n_rbf, cutoff=cutoff),
        cutoff_fn=spk.nn.CosineCutoff(cutoff),
        n_filters=n_filters,
        shared_interactions=shared_interactions,
    )
    model = spk.model.NeuralNetworkPotential(
        representation=representation,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[
            spk.atomistic.Atomwise(n_in=n_atom_basis, output_key="energy", activation=shifted_softplus),
            spk.atomistic.Forces(energy_key="energy", force_key="forces"),
        ],
        do_postprocessing=False,
    )
    return model.eval()


def _check_fixed_buffers(potential: Potential, spk_model: torch.nn.Module) -> None:
    ours, theirs = potential.model, spk_model.representation
    if abs(potential.cutoff - float(theirs.cutoff_fn.cutoff)) > 1e-6:
        raise ValueError(f"cutoffs differ: atomml {potential.cutoff} Å, schnetpack {float(theirs.cutoff_fn.cutoff)} Å")
    o1, o2 = ours.radial_basis.offsets.double(), theirs.radial_basis.offsets.double()
    if o1.shape != o2.shape or float((o1 - o2).abs().max()) > 1e-6:
        raise ValueError("the Gaussian centres differ (n_rbf or cutoff)")


def copy_to_schnetpack(potential: Potential, spk_model: torch.nn.Module) -> None:
    """Load an atomml SchNet's weights into a schnetpack model (in place); the model's fixed
    buffers (radial basis, cutoff) are checked to be the potential's."""
    _check_fixed_buffers(potential, spk_model)
    state = to_schnetpack_state(potential)
    dtype = next(spk_model.parameters()).dtype
    result = spk_model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    if result.unexpected_keys or set(result.missing_keys) - set(_FIXED_BUFFERS):
        raise ValueError(f"not a SchNet NeuralNetworkPotential of this size: missing {result.missing_keys}, "
                         f"unexpected {result.unexpected_keys}")  # fmt: skip


def to_schnetpack(potential: Potential) -> torch.nn.Module:
    """A schnetpack ``NeuralNetworkPotential`` computing what the atomml SchNet ``potential``
    computes (same weights, the potential's dtype)."""
    _require_schnet(potential)
    hp = {k: v for k, v in potential.hyperparameters.items() if k != "elements"}
    model = schnetpack_model(**hp).to(potential.dtype)
    copy_to_schnetpack(potential, model)
    return model


def from_schnetpack(spk_model: torch.nn.Module, elements: list[int | str]) -> Potential:
    """An atomml SchNet potential from a schnetpack ``NeuralNetworkPotential`` as
    :func:`schnetpack_model` builds it (SchNet representation, Gaussian RBF, cosine cutoff,
    shifted-softplus ``Atomwise`` energy), for the given elements."""
    from ..models import create

    rep = spk_model.representation
    interactions = rep.interactions
    block = interactions[0]
    hyper = dict(
        cutoff=float(rep.cutoff_fn.cutoff),
        n_atom_basis=int(rep.n_atom_basis),
        n_filters=int(rep.n_filters),
        n_interactions=len(interactions),
        n_rbf=int(rep.radial_basis.n_rbf),
        shared_interactions=all(b is block for b in interactions) and len(interactions) > 1,
    )
    potential = create("schnet", elements=elements, **hyper).to(next(spk_model.parameters()).dtype)
    _check_fixed_buffers(potential, spk_model)
    from_schnetpack_state(spk_model.state_dict(), potential)
    return potential.eval()


def _sync_radial_buffers(potential: Potential, spk_model: torch.nn.Module) -> None:
    """Give schnetpack exactly atomml's Gaussian centres and widths, in the model's dtype.

    Both codes build these buffers in float32 but round differently (schnetpack: float32
    linspace and width; atomml: float64 linspace and -0.5/width², then rounded), so the
    models differ at ~1e-7 relative even in float64; synchronised, what is left is round-off
    of the architecture itself."""
    ours, theirs = potential.model.radial_basis, spk_model.representation.radial_basis
    with torch.no_grad():
        theirs.offsets.copy_(ours.offsets.to(theirs.offsets.dtype))
        theirs.widths.copy_(torch.sqrt(-0.5 / ours.coefficient.to(theirs.widths.dtype)))


def _compare(potential: Potential, spk_model: torch.nn.Module, structures: dict[str, Atoms]) -> dict[str, dict]:
    from schnetpack.interfaces.ase_interface import AtomsConverter

    import atomml

    spk = import_schnetpack()
    converter = AtomsConverter(neighbor_list=spk.transform.MatScipyNeighborList(cutoff=potential.cutoff), dtype=torch.float64)
    results = {}
    for name, atoms in structures.items():
        out = potential(atomml.from_ase(atoms, dtype=torch.float64), compute_forces=True)
        e1, f1 = out["energy"].detach(), out["forces"].detach()
        ref = spk_model(converter(atoms))
        e2, f2 = ref["energy"].detach(), ref["forces"].detach()
        results[name] = {
            "n_atoms": len(atoms),
            "periodic": bool(atoms.pbc.any()),
            "energy_atomml": float(e1.sum()),
            "energy_schnetpack": float(e2.sum()),
            "energy_rel_diff": float((e1 - e2).abs().max() / e2.abs().max()),
            "forces_max_abs_diff": float((f1 - f2).abs().max()),
            "forces_max_abs": float(f2.abs().max()),
            # relative to the largest force component of the structure
            "forces_rel_diff": float((f1 - f2).abs().max() / f2.abs().max()),
        }
    return results


def agreement_report(seed: int = 0, structures: dict[str, Atoms] | None = None) -> dict[str, Any]:
    """Energies and forces of atomml's SchNet against schnetpack's, float64, same weights.

    The potential has schnetpack's default size (128 features, 6 interactions, 20 Gaussians,
    5 Å), weights from ``seed`` plus a random offset on every parameter (biases start at
    zero, so a wrong bias mapping could otherwise hide). Structures default to
    :func:`atomml.testing.structures.comparison_structures` (molecules and periodic water
    boxes). Compared twice: with each code's own radial-basis buffers, and with schnetpack
    given atomml's (``synced_radial_buffers``), which isolates the architecture.
    """
    from ..models import create
    from ..testing.structures import ORGANIC_ELEMENTS, comparison_structures

    torch.manual_seed(seed)
    potential = create("schnet", elements=list(ORGANIC_ELEMENTS)).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # in float32, before the cast: the fixed buffers as the model is built
        for name, p in potential.named_parameters():
            p.add_((0.1 if name.endswith("bias") else 0.02) * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    potential = potential.double()
    spk_model = to_schnetpack(potential)
    structures = comparison_structures() if structures is None else structures
    results = _compare(potential, spk_model, structures)
    rb_ours, rb_theirs = potential.model.radial_basis, spk_model.representation.radial_basis
    coeff_theirs = -0.5 / rb_theirs.widths.double() ** 2
    report: dict[str, Any] = {
        "dtype": "float64",
        "structures": results,
        "max_energy_rel_diff": max(r["energy_rel_diff"] for r in results.values()),
        "max_forces_rel_diff": max(r["forces_rel_diff"] for r in results.values()),
        "rbf_offsets_max_abs_diff": float((rb_ours.offsets.double() - rb_theirs.offsets.double()).abs().max()),
        "rbf_coefficient_max_rel_diff": float(((rb_ours.coefficient.double() - coeff_theirs) / coeff_theirs).abs().max()),
    }
    _sync_radial_buffers(potential, spk_model)
    synced = _compare(potential, spk_model, structures)
    report["synced_radial_buffers"] = {
        "max_energy_rel_diff": max(r["energy_rel_diff"] for r in synced.values()),
        "max_forces_rel_diff": max(r["forces_rel_diff"] for r in synced.values()),
        "structures": {k: {"energy_rel_diff": r["energy_rel_diff"], "forces_rel_diff": r["forces_rel_diff"]}
                       for k, r in synced.items()},
    }  # fmt: skip
    report["torch"] = torch.__version__
    report["schnetpack"] = import_schnetpack().__version__
    return report
