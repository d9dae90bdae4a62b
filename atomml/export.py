"""Potentials as plain tensor programs, for ``torch.compile`` and ``torch.export``.

:class:`~atomml.potential.Potential` takes an :class:`~atomml.graph.AtomicGraph`, checks it
and may build the neighbour list: Python logic with data-dependent branches.
:class:`PotentialModule` is the computation alone: tensors in (positions, species, the
neighbour list), energy per structure out, with no checks, no neighbour search and no
data-dependent shapes, so that it compiles into one graph and exports for deployment.
Forces are the gradient of that graph (:func:`energy_and_forces`)::

    module = PotentialModule(potential)
    program = torch.export.export(module, module.example_inputs([atoms1, atoms2]),
                                  dynamic_shapes=module.dynamic_shapes())
    energy, forces = energy_and_forces(program.module(), module.example_inputs(other_atoms))

    compiled = torch.compile(module, fullgraph=True, dynamic=True)
    energy, forces = energy_and_forces(compiled, module.example_inputs(atoms))

Export with an example of at least two structures: a single one fixes their number to 1.
The gradient is taken outside the exported graph because ``torch.export`` (torch 2.13) fails
on ``torch.autograd.grad`` and ``torch.func.grad`` inside it ("Cannot access data pointer of
Tensor that doesn't have storage"); the exported graph is differentiable, so forces come from
the program as they come from the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .potential import Potential, edge_vectors


class PotentialModule(nn.Module):
    def __init__(self, potential: Potential):
        super().__init__()
        if potential.committee_size is not None:
            # torch.export specialises the numbers of atoms and edges of a vmap over members (torch 2.13)
            raise ValueError("a committee cannot be exported or compiled as one program yet: export each member "
                             "(committee.model.members[k], as atomml.models.committee_of builds it) instead")
        self.potential = potential

    def forward(
        self,
        positions: Tensor,
        species: Tensor,
        batch: Tensor,
        cell: Tensor,
        pbc: Tensor,
        total_charge: Tensor,
        edge_index: Tensor,
        cell_shift: Tensor,
    ) -> Tensor:
        """Energy per structure (B,); ``species`` index ``potential.elements``, ``edge_index``
        holds the edges within the cutoff (a full list), ``cell_shift`` their periodic shifts.
        The computation is :meth:`Potential.energy`, as for the eager potential; terms that need
        per-atom charges given with the structure cannot be exported this way."""
        return self.potential.energy(
            positions, species, batch, cell, pbc, total_charge, edge_index, cell_shift, total_charge.shape[0]
        )[0]

    def example_inputs(self, atoms: Any) -> tuple[Tensor, ...]:
        """The inputs for ASE ``atoms`` (one or a list), neighbour list within the cutoff."""
        from . import from_ase

        pot = self.potential
        graph = from_ase(atoms, dtype=torch.float64).with_neighbors(pot.cutoff)  # float64 geometry: atomml.potential
        assert graph.edge_index is not None and graph.cell_shift is not None
        vec = edge_vectors(graph.positions, graph.cell, graph.batch, graph.edge_index, graph.cell_shift)
        keep = vec.norm(dim=1) < pot.cutoff
        return (graph.positions, pot.species(graph.atomic_numbers), graph.batch, graph.cell, graph.pbc,
                graph.total_charge, graph.edge_index[:, keep], graph.cell_shift[keep])  # fmt: skip

    @staticmethod
    def dynamic_shapes() -> tuple[Any, ...]:
        """Numbers of atoms, edges and structures vary between calls."""
        dim = torch.export.Dim
        atoms, edges, graphs = dim("atoms", min=2), dim("edges", min=2), dim("graphs")
        return ({0: atoms}, {0: atoms}, {0: atoms}, {0: graphs}, {0: graphs}, {0: graphs}, {1: edges}, {0: edges})


def energy_and_forces(energy_fn: Any, inputs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    """Energy (B,) and forces (N, 3) from a :class:`PotentialModule`, its compiled form or an
    exported program's ``module()``."""
    positions = inputs[0].detach().requires_grad_(True)
    energy = energy_fn(positions, *inputs[1:])
    (grad,) = torch.autograd.grad(energy.sum(), [positions])
    return energy.detach(), -grad
