"""Ziegler-Biersack-Littmark screened nuclear repulsion, as torchmd-net's ``ZBL`` prior.

E = sum over pairs of k_e Z_i Z_j / r * phi(r / a) * c(r), with the universal screening length
a = 0.8854 a_0 / (Z_i^0.23 + Z_j^0.23), phi(x) = 0.1818 e^(-3.2x) + 0.5099 e^(-0.9423x)
+ 0.2802 e^(-0.4029x) + 0.02817 e^(-0.2016x) (Ziegler, Biersack, Littmark, The Stopping and
Range of Ions in Solids, 1985, eqs. 9-10) and c(r) = (cos(pi r / cutoff) + 1) / 2 inside the
cutoff, 0 beyond (torchmd-net's CosineCutoff). It keeps atoms apart where the training data
has none: the physics a network cannot learn from equilibrium structures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import units
from ..contract import TermInputs
from .base import EnergyTerm, edges_within, pair_energies_per_atom

SCREENING = 0.8854
COEFFICIENTS = (0.1818, 0.5099, 0.2802, 0.02817)
EXPONENTS = (3.2, 0.9423, 0.4029, 0.2016)


@dataclasses.dataclass(frozen=True)
class ZBLConfig:
    cutoff: float  # Å; the repulsion goes smoothly to zero here

    def __post_init__(self) -> None:
        if not self.cutoff > 0:
            raise ValueError(f"zbl: the cutoff must be positive (Å), got {self.cutoff}")

    @classmethod
    def tiny(cls, elements: Sequence[int] = ()) -> ZBLConfig:
        return cls(cutoff=2.0)


class ZBL(EnergyTerm):
    config_cls = ZBLConfig

    def forward(self, inputs: TermInputs) -> Tensor:
        cutoff = float(self.config.cutoff)
        within, d = edges_within(inputs, cutoff)
        z = inputs.atomic_numbers.to(d.dtype)
        zi, zj = z[inputs.edge_index[0]], z[inputs.edge_index[1]]
        x = d * (zi**0.23 + zj**0.23) / (SCREENING * units.BOHR_RADIUS_ANGSTROM)
        phi = sum(c * torch.exp(-k * x) for c, k in zip(COEFFICIENTS, EXPONENTS))
        envelope = 0.5 * (torch.cos(d * (math.pi / cutoff)) + 1.0)
        energy = units.COULOMB_EV_ANGSTROM * zi * zj / d * phi * envelope * within.to(d.dtype)
        return pair_energies_per_atom(energy, inputs.edge_index, inputs.positions.shape[0])
