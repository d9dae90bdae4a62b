"""The small-system path: one molecule (or K replicas of it) at fixed shapes, compiled once.

For a few dozen atoms the general path (:meth:`Potential.forward`) spends its time on
overheads, not arithmetic: a TensorNet call is ~2,500 tensor operations of a few hundred
pairs each, ~5 µs of dispatch apiece. This path removes them without changing the function:

- **Fixed shapes.** The molecule's atoms, then two *ghost* atoms in a structure of their own;
  the pairs within the cutoff, padded to a fixed capacity with pairs between the two ghosts.
  The ghosts' structure is dropped from the result, and as messages flow along edges only
  (and per-structure sums stay within a structure), the padding cannot reach a real atom: any
  architecture of the :class:`~atomml.contract.Architecture` contract gives the same numbers
  for the real structures, with no masking of its own.
- **Half the pairs.** The padded list is in the paired layout (:func:`~atomml.nn.pairs.paired_layout`):
  one edge of each pair, then the reverses. Models that use :func:`~atomml.nn.pairs.pair_list`
  (TensorNet, SchNet) compute each pair's radial work once, as they do eagerly.
- **Compiled once.** The function, energy and forces (its backward pass), is traced into one
  graph of tensor operations (``make_fx``) on a private copy of the potential whose weights do
  not require gradients (so no weight gradients are computed), and that graph is compiled by
  inductor (C++ on the CPU, Triton on a GPU) into one program per capacity. The program is
  called directly, without TorchDynamo, so a call pays no guard checks and no autograd engine:
  on a 2-core CPU this is 1.6-2x faster than ``torch.compile`` of the energy with autograd
  outside. Inductor keeps its artefacts on disk (:data:`CACHE_DIR`): the first compile of a
  molecule size takes ~1-2 min on a 2-core CPU, a later one (another process, the same
  potential and size) seconds.
- **Lean calls.** Positions in (numpy, Å), energies and forces out; the Verlet-skin neighbour
  list is rebuilt only when an atom has moved more than half the skin, and the pairs within
  the cutoff are picked from it in numpy, so a call is the compiled graph plus a few
  microseconds.

A capacity that a later neighbour list outgrows is raised (one more compile); for a molecule
it never exceeds the number of pairs of its atoms. Potentials whose energy terms reach beyond
the architecture's cutoff, or beyond every cutoff (Coulomb), take the general path
(:func:`unsupported`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import InputError
from .graph import AtomicGraph, check_graph
from .neighbors import neighbor_list
from .nn.pairs import half_edges, paired_layout
from .potential import MIN_DISTANCE, Potential, potential_on

# The largest molecule the calculator and the OpenMM force move to this path on their own.
MAX_ATOMS = 256
# ... after this many calls in a row on the same molecule. A compile (~1 min the first time for
# a molecule size, ~5 s from the disk cache) saves ~15 ms per call on a CPU: it pays over an MD
# run, not over a relaxation or a scan of a few dozen points, which stay on the general path.
AUTO_AFTER_CALLS = 200
# Inductor's artefacts (generated C++ and compiled kernels) survive the process here, unless
# the user named a place with TORCHINDUCTOR_CACHE_DIR.
CACHE_DIR = Path(os.environ.get("ATOMML_CACHE_DIR", Path.home() / ".cache" / "atomml")) / "inductor"
# At most this many atoms in all replicas together run on one CPU thread (SmallSystemPath's threads).
SERIAL_ATOMS = 128
GHOSTS = 2
GHOST_DISTANCE = 1.5  # Å between the two ghosts (any distance works; a bond length is a sane one)
ENVIRONMENT_SWITCH = "ATOMML_SMALL_SYSTEM"  # "0" turns the automatic choice off everywhere


def unsupported(potential: Potential) -> str | None:
    """Why ``potential`` cannot take this path, or None if it can."""
    if potential.committee_size is not None:
        return "it is a committee (the members' spread needs each member's forces: the general path)"
    if potential.long_range:
        return "it has a long-range energy term (all pairs of atoms, not a neighbour list)"
    if potential.cutoff > potential.architecture_cutoff:
        return "an energy term reaches beyond the architecture's cutoff (edges picked per call)"
    return None


def auto_enabled(setting: bool | str) -> bool:
    """Whether the automatic choice may pick this path: ``setting`` True/False/"auto", with
    ``ATOMML_SMALL_SYSTEM=0`` in the environment turning "auto" off."""
    if setting not in (True, False, "auto"):
        raise ValueError(f"small_system must be True, False or 'auto', got {setting!r}")
    if setting == "auto":
        return os.environ.get(ENVIRONMENT_SWITCH, "1") not in ("0", "false", "off", "no")
    return bool(setting)


def switch_after(setting: bool | str, potential: Potential, n_atoms: int) -> int | None:
    """After how many calls in a row on one structure of ``n_atoms`` atoms the calculator and
    the OpenMM force move it to this path (``setting``: True, False or "auto"); None: never."""
    if not auto_enabled(setting) or unsupported(potential) is not None:
        return None
    if setting is True:
        return 1
    return AUTO_AFTER_CALLS if n_atoms <= MAX_ATOMS else None


def _round_up(n: int, step: int = 16) -> int:
    return max(step, -(-n // step) * step)


class _Replicas:
    """What both evaluators share: K replicas of one molecule (atoms, cell, periodicity, charge),
    the call, positions and cells in their shapes, and Verlet's criterion for reusing the
    neighbour list (rebuilt when an atom has moved more than half the skin or a cell changed)."""

    def __init__(self, numbers: Sequence[int], replicas: int, cell: Any, pbc: Any, charge: float, skin: float,
                 device: str | torch.device):  # fmt: skip
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {replicas}")
        self.numbers = np.asarray(numbers, dtype=np.int64)
        self.n_atoms, self.replicas = len(self.numbers), int(replicas)
        self.pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        self.periodic = bool(self.pbc.any())
        self.cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64).reshape(3, 3)
        self.charge, self.skin = float(charge), float(skin)
        self.device = torch.device(device)
        k, n, dev = self.replicas, self.n_atoms, self.device
        # the fields of the K replicas' graph that do not change from call to call
        self._fixed = {
            "atomic_numbers": torch.as_tensor(np.tile(self.numbers, k), device=dev),
            "batch": torch.arange(k, device=dev).repeat_interleave(n),
            "pbc": torch.as_tensor(np.tile(self.pbc, (k, 1)), device=dev),
            "total_charge": torch.full((k,), self.charge, dtype=torch.float64, device=dev),
        }
        self.neighbor_list_builds = 0
        self._reference: np.ndarray | None = None  # positions of the last neighbour-list build
        self._reference_cells: np.ndarray | None = None

    def __call__(self, positions: Any, cell: Any = None) -> tuple[np.ndarray, np.ndarray]:
        energy, forces, _ = self.evaluate(positions, cell)
        return energy, forces

    def evaluate(self, positions: Any, cell: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(energies (K,), forces (K, N, 3), per-atom energies (K, N)) in eV and eV/Å."""
        raise NotImplementedError

    def _graph(self, positions: np.ndarray, cells: np.ndarray) -> AtomicGraph:
        """The K replicas as one batched graph (float64 geometry), without edges."""
        return AtomicGraph(positions=torch.from_numpy(positions.reshape(-1, 3)).to(self.device),
                           cell=torch.from_numpy(cells).to(self.device), **self._fixed)  # fmt: skip

    def _positions(self, positions: Any) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.float64).reshape(self.replicas, self.n_atoms, 3)
        if not np.isfinite(positions).all():
            raise InputError("positions contain NaN or infinite values: the structure (or the dynamics) broke down")
        return positions

    def _cells(self, cell: Any) -> np.ndarray:
        cells = self.cell if cell is None else np.asarray(cell, dtype=np.float64).reshape(-1, 3, 3)
        return np.array(np.broadcast_to(cells, (self.replicas, 3, 3)))

    def _needs_rebuild(self, positions: np.ndarray, cells: np.ndarray) -> bool:
        if self._reference is None or self._reference_cells is None:
            return True
        if not np.array_equal(cells, self._reference_cells):
            return True
        moved = np.einsum("kni,kni->kn", positions - self._reference, positions - self._reference)
        return bool(moved.max(initial=0.0) > (0.5 * self.skin) ** 2)

    def _built(self, positions: np.ndarray, cells: np.ndarray) -> None:
        """Record a neighbour-list build at these positions and cells."""
        self._reference, self._reference_cells = positions.copy(), cells.copy()
        self.neighbor_list_builds += 1


