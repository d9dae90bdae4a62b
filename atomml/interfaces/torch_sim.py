"""torch-sim model for any atomml potential: batched MD and relaxation in torch-sim.

``AtomMLModel(potential)`` is a ``torch_sim.models.interface.ModelInterface``: give it to
``torch_sim.integrate``, ``torch_sim.optimize`` or ``torch_sim.static`` as any torch-sim model.
Each call turns the ``SimState`` into one :class:`~atomml.graph.AtomicGraph` (every system of
the state in one batch), builds the neighbour list and evaluates the potential once.

Conventions, torch-sim's on the outside and atomml's inside:

- torch-sim stores a cell as column vectors (``state.cell[b]`` has a, b, c as columns);
  atomml's rows are lattice vectors, so the graph takes ``state.row_vector_cell``.
- ``state.pbc`` is one flag for every axis and every system in torch-sim 0.3.0 (a later
  per-axis tensor is read too). A system with ``pbc=False`` is a molecule (torch-sim gives it
  the zero cell of ``ase.build.molecule``, or its box): it has no stress.
- The total charge is ``state.charge`` (one value per system) where the state carries one; else
  0. torch-sim 0.3.0's states carry none: :func:`with_charge` gives any state (a plain
  ``SimState``, an optimiser's or an integrator's) a per-system ``charge`` that travels with
  its systems through torch-sim's batching, splitting and swapping.
- Stress is (1/V) dE/dε in eV/Å³ as a symmetric (B, 3, 3) tensor, ASE's sign, which is
  torch-sim's too: its cell optimisers form the virial as ``-V * (stress + pressure)``, as
  ASE's cell filters do. A state without periodicity gets NaN stress when stress is asked
  for (torch-sim has no way to leave it out for some systems of a batch).

Precision: ``dtype`` is the state's dtype, that of positions, cell, energies, forces and stress
that torch-sim integrates (float64 by default, atomml's precision policy for geometry); the
network keeps the potential's own dtype (float32 for the shipped potentials). Energies, forces
and stress are float64 sums and derivatives either way (:mod:`atomml.potential`) and are cast
to ``dtype`` on return.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import torch
import torch_sim as ts
from torch_sim.models.interface import ModelInterface

from .. import keys
from ..graph import AtomicGraph
from ..potential import VOIGT, Potential, potential_on
from ..potential_file import load_potential


class AtomMLModel(ModelInterface):
    """torch-sim model: energy (B,), forces (N, 3) and stress (B, 3, 3) of a ``SimState``.

    The model never changes the caller's ``Potential``: one on another device is copied (and
    not copied when it is already there).

    Args:
        potential: a :class:`~atomml.potential.Potential`, a file path or a shipped name.
        device: torch device; default: CUDA if available, else CPU.
        dtype: the dtype of the states it is given and of what it returns (torch.float64 or
            torch.float32); the network runs in the potential's own dtype.
        compute_stress: return "stress" (needs periodic states; NaN for states without
            periodicity). Only cell relaxation and NPT need it; it costs a strain derivative.
        compute_forces: return "forces".

    ``memory_scales_with`` is torch-sim's default, "n_atoms_x_density", which divides by the
    cell's volume: give torch-sim's autobatchers ``memory_scales_with="n_atoms"`` for molecules.
    """

    def __init__(
        self,
        potential: Potential | str | os.PathLike[str],
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        compute_stress: bool = True,
        compute_forces: bool = True,
    ):
        super().__init__()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if not isinstance(potential, Potential):
            potential = load_potential(potential)
        self.potential = potential_on(potential, device, potential.dtype).eval()
        self._device = torch.device(device)
        self._dtype = dtype
        self._compute_stress = bool(compute_stress)
        self._compute_forces = bool(compute_forces)

    # torch-sim's validate_model_outputs (and users) switch these on and off
    @ModelInterface.compute_stress.setter
    def compute_stress(self, compute_stress: bool) -> None:
        self._compute_stress = bool(compute_stress)

    @ModelInterface.compute_forces.setter
    def compute_forces(self, compute_forces: bool) -> None:
        self._compute_forces = bool(compute_forces)

    def graph(self, state: ts.SimState | dict[str, Any]) -> AtomicGraph:
        """The state as an :class:`~atomml.graph.AtomicGraph` on the model's device, float64
        geometry, without edges (the potential builds the neighbour list)."""
        if isinstance(state, dict):
            fields = dict(state)
            positions = fields["positions"]
            fields.setdefault("masses", torch.ones(positions.shape[0], dtype=positions.dtype, device=positions.device))
            state = ts.SimState(**fields)
        device, geometry = self._device, torch.float64
        cell = state.row_vector_cell.to(device=device, dtype=geometry)
        if cell.dim() == 2:
            cell = cell.unsqueeze(0)
        num_graphs = cell.shape[0]
        pbc = torch.as_tensor(state.pbc, dtype=torch.bool, device=device)
        pbc = pbc.reshape(-1, 3) if pbc.dim() else pbc.reshape(1, 1)  # one flag, or one per axis
        pbc = pbc.expand(num_graphs, 3)
        charge = getattr(state, "charge", None)
        if charge is None:
            total_charge = torch.zeros(num_graphs, dtype=geometry, device=device)
        else:
            total_charge = torch.as_tensor(charge, device=device).to(geometry).reshape(num_graphs)
        return AtomicGraph(
            positions=state.positions.to(device=device, dtype=geometry),
            atomic_numbers=state.atomic_numbers.to(device=device, dtype=torch.long),
            batch=state.system_idx.to(device=device, dtype=torch.long),
            cell=cell,
            pbc=pbc.contiguous(),
            total_charge=total_charge,
        )

    def forward(self, state: ts.SimState | dict[str, Any], **kwargs: Any) -> dict[str, torch.Tensor]:
        """Energy (B,), forces (N, 3) and stress (B, 3, 3) of every system of ``state``, in eV,
        eV/Å and eV/Å³, as ``dtype`` tensors; forces and stress as asked for at construction.

        ``state`` is a ``torch_sim.SimState`` (or a subclass, e.g. an optimiser's state) or a
        dict of its fields; it is not changed. ``kwargs`` are accepted and ignored, as
        torch-sim's own models do.
        """
        graph = self.graph(state)
        periodic = graph.pbc.any(dim=1)
        # a batch shares one pbc flag, so stress is wanted for all its systems or for none
        want_stress = self._compute_stress and bool(periodic.all())
        differentiate = self._compute_forces or want_stress
        with torch.enable_grad() if differentiate else torch.no_grad():  # torch-sim may call in no_grad
            out = self.potential(graph, compute_forces=self._compute_forces, compute_stress=want_stress)
        results = {"energy": out[keys.ENERGY].detach().to(self._dtype)}
        if self._compute_forces:
            results["forces"] = out[keys.FORCES].detach().to(self._dtype)
        if self._compute_stress:
            if want_stress:
                results["stress"] = _voigt_to_matrix(out[keys.STRESS].detach()).to(self._dtype)
            else:
                results["stress"] = torch.full((graph.num_graphs, 3, 3), float("nan"), dtype=self._dtype, device=self._device)
        return results


def with_charge(state: ts.SimState, charge: torch.Tensor | float | list[float]) -> ts.SimState:
    """A copy of ``state`` (tensors shared, not cloned) of a subclass of its class that carries
    ``charge``, the total charge of each system (e), as a per-system attribute: torch-sim's
    optimisers and integrators keep it, and :class:`AtomMLModel` reads it. A state that already
    carries a charge gets the new one."""
    base = _BASE_OF.get(type(state), type(state))
    fields = {k: v for k, v in vars(state).items() if k != "charge"}
    charge = torch.as_tensor(charge, dtype=torch.float64, device=state.device).reshape(-1)
    if charge.numel() == 1:
        charge = charge.expand(state.n_systems).clone()
    if charge.numel() != state.n_systems:
        raise ValueError(f"charge has {charge.numel()} values for a state of {state.n_systems} systems")
    return _charged_class(base)(**fields, charge=charge)


_BASE_OF: dict[type, type] = {}  # charged class -> the class it extends


@functools.cache
def _charged_class(cls: type) -> type:
    """``cls`` plus a per-system ``charge`` (torch-sim states declare each attribute's scope)."""
    namespace = {
        "__annotations__": {"charge": torch.Tensor},
        "__module__": __name__,
        "_system_attributes": cls._system_attributes | {"charge"},
    }
    charged = dataclasses.dataclass(kw_only=True)(type(f"Charged{cls.__name__}", (cls,), namespace))
    _BASE_OF[charged] = cls
    return charged


def _voigt_to_matrix(voigt: torch.Tensor) -> torch.Tensor:
    """(B, 6) Voigt (xx, yy, zz, yz, xz, xy) -> (B, 3, 3) symmetric."""
    matrix = voigt.new_zeros((voigt.shape[0], 3, 3))
    for k, (a, b) in enumerate(VOIGT):
        matrix[:, a, b] = voigt[:, k]
        matrix[:, b, a] = voigt[:, k]
    return matrix
