"""torchmd-net TensorNet models (``TorchMD_Net``) as atomml potentials, priors included.

The model's ``std`` becomes the energy scale, an enabled ``Atomref`` prior the per-element
reference energies, and the ``ZBL``, ``Coulomb`` and ``D2`` priors atomml's energy terms of the
same names (:mod:`atomml.terms`), so that the converted potential gives the energies and
forces of the torchmd-net model (``tests/unit/test_tensornet_torchmdnet.py``, ``tests/unit/test_terms.py``).
torchmd-net's models take positions in the dataset's length unit and return energies in its
energy unit; atomml's are Å and eV, so priors (which say their units) must use those.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from .. import units
from ..models import create
from ..models.tensornet import ACTIVATIONS
from ..potential import Potential

# torchmd-net's Scalar head sums with its scatter; its training script's --reduce-op default is
# "add", an alias of "sum" there
SUM_REDUCTIONS = ("sum", "add")
# e^2 / (4 pi eps0) as torchmd-net 3.1's Coulomb prior writes it (CODATA 2018: 2.307077552e-28)
TORCHMDNET_COULOMB_J_M = 2.30707e-28


def _check_units(prior: Any) -> None:
    name = type(prior).__name__
    distance = float(getattr(prior, "distance_scale", units.METRE_PER_ANGSTROM))
    energy = float(getattr(prior, "energy_scale", units.ELEMENTARY_CHARGE_C))
    in_angstrom = math.isclose(distance, units.METRE_PER_ANGSTROM, rel_tol=1e-9)
    if not (in_angstrom and math.isclose(energy, units.ELEMENTARY_CHARGE_C, rel_tol=1e-9)):
        raise ValueError(
            f"from_torchmdnet: the {name} prior works in a dataset with distance_scale={distance} m and "
            f"energy_scale={energy} J; atomml potentials take Å and return eV (1e-10 m, "
            f"{units.ELEMENTARY_CHARGE_C} J). Train the torchmd-net model on data in Å and eV to convert it"
        )


def _terms(priors: list[Any]) -> tuple[list[dict[str, Any]], torch.Tensor | None]:
    """atomml energy terms (as settings) and the Atomref values of torchmd-net priors."""
    terms: list[dict[str, Any]] = []
    atomref = None
    for prior in priors:
        kind = type(prior).__name__
        if kind == "Atomref":
            if getattr(prior, "enable", True):
                atomref = prior.atomref.weight.detach().double().squeeze(-1)
        elif kind == "ZBL":
            _check_units(prior)
            terms.append({"name": "zbl", "cutoff": float(prior.cutoff_distance)})
        elif kind == "D2":
            _check_units(prior)
            if (prior.s_6, prior.d) != (1, 20):
                raise ValueError(f"from_torchmdnet: D2 with s6={prior.s_6}, d={prior.d} is not torchmd-net's (1, 20)")
            terms.append({"name": "d2", "cutoff": float(prior.cutoff_distance)})
        elif kind == "Coulomb":
            _check_units(prior)
            # torchmd-net measures the switch in nm (it converts positions to nm first) and then
            # converts the energy as if distances were in the dataset's unit; its Coulomb
            # constant has six digits
            exact = units.COULOMB_EV_ANGSTROM * units.ELEMENTARY_CHARGE_C * units.METRE_PER_ANGSTROM
            scale = units.METRE_PER_NM / float(prior.distance_scale) * TORCHMDNET_COULOMB_J_M / exact
            if abs(scale - 1.0) > 1e-5:
                warnings.warn(
                    f"from_torchmdnet: torchmd-net's Coulomb prior gives {scale:.4g} times the Coulomb energy "
                    "of its charges for data in Å (it divides distances in nm by the dataset's length unit); "
                    f"the converted potential reproduces the model as trained (coulomb term scale={scale:.9g})",
                    stacklevel=3,
                )
            terms.append({
                "name": "coulomb", "charges": "input", "scale": scale,
                "lower_switch": float(prior.lower_switch_distance) * units.NM_TO_ANGSTROM,
                "upper_switch": float(prior.upper_switch_distance) * units.NM_TO_ANGSTROM,
            })  # fmt: skip
        else:
            raise ValueError(f"from_torchmdnet: prior {kind} is not supported (Atomref, ZBL, Coulomb and D2 are)")
    return terms, atomref


def from_torchmdnet(model: Any, elements: Any = None) -> Potential:
    """An atomml potential with the weights and priors of a torchmd-net TensorNet model.

    ``elements`` (atomic numbers or symbols) restricts the elements the potential accepts;
    by default every element the torchmd-net embedding has (1 .. max_z - 1, up to 118; up to
    Xe with a D2 prior, whose parameters end there).
    A non-zero ``mean`` (a per-structure constant, not size-extensive) is refused with an
    explanation. A Coulomb prior needs the structure's partial charges (ASE initial charges),
    as torchmd-net needs them in ``extra_args``. torchmd-net's D2 prior ignores the periodic box;
    the converted term counts periodic images, so the two agree for molecules only.
    """
    rep = model.representation_model
    if type(rep).__name__ != "TensorNet":
        raise TypeError(f"from_torchmdnet: expected a TorchMD_Net with a TensorNet representation, got {type(rep).__name__}")
    if type(rep.distance_expansion).__name__ != "ExpNormalSmearing":
        raise ValueError("from_torchmdnet: only the 'expnorm' radial basis (TensorNet's default) is supported")
    act_names = {v: k for k, v in ACTIVATIONS.items()}
    act = act_names.get(type(rep.tensor_embedding.act))
    if act is None:
        raise ValueError(f"from_torchmdnet: activation {type(rep.tensor_embedding.act).__name__} is not supported")
    head = model.output_model
    if type(head).__name__ != "Scalar" or head.reduce_op not in SUM_REDUCTIONS:
        raise ValueError(
            f"from_torchmdnet: only the 'Scalar' output model summing over atoms (reduce_op 'sum' or 'add') is "
            f"supported, got {type(head).__name__} with reduce_op {getattr(head, 'reduce_op', None)!r}"
        )
    if model.mean is not None and float(model.mean) != 0.0:
        raise ValueError(
            f"from_torchmdnet: the model adds a per-structure mean ({float(model.mean)}), which is not "
            "size-extensive and has no atomml equivalent; fold it into per-element reference energies"
        )
    terms, atomref = _terms(list(model.prior_model or []))

    max_z = rep.tensor_embedding.emb.num_embeddings
    if elements is None:
        elements = list(range(1, min(max_z, 119)))
        if any(t["name"] == "d2" for t in terms):  # D2 has parameters up to Xe
            from ..terms.dispersion import GRIMME_D2

            elements = [z for z in elements if z <= len(GRIMME_D2)]
    from ase.data import atomic_numbers

    elements = [int(atomic_numbers[e]) if isinstance(e, str) else int(e) for e in elements]
    if max(elements) >= max_z:
        raise ValueError(f"from_torchmdnet: the model embeds Z < {max_z}, elements {elements} go beyond")
    n_head_linear = sum(isinstance(m, nn.Linear) for m in head.output_network.layers)
    potential = create(
        "tensornet",
        elements=elements,
        cutoff=float(rep.cutoff_upper),
        cutoff_lower=float(rep.cutoff_lower),
        hidden_channels=rep.hidden_channels,
        num_layers=rep.num_layers,
        num_rbf=rep.num_rbf,
        activation=act,
        group=rep.equivariance_invariance_group,
        trainable_rbf=isinstance(rep.distance_expansion.means, nn.Parameter),
        head_hidden_layers=n_head_linear - 2,
        energy_scale=1.0 if model.std is None else float(model.std),
        atomic_energies=None if atomref is None else {z: float(atomref[z]) for z in elements if z < len(atomref)},
        metadata={"converted_from": "torchmd-net TensorNet"},
        terms=terms,
    )
    potential.to(next(rep.parameters()).dtype)
    potential.model.load_state_dict(_tensornet_state(potential.model, rep, head, elements))
    return potential


def _tensornet_state(ours: nn.Module, rep: Any, head: Any, elements: list[int]) -> dict[str, torch.Tensor]:
    """torchmd-net TensorNet weights under atomml's names (see atomml.models.tensornet)."""
    src = rep.state_dict()
    state = {
        "distance_expansion.means": src["distance_expansion.means"],
        "distance_expansion.betas": src["distance_expansion.betas"],
        "tensor_embedding.distance_proj.weight": torch.cat(
            [src[f"tensor_embedding.distance_proj{k}.weight"] for k in (1, 2, 3)]
        ),
        "tensor_embedding.distance_proj.bias": torch.cat([src[f"tensor_embedding.distance_proj{k}.bias"] for k in (1, 2, 3)]),
        "tensor_embedding.emb.weight": src["tensor_embedding.emb.weight"][torch.tensor(elements)],
    }
    for name in list(ours.state_dict()):
        if name in state:
            continue
        if name.startswith("tensor_embedding.linears_scalar."):  # Sequential (linear, act, ...)
            k, leaf = name.split(".")[2:]
            state[name] = src[f"tensor_embedding.linears_scalar.{int(k) // 2}.{leaf}"]
        elif name.startswith("layers.") and ".linears_scalar." in name:
            layer, _, k, leaf = name.split(".")[1:]
            state[name] = src[f"layers.{layer}.linears_scalar.{int(k) // 2}.{leaf}"]
        elif name.startswith("head."):
            state[name] = head.output_network.layers.state_dict()[name[len("head.") :]]
        else:
            state[name] = src[name]
    return state
