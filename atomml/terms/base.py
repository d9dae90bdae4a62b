"""The base class and registry of energy terms (see :mod:`atomml.terms`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..contract import TermInputs
from ..nn.scatter import scatter_sum
from ..plugins import Registry


class EnergyTerm(nn.Module):
    """Base class of energy terms; see the module docstring for the contract."""

    config_cls: ClassVar[type]
    long_range: ClassVar[bool] = False

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    @property
    def cutoff(self) -> float | None:
        """Distance (Å) within which the term needs neighbours; None: it makes its own pairs."""
        value = getattr(self.config, "cutoff", None)
        return None if value is None else float(value)

    def check_elements(self, elements: Sequence[int]) -> None:
        """Raise ValueError if the term has no parameters for some of ``elements`` (Z)."""

    def forward(self, inputs: TermInputs) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


TERMS: Registry[type[EnergyTerm]] = Registry("atomml.energy_terms", "energy term")


def register(name: str, term_cls: type[EnergyTerm]) -> None:
    """Add a term class under ``name`` (other packages: use the entry point instead)."""
    if not dataclasses.is_dataclass(getattr(term_cls, "config_cls", None)):
        raise TypeError(f"energy term {name!r}: {term_cls.__name__}.config_cls must be a dataclass")
    TERMS.register(name, term_cls)


def pair_energies_per_atom(pair_energy: Tensor, edge_index: Tensor, num_atoms: int) -> Tensor:
    """Per-atom energies (N,) from energies of a full (both-ways) edge list: half to each end,
    so that the atoms' energies sum to the sum over unordered pairs."""
    return 0.5 * scatter_sum(pair_energy, edge_index[0], num_atoms)


def edges_within(inputs: TermInputs, cutoff: float) -> tuple[Tensor, Tensor]:
    """(mask (E,), distances (E,)) of the inputs' edges; distances beyond ``cutoff`` are
    replaced by ``cutoff`` so that expressions stay finite where the mask drops them.

    A mask rather than a selection keeps shapes static (``torch.export``)."""
    d = inputs.edge_vec.norm(dim=1)
    within = d < cutoff
    return within, torch.where(within, d, torch.full_like(d, cutoff))
