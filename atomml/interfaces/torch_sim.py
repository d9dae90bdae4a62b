"""torch-sim model for any atomml potential: batched MD and relaxation in torch-sim.

``AtomMLModel(potential)`` is a ``torch_sim.models.interface.ModelInterface``: give it to
``torch_sim.integrate``, ``torch_sim.optimize`` or ``torch_sim.static`` as any torch-sim model.
Each call turns the ``SimState`` into one :class:`~atomml.graph.AtomicGraph` (every system of
the state in one batch), builds the neighbour list and evaluates the potential once.

Conventions, torch-sim's on the outside and atomml's inside:

- torch-sim stores a cell as column vectors (``state.cell[b]`` has a, b, c as columns);
  atomml's rows are lattice vectors, so the graph takes ``state.row_vector_cell``.
- ``state.pbc`` is one flag for every axis and every system in torch-sim 0.3.0, and one flag
  per axis for every system from 0.5 on: both are read. A system with no periodic axis is a
  molecule (torch-sim gives it the zero cell of ``ase.build.molecule``, or its box): it has no
  stress.
- The total charge is ``state.charge`` (one value per system) where the state carries one,
  else ``state.total_charge`` (torch-sim 0.6 knows both names), else 0. :func:`with_charge`
  gives any state (a plain ``SimState``, an optimiser's or an integrator's) a per-system
  ``charge`` that travels with its systems through torch-sim's batching, splitting and
  swapping: in torch-sim 0.6 as one of the state's own per-system extras, in 0.3.0, whose
  states have no extras, as an attribute of a subclass of the state's class.
- Stress is (1/V) dE/dε in eV/Å³ as a symmetric (B, 3, 3) tensor, ASE's sign, which is
  torch-sim's too: its cell optimisers form the virial as ``-V * (stress + pressure)``, as
  ASE's cell filters do. A state without periodicity gets NaN stress when stress is asked
  for (torch-sim has no way to leave it out for some systems of a batch).

:func:`relax` relaxes many ASE structures with torch-sim's batched FIRE in its ASE flavour
(:func:`ase_fire`, ASE's convergence test), in batches of at most ``max_atoms`` atoms with
structures swapped in and out as they converge; it works with torch-sim 0.3.0 (Python 3.11) and
0.6.2 (Python >= 3.12, ``dev/torchsim-py312.sh``), whose optimiser APIs differ.

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
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch_sim as ts
from torch_sim.models.interface import ModelInterface

from .. import keys
from ..errors import InputError
from ..graph import AtomicGraph, from_ase
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
        self._charged_seen = False  # a state with a non-zero total charge was given to this model
        self._charge_lost_warned = False

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
        pbc = pbc.reshape(-1, 3) if pbc.dim() else pbc.reshape(1, 1)  # one flag (0.3.0), or one per axis
        pbc = pbc.expand(num_graphs, 3)
        charge = getattr(state, "charge", None)
        if charge is None:  # torch-sim 0.6's other name for it (SystemExtras.TOTAL_CHARGE)
            charge = getattr(state, "total_charge", None)
        if charge is None:
            total_charge = torch.zeros(num_graphs, dtype=geometry, device=device)
            if self._charged_seen and not self._charge_lost_warned:
                self._charge_lost_warned = True
                warnings.warn(
                    "this state carries no total charge, but an earlier state given to this model did: its systems "
                    "are evaluated as neutral. torch-sim 0.3.0's integrate and optimize re-initialise the state and "
                    "drop a with_charge charge; call the init and step functions yourself and wrap the state after "
                    "init (atomml.interfaces.torch_sim.relax does), or use torch-sim >= 0.6",
                    UserWarning,
                    stacklevel=3,
                )
        else:
            total_charge = torch.as_tensor(charge, device=device).to(geometry).reshape(num_graphs)
            self._charged_seen = self._charged_seen or bool((total_charge != 0).any())
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
        # the systems of a state share its pbc, so stress is wanted for all of them or for none
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
    """A copy of ``state`` (tensors shared, not cloned) that carries ``charge``, the total charge
    of each system (e), as a per-system value that :class:`AtomMLModel` reads and torch-sim's
    batching, splitting and swapping keep. A state that already carries a charge gets the new one.

    torch-sim 0.6: the copy is of the state's class, with ``charge`` among its per-system
    extras (``state.system_extras["charge"]``, as ``ts.io.atoms_to_state(...,
    system_extras_map={"charge": "charge"})`` reads it from ``atoms.info``); an optimiser's or
    integrator's init keeps it in the state it makes, so ``ts.optimize`` and ``ts.integrate``
    keep it too.
    torch-sim 0.3.0, whose states have no extras: the copy is of a subclass of the state's class
    with a per-system ``charge`` attribute; an optimiser's or integrator's init makes a state of
    its own class without it, so give that state the charge again. ``ts.optimize`` takes such
    an optimiser's state as it is; 0.3.0's ``ts.integrate`` always calls the init itself and so
    runs uncharged: call the integrator's init and step functions yourself."""
    charge = torch.as_tensor(charge, dtype=torch.float64, device=state.device).reshape(-1)
    if charge.numel() == 1:
        charge = charge.expand(state.n_systems).clone()
    if charge.numel() != state.n_systems:
        raise ValueError(f"charge has {charge.numel()} values for a state of {state.n_systems} systems")
    if _STATE_EXTRAS:
        return type(state)(**(state.attributes | {"_system_extras": state.system_extras | {"charge": charge}}))
    base = _BASE_OF.get(type(state), type(state))
    fields = {k: v for k, v in vars(state).items() if k != "charge"}
    return _charged_class(base)(**fields, charge=charge)


