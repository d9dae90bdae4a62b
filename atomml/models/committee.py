"""A committee: K members of one architecture, evaluated together, as one architecture.

``create("committee", architecture="tensornet", hyperparameters={...}, size=8, elements=...,
cutoff=...)`` builds K independently initialised members (a deep ensemble); :func:`committee_of`
joins K trained potentials into one. The committee is an architecture like any other, so a
committee potential is one :class:`~atomml.potential.Potential` and one potential file (its
tensors are the members' ``model.members.<k>.*``), and loads without running code.

Evaluation: one neighbour list for all members, and for small structures the members batched
in one call (``torch.func.vmap`` over their stacked weights; one after another above
:data:`BATCHED_MEMBER_ATOMS` members x atoms, where that is faster): :meth:`Committee.forward`
returns per-atom energies of shape (K, N). The potential turns those
into the members' energies, forces and stress (each member's derivatives, from one backward
pass over per-member copies of the positions) and reports their mean as ``energy``/``forces``/
``stress`` and their spread as ``energy_std`` and ``forces_std`` (:mod:`atomml.keys`). Pair
operations with a batching rule of their own (:mod:`atomml.nn.pairs`) fold the members into
their feature axis, so a committee call does the members' arithmetic in one pass over the pairs.

The members' per-element reference energies, energy scale and shift are the potential's and so
shared: members trained on the same data by atomml's trainer have the same ones, and
:func:`committee_of` refuses members whose differ.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..contract import ArchitectureOutput, as_output
from ..graph import AtomicGraph


# Members x atoms up to which the vmapped call is the faster (measured for K = 8 TensorNets of
# the shipped organic size on one CPU thread, relative to one member: 21 atoms 6.6x batched
# against 8.5x one after another, 81 atoms 7.5x against 7.9x, 192 atoms 9.4x against 8.3x,
# 1,536 atoms 12.6x against 7.2x). Above it the members run one after another on the shared
# neighbour list: vmap's batched per-edge tensors outgrow the caches there.
BATCHED_MEMBER_ATOMS = 1024


@dataclasses.dataclass(frozen=True)
class CommitteeConfig:
    """``size`` members of ``architecture`` with ``hyperparameters`` (without ``elements``,
    which is the committee's own, as is ``cutoff``: the members')."""

    elements: tuple[int, ...]
    architecture: str = "tensornet"
    hyperparameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    size: int = 4
    cutoff: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 2:
            raise ValueError(f"committee: size must be an integer of at least 2 (members), got {self.size!r}")
        if self.architecture == "committee":
            raise ValueError("committee: a member cannot itself be a committee")
        if "elements" in self.hyperparameters:
            raise ValueError("committee: give the elements once, as the committee's own 'elements'")
        member = self.member_config()
        if self.cutoff is None:
            object.__setattr__(self, "cutoff", float(member.cutoff))
        elif float(self.cutoff) != float(member.cutoff):
            raise ValueError(f"committee: cutoff {self.cutoff} differs from the members' {member.cutoff}")

    def member_config(self) -> Any:
        from . import build_config

        return build_config(self.architecture, {**self.hyperparameters, "elements": self.elements})

    @classmethod
    def tiny(cls, elements: tuple[int, ...]) -> CommitteeConfig:
        """Three tiny TensorNets (tests)."""
        from . import tiny_hyperparameters

        return cls(elements=tuple(elements), architecture="tensornet",
                   hyperparameters=tiny_hyperparameters("tensornet", elements), size=3)  # fmt: skip


class Committee(nn.Module):
    """K members of one architecture; ``forward`` gives their per-atom energies (K, N)."""

    config_cls = CommitteeConfig

    def __init__(self, config: CommitteeConfig):
        super().__init__()
        from . import lookup

        self.config = config
        _, member_cls = lookup(config.architecture)
        member_config = config.member_config()
        self.members = nn.ModuleList(member_cls(member_config) for _ in range(config.size))
        # float64: a factor of the spread fitted on validation data (atomml.uncertainty.calibration)
        self.register_buffer("std_scale", torch.ones((), dtype=torch.float64))
        # True: the members in one vmapped call; False: one after another, on the same edges;
        # "auto": batched up to BATCHED_MEMBER_ATOMS members x atoms (see the module docstring)
        self.batched: bool | str = "auto"
        self._stacked_cache: tuple[Any, ...] | None = None
        # the members' module structure without weights (functional_call supplies them); not a
        # submodule, so that .to() and state_dict leave it alone
        object.__setattr__(self, "_base", copy.deepcopy(self.members[0]).to("meta"))

    @property
    def committee_size(self) -> int:
        return len(self.members)

    def _apply(self, fn: Any, recurse: bool = True) -> Committee:
        scale = self.std_scale
        super()._apply(fn, recurse)
        self.std_scale = scale.to(device=self.std_scale.device, dtype=torch.float64)
        self._stacked_cache = None
        return self

    def _stacked(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The members' parameters and buffers stacked along a new first axis, for
        ``torch.func.functional_call``. Cached while no weight changes and no gradient is
        wanted (eager calls only); restacked, differentiably, otherwise."""
        tensors = [t for member in self.members for t in (*member.parameters(), *member.buffers())]
        training = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        cache = not training and not torch.compiler.is_compiling()
        key = tuple((id(t), t._version, t.device, t.dtype) for t in tensors) if cache else None
        if cache and self._stacked_cache is not None and self._stacked_cache[0] == key:
            return self._stacked_cache[1:]
        params = {name: torch.stack([dict(m.named_parameters())[name] for m in self.members])
                  for name, _ in self.members[0].named_parameters()}  # fmt: skip
        buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in self.members])
                   for name, _ in self.members[0].named_buffers()}  # fmt: skip
        if cache:
            params = {name: p.detach() for name, p in params.items()}
            self._stacked_cache = (key, params, buffers)
        return params, buffers

    def forward(self, graph: AtomicGraph, species: Tensor, edge_index: Tensor, edge_vec: Tensor) -> ArchitectureOutput:
        """Per-atom energies (K, N) of the K members. ``edge_vec`` is (E, 3), shared, or
        (K, E, 3), one copy per member (so that each member's forces are its own derivatives)."""
        per_member = edge_vec.dim() == 3
        batched = self.batched if isinstance(self.batched, bool) else len(self.members) * graph.num_atoms <= BATCHED_MEMBER_ATOMS
        if not batched:
            energies = [as_output(member(graph, species, edge_index, edge_vec[k] if per_member else edge_vec)).energies
                        for k, member in enumerate(self.members)]  # fmt: skip
            return ArchitectureOutput(torch.stack(energies))
        params, buffers = self._stacked()

        def member_energies(p: dict[str, Tensor], b: dict[str, Tensor], vec: Tensor) -> Tensor:
            return as_output(torch.func.functional_call(self._base, (p, b), (graph, species, edge_index, vec))).energies

        vmapped = torch.func.vmap(member_energies, in_dims=(0, 0, 0 if per_member else None))
        return ArchitectureOutput(vmapped(params, buffers, edge_vec))


