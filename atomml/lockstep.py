"""All replicas' ML regions in one call: OpenMM Contexts stepped side by side in threads.

A free-energy sampler holds K replicas of one molecule, each in its own OpenMM Context. OpenMM
integrates one Context per ``step`` call and asks the ML force for one configuration at a time,
so K replicas cost K separate ML calls per step. Here each replica's Context is stepped in a
thread of its own (OpenMM releases the GIL while it integrates), and the threads meet in the
ML force's callback: the last one to arrive evaluates every waiting replica in one batched call
(:func:`atomml.fast.replica_evaluator`, K replicas of the molecule), and each thread goes on
with its own forces.

The meeting is a barrier that adapts to what the threads do: a call is made once every thread
that takes part (a *member*, :meth:`Lockstep.member`) is waiting in the callback or has left.
Threads need not make the same number of ML calls (a minimiser's line search, a Context that
recomputes forces after its state was set): a thread in OpenMM's own work is waited for, one
that has finished its work leaves, and the others go on without it. Replica k always sits in
slot k of the batch (a slot with no request this time keeps its last positions), so a run's
numbers do not depend on which threads happened to meet.

Use :func:`side_by_side` to run one function per replica as members; an ML force callback
(:class:`atomml.interfaces.openmm.AtomMLComputation`) asks :func:`current` whether its thread
is a member and then calls :meth:`Lockstep.evaluate`. Outside :func:`side_by_side` nothing
changes: each call is evaluated on its own.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from .fe import interrupt


Evaluator = Callable[[np.ndarray, "np.ndarray | None"], tuple[np.ndarray, np.ndarray]]


class BatchedComputation(Protocol):
    """What :meth:`Lockstep.evaluate` needs of an ML force's computation. Requests of
    computations with the same ``batch_group`` are evaluated together (OpenMM may hand each
    Context its own copy of one force's computation)."""

    batch_group: Hashable

    def batch_evaluator(self, replicas: int) -> Evaluator:
        """An evaluator of ``replicas`` copies of the ML region: (positions (K, N, 3) Å, cells
        (K, 3, 3) Å or None) -> (energies (K,) eV, forces (K, N, 3) eV/Å)."""
        ...


class Lockstep:
    """The meeting point of ``slots`` threads in ML force callbacks (see the module doc)."""

    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = int(slots)
        self.calls = 0  # batched calls made
        self.requests = 0  # replica evaluations asked for
        self._condition = threading.Condition()
        self._slot: dict[int, int] = {}  # thread ident -> slot, for the members
        self._pending: dict[int, tuple[Any, np.ndarray, np.ndarray | None]] = {}  # slot -> request
        self._results: dict[int, Any] = {}  # slot -> (energy, forces) or the exception raised
        self._last: dict[Hashable, tuple[np.ndarray, np.ndarray | None]] = {}  # batch group -> last inputs

    @contextlib.contextmanager
    def member(self, slot: int) -> Iterator[None]:
        """The calling thread takes part as replica ``slot`` while in the block."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot must be in [0, {self.slots}), got {slot}")
        ident = threading.get_ident()
        with self._condition:
            if slot in self._slot.values():
                raise RuntimeError(f"slot {slot} already has a member")
            self._slot[ident] = slot
        try:
            yield
        finally:
            with self._condition:
                del self._slot[ident]
                self._meet()  # the others may have been waiting for this thread only
                self._condition.notify_all()

    def is_member(self) -> bool:
        """Whether the calling thread takes part."""
        return threading.get_ident() in self._slot

    def evaluate(self, computation: BatchedComputation, positions: np.ndarray,
                 cell: np.ndarray | None) -> tuple[float, np.ndarray]:  # fmt: skip
        """The energy (eV) and forces (N, 3) eV/Å of the calling member's configuration
        (``positions`` (N, 3) Å, ``cell`` (3, 3) Å or None), evaluated with every other
        member's waiting configuration in one call."""
        with self._condition:
            slot = self._slot[threading.get_ident()]
            self._pending[slot] = (computation, np.asarray(positions, dtype=np.float64), cell)
            self.requests += 1
            self._meet()
            while slot not in self._results:
                self._condition.wait()
            result = self._results.pop(slot)
        if isinstance(result, BaseException):
            raise result
        return result

    def _meet(self) -> None:
        """With the lock held: if every member is waiting (none in OpenMM's own work, none with
        a result it has not picked up), evaluate the waiting requests and wake their threads."""
        members = set(self._slot.values())
        if not self._pending or not members <= self._pending.keys():
            return
        pending, self._pending = self._pending, {}
        groups: dict[Hashable, list[int]] = {}
        for slot, (computation, _, _) in pending.items():
            groups.setdefault(computation.batch_group, []).append(slot)
        for slots in groups.values():
            try:
                results = self._evaluate(slots, pending)
            except Exception as exc:  # every waiting thread sees the failure, as it would alone
                results = dict.fromkeys(slots, exc)
            self._results.update(results)
        self._condition.notify_all()

    def _evaluate(self, slots: list[int], pending: dict) -> dict[int, Any]:
        """One batched call for the requests of one computation in ``slots``."""
        computation = pending[slots[0]][0]
        positions, cells = self._last.get(computation.batch_group, (None, None))
        if positions is None:  # slots without a request start as copies of a request
            first = pending[slots[0]]
            positions = np.repeat(first[1][None], self.slots, axis=0)
            cells = None if first[2] is None else np.repeat(np.asarray(first[2], dtype=np.float64)[None], self.slots, 0)
        for slot in slots:
            _, xyz, cell = pending[slot]
            positions[slot] = xyz
            if cells is not None:
                cells[slot] = cell
        self._last[computation.batch_group] = (positions, cells)
        energies, forces = computation.batch_evaluator(self.slots)(positions, cells)
        self.calls += 1
        return {slot: (float(energies[slot]), forces[slot]) for slot in slots}


_current: Lockstep | None = None
_current_lock = threading.Lock()


def current() -> Lockstep | None:
    """The lockstep of a :func:`side_by_side` run in progress, if the calling thread is one of
    its members; None otherwise (evaluate on your own)."""
    group = _current
    return group if group is not None and group.is_member() else None


def side_by_side(tasks: Sequence[Callable[[], Any]], stop: threading.Event | None = None,
                 group: Lockstep | None = None) -> list[Any]:  # fmt: skip
    """Run ``tasks[k]()`` in a thread of its own as member k of one :class:`Lockstep` (``group``,
    to read its counts afterwards; default a new one); returns their results in order once all
    have ended. If a task raises, the others are asked to stop
    (``stop`` is set: tasks check it at their safe points) and the first exception is raised
    once every thread has ended. A Ctrl-C in the calling thread does the same through
    :func:`atomml.fe.interrupt.request`, so the tasks stop at their next burst of dynamics."""
    global _current
    stop = stop or threading.Event()
    group = group or Lockstep(len(tasks))
    if group.slots != len(tasks):
        raise ValueError(f"the lockstep has {group.slots} slots for {len(tasks)} tasks")
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException | None] = [None] * len(tasks)

    start = threading.Barrier(len(tasks))  # no task runs before all are members
    # set by each thread as it ends: Thread.join interrupted by a Ctrl-C can take a running
    # thread for ended (Python 3.11), an Event cannot be misled
    finished = [threading.Event() for _ in tasks]

    def run(k: int) -> None:
        try:
            with group.member(k):
                start.wait()
                results[k] = tasks[k]()
        except BaseException as exc:  # handed to the calling thread
            errors[k] = exc
            start.abort()
            stop.set()
        finally:
            finished[k].set()

    with _current_lock:
        if _current is not None:
            raise RuntimeError("side_by_side runs do not nest")
        _current = group
    threads = [threading.Thread(target=run, args=(k,), name=f"atomml-replica-{k}", daemon=True)
               for k in range(len(tasks))]  # fmt: skip
    try:
        for thread in threads:
            thread.start()
        _wait(finished, stop)
    finally:
        _current = None
    # the cause, not a thread that found the start barrier broken by it
    first = next((e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)), None)
    first = first or next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return results


def _wait(finished: list[threading.Event], stop: threading.Event) -> None:
    """Wait until every thread has ended, in short waits so that a Ctrl-C reaches this (the
    main) thread; on one, ask every task to stop, wait for them all, then raise it."""
    try:
        for event in finished:
            while not event.wait(0.2):
                pass
    except KeyboardInterrupt:
        stop.set()
        with interrupt.requested():
            for event in finished:
                event.wait()
        raise