# torch-sim 0.6 states carry per-system and per-atom "extras"; 0.3.0's carry none
_STATE_EXTRAS = hasattr(ts.SimState, "system_extras")
_BASE_OF: dict[type, type] = {}  # charged class -> the class it extends


@functools.cache
def _charged_class(cls: type) -> type:
    """``cls`` plus a per-system ``charge`` (torch-sim states declare each attribute's scope);
    for torch-sim 0.3.0."""
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


# -- batched relaxation with torch-sim's FIRE ---------------------------------------------------
def relax(
    structures: list[Any],
    potential: Any,
    *,
    fmax: float,
    max_steps: int,
    cell: bool,
    max_atoms: int = 4096,
) -> list[dict[str, Any]]:
    """Relax every structure with torch-sim's batched FIRE; results in the input's order.

    Periodic structures (pbc along all three axes) relax their positions and, with
    ``cell=True``, their cell (torch-sim's FIRE with its Fréchet cell filter, the algorithm of
    ASE's ``FrechetCellFilter``); molecules (no periodic axis) relax their positions
    (:func:`ase_fire` either way). Each kind goes through one ``torch_sim.optimize`` call. A total charge is read
    as :func:`atomml.from_ase` reads it (``atoms.info["charge"]``, else the initial charges).
    The caller's ``Atoms`` are not changed, and torch's thread settings are left as they are.

    Convergence: ASE's FIRE criterion, the largest row norm of the forces the optimiser moves
    along below ``fmax`` (strictly), checked before the first step and after every step
    (:func:`optimizer_force_rows`). With ``cell=False``, and for molecules, the rows are the
    atomic forces. With ``cell=True`` they are the rows of ASE's ``FrechetCellFilter.get_forces``
    as torch-sim's Fréchet cell filter forms them: the atomic forces times the deformation
    gradient, and three rows of cell forces (the derivative of the energy with respect to the
    log of the deformation gradient, divided by the number of atoms, ASE's ``exp_cell_factor``).

    Batching: in one batch with no swaps, each structure follows the path it follows alone.
    Swaps are not neutral. In torch-sim 0.3.0, in the step after a structure enters a batch
    (its velocities not yet set), torch-sim's ASE-flavoured FIRE skips, for every structure of
    the batch, the power check, the velocity mixing and the dt/alpha update (and, with a cell,
    the deformation gradient on the atomic forces). A structure's steps and final energy then
    depend a little on its batch mates (31 molecules, fmax 0.05, batches of at most 40 atoms:
    up to 10 more steps than alone, final energies within 2e-3 eV). In torch-sim 0.6.2 only
    a structure that enters a running batch is affected: its first step sees zero power and
    halves the time step it starts with (ASE's first step keeps it), so the structures of the
    first batch take the steps they take alone and the others do not (31 rattled small
    molecules of ASE's g2 set, fmax 0.05, batches of at most 40 atoms: 16 steps fewer to 14
    more than alone, final energies within 6e-3 eV; torch-sim 0.3.0 on the same set: 7 fewer
    to 17 more, within 3e-3 eV).

    Args:
        structures: ASE ``Atoms``.
        potential: an :class:`~atomml.interfaces.torch_sim.AtomMLModel` (used as it is; it must
            compute stress for ``cell=True``), or a :class:`~atomml.potential.Potential`, file
            path or shipped name (wrapped in one with its defaults: float64 geometry, the
            potential's network dtype, CUDA if available).
        fmax: convergence threshold, eV/Å.
        max_steps: most FIRE steps per structure.
        cell: relax the cells of periodic structures too.
        max_atoms: most atoms in one batch (torch-sim's autobatcher, ``memory_scales_with="n_atoms"``).

    Returns:
        One dict per structure: ``energy`` (eV), ``fmax`` (largest atomic force norm, eV/Å),
        ``steps`` (FIRE steps taken, as ASE's ``nsteps``), ``converged`` (the criterion above)
        and ``atoms`` (a copy of the input with the relaxed positions and cell).

    Raises:
        atomml.InputError: a structure periodic along only some axes (the helper relaxes
            molecules and fully periodic structures; torch-sim 0.3.0 has one periodicity flag
            for all axes), one with ASE constraints (torch-sim's FIRE has none), or one larger
            than ``max_atoms``.
    """
    if not fmax > 0:
        raise ValueError(f"fmax must be positive (eV/Å), got {fmax!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"max_steps must be a non-negative integer, got {max_steps!r}")
    if isinstance(max_atoms, bool) or not isinstance(max_atoms, int) or max_atoms < 1:
        raise ValueError(f"max_atoms must be a positive integer, got {max_atoms!r}")
    structures = list(structures)
    groups: dict[bool, list[int]] = {True: [], False: []}
    for i, atoms in enumerate(structures):
        if atoms.pbc.any() and not atoms.pbc.all():
            raise InputError(
                f"structure {i} is periodic along some axes only (pbc={atoms.pbc.tolist()}): this helper "
                "relaxes molecules and fully periodic structures only; relax it with atomml.relax"
            )
        if atoms.constraints:
            raise InputError(f"structure {i} has ASE constraints, which torch-sim's FIRE does not apply: relax it with atomml.relax")
        if len(atoms) > max_atoms:
            raise InputError(f"structure {i} has {len(atoms)} atoms, more than max_atoms={max_atoms}: raise max_atoms")
        groups[bool(atoms.pbc.all())].append(i)
    if isinstance(potential, AtomMLModel):
        model = potential
        if cell and groups[True] and not model.compute_stress:
            raise ValueError("cell=True needs stress: give an AtomMLModel with compute_stress=True")
    else:
        model = AtomMLModel(potential, compute_stress=cell and bool(groups[True]))
    results: list[dict[str, Any]] = [{} for _ in structures]
    for periodic, indices in groups.items():
        if indices:
            done = _relax_group([structures[i] for i in indices], model, fmax, max_steps, cell and periodic, max_atoms)
            for i, result in zip(indices, done):
                results[i] = result
    return results


def ase_fire(model: Any, cell: bool) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """torch-sim's FIRE in its ASE flavour for ``model``, on the positions or (``cell=True``)
    on the positions and the cell through the Fréchet cell filter (ASE's ``FrechetCellFilter``):
    ``init``, which makes the optimiser's state of a ``SimState`` (evaluating the model), and
    the keyword arguments that make ``torch_sim.optimize`` run this optimiser.

    torch-sim 0.3.0 has one factory per algorithm (``ts.optimizers.fire``,
    ``ts.optimizers.frechet_cell_fire``; ``md_flavor="ase_fire"``) that returns ``(init,
    step)``, and ``optimize`` calls the factory. torch-sim 0.6.2 has one pair of functions,
    ``ts.fire_init(state, model, fire_flavor=..., cell_filter=...)`` and ``ts.fire_step``, and
    ``optimize`` takes ``optimizer=ts.Optimizer.fire`` with the init's arguments apart.
    """
    if hasattr(ts, "fire_init"):  # from torch-sim 0.4 on (tested: 0.6.2)
        init_kwargs: dict[str, Any] = {"fire_flavor": "ase_fire"}
        if cell:
            init_kwargs["cell_filter"] = ts.CellFilter.frechet
        init = functools.partial(ts.fire_init, model=model, **init_kwargs)
        return init, {"optimizer": ts.Optimizer.fire, "init_kwargs": init_kwargs, "fire_flavor": "ase_fire"}
    optimizer = functools.partial(ts.optimizers.frechet_cell_fire if cell else ts.optimizers.fire, md_flavor="ase_fire")
    init, _ = optimizer(model=model)
    return init, {"optimizer": optimizer}


def optimizer_force_rows(state: Any) -> torch.Tensor:
    """(B,) per system of a FIRE state, the largest row norm of the forces that the optimiser
    moves along: what ASE's FIRE compares with ``fmax`` (see :func:`relax`). A state with a cell
    (``cell_forces``: torch-sim 0.3.0's ``FrechetCellFIREState``, 0.6.2's ``CellFireState``)
    moves the atoms along their forces times its deformation gradient."""
    forces = state.forces
    cell_forces = getattr(state, "cell_forces", None)
    if cell_forces is not None:
        deform = state.deform_grad()
        forces = torch.bmm(forces.unsqueeze(1), deform[state.system_idx]).squeeze(1)
    per_system = torch.zeros(state.cell.shape[0], dtype=forces.dtype, device=forces.device)
    per_system = per_system.scatter_reduce(0, state.system_idx, forces.norm(dim=1), reduce="amax")
    if cell_forces is not None:
        per_system = torch.maximum(per_system, cell_forces.norm(dim=2).amax(dim=1))
    return per_system


def _relax_group(
    structures: list[Any], model: Any, fmax: float, max_steps: int, cell: bool, max_atoms: int
) -> list[dict[str, Any]]:
    """Relax structures that share one periodicity: one ``torch_sim.optimize`` call."""
    from torch_sim.autobatching import InFlightAutoBatcher

    init_fn, optimize_kwargs = ase_fire(model, cell)
    charges = [float(from_ase(atoms).total_charge[0]) for atoms in structures]
    charged = any(charges)

    # The initial state of every structure, a batch of at most max_atoms atoms at a time. ASE's
    # FIRE checks convergence before its first step; torch-sim's optimize checks only after a
    # step, so structures that have converged at the start never enter it.
    initial: list[Any] = []
    for chunk in _chunks([len(atoms) for atoms in structures], max_atoms):
        state = ts.io.atoms_to_state([structures[i] for i in chunk], model.device, model.dtype)
        if charged:
            state = with_charge(state, [charges[i] for i in chunk])
        state = init_fn(state)
        if charged:  # torch-sim 0.3.0's optimiser state drops the charge (0.6.2's keeps it): give it back
            state = with_charge(state, [charges[i] for i in chunk])
        initial.extend(state.split())

    final = list(initial)
    steps = [0] * len(structures)
    todo = [i for i, state in enumerate(initial) if not bool(optimizer_force_rows(state)[0] < fmax)]
    if todo and max_steps > 0:
        batcher = InFlightAutoBatcher(model, memory_scales_with="n_atoms", max_memory_scaler=max_atoms)
        with warnings.catch_warnings():
            # the per-structure limit is the autobatcher's (max_steps swaps of one step); beyond
            # it optimize warns: torch-sim 0.3.0 counts steps over all batches together and
            # warns at every step past max_steps, 0.6.2 once when every structure has reached it
            warnings.filterwarnings("ignore", message="Optimize has reached max steps")
            warnings.filterwarnings("ignore", message="All systems have reached the maximum number of steps")
            relaxed = ts.optimize(
                ts.state.concatenate_states([initial[i] for i in todo]),
                model,
                convergence_fn=lambda state, last_energy=None: optimizer_force_rows(state) < fmax,
                autobatcher=batcher,
                max_steps=max_steps,
                steps_between_swaps=1,
                **optimize_kwargs,
            )
        # one step per swap, counted per structure: swap_attempts in torch-sim 0.3.0, iteration_count in 0.6.2
        counts = batcher.iteration_count if hasattr(batcher, "iteration_count") else batcher.swap_attempts
        for k, (i, state) in enumerate(zip(todo, relaxed.split())):
            final[i] = state
            steps[i] = int(counts[k])
    return [_result(structures[i], state, steps[i], fmax) for i, state in enumerate(final)]


def _chunks(sizes: list[int], max_atoms: int) -> list[list[int]]:
    """Consecutive indices, grouped so that each group's sizes sum to at most ``max_atoms``."""
    chunks: list[list[int]] = [[]]
    total = 0
    for i, size in enumerate(sizes):
        if chunks[-1] and total + size > max_atoms:
            chunks.append([])
            total = 0
        chunks[-1].append(i)
        total += size
    return chunks


def _result(atoms: Any, state: Any, steps: int, fmax: float) -> dict[str, Any]:
    relaxed = atoms.copy()
    relaxed.set_cell(state.row_vector_cell[0].detach().cpu().double().numpy())
    relaxed.positions = state.positions.detach().cpu().double().numpy()
    return {
        "energy": float(state.energy[0]),
        "fmax": float(state.forces.norm(dim=1).max()),
        "steps": steps,
        "converged": bool(optimizer_force_rows(state)[0] < fmax),
        "atoms": relaxed,
    }