class SmallSystemPath(_Replicas):
    """Energies and forces of K replicas of one molecule (or small periodic cell) per call.

    Args:
        potential: the potential (not changed: the path works on a frozen copy).
        numbers: atomic numbers of the N atoms.
        replicas: K, the structures evaluated together in each call (same atoms, own positions).
        cell, pbc: the cell (3, 3) Å and periodicity; default: a molecule in vacuum.
        charge: total charge of each replica (e).
        device, dtype: where and in which precision the network runs (geometry stays float64).
        skin: Verlet skin (Å) of the reused neighbour list.
        compile: False runs the same padded inputs eagerly (for tests and as the fallback).
        threads: CPU threads for the call; default 1 for at most :data:`SERIAL_ATOMS` atoms in all
            replicas, else torch's setting: kernels this small gain nothing from a second thread
            and lose to OpenMP's waits (one aspirin, the graph under ``torch.compile`` on a 2-core
            CPU: 2.6 ms on 1 thread, 4.6 ms on 2).
        announce: write a line to stderr when a compile starts.

    Call with positions (K, N, 3) or (N, 3) in Å (and ``cell`` (K, 3, 3) or (3, 3) for a
    periodic system whose cell changes); returns (energies (K,) eV, forces (K, N, 3) eV/Å),
    float64 numpy arrays.
    """

    def __init__(
        self,
        potential: Potential,
        numbers: Sequence[int],
        *,
        replicas: int = 1,
        cell: Any = None,
        pbc: Any = False,
        charge: float = 0.0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        skin: float = 0.5,
        compile: bool = True,
        threads: int | None = None,
        announce: bool = True,
    ):
        reason = unsupported(potential)
        if reason:
            raise ValueError(f"the small-system path cannot run this potential: {reason}")
        super().__init__(numbers, replicas, cell, pbc, charge, skin, device)
        self.potential = copy.deepcopy(potential).to(device=self.device, dtype=dtype).eval().requires_grad_(False)
        self.cutoff = self.potential.cutoff
        self.compiled = bool(compile)
        if threads is None and self.device.type == "cpu":
            threads = 1 if replicas * len(numbers) <= SERIAL_ATOMS else None
        self.threads = threads
        self.announce = announce  # a line on stderr when a compile starts (it takes a while)
        self.compiles = 0
        self.compile_seconds = 0.0
        k, n = self.replicas, self.n_atoms
        pot, dev = self.potential, self.device
        z = torch.as_tensor(self.numbers, device=dev)
        species = pot.species(z)  # unknown elements: InputError here, once
        self._species = torch.cat([species.repeat(k), species[:1].repeat(GHOSTS)])
        self._batch = torch.cat(
            [torch.arange(k, device=dev).repeat_interleave(n), torch.full((GHOSTS,), k, device=dev)]
        )
        self._pbc = torch.zeros((k + 1, 3), dtype=torch.bool, device=dev)
        self._pbc[:k] = torch.as_tensor(self.pbc, device=dev)
        charges = torch.full((k + 1,), self.charge, dtype=torch.float64, device=dev)
        charges[k] = 0.0
        self._charge = charges.to(pot.dtype)
        ghosts = np.zeros((GHOSTS, 3))
        ghosts[:, 0] = 1.0e4 + GHOST_DISTANCE * np.arange(GHOSTS)
        self._ghosts = ghosts
        if pot.metadata.get("closed_shell_only") is True:  # the general path warns per call; here once
            pot._warn_open_shell(self._graph(np.zeros((k, n, 3)), self._cells(None)))
        self._pairs = np.zeros((2, 0), dtype=np.int64)  # one edge per pair of the skin list
        self._shifts = np.zeros((0, 3))
        self.capacity = 0
        self._function = _energy_and_forces(pot, single_cell=not self.periodic or self.replicas == 1)
        self._compiled: dict[int, Any] = {}  # pair slots -> the compiled program for them
        if self.compiled:
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(CACHE_DIR))

    # -- neighbour list --------------------------------------------------------------------

    def _rebuild(self, positions: np.ndarray, cells: np.ndarray) -> None:
        k, n = self.replicas, self.n_atoms
        graph = self._graph(positions, cells)
        check_graph(graph)  # NaN positions, singular cells...: the general path's errors
        edge_index, shift = neighbor_list(
            graph.positions, graph.cell, graph.pbc, self.cutoff + self.skin, batch=graph.batch
        )
        half = half_edges(edge_index, shift)
        self._pairs = edge_index[:, half].cpu().numpy()
        self._shifts = shift[half].to(torch.float64).cpu().numpy()
        self._built(positions, cells)
        # a molecule never has more pairs than its atoms make; a periodic cell may grow
        most = k * n * (n - 1) // 2 if not self.periodic else None
        if self._pairs.shape[1] > self.capacity:  # room for 5% more pairs at later builds
            wanted = _round_up(int(self._pairs.shape[1] * 1.05) + 1, 8)
            self.capacity = wanted if most is None else min(wanted, _round_up(most, 8))

    def _padded_edges(self, positions: np.ndarray, cells: np.ndarray) -> tuple[Tensor, Tensor]:
        """The pairs within the cutoff, in the paired layout, padded with ghost pairs."""
        n = self.n_atoms
        flat = positions.reshape(-1, 3)
        i, j = self._pairs
        vec = flat[j] - flat[i]
        if self.periodic:
            vec = vec + np.einsum("pi,pij->pj", self._shifts, cells[i // n])
        d2 = np.einsum("pi,pi->p", vec, vec)
        if d2.size and float(d2.min()) < MIN_DISTANCE**2:
            p = int(d2.argmin())
            raise InputError(
                f"atoms {i[p] % n} and {j[p] % n} (replica {i[p] // n}) are {float(np.sqrt(d2[p])):.3g} Å apart "
                f"(overlapping atoms, closer than {MIN_DISTANCE} Å): remove duplicated atoms or fix the structure"
            )
        keep = np.flatnonzero(d2 < self.cutoff**2)
        c, total = self.capacity, self.replicas * n
        first = np.empty((2, c), dtype=np.int64)
        first[0, : keep.size], first[1, : keep.size] = i[keep], j[keep]
        first[0, keep.size :], first[1, keep.size :] = total, total + 1
        edges = np.concatenate([first, first[::-1]], axis=1)
        shifts = np.zeros((2 * c, 3))
        if self.periodic:
            shifts[: keep.size] = self._shifts[keep]
            shifts[c : c + keep.size] = -self._shifts[keep]
        return torch.from_numpy(edges).to(self.device), torch.from_numpy(shifts).to(self.device)

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, positions: Any, cell: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(energies (K,), forces (K, N, 3), per-atom energies (K, N)) in eV and eV/Å."""
        k, n = self.replicas, self.n_atoms
        positions, cells = self._positions(positions), self._cells(cell)
        if self._needs_rebuild(positions, cells):
            self._rebuild(positions, cells)
        capacity = self.capacity
        edges, shifts = self._padded_edges(positions, cells)
        all_positions = torch.from_numpy(np.concatenate([positions.reshape(k * n, 3), self._ghosts])).to(self.device)
        all_cells = torch.zeros((k + 1, 3, 3), dtype=torch.float64, device=self.device)
        all_cells[:k] = torch.from_numpy(cells).to(self.device)
        inputs = (all_positions, self._species, self._batch, all_cells, self._pbc, self._charge, edges, shifts)
        with paired_layout(), _torch_threads(self.threads):
            energy, atom_energies, forces = self._run(inputs, capacity)
        forces = forces[: k * n].reshape(k, n, 3)
        atom_energies = atom_energies[: k * n].reshape(k, n)
        return energy[:k].cpu().numpy(), forces.cpu().numpy(), atom_energies.cpu().numpy()

    def _run(self, inputs: tuple[Tensor, ...], capacity: int) -> tuple[Tensor, Tensor, Tensor]:
        if not self.compiled:
            return self._function(*inputs)
        program = self._compiled.get(capacity)
        if program is None:
            program = self._compile(inputs, capacity)
        return program(*inputs)

    def _compile(self, inputs: tuple[Tensor, ...], capacity: int) -> Any:
        """The energy-and-forces program for ``capacity`` pair slots: the function traced into
        one graph of tensor operations, the backward pass included (``make_fx``), and that graph
        compiled by inductor. Called without TorchDynamo, so a call costs no guard checks; a new
        capacity gets a new program. A compiler failure leaves the path eager, with a warning."""
        if self.announce:
            from tqdm import tqdm

            tqdm.write(f"[atomml] compiling the small-system path for {self.n_atoms} atoms x {self.replicas} "
                       f"replica(s), {capacity} pair slots (about a minute the first time for a size, seconds once "
                       f"cached in {os.environ.get('TORCHINDUCTOR_CACHE_DIR', CACHE_DIR)})", file=sys.stderr)  # fmt: skip
        from torch._inductor import compile as inductor_compile
        from torch.fx.experimental.proxy_tensor import make_fx

        start = time.perf_counter()
        try:
            fake_inputs = _fake(inputs)
            graph = make_fx(self._function, tracing_mode="fake", _allow_non_fake_inputs=True)(*fake_inputs)
            with torch._guards.tracing(torch._guards.TracingContext(fake_inputs[0].fake_mode)):
                program = inductor_compile(graph, list(inputs))
        except Exception as exc:  # noqa: BLE001 - any compiler failure: the same function, eagerly
            warnings.warn(
                f"the small-system path could not be compiled ({type(exc).__name__}: {str(exc)[:200]}); running "
                "it without compiling (same results, slower). A CPU needs a C++ compiler (g++) for torch.compile.",
                RuntimeWarning,
                stacklevel=4,
            )
            self.compiled = False
            return self._function
        self.compiles += 1
        self.compile_seconds += time.perf_counter() - start
        self._compiled[capacity] = program
        return program


def _fake(inputs: tuple[Tensor, ...]) -> list[Tensor]:
    """Fake copies of ``inputs`` (shapes only) in a mode with a shape environment, static shapes:
    a graph traced from them can be looked up in inductor's on-disk cache (one traced from real
    tensors is compiled anew in every process)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True, static_shapes=True)
    return [mode.from_tensor(x, static_shapes=True) for x in inputs]


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """torch's CPU threads set to ``threads`` within the block (None: unchanged); ~10 µs."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _energy_and_forces(potential: Potential, single_cell: bool) -> Any:
    """(energy per structure, per-atom energies, forces) of the padded inputs, the last
    structure being the ghosts' (its energy is not differentiated). ``single_cell``: every real
    structure has ``cell[0]`` (the ghosts' pairs have no shift, so their cell does not matter)."""

    def energy_and_forces(positions, species, batch, cell, pbc, total_charge, edge_index, cell_shift):
        positions = positions.detach().requires_grad_(True)
        with torch.enable_grad():
            energy, atom_energies = potential.energy(positions, species, batch, cell, pbc, total_charge, edge_index,
                                                     cell_shift, cell.shape[0], single_cell=single_cell)  # fmt: skip
            (grad,) = torch.autograd.grad(energy[:-1].sum(), positions)
        return energy.detach(), atom_energies.detach(), -grad

    return energy_and_forces


class GeneralPath(_Replicas):
    """The general path with :class:`SmallSystemPath`'s call: K replicas of one molecule as one
    batched graph through :meth:`Potential.forward` (any potential; a Verlet-skin neighbour
    list reused across calls). The fallback where the small-system path does not apply, and
    the baseline it is measured against."""

    def __init__(self, potential: Potential, numbers: Sequence[int], *, replicas: int = 1, cell: Any = None,
                 pbc: Any = False, charge: float = 0.0, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, skin: float = 0.5, compile: bool = False):  # fmt: skip
        super().__init__(numbers, replicas, cell, pbc, charge, skin, device)
        self.potential = potential_on(potential, self.device, dtype).eval()
        if compile:  # the architecture under torch.compile with dynamic shapes, on a copy
            if self.potential is potential:
                self.potential = copy.deepcopy(potential)
            self.potential.model = torch.compile(self.potential.model, dynamic=True)
        self._edges: tuple[Tensor, Tensor] | None = None

    def evaluate(self, positions: Any, cell: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(energies (K,), forces (K, N, 3), per-atom energies (K, N)) in eV and eV/Å."""
        k, n = self.replicas, self.n_atoms
        positions, cells = self._positions(positions), self._cells(cell)
        graph = self._graph(positions, cells)
        if self._edges is None or self._needs_rebuild(positions, cells):
            check_graph(graph)
            self._edges = neighbor_list(graph.positions, graph.cell, graph.pbc, self.potential.cutoff + self.skin,
                                        batch=graph.batch)  # fmt: skip
            self._built(positions, cells)
        out = self.potential(graph.replace(edge_index=self._edges[0], cell_shift=self._edges[1]))
        return (out["energy"].detach().cpu().numpy(), out["forces"].detach().reshape(k, n, 3).cpu().numpy(),
                out["energies"].detach().reshape(k, n).cpu().numpy())  # fmt: skip


def replica_evaluator(potential: Potential, numbers: Sequence[int], *, replicas: int = 1,
                      small_system: bool | str = "auto", **options: Any) -> SmallSystemPath | GeneralPath:  # fmt: skip
    """The evaluator of K replicas of one molecule: :class:`SmallSystemPath` where it applies
    (``small_system`` True, or "auto" with at most :data:`MAX_ATOMS` atoms in all replicas and
    ``ATOMML_SMALL_SYSTEM`` not 0), else :class:`GeneralPath`. ``options``: cell, pbc, charge,
    device, dtype, skin. Both are called as ``evaluator(positions (K, N, 3)) -> (E (K,), F (K, N, 3))``."""
    reason = unsupported(potential)
    if small_system is True and reason:
        raise ValueError(f"the small-system path cannot run this potential: {reason}")
    # "auto" counts the atoms of all replicas: the compiled program's advantage is per-call
    # overhead, gone by ~300 atoms (16 aspirins: 1.3x faster on 1 thread, 0.8x on 2;
    # data/benchmarks/small_molecules_12t.json)
    if auto_enabled(small_system) and reason is None and (small_system is True or replicas * len(numbers) <= MAX_ATOMS):
        return SmallSystemPath(potential, numbers, replicas=replicas, **options)
    return GeneralPath(potential, numbers, replicas=replicas, **options)
