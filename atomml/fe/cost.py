"""What a free-energy leg costs in wall time: timed on this machine, not guessed.

Before sampling, :func:`probe` times a short burst of a leg's own dynamics and one evaluation
of its configuration in every state (what each sample costs); :func:`leg_seconds` turns that
into the leg's time from the work left in its folder (:func:`remaining_work`: a resumed leg
costs only what it has still to do). Once a leg samples, :class:`LegClock`, a sampler
callback, replaces the probe by the leg's measured pace after its first samples and says
how long that leg, and the run, still need.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .sampling import REPLICA_EXCHANGE_CHECKPOINT

PROBE_STEPS = 315  # at most (bursts of 5, 10, ..., 160), timed after a few untimed ones (kernels, neighbour lists) ...
PROBE_SECONDS = 0.5  # ... and no longer than about this (an ML solute may take 0.1 s a step)


def duration(seconds: float) -> str:
    """``seconds`` as people read it: "45 s", "12 min", "3 h 05 min"."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


@dataclasses.dataclass(frozen=True)
class Work:
    """What a leg has still to do: dynamics steps, and configurations to evaluate in every state."""

    steps: int
    evaluations: int  # samples left; each is evaluated in all states

    @property
    def done(self) -> bool:
        return self.steps == 0 and self.evaluations == 0


def remaining_work(folder: str | Path, n_states: int, samples: int, steps_per_sample: int, equilibration_steps: int,
                   sampler: str) -> Work:  # fmt: skip
    """The work a sampler (:mod:`atomml.fe.sampling`) has left in ``folder`` to reach ``samples``
    per state: equilibration where a state has no checkpoint yet, and the missing samples."""
    import numpy as np

    folder = Path(folder)
    if sampler == "replica_exchange":
        path = folder / REPLICA_EXCHANGE_CHECKPOINT
        if not path.exists():
            return Work(n_states * (equilibration_steps + samples * steps_per_sample), n_states * samples)
        with np.load(path, allow_pickle=False) as data:
            done = int(json.loads(data["meta"].item())["samples"])
        left = max(samples - done, 0)
        return Work(n_states * left * steps_per_sample, n_states * left)
    steps = evaluations = 0
    for k in range(n_states):
        meta = folder / f"window_{k}.json"
        done = int(json.loads(meta.read_text())["samples"]) if meta.exists() else None
        left = max(samples - (done or 0), 0)
        steps += left * steps_per_sample + (equilibration_steps if done is None else 0)
        evaluations += left
    return Work(steps, evaluations)


@dataclasses.dataclass(frozen=True)
class Speed:
    """Seconds per dynamics step and per evaluation of one configuration in all states."""

    step: float
    evaluation: float

    def seconds(self, work: Work) -> float:
        return work.steps * self.step + work.evaluations * self.evaluation


def probe(system: Any, positions: Any, box: Any, states: Sequence[Any], set_state: Callable[[Any, Any], None],
          temperature: float, friction_per_ps: float, timestep_fs: float, platform: str | None = None) -> Speed:  # fmt: skip
    """Time up to :data:`PROBE_STEPS` steps of ``system`` (in its first state, from ``positions``;
    :data:`PROBE_SECONDS` at most) and one evaluation in every state, on ``platform``: about a
    second. A throw-away Context: the leg's samples are unaffected."""
    import openmm
    from openmm import unit

    integrator = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, friction_per_ps / unit.picosecond,
                                                 timestep_fs * unit.femtosecond)  # fmt: skip
    args = () if platform is None else (openmm.Platform.getPlatformByName(platform),)
    context = openmm.Context(system, integrator, *args)
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    set_state(context, states[0])
    context.setVelocitiesToTemperature(temperature * unit.kelvin, 1)
    integrator.step(2)
    context.getState(getEnergy=True)
    start, steps, burst = time.perf_counter(), 0, 5
    while steps < PROBE_STEPS and time.perf_counter() - start < PROBE_SECONDS:  # growing bursts: a small
        integrator.step(burst)  # system's per-call overhead weighs as little as in the sampler's bursts
        context.getState(getEnergy=True)  # waits for the steps on an asynchronous platform
        steps, burst = steps + burst, 2 * burst
    step = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    for state in states:
        set_state(context, state)
        context.getState(getEnergy=True)
    evaluation = time.perf_counter() - start
    del context, integrator
    return Speed(step, evaluation)


class LegClock:
    """A sampler callback (``callback(done)`` after each checkpoint) that tells ``log`` the pace
    the leg keeps and how long it and the run still need (``later_seconds``: the estimate of
    the legs after this one): first once the leg has sampled for ``after_seconds``, then again
    at a quarter, half and three quarters of its work, as the first figure still carries the
    start-up (Context, minimisation) of one state only."""

    MILESTONES = (0.25, 0.5, 0.75)

    def __init__(self, leg: str, work: Callable[[], Work], log: Callable[[str], None], later_seconds: float = 0.0,
                 after_seconds: float = 10.0):  # fmt: skip
        self.leg, self.work, self.log = leg, work, log
        self.later, self.after = later_seconds, after_seconds
        self.start, self.first = time.monotonic(), work()
        self.told, self.milestones = False, list(self.MILESTONES)
        self.next_look = self.start + after_seconds

    def __call__(self, done: int) -> None:
        now_time = time.monotonic()
        if now_time < self.next_look or (self.told and not self.milestones):
            return
        self.next_look = now_time + min(self.after, 5.0)  # the folder is read every few seconds at most
        now = self.work()
        steps = self.first.steps - now.steps
        if steps <= 0:
            return
        fraction = steps / self.first.steps
        if self.told and fraction < self.milestones[0]:
            return
        while self.milestones and fraction >= self.milestones[0]:
            self.milestones.pop(0)
        elapsed = now_time - self.start
        left = now.steps * elapsed / steps  # the steps' share carries the evaluations at this leg's ratio
        total = left + self.later
        run = f"; the run about {duration(total)} more" if self.later > 0 else ""
        finish = time.strftime("%H:%M", time.localtime(time.time() + total))
        self.log(f"{self.leg}: {fraction:.0%} of its steps in {duration(elapsed)} -> this leg about {duration(left)} "
                 f"more{run} (done near {finish})")  # fmt: skip
        self.told = True


def chain(*callbacks: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """One sampler callback calling each of ``callbacks`` (None entries skipped) in turn."""
    active = [c for c in callbacks if c is not None]
    if not active:
        return None

    def call(done: int) -> None:
        for callback in active:
            callback(done)

    return call
