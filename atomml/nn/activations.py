"""Activation functions."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ShiftedSoftplus(nn.Module):
    """softplus(x) - log 2, zero at x = 0 (SchNet's activation)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.softplus(x) - math.log(2.0)
