"""Grimme's D2 dispersion correction, as torchmd-net's ``D2`` prior.

E = -s6 * sum over pairs within the cutoff of C6_ij / r^6 * f(r), with C6_ij = sqrt(C6_i C6_j),
the damping f(r) = 1 / (1 + exp(-d (r / R_ij - 1))), R_ij = R0_i + R0_j, d = 20, and C6, R0 from
Grimme, J. Comput. Chem. 27, 1787 (2006), Table 1 (H to Xe). torchmd-net truncates the sum at the
cutoff; ``smoothing`` > 0 instead switches each pair off smoothly over that width before the
cutoff, so that energy is conserved in MD.

Unlike torchmd-net's prior (which ignores the box), pairs come from the potential's neighbour
list, periodic images included: for a periodic structure this is the D2 energy of the crystal.
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

# (C6 in J nm^6 / mol, R0 in Å) for Z = 1 .. 54 (Grimme 2006, Table 1)
GRIMME_D2 = (
    (0.14, 1.001), (0.08, 1.012),
    (1.61, 0.825), (1.61, 1.408), (3.13, 1.485), (1.75, 1.452), (1.23, 1.397), (0.70, 1.342), (0.75, 1.287), (0.63, 1.243),
    (5.71, 1.144), (5.71, 1.364), (10.79, 1.639), (9.23, 1.716), (7.84, 1.705), (5.57, 1.683), (5.07, 1.639), (4.61, 1.595),
    (10.80, 1.485), (10.80, 1.474),
    *[(10.80, 1.562)] * 10,  # Sc .. Zn
    (16.99, 1.650), (17.10, 1.727), (16.37, 1.760), (12.64, 1.771), (12.47, 1.749), (12.01, 1.727),
    (24.67, 1.628), (24.67, 1.606),
    *[(24.67, 1.639)] * 10,  # Y .. Cd
    (37.32, 1.672), (38.71, 1.804), (38.44, 1.881), (31.74, 1.892), (31.50, 1.892), (29.99, 1.881),
)  # fmt: skip
# J nm^6 / mol -> eV Å^6
C6_TO_EV_A6 = units.KJ_PER_J * units.KJ_PER_MOL_TO_EV * units.NM_TO_ANGSTROM**6


@dataclasses.dataclass(frozen=True)
class D2Config:
    cutoff: float = 10.0  # Å: pairs beyond do not count
    s6: float = 1.0  # global scaling (torchmd-net's prior: 1)
    damping: float = 20.0  # d of the damping function
    smoothing: float = 0.0  # Å: width of a cosine switch ending at the cutoff (0: truncation)

    def __post_init__(self) -> None:
        if not self.cutoff > 0 or not 0.0 <= self.smoothing < self.cutoff:
            raise ValueError(f"d2: need cutoff > 0 and 0 <= smoothing < cutoff (Å), got {self.cutoff}, {self.smoothing}")

    @classmethod
    def tiny(cls, elements: Sequence[int] = ()) -> D2Config:
        return cls(cutoff=4.0, smoothing=1.0)


class D2(EnergyTerm):
    config_cls = D2Config

    def __init__(self, config: D2Config):
        super().__init__(config)
        table = torch.tensor([(math.nan, math.nan), *GRIMME_D2], dtype=torch.float64)
        # buffers of constants, rebuilt from the config: not saved in potential files
        self.register_buffer("c6", table[:, 0] * C6_TO_EV_A6, persistent=False)
        self.register_buffer("r0", table[:, 1], persistent=False)

    def check_elements(self, elements: Sequence[int]) -> None:
        missing = [z for z in elements if not 1 <= int(z) <= len(GRIMME_D2)]
        if missing:
            raise ValueError(f"d2: Grimme's D2 has parameters for H to Xe (Z <= {len(GRIMME_D2)}), not for Z={missing}")

    def forward(self, inputs: TermInputs) -> Tensor:
        cfg = self.config
        within, r = edges_within(inputs, float(cfg.cutoff))
        zi, zj = inputs.atomic_numbers[inputs.edge_index[0]], inputs.atomic_numbers[inputs.edge_index[1]]
        c6, r0 = self.c6.to(r.dtype), self.r0.to(r.dtype)
        c6_ij = torch.sqrt(c6[zi] * c6[zj])
        damping = 1.0 / (1.0 + torch.exp(-cfg.damping * (r / (r0[zi] + r0[zj]) - 1.0)))
        weight = within.to(r.dtype)
        if cfg.smoothing > 0:
            start = cfg.cutoff - cfg.smoothing
            t = ((r - start) / cfg.smoothing).clamp(0.0, 1.0)
            weight = weight * 0.5 * (1.0 + torch.cos(math.pi * t))
        energy = -cfg.s6 * c6_ij / r**6 * damping * weight
        return pair_energies_per_atom(energy, inputs.edge_index, inputs.positions.shape[0])
