"""Radial basis functions and cutoff envelopes (functions of distance in Å)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GaussianRBF(nn.Module):
    """exp(-(d - mu_k)^2 / (2 w^2)) with n centres mu_k evenly spaced on [start, cutoff] and
    width w equal to the spacing (Schütt et al.; schnetpack's ``GaussianRBF``)."""

    def __init__(self, n_rbf: int, cutoff: float, start: float = 0.0):
        super().__init__()
        offsets = torch.linspace(start, cutoff, n_rbf, dtype=torch.float64)
        widths = torch.full_like(offsets, float(abs(offsets[1] - offsets[0])) if n_rbf > 1 else 1.0)
        self.register_buffer("offsets", offsets.float())
        self.register_buffer("coefficient", (-0.5 / widths**2).float())

    def forward(self, d: Tensor) -> Tensor:
        return torch.exp(self.coefficient * (d.unsqueeze(-1) - self.offsets) ** 2)


class CosineCutoff(nn.Module):
    """0.5 (cos(pi d / cutoff) + 1) for d < cutoff, 0 beyond: smooth to first order."""

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, d: Tensor) -> Tensor:
        value = 0.5 * (torch.cos(d * (math.pi / self.cutoff)) + 1.0)
        return value * (d < self.cutoff).to(d.dtype)
