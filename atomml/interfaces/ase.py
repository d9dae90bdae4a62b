"""ASE calculator for any atomml potential.

The neighbour list is built with ``cutoff + skin`` and reused across MD/optimisation steps until
an atom has moved more than ``skin / 2`` (Verlet's criterion), or the cell, periodicity or
atoms change; edges beyond the cutoff are dropped inside the potential.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

from .. import fast, keys
from ..graph import AtomicGraph, _ase_charge, check_graph, from_ase
from ..neighbors import neighbor_list
from ..potential import MIN_CELL_VOLUME, Potential, potential_on
from ..potential_file import load_potential

INFO_INPUTS = ("charge",)  # the keys of atoms.info that the calculator reads


class AtomMLCalculator(Calculator):
    """ASE calculator: energy, free_energy, energies (per atom), forces, stress and stresses
    (per-atom virials) (eV, Å).

    Stress (eV/Å³) is defined for structures periodic along at least one axis whose cell spans
    three dimensions; asking for it on any other structure raises ASE's
    ``PropertyNotImplementedError``, as ASE's own calculators do. One calculator may be reused
    across any mix of crystals and molecules. ``stresses`` (n, 6) follows ASE's convention (as
    its ``LennardJones``): per-atom contributions in eV/Å³ (divided by the whole cell's volume)
    that sum to ``stress``; they cost one extra evaluation, paid only when asked for.

    The calculator never changes the caller's ``Potential``: one of another dtype or device is
    copied (and not copied when it already has both).

    Args:
        potential: a :class:`~atomml.potential.Potential`, a file path or a shipped name.
        device: torch device ("cpu", "cuda", ...); default: CUDA if available, else CPU.
        dtype: torch.float32 (default) or torch.float64.
        skin: Verlet skin in Å for reusing the neighbour list (0 rebuilds every call).
        neighbor_backend: "auto", "vesin" or "torch" (see :mod:`atomml.neighbors`).
        compile: run the architecture through ``torch.compile`` (dynamic shapes, so a changed
            neighbour count does not recompile). The first call then takes up to a minute. It
            pays for a single small molecule, whose cost is per-operation overhead rather than
            arithmetic (an ML/MM solute), and can be slower for large or batched graphs:
            ``scripts/bench_tensornet.py --peers atomml,torchmdnet,atomml_compiled``.
        small_system: "auto" (default), True or False: evaluate energy and forces through the
            compiled fixed-shape path of :mod:`atomml.fast` (the same numbers to float32
            round-off, several times faster for a molecule). "auto" moves a structure of at most
            :data:`atomml.fast.MAX_ATOMS` atoms there once the calculator has been called
            :data:`atomml.fast.AUTO_AFTER_CALLS` times in a row on it (an MD run; not a relaxation): the
            compile (~1 min the first time for a molecule size, seconds once cached on disk)
            pays for itself only over many calls. True: from the first call; False: never; the
            environment variable ``ATOMML_SMALL_SYSTEM=0`` turns "auto" off. Calls that want
            stress or per-atom stresses, and potentials with long-range terms, use the
            general path.

    A committee potential (:mod:`atomml.models.committee`) gives the members' mean as
    ``energy``, ``forces`` and ``stress``, and their spread as ``energy_std`` (eV) and
    ``forces_std`` (eV/Å, one value per atom: the root of the summed variances of its force
    components), all from one call.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]

    def __init__(
        self,
        potential: Potential | str | os.PathLike[str],
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float32,
        skin: float = 0.5,
        neighbor_backend: str = "auto",
        compile: bool = False,
        small_system: bool | str = "auto",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if isinstance(dtype, str):
            dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        if not isinstance(potential, Potential):
            potential = load_potential(potential)
        converted = potential_on(potential, device, dtype)
        if compile and converted is potential:
            # a copy: the caller's Potential keeps its plain architecture
            converted = copy.deepcopy(potential)
        self.potential = converted.eval()
        if self.potential.committee_size is not None:  # results also carry the members' spread
            self.implemented_properties = [*self.implemented_properties, "energy_std", "forces_std"]
        if compile:
            self.potential.model = torch.compile(self.potential.model, dynamic=True)
        self.device = torch.device(device)
        self.dtype = dtype
        self.skin = float(skin)
        self.neighbor_backend = neighbor_backend
        self.neighbor_list_builds = 0
        self._reference: dict[str, np.ndarray] | None = None
        self._stress_wanted = False
        self._edges: tuple[torch.Tensor, torch.Tensor] | None = None
        fast.auto_enabled(small_system)  # a bad value is an error now, not at the first call
        self.small_system = small_system
        self._small: fast.SmallSystemPath | None = None
        self._small_key: tuple | None = None
        self._calls_on_key = 0

    def check_state(self, atoms: Any, tol: float = 1e-15) -> list[str]:
        """ASE's changes plus those in ``atoms.info`` that the calculator reads (the total
        charge): ASE itself does not look at ``info``, and a changed charge must not return
        the previous energy."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and any(repr(atoms.info.get(k)) != repr(self.atoms.info.get(k)) for k in INFO_INPUTS):
            changes.append("info")
        return changes

    def _needs_rebuild(self, atoms: Any) -> bool:
        ref = self._reference
        if ref is None or self._edges is None or len(atoms) != len(ref["positions"]):
            return True
        if not (np.array_equal(atoms.numbers, ref["numbers"]) and np.array_equal(atoms.pbc, ref["pbc"])):
            return True
        if not np.array_equal(np.asarray(atoms.cell), ref["cell"]):
            return True
        displacement = np.linalg.norm(atoms.positions - ref["positions"], axis=1)
        return bool(displacement.max(initial=0.0) > 0.5 * self.skin)

    def _graph(self, atoms: Any) -> AtomicGraph:
        # float64 geometry whatever the network's dtype: see Potential.forward
        graph = from_ase(atoms, dtype=torch.float64).to(self.device)
        if self._needs_rebuild(atoms):
            check_graph(graph)  # the potential's own checks, before the neighbour list sees the input
            self._edges = neighbor_list(
                graph.positions, graph.cell, graph.pbc, self.potential.cutoff + self.skin,
                batch=graph.batch, backend=self.neighbor_backend,
            )
            self._reference = {
                "positions": atoms.positions.copy(),
                "numbers": atoms.numbers.copy(),
                "pbc": atoms.pbc.copy(),
                "cell": np.asarray(atoms.cell).copy(),
            }
            self.neighbor_list_builds += 1
        assert self._edges is not None
        return graph.replace(edge_index=self._edges[0], cell_shift=self._edges[1])

    def calculate(self, atoms: Any = None, properties: Any = None, system_changes: Any = all_changes) -> None:
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        has_volume = stress_defined(atoms)
        asked = [p for p in ("stress", "stresses") if p in properties]
        if asked and not has_volume:
            raise PropertyNotImplementedError(
                f"{asked[0]} is defined only for a periodic structure with a 3D cell; this one has "
                f"pbc={atoms.pbc.tolist()} and cell volume {abs(atoms.cell.volume):.3g} Å^3: ask for energy and "
                "forces only, or give it a periodic cell (atoms.cell, atoms.pbc)"
            )
        # Once stress has been asked for (cell filters, NPT), compute it with every call, so
        # that forces and stress come from one evaluation; plain MD never pays for it. Only
        # where it is defined: one calculator screens crystals and molecules alike.
        self._stress_wanted = self._stress_wanted or "stress" in properties
        want_stress = (self._stress_wanted or "stresses" in properties) and has_volume
        small = None if want_stress or "stresses" in properties else self._small_system_path(atoms)
        if small is not None:
            cell = np.asarray(atoms.cell) if atoms.pbc.any() else None
            energies, forces, atom_energies = small.evaluate(atoms.positions[None], cell)
            energy = float(energies[0])
            self.results = {"energy": energy, "free_energy": energy, "energies": atom_energies[0], "forces": forces[0]}
            return
        graph = self._graph(atoms)
        out = self.potential(graph, compute_forces=True, compute_stress=want_stress)
        energy = float(out[keys.ENERGY].detach().sum())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out[keys.ENERGIES].detach().cpu().double().numpy(),
            "forces": out[keys.FORCES].detach().cpu().double().numpy(),
        }
        if want_stress:
            self.results["stress"] = out[keys.STRESS][0].detach().cpu().double().numpy()
        if keys.ENERGY_STD in out:  # a committee: the mean above, the spread here
            self.results["energy_std"] = float(out[keys.ENERGY_STD].detach().sum())
            self.results["forces_std"] = out[keys.FORCES_STD].detach().cpu().double().numpy()
        if "stresses" in properties:  # not kept on for later calls: one extra evaluation each
            self.results["stresses"] = per_atom_virials(self.potential, graph)


    def _small_system_path(self, atoms: Any) -> fast.SmallSystemPath | None:
        """The small-system path for ``atoms`` if it is (or now becomes) the one to use."""
        wait = fast.switch_after(self.small_system, self.potential, len(atoms))
        if wait is None:
            return None
        if len(self.potential.terms) and atoms.has("initial_charges"):
            return None  # per-atom charges for the energy terms: the general path passes them
        charge = _ase_charge(atoms)
        key = (atoms.numbers.tobytes(), tuple(atoms.pbc.tolist()), charge)
        if key != self._small_key:
            self._small_key, self._calls_on_key, self._small = key, 0, None
        self._calls_on_key += 1
        if self._small is None:
            if self._calls_on_key < wait:
                return None
            self._small = fast.SmallSystemPath(
                self.potential, atoms.numbers, cell=np.asarray(atoms.cell), pbc=atoms.pbc, charge=charge,
                device=self.device, dtype=self.dtype, skin=self.skin,
            )  # fmt: skip
        return self._small


def stress_defined(atoms: Any) -> bool:
    """Whether ``atoms`` has a stress: periodic along some axis, with a cell of non-zero volume."""
    return bool(atoms.pbc.any()) and abs(float(atoms.cell.volume)) > MIN_CELL_VOLUME


def per_atom_virials(potential: Potential, graph: AtomicGraph) -> np.ndarray:
    """Per-atom stresses (n, 6), eV/Å³, Voigt, ASE's sign and convention (``LennardJones``):
    sigma_i = 1/(2V) sum over the edges e at atom i (as i or as j) of sym(r_e ⊗ dE/dr_e), which
    sum over the atoms to (1/V) dE/dε, the stress of :class:`~atomml.potential.Potential`.

    The split is not unique (only the sum is physical); half of each edge's virial to each of its
    two atoms is the convention of ASE and LAMMPS for pair terms. ``Potential`` forms the edge
    vectors inside its core energy function (``r_e = r_j - r_i + S_e @ cell``) and keeps no handle
    on them, so the gradients dE/dr_e are taken through the shifts S_e, given as float leaves:
    dE/dS_e = cell @ dE/dr_e. That needs an invertible cell, which a structure with a stress has.
    Terms beyond the neighbour list (Coulomb) have no edges to split: refused.
    """
    from ..nn.scatter import scatter_sum
    from ..potential import VOIGT, edge_vectors

    if potential.long_range:
        raise PropertyNotImplementedError(
            "per-atom stresses need every energy term to act through the neighbour list; this potential has a "
            "long-range term (e.g. Coulomb): ask for the total stress only"
        )
    geometry = torch.float64
    positions, cell = graph.positions.to(geometry), graph.cell.to(geometry)
    assert graph.edge_index is not None and graph.cell_shift is not None
    with torch.no_grad():
        vec = edge_vectors(positions, cell, graph.batch, graph.edge_index, graph.cell_shift, single_cell=True)
        within = torch.nonzero(vec.norm(dim=1) < potential.cutoff).squeeze(1)
    edge_index = graph.edge_index[:, within]
    shift = graph.cell_shift[within].to(geometry).requires_grad_(True)
    charges = None if graph.partial_charges is None else graph.partial_charges.to(potential.dtype)
    energy, _ = potential.energy(
        positions, potential.species(graph.atomic_numbers), graph.batch, cell, graph.pbc,
        graph.total_charge.to(potential.dtype), edge_index, shift, 1, partial_charges=charges, single_cell=True,
    )  # fmt: skip
    (d_shift,) = torch.autograd.grad(energy.sum(), shift, allow_unused=True)
    if d_shift is None:  # an energy with no edge dependence
        d_shift = torch.zeros_like(shift)
    with torch.no_grad():
        gradient = torch.linalg.solve(cell[0], d_shift.T).T  # dE/dr_e
        edge_virial = vec[within].unsqueeze(2) * gradient.unsqueeze(1)  # (E, 3, 3): r_e ⊗ dE/dr_e
        n = graph.num_atoms
        virial = 0.5 * (scatter_sum(edge_virial, edge_index[0], n) + scatter_sum(edge_virial, edge_index[1], n))
        virial = 0.5 * (virial + virial.transpose(1, 2)) / torch.abs(torch.linalg.det(cell[0]))
        voigt = torch.stack([virial[:, a, b] for a, b in VOIGT], dim=1)
    return voigt.cpu().numpy()
