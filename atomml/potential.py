"""The one wrapper that turns any architecture into a potential: energies, forces, stress.

A potential is an architecture (graph -> :class:`~atomml.contract.ArchitectureOutput`) plus an
ordered list of energy terms (:mod:`atomml.terms`). :meth:`Potential.energy` is the one core
energy function, tensors in and energy per structure out, shared with :mod:`atomml.export`: edge
vectors, the per-element reference energies and energy scale/shift, the terms and the sum per
structure are written there once. :meth:`Potential.forward` checks the input, builds the
neighbour list if needed, and takes forces (-dE/dr) and stress ((1/V) dE/dε, ASE's sign, Voigt
order) by autograd from a symmetric strain applied to positions and cell together.

Precision policy (one code path for every network dtype): the network runs in the potential's
``dtype`` (float32 by default, float64 for checks); everything else is float64 — positions,
cells and edge vectors (formed in float64, then cast to the network's dtype), the per-element
reference energies, energy scale and shift (float64 buffers whatever ``.to(dtype)`` is called
with), each atom's energy (the network's output and every term's are cast up before they are
added) and the sum per structure. Forces and stress are derivatives of that float64 total with
respect to float64 positions and strain. This is NequIP's ``model_dtype`` idea: a float32
network's rounding stays at the scale of its own per-atom output (~1e-7 eV per atom), instead of
the ~1e-2 eV of a float32 sum of -1e5 eV totals.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from . import keys
from .contract import TermInputs, as_output
from .errors import InputError
from .graph import AtomicGraph, check_graph
from .nn.scatter import scatter_sum

MAX_Z = 118
MIN_DISTANCE = 0.1  # Å; closer atoms are overlapping (a duplicated atom, a broken structure)
FLOAT64_BUFFERS = ("atomic_energies", "energy_scale", "energy_shift")  # float64 in every network dtype
MIN_CELL_VOLUME = 1e-9  # Å^3; a smaller cell does not span three dimensions: no stress
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _graph_of(data: Any) -> AtomicGraph:
    """A PyG ``Data``/``Batch`` as a graph without edges; anything else is refused."""
    from .interfaces.pyg import from_pyg, is_pyg

    if is_pyg(data):
        return from_pyg(data, edges=False)
    raise InputError(
        f"a potential takes an atomml AtomicGraph or a torch_geometric Data/Batch, got {type(data).__name__}: "
        "convert ASE Atoms with atomml.graph.from_ase, or use atomml.evaluate / AtomMLCalculator"
    )


class Potential(nn.Module):
    """An architecture plus everything needed to give physical energies.

    Args:
        model: the architecture (an ``nn.Module`` following :class:`~atomml.contract.Architecture`).
        architecture: registered name of the architecture (used to rebuild it on load).
        hyperparameters: the builder arguments that rebuild ``model`` (JSON-serialisable).
        elements: atomic numbers the model knows; anything else is refused.
        cutoff: the architecture's interaction cutoff in Å.
        atomic_energies: reference energy per element (eV), added to each atom.
        energy_scale, energy_shift: per-atom energy = scale * model + shift + reference.
        metadata: free-form description saved with the potential (training data, ...).
        terms: energy terms (:mod:`atomml.terms`) added to the architecture's energy, in order.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        architecture: str,
        hyperparameters: Mapping[str, Any],
        elements: Sequence[int],
        cutoff: float,
        atomic_energies: Mapping[int, float] | None = None,
        energy_scale: float = 1.0,
        energy_shift: float = 0.0,
        metadata: Mapping[str, Any] | None = None,
        terms: Sequence[nn.Module] = (),
    ):
        super().__init__()
        if len(set(elements)) != len(elements) or not all(1 <= int(z) <= MAX_Z for z in elements):
            raise ValueError(f"elements must be distinct atomic numbers in 1..{MAX_Z}, got {list(elements)}")
        self.model = model
        self.architecture = architecture
        self.hyperparameters = dict(hyperparameters)
        self.elements = [int(z) for z in elements]
        self.architecture_cutoff = float(cutoff)
        self.metadata = dict(metadata or {})
        self._open_shell_warned: set[tuple[tuple[int, ...], float]] = set()  # (composition, charge) warned about
        self.terms = nn.ModuleList(terms)
        if len(self.terms) and getattr(model, "committee_size", None) is not None:
            raise ValueError("a committee potential takes no energy terms yet: give the terms to its members' "
                             "training instead, or evaluate the terms separately")
        for term in self.terms:
            term.check_elements(self.elements)
        term_cutoffs = [t.cutoff for t in self.terms if t.cutoff is not None]
        # the neighbour list serves the architecture and every term that uses it
        self.cutoff = max([self.architecture_cutoff, *term_cutoffs])
        lookup = torch.full((MAX_Z + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(self.elements)] = torch.arange(len(self.elements))
        self.register_buffer("species_of_z", lookup, persistent=False)
        self.register_buffer("z_of_species", torch.tensor(self.elements, dtype=torch.long), persistent=False)
        dtype = next(iter(model.parameters()), torch.empty(0)).dtype
        # an empty buffer that follows .to(dtype): the network's dtype, even with no parameters
        self.register_buffer("network_dtype", torch.empty(0, dtype=dtype), persistent=False)
        reference = torch.zeros(len(self.elements), dtype=torch.float64)
        for z, e in (atomic_energies or {}).items():
            if int(z) not in self.elements:
                raise ValueError(f"atomic energy given for element Z={z}, which is not in elements {self.elements}")
            reference[self.elements.index(int(z))] = float(e)
        self.register_buffer("atomic_energies", reference)
        self.register_buffer("energy_scale", torch.tensor(float(energy_scale), dtype=torch.float64))
        self.register_buffer("energy_shift", torch.tensor(float(energy_shift), dtype=torch.float64))

    def _apply(self, fn: Any, recurse: bool = True) -> Potential:
        """``.to()``, ``.float()``, ``.cuda()``...: the float64 buffers (:data:`FLOAT64_BUFFERS`)
        move with the module but stay float64; casting them through float32 would lose digits."""
        kept = {name: self._buffers[name] for name in FLOAT64_BUFFERS}
        super()._apply(fn, recurse)
        for name, value in kept.items():
            self._buffers[name] = value.to(device=self._buffers[name].device, dtype=torch.float64)
        return self

    @property
    def dtype(self) -> torch.dtype:
        """The network's dtype (float32 or float64); energies and geometry are float64 always."""
        return self.network_dtype.dtype

    @property
    def long_range(self) -> bool:
        """True if a term reaches beyond every cutoff (e.g. Coulomb): the potential is not local."""
        return any(bool(getattr(t, "long_range", False)) for t in self.terms)

    def species(self, atomic_numbers: Tensor) -> Tensor:
        """Indices into ``elements``; unknown elements raise :class:`InputError`."""
        z = atomic_numbers.clamp(0, MAX_Z)
        species = self.species_of_z[z]
        unknown = (species < 0) | (atomic_numbers != z)
        if bool(unknown.any()):
            bad = sorted(set(atomic_numbers[unknown].tolist()))
            from ase.data import chemical_symbols

            names = [chemical_symbols[b] if 0 < b <= MAX_Z else str(b) for b in bad]
            known = [chemical_symbols[z] for z in self.elements]
            raise InputError(
                f"this potential does not know element(s) {names} (Z={bad}); it was trained for "
                f"{known}. Use a potential trained on these elements."
            )
        return species

    def _warn_open_shell(self, graph: AtomicGraph) -> None:
        """Warn about structures with an odd number of electrons (Z summed minus the total charge:
        a radical, or an ion given without its charge) for a potential trained on closed-shell
        molecules only (``metadata["closed_shell_only"]``), once per composition and charge.
        Per call this costs one sum over the atoms; only an odd structure is looked at further."""
        electrons = scatter_sum(graph.atomic_numbers.to(torch.float64), graph.batch, graph.num_graphs)
        electrons = electrons - graph.total_charge.to(torch.float64)
        whole = electrons.round()
        odd = (torch.remainder(whole, 2) == 1) & ((electrons - whole).abs() < 1e-6)  # fractional: warned elsewhere
        if not bool(odd.any()):
            return
        import warnings

        from ase.symbols import Symbols

        for b in torch.nonzero(odd).flatten().tolist():
            numbers = graph.atomic_numbers[graph.batch == b].cpu()
            charge = float(graph.total_charge[b])
            key = (tuple(torch.bincount(numbers).tolist()), charge)
            if key in self._open_shell_warned:
                continue
            self._open_shell_warned.add(key)
            formula = Symbols(numbers.numpy()).get_chemical_formula()
            name = self.metadata.get("name", "this potential")
            warnings.warn(
                f"{formula} with total charge {charge:g} has {int(whole[b])} electrons, an odd number (a radical): "
                f"{name} was trained on closed-shell molecules only, so its energies and forces for it are "
                "outside the training data; if it is an ion, give its charge (atoms.info['charge'], charge= in "
                "OpenMM, --charge for atomml md), otherwise use a method made for open-shell systems",
                UserWarning,
                stacklevel=3,
            )

    def atom_energies(self, raw: Tensor, species: Tensor) -> Tensor:
        """Per-atom energies (eV, float64) from the architecture's output: scale, shift, reference."""
        return self.energy_scale * raw.to(torch.float64) + self.energy_shift + self.atomic_energies[species]

    def energy(
        self,
        positions: Tensor,
        species: Tensor,
        batch: Tensor,
        cell: Tensor,
        pbc: Tensor,
        total_charge: Tensor,
        edge_index: Tensor,
        cell_shift: Tensor,
        num_graphs: int,
        partial_charges: Tensor | None = None,
        single_cell: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """The core energy function: energy per structure (B,) and per atom (N,), in eV.

        Tensors as in :class:`~atomml.graph.AtomicGraph` (``species`` indexes ``elements``);
        ``edge_index``/``cell_shift`` hold a full neighbour list within ``self.cutoff``. No checks
        and no data-dependent branches beyond the architecture's edge selection when a term
        needs a longer cutoff, so that it compiles and exports. ``single_cell``: all edges use
        ``cell[0]`` (one structure), a cheaper product than a per-edge cell.
        """
        # Geometry in the inputs' precision (float64 from every interface): r_j - r_i is formed
        # before any rounding, so the result does not depend on where the structure sits in
        # space; only the short edge vectors are cast to the network's dtype.
        edge_vec = edge_vectors(positions, cell, batch, edge_index, cell_shift, single_cell).to(self.dtype)
        arch_index, arch_shift, arch_vec = edge_index, cell_shift, edge_vec
        if positions.dim() == 3:  # a committee's per-member copies (K, N, 3): the architecture sees them as edges only
            positions, cell = positions[0].detach(), cell[0].detach()
        if self.cutoff > self.architecture_cutoff:
            # a term reaches further than the architecture: give it only its own edges
            keep = torch.nonzero(edge_vec.detach().norm(dim=1) < self.architecture_cutoff).squeeze(1)
            arch_index, arch_shift, arch_vec = edge_index[:, keep], cell_shift[keep], edge_vec[keep]
        atomic_numbers = self.z_of_species[species]
        graph = AtomicGraph(positions=positions.to(self.dtype), atomic_numbers=atomic_numbers, batch=batch,
                            cell=cell.to(self.dtype), pbc=pbc,
                            total_charge=total_charge, edge_index=arch_index, cell_shift=arch_shift,
                            partial_charges=partial_charges)  # fmt: skip
        out = as_output(self.model(graph, species, arch_index, arch_vec))
        energies = self.atom_energies(out.energies, species)
        if len(self.terms):
            inputs = TermInputs(
                positions=positions, atomic_numbers=atomic_numbers, species=species, batch=batch,
                cell=cell, pbc=pbc, total_charge=total_charge, partial_charges=partial_charges,
                edge_index=edge_index, edge_vec=edge_vec, num_graphs=num_graphs,
                node_features=out.node_features, charges=out.charges,
            )  # fmt: skip
            for term in self.terms:
                energies = energies + term(inputs).to(torch.float64)
        if energies.dim() == 2:  # a committee: (K, N) -> (K, B)
            return scatter_sum(energies.transpose(0, 1), batch, num_graphs).transpose(0, 1), energies
        return scatter_sum(energies, batch, num_graphs), energies

    @property
    def committee_size(self) -> int | None:
        """K for a committee (:mod:`atomml.models.committee`), None for a single model."""
        return getattr(self.model, "committee_size", None)

    def forward(
        self,
        graph: AtomicGraph,
        compute_forces: bool = True,
        compute_stress: bool = False,
        create_graph: bool = False,
    ) -> dict[str, Tensor]:
        """Energy (B,), per-atom energies (N,), forces (N, 3) and stress (B, 6) on request.

        Energies, forces and stress are float64 whatever the network's dtype (the precision
        policy in the module docstring); give positions and cell in float64 (every atomml
        interface does) so that they are not rounded before the edge vectors are formed. If the
        graph has no edges, the neighbour list is built here. ``create_graph=True`` keeps the derivative graph
        (for training on forces). A PyTorch Geometric ``Data`` or ``Batch`` is taken as well
        (:mod:`atomml.interfaces.pyg`: its structures, with a neighbour list built here).
        """
        if not isinstance(graph, AtomicGraph):
            graph = _graph_of(graph)
        check_graph(graph)
        species = self.species(graph.atomic_numbers)
        if self.metadata.get("closed_shell_only") is True:
            self._warn_open_shell(graph)
        if graph.edge_index is None or graph.cell_shift is None:
            graph = graph.with_neighbors(self.cutoff)
        dtype = self.dtype
        geometry = torch.float64  # the precision policy (module docstring)
        positions = graph.positions.to(geometry)
        cell = graph.cell.to(geometry)
        edge_index, cell_shift = graph.edge_index, graph.cell_shift
        assert edge_index is not None and cell_shift is not None
        single_cell = graph.num_graphs == 1

        # Edges beyond the cutoff (a neighbour list built with a skin) are dropped here, once,
        # so that no architecture spends time on them.
        with torch.no_grad():
            vec = edge_vectors(positions, cell, graph.batch, edge_index, cell_shift, single_cell)
            length = vec.norm(dim=1)
            if length.numel() and float(length.min()) < MIN_DISTANCE:
                k = int(length.argmin())
                i, j = edge_index[:, k].tolist()
                raise InputError(
                    f"atoms {i} and {j} are {float(length[k]):.3g} Å apart (overlapping atoms, "
                    f"closer than {MIN_DISTANCE} Å): remove duplicated atoms or fix the structure"
                )
            within = torch.nonzero(length < self.cutoff).squeeze(1)
        edge_index, cell_shift = edge_index[:, within], cell_shift[within]

        num_graphs = graph.num_graphs
        members = self.committee_size
        # a committee differentiates each member's energy by its own copy of positions and strain
        copies = (members,) if members is not None and (compute_forces or compute_stress) else ()
        if copies:
            positions, cell = positions.expand(*copies, -1, -1), cell.expand(*copies, -1, -1, -1)
        grad_inputs: list[Tensor] = []
        if compute_forces:
            positions = positions.detach().clone().requires_grad_(True)
            grad_inputs.append(positions)
        strain = None
        if compute_stress:
            volume = torch.abs(torch.linalg.det(graph.cell.to(geometry)))
            if bool((volume < MIN_CELL_VOLUME).any()):
                raise InputError("stress needs a cell with non-zero volume: give every structure a full 3D cell")
            strain = torch.zeros((*copies, num_graphs, 3, 3), dtype=geometry, device=positions.device, requires_grad=True)
            grad_inputs.append(strain)
            symmetric = 0.5 * (strain + strain.transpose(-1, -2))
            positions = positions + (positions.unsqueeze(-2) @ symmetric[..., graph.batch, :, :]).squeeze(-2)
            cell = cell + cell @ symmetric

        charges = None if graph.partial_charges is None else graph.partial_charges.to(dtype)
        energy, energies = self.energy(
            positions, species, graph.batch, cell, graph.pbc, graph.total_charge.to(dtype), edge_index, cell_shift,
            num_graphs, partial_charges=charges, single_cell=single_cell,
        )  # fmt: skip
        out = {keys.ENERGY: energy, keys.ENERGIES: energies}
        if grad_inputs:
            grads = torch.autograd.grad(
                energy.sum(), grad_inputs, create_graph=create_graph, allow_unused=True
            )
            grads = [g if g is not None else torch.zeros_like(x) for g, x in zip(grads, grad_inputs)]
            if compute_forces:
                out[keys.FORCES] = -grads[0]
            if strain is not None:
                virial = grads[-1] / volume.view(-1, 1, 1)
                out[keys.STRESS] = torch.stack([virial[..., a, b] for a, b in VOIGT], dim=-1)
        if members is not None:
            out = self._committee_results(out)
        return out

    def _committee_results(self, members: dict[str, Tensor]) -> dict[str, Tensor]:
        """Mean and spread of a committee's results (each (K, ...)): ``energy``, ``energies``,
        ``forces`` and ``stress`` are the members' means; ``energy_std`` (B,) is the members'
        standard deviation (population, ddof 0) and ``forces_std`` (N,) the root of the summed
        variances of each atom's three components, sqrt(sum_c Var_k F_ic) (DP-GEN's model
        deviation), both times the committee's recalibration factor ``std_scale``; the
        members' own values are kept under ``*_members`` (:mod:`atomml.keys`)."""
        scale = self.model.std_scale
        out = {}
        for key, value in members.items():
            out[key] = value.mean(dim=0)
            out[keys.MEMBERS[key]] = value
        out[keys.ENERGY_STD] = scale * members[keys.ENERGY].std(dim=0, correction=0)
        if keys.FORCES in members:
            out[keys.FORCES_STD] = scale * members[keys.FORCES].var(dim=0, correction=0).sum(dim=-1).sqrt()
        return out


def edge_vectors(
    positions: Tensor, cell: Tensor, batch: Tensor, edge_index: Tensor, cell_shift: Tensor, single_cell: bool = False
) -> Tensor:
    """r_ij = r_j - r_i + S @ cell[batch[i]] (Å); ``single_cell``: every edge uses ``cell[0]``.

    Positions (K, N, 3) and cells (K, B, 3, 3), a committee's per-member copies, give (K, E, 3)."""
    i, j = edge_index[0], edge_index[1]
    shift = cell_shift.to(positions.dtype)
    if positions.dim() == 3:
        vec = positions[:, j] - positions[:, i]
        if single_cell:
            return vec + shift @ cell[:, 0]
        return vec + torch.einsum("ek,pekl->pel", shift, cell[:, batch[i]])
    vec = positions[j] - positions[i]
    if single_cell:
        return vec + shift @ cell[0]
    return vec + torch.bmm(shift.unsqueeze(1), cell[batch[i]]).squeeze(1)


def potential_on(potential: Potential, device: str | torch.device, dtype: torch.dtype) -> Potential:
    """``potential`` itself if it already has ``device`` and ``dtype``, else a converted copy:
    ``Module.to`` works in place, and the caller (or an earlier calculator built from the same
    object) must keep the precision and device it had."""
    device = torch.device(device)
    current = potential.network_dtype.device
    if device.type == "cuda" and device.index is None and current.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    if potential.dtype == dtype and current == device:
        return potential
    return copy.deepcopy(potential).to(device=device, dtype=dtype)
