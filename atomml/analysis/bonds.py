"""Bonds broken or formed along a trajectory, as an MD frame callback.

The rule is a distance test with hysteresis, so that thermal motion is not a change:

- bonded at the start: a pair closer than ``bond_factor`` (1.2) × the sum of the two covalent
  radii (ASE's ``covalent_radii``, Cordero et al. 2008);
- broken: a starting bond longer than ``break_factor`` (1.5) × the sum (C–H 1.60 Å, C–C
  2.28 Å);
- formed: a pair not bonded at the start closer than ``form_factor`` (1.0) × the sum itself
  (C···Cl 1.78 Å, where a 1-3 contact sits near 2.7 Å).

A bond list can also be given (from a chemistry toolkit, say) with a limit relative to each
bond's starting length (:meth:`BondMonitor.from_bonds`). Distances use the minimum image
along periodic axes; pairs are found with ASE's ``neighbor_list`` (no skin: ASE's
``NeighborList`` class adds 0.3 Å per atom, which would count 1-3 contacts as bonds).

Use::

    monitor = BondMonitor(atoms, timestep_fs=settings.timestep_fs)
    run_md(atoms, calculator, settings, "run.extxyz", on_frame=monitor)
    if monitor.event:
        print(f"{monitor.event} at {monitor.event.time_ps} ps")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from ase import Atoms

from .. import units

BOND_FACTOR, BREAK_FACTOR, FORM_FACTOR = 1.2, 1.5, 1.0  # × the sum of covalent radii


@dataclasses.dataclass(frozen=True)
class BondEvent:
    """The first change seen: ``kind`` is "broken", "formed" or "non-finite" (positions that
    are NaN or infinite; then ``i = j = -1``). Distances in Å; ``step`` and ``time_ps`` are
    those of the frame where it was seen (``time_ps`` None without a time step)."""

    kind: str
    i: int
    j: int
    symbols: tuple[str, str]
    distance: float
    start_distance: float
    step: int | None = None
    time_ps: float | None = None

    def __str__(self) -> str:
        if self.kind == "non-finite":
            return "non-finite positions"
        return f"bond {self.symbols[0]}{self.i}-{self.symbols[1]}{self.j} {self.kind} ({self.distance:.2f} Å)"


class BondChangeError(RuntimeError):
    """Raised by a monitor made with ``raise_on_change=True``; ``event`` says what changed."""

    def __init__(self, event: BondEvent):
        super().__init__(str(event))
        self.event = event


def _radii(numbers: np.ndarray) -> np.ndarray:
    from ase.data import covalent_radii

    return covalent_radii[numbers]


def _pairs_within(atoms: Atoms, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs i < j closer than ``factor`` × (r_i + r_j), (P, 2) sorted, with their distances."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, factor * _radii(atoms.numbers))
    keep = i < j  # each pair once; drops an atom's own periodic images
    pairs = np.stack([i[keep], j[keep]], axis=1).astype(np.int64).reshape(-1, 2)
    d = d[keep]
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], d[order]


def _bond_lengths(atoms: Atoms, bonds: np.ndarray) -> np.ndarray:
    """Minimum-image lengths of ``bonds`` (M, 2) in ``atoms``, Å."""
    from ase.geometry import find_mic

    vectors = atoms.positions[bonds[:, 1]] - atoms.positions[bonds[:, 0]]
    if atoms.pbc.any():
        vectors, _ = find_mic(vectors, atoms.cell, atoms.pbc)
    return np.linalg.norm(vectors, axis=1)


class BondMonitor:
    """Watches the bonds of ``reference`` along a trajectory of the same atoms.

    Call it as ``monitor(atoms, step)`` (the ``on_frame`` callback of
    :func:`atomml.dynamics.run_md`): the first change is kept in :attr:`event` with its step
    and, given ``timestep_fs``, its time in ps; later frames are not checked again. With
    ``raise_on_change`` it raises :class:`BondChangeError` instead, which stops the run.
    :meth:`check` tests one structure without recording anything.
    """

    def __init__(
        self,
        reference: Atoms,
        *,
        timestep_fs: float | None = None,
        bond_factor: float = BOND_FACTOR,
        break_factor: float = BREAK_FACTOR,
        form_factor: float | None = FORM_FACTOR,
        raise_on_change: bool = False,
    ):
        if not 0 < bond_factor < break_factor:
            raise ValueError(f"need 0 < bond_factor < break_factor, got {bond_factor} and {break_factor}")
        if form_factor is not None and not 0 < form_factor <= bond_factor:
            raise ValueError(f"need 0 < form_factor <= bond_factor, got {form_factor} and {bond_factor}")
        bonds, lengths = _pairs_within(reference, bond_factor)
        radii = _radii(reference.numbers)
        self._setup(reference, bonds, lengths, break_factor * (radii[bonds[:, 0]] + radii[bonds[:, 1]]),
                    form_factor, timestep_fs, raise_on_change)  # fmt: skip

    @classmethod
    def from_bonds(
        cls,
        reference: Atoms,
        bonds: Sequence[tuple[int, int]] | np.ndarray,
        *,
        stretch: float = 2.0,
        timestep_fs: float | None = None,
        raise_on_change: bool = False,
    ) -> BondMonitor:
        """A monitor of the given bonds only: broken when longer than ``stretch`` × its length
        in ``reference``; formation of new bonds is not watched."""
        if stretch <= 1:
            raise ValueError(f"stretch must be above 1, got {stretch}")
        pairs = np.sort(np.asarray(bonds, dtype=np.int64).reshape(-1, 2), axis=1)
        if pairs.size and (pairs.min() < 0 or pairs.max() >= len(reference) or (pairs[:, 0] == pairs[:, 1]).any()):
            raise ValueError(f"bonds must be pairs of two different atom indices below {len(reference)}")
        lengths = _bond_lengths(reference, pairs)
        monitor = cls.__new__(cls)
        monitor._setup(reference, pairs, lengths, stretch * lengths, None, timestep_fs, raise_on_change)
        return monitor

    def _setup(
        self, reference: Atoms, bonds: np.ndarray, lengths: np.ndarray, break_at: np.ndarray,
        form_factor: float | None, timestep_fs: float | None, raise_on_change: bool,
    ) -> None:  # fmt: skip
        self._reference = Atoms(numbers=reference.numbers, positions=reference.positions, cell=reference.cell, pbc=reference.pbc)
        self.numbers = reference.numbers.copy()
        self.symbols = reference.get_chemical_symbols()
        self.bonds = bonds  # (M, 2), i < j, sorted
        self.start_lengths = lengths  # (M,) Å
        self.break_at = break_at  # (M,) Å
        self.form_factor = form_factor
        self.timestep_fs = timestep_fs
        self.raise_on_change = raise_on_change
        self.event: BondEvent | None = None
        self._bonded = set(map(tuple, bonds.tolist()))

    def _event(self, kind: str, i: int, j: int, distance: float, start: float) -> BondEvent:
        symbols = (self.symbols[i], self.symbols[j]) if i >= 0 else ("", "")
        return BondEvent(kind, i, j, symbols, float(distance), float(start))

    def check(self, atoms: Atoms) -> BondEvent | None:
        """The first change in ``atoms`` against the reference (broken bonds first, in index
        order, then formed ones), or None. Step and time are not set."""
        if len(atoms) != len(self.numbers) or (atoms.numbers != self.numbers).any():
            raise ValueError(f"the monitor watches {len(self.numbers)} atoms of the reference; got other atoms ({len(atoms)})")
        if not np.isfinite(atoms.positions).all():
            return self._event("non-finite", -1, -1, float("nan"), float("nan"))
        if len(self.bonds):
            lengths = _bond_lengths(atoms, self.bonds)
            broken = np.nonzero(lengths > self.break_at)[0]
            if broken.size:
                k = int(broken[0])
                i, j = self.bonds[k]
                return self._event("broken", int(i), int(j), lengths[k], self.start_lengths[k])
        if self.form_factor is not None:
            pairs, distances = _pairs_within(atoms, self.form_factor)
            for (i, j), d in zip(pairs.tolist(), distances):
                if (i, j) not in self._bonded:
                    start = _bond_lengths(self._reference, np.array([[i, j]]))[0]
                    return self._event("formed", i, j, d, start)
        return None

    def __call__(self, atoms: Atoms, step: int) -> None:
        if self.event is not None:
            return
        event = self.check(atoms)
        if event is None:
            return
        time_ps = None if self.timestep_fs is None else step * self.timestep_fs * units.PS_PER_FS
        self.event = dataclasses.replace(event, step=step, time_ps=time_ps)
        if self.raise_on_change:
            raise BondChangeError(self.event)

    @property
    def failed(self) -> bool:
        """True once a change has been seen."""
        return self.event is not None
