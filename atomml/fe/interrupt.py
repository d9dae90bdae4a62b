"""Ctrl-C at a safe point: a long free-energy run stops within seconds, keeping what it stored.

Python turns SIGINT into ``KeyboardInterrupt`` only between bytecodes, so a long OpenMM call
(``integrator.step`` of a few thousand steps, a solvated box's density equilibration) delays
it by a minute or more, and an interrupt raised inside an ML force callback surfaces as an
OpenMM error instead. While :func:`deferred` is held, the first Ctrl-C only sets a flag, which
:func:`check` turns into ``KeyboardInterrupt`` at the next safe point: between short bursts of
dynamics (:func:`step`), between set-up stages, between samples. A sampler's files are
consistent at every such point (a sample is written before its checkpoint, and anything after
the last checkpoint is dropped on resume), so running the same command again resumes. A
second Ctrl-C interrupts at once.

Without :func:`deferred` (library use) :func:`check` does nothing and Python's own handler
applies; :func:`step` still keeps each OpenMM call short, so the interrupt comes promptly.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

CHUNK_STEPS = 100  # steps per OpenMM call: well under a second on any platform and system size here

_requested = threading.Event()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C arrived while :func:`deferred` was held."""
    if _requested.is_set():
        raise KeyboardInterrupt


def step(integrator: Any, steps: int) -> None:
    """``integrator.step(steps)`` in bursts of at most :data:`CHUNK_STEPS`, checking for a
    Ctrl-C between them (the same trajectory: OpenMM's ``step(n)`` is n single steps)."""
    left = int(steps)
    while left > 0:
        check()
        burst = min(left, CHUNK_STEPS)
        integrator.step(burst)
        left -= burst
    check()


@contextlib.contextmanager
def requested() -> Iterator[None]:
    """Within the block :func:`check` raises ``KeyboardInterrupt`` in every thread: how a
    Ctrl-C taken by the main thread stops the replicas that other threads step
    (:func:`atomml.lockstep.side_by_side`)."""
    already = _requested.is_set()
    _requested.set()
    try:
        yield
    finally:
        if not already:
            _requested.clear()


@contextlib.contextmanager
def deferred(message: str = "stopping at the next safe point (Ctrl-C again to stop at once)") -> Iterator[None]:
    """Within the block (in the main thread) the first SIGINT prints ``message`` and is taken
    at the next :func:`check`; a second one raises ``KeyboardInterrupt`` at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if _requested.is_set():
            raise KeyboardInterrupt
        _requested.set()
        print(f"\n[atomml fe] {message}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested.clear()