def committee_of(potentials: Sequence[Any], metadata: Mapping[str, Any] | None = None) -> Any:
    """One committee potential of trained potentials of one architecture, hyperparameters,
    element list, dtype, reference energies, energy scale and shift (a deep ensemble trained by
    ``atomml train`` with different seeds, or the samples of a stochastic-gradient MCMC run).
    Energy terms are not supported in committees yet."""
    from ..potential import Potential
    from . import create

    potentials = list(potentials)
    if len(potentials) < 2 or not all(isinstance(p, Potential) for p in potentials):
        raise ValueError("committee_of needs at least two atomml Potentials")
    first = potentials[0]
    for k, p in enumerate(potentials[1:], start=1):
        for what in ("architecture", "hyperparameters", "elements", "dtype"):
            if getattr(p, what) != getattr(first, what):
                raise ValueError(f"member {k}'s {what} {getattr(p, what)!r} differs from member 0's {getattr(first, what)!r}")
        for what in ("atomic_energies", "energy_scale", "energy_shift"):
            if not torch.equal(getattr(p, what), getattr(first, what)):
                raise ValueError(
                    f"member {k}'s {what} differ from member 0's: members of a committee share their reference energies "
                    "and energy scale (train them on the same data)"
                )
    if any(len(p.terms) for p in potentials):
        raise ValueError("committee_of: potentials with energy terms cannot form a committee yet")
    if first.architecture == "committee":
        raise ValueError("committee_of: the members must be single models, not committees")
    hyper = {k: v for k, v in first.hyperparameters.items() if k != "elements"}
    committee = create(
        "committee", elements=first.elements, architecture=first.architecture, hyperparameters=hyper,
        size=len(potentials), atomic_energies=dict(zip(first.elements, first.atomic_energies.tolist())),
        energy_scale=float(first.energy_scale), energy_shift=float(first.energy_shift),
        metadata={**first.metadata, **(metadata or {})},
    ).to(first.dtype)  # fmt: skip
    with torch.no_grad():
        for member, p in zip(committee.model.members, potentials):
            member.load_state_dict(p.model.state_dict())
    return committee.to(first.network_dtype.device).eval()
