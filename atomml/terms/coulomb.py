"""Coulomb energy of per-atom charges, switched off at short range, as torchmd-net's
``Coulomb`` prior.

E = scale * sum over pairs within a structure of k_e q_i q_j / r * s(r), with the switch
s(r) = (1 - cos(pi t)) / 2, t = (clamp(r, lower, upper) - lower) / (upper - lower): zero below
``lower_switch``, full strength above ``upper_switch``. The network keeps the short range; this
term adds the tail it cannot see beyond its cutoff. No cutoff: every pair of a structure counts,
so it is defined for non-periodic structures (a periodic one needs Ewald summation).

Charges come either with the structure (``charges: input``: ``AtomicGraph.partial_charges``,
from ASE's initial charges) or from the architecture (``charges: predicted``), shifted equally
within each structure so that they add up to its total charge.

``scale`` is 1 for the physical energy. torchmd-net 3.1's prior measures distances in nm but
converts with the dataset's length unit, which overstates the energy by 1e-9 m /
distance_scale (10x for data in Å); :func:`atomml.convert.torchmdnet.from_torchmdnet` sets
``scale`` to reproduce a converted model exactly and says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import units
from ..contract import TermInputs
from ..errors import InputError
from ..nn.scatter import scatter_sum
from .base import EnergyTerm

CHARGE_SOURCES = ("input", "predicted")


@dataclasses.dataclass(frozen=True)
class CoulombConfig:
    lower_switch: float = 0.0  # Å: no interaction below
    upper_switch: float = 5.0  # Å: full interaction above
    charges: str = "input"  # "input" (given with the structure) or "predicted" (by the architecture)
    scale: float = 1.0  # multiplies the energy; 1 is physical

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower_switch < self.upper_switch:
            raise ValueError(f"coulomb: need 0 <= lower_switch < upper_switch (Å), got {self.lower_switch}, {self.upper_switch}")
        if self.charges not in CHARGE_SOURCES:
            raise ValueError(f"coulomb: charges must be one of {CHARGE_SOURCES}, got {self.charges!r}")

    @classmethod
    def tiny(cls, elements: Sequence[int] = ()) -> CoulombConfig:
        return cls(lower_switch=0.5, upper_switch=3.0)


class Coulomb(EnergyTerm):
    config_cls = CoulombConfig
    long_range = True

    @property
    def cutoff(self) -> float | None:
        return None  # all pairs of a structure, not the neighbour list

    def charges(self, inputs: TermInputs) -> Tensor:
        """Per-atom charges (N,) in e, from the structure or the architecture."""
        if self.config.charges == "input":
            if inputs.partial_charges is None:
                raise InputError(
                    "this potential's Coulomb term needs per-atom partial charges with each structure: "
                    "set them on the ASE atoms (atoms.set_initial_charges(...))"
                )
            return inputs.partial_charges
        if inputs.charges is None:
            raise ValueError("coulomb: charges='predicted', but the architecture predicts no charges")
        q = inputs.charges
        counts = torch.bincount(inputs.batch, minlength=inputs.num_graphs).to(q.dtype)
        excess = (inputs.total_charge.to(q.dtype) - scatter_sum(q, inputs.batch, inputs.num_graphs)) / counts
        return q + excess[inputs.batch]

    def forward(self, inputs: TermInputs) -> Tensor:
        if bool(inputs.pbc.any()):
            raise InputError(
                "the Coulomb energy term sums all pairs and is defined for non-periodic structures only; "
                "a periodic structure needs Ewald summation, or a potential without this term"
            )
        i, j = _pairs_within_structures(inputs.batch)
        q = self.charges(inputs).to(inputs.positions.dtype)
        d = (inputs.positions[j] - inputs.positions[i]).norm(dim=1)
        lower, upper = float(self.config.lower_switch), float(self.config.upper_switch)
        t = (d.clamp(lower, upper) - lower) / (upper - lower)
        energy = (self.config.scale * units.COULOMB_EV_ANGSTROM) * q[i] * q[j] / d * 0.5 * (1.0 - torch.cos(math.pi * t))
        n = inputs.positions.shape[0]
        return 0.5 * (scatter_sum(energy, i, n) + scatter_sum(energy, j, n))


def _pairs_within_structures(batch: Tensor) -> tuple[Tensor, Tensor]:
    """Each unordered pair (i < j) of atoms of the same structure, once; ``batch`` is sorted."""
    counts = torch.bincount(batch).tolist()
    starts = [0]
    for c in counts[:-1]:
        starts.append(starts[-1] + c)
    firsts, seconds = [], []
    for start, n in zip(starts, counts):
        pairs = torch.triu_indices(n, n, 1, device=batch.device) + start
        firsts.append(pairs[0])
        seconds.append(pairs[1])
    return torch.cat(firsts), torch.cat(seconds)
