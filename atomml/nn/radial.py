"""Radial basis functions and cutoff envelopes (functions of distance in Å)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GaussianRBF(nn.Module):
    """exp(-(d - mu_k)^2 / (2 w^2)) with n centres mu_k evenly spaced on [start, cutoff] and
    width w equal to the spacing (Schütt et al.; schnetpack's ``GaussianRBF``).

    Centres and widths are fixed by (n_rbf, start, cutoff), so they are made in the dtype of
    the distances at each call: a float64 model is exact to float64, not to float32 buffers.
    """

    def __init__(self, n_rbf: int, cutoff: float, start: float = 0.0):
        super().__init__()
        self.n_rbf, self.cutoff, self.start = int(n_rbf), float(cutoff), float(start)

    @property
    def offsets(self) -> Tensor:
        return torch.linspace(self.start, self.cutoff, self.n_rbf, dtype=torch.float64)

    @property
    def coefficient(self) -> Tensor:
        # the spacing in plain floats: no tensor-to-float conversion, so it traces (compile/export)
        width = (self.cutoff - self.start) / (self.n_rbf - 1) if self.n_rbf > 1 else 1.0
        return torch.full((self.n_rbf,), -0.5 / width**2, dtype=torch.float64)

    def forward(self, d: Tensor) -> Tensor:
        offsets = self.offsets.to(device=d.device, dtype=d.dtype)
        coefficient = self.coefficient.to(device=d.device, dtype=d.dtype)
        return torch.exp(coefficient * (d.unsqueeze(-1) - offsets) ** 2)


class CosineCutoff(nn.Module):
    """0.5 (cos(pi d / cutoff) + 1) for d < cutoff, 0 beyond: smooth to first order."""

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, d: Tensor) -> Tensor:
        value = 0.5 * (torch.cos(d * (math.pi / self.cutoff)) + 1.0)
        return value * (d < self.cutoff).to(d.dtype)
