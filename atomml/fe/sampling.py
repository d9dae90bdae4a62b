"""Sampling a list of thermodynamic states for MBAR, resumable: independent windows or
Hamiltonian replica exchange.

Both samplers run Langevin dynamics (LangevinMiddle, NVT; NPT if the System holds a barostat)
and every ``steps_per_sample`` steps evaluate the reduced potential of the configuration that
was just sampled in state k in *every* state (u = U / kT). That row goes to state k's sample
file, which gives MBAR's u_kn with samples grouped by the state that drew them, whichever
sampler drew them. Storage in ``folder``, shared by the two samplers:

- ``run.json``: the settings, and what the caller says defines the run besides them (its
  ``identity``: molecule, protocol, potential); a folder holding another run is refused
  (:class:`~atomml.errors.ResumeMismatchError`, naming the settings that differ),
- ``window_K.u``: raw float64 rows of length K for state K, appended and flushed sample by
  sample, readable while the run goes on (:func:`read_u_kn`).

:func:`sample_windows` simulates each state on its own. Its checkpoint per window is
``window_K.state.xml`` (positions, velocities, box) and ``window_K.json`` (samples done, bytes
of the sample file, time spent in dynamics), replaced atomically after each checkpoint.

:func:`sample_replica_exchange` runs K replicas, one per state, side by side. Each iteration
propagates every replica in its state, evaluates every replica in every state, then attempts
Metropolis swaps of the configurations (positions, velocities, box) between neighbouring
states: pairs (0, 1), (2, 3), ... on even iterations and (1, 2), (3, 4), ... on odd ones.
It adds ``replicas.i32`` (int32 rows of length K: which replica sits in each state after the
iteration's swaps), ``exchanges.i8`` (int8 rows of length K - 1 per neighbouring pair: -1 not
attempted, 0 rejected, 1 accepted) and ``replica_exchange.npz``, the checkpoint (every
replica's configuration, the permutation, the sizes of the files above, the OpenMM context
checkpoint with its random-number state), replaced atomically after every iteration.
:func:`replica_exchange_statistics` gives acceptance rates and round trips.

A sampler holds the lock of its folder while it runs (:func:`atomml.locks.output_lock`): a
second process on the same folder is refused. Running again resumes from the checkpoint: the
files are cut back to their recorded sizes (a sample half-written at a kill is dropped) and
sampling continues; a larger ``samples`` extends a finished run. Replica exchange restores
the integrator's random-number state as well, so a resumed run draws exactly the samples an
uninterrupted one would (on the same platform and machine; a Monte Carlo barostat's adaptive
step size is not part of OpenMM's checkpoint).

:func:`sampling_speed` reports each state's simulation speed (ns/day) from the wall time spent
in dynamics. :func:`wall_clock_budget` gives either sampler a callback that stops it at the
first checkpoint after a number of minutes (:class:`BudgetSpent`), to be resumed later.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import units
from ..errors import ResumeMismatchError
from ..files import replacing, write_text
from ..locks import output_lock
from . import interrupt

REPLICA_EXCHANGE_CHECKPOINT = "replica_exchange.npz"


class BudgetSpent(Exception):
    """Raised by a :func:`wall_clock_budget` callback when its time is up; ``args[0]`` is the
    samples (or iterations) done."""


def wall_clock_budget(max_minutes: float | None) -> Callable[[int], None] | None:
    """A sampler ``callback`` that raises :class:`BudgetSpent` at the first checkpoint after
    ``max_minutes`` of wall-clock time from now (None: no budget). The samplers checkpoint
    before they call it, so nothing sampled is lost."""
    if max_minutes is None:
        return None
    end = time.monotonic() + 60.0 * max_minutes

    def check(done: int) -> None:
        if time.monotonic() > end:
            raise BudgetSpent(done)

    return check


def _claim(folder: Path, settings: dict) -> None:
    """Record the run's settings in ``folder``, refusing a folder that holds another run."""
    settings = json.loads(json.dumps(settings))  # as it reads back (tuples become lists)
    info = folder / "run.json"
    if info.exists():
        _refuse_other_run(folder, json.loads(info.read_text()), settings)
    write_text(info, json.dumps(settings))


def _refuse_other_run(folder: Path, recorded: dict, settings: dict) -> None:
    old, new = _flat(recorded), _flat(settings)
    differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if differ:
        raise ResumeMismatchError(
            f"{folder} holds samples of a run with other settings (differing: {', '.join(differ)}); give the "
            f"settings it ran with, use another output folder, or delete {folder} to sample it afresh"
        )


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys, so that a mismatch names the setting."""
    if not isinstance(value, dict) or not value:
        return {prefix.rstrip("."): value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}{key}."))
    return out


def check_identity(folder: str | os.PathLike[str], identity: dict) -> None:
    """Refuse (:class:`~atomml.errors.ResumeMismatchError`) a ``folder`` whose samples were
    drawn for another ``identity`` (as a sampler records it); nothing if it holds none."""
    info = Path(folder) / "run.json"
    if info.exists():
        recorded = json.loads(info.read_text()).get("identity")
        _refuse_other_run(Path(folder), {"identity": recorded}, {"identity": json.loads(json.dumps(identity))})


def check_resumable(folder: str | os.PathLike[str], identity: dict) -> None:
    """Before any set-up work: refuse a ``folder`` that another process samples now
    (:class:`~atomml.errors.OutputInUseError`) or that holds another run's samples
    (:func:`check_identity`). The samplers check both again while they hold the folder."""
    with output_lock(folder, "sampling folder"):
        check_identity(folder, identity)


def _holding_folder(sampler: Callable[..., Path]) -> Callable[..., Path]:
    """``sampler`` holding the lock of its ``folder`` (the fifth argument) while it runs: one
    writer per folder, so that two runs never interleave their samples."""

    @functools.wraps(sampler)
    def locked(system: Any, positions: Any, states: Any, set_state: Any, folder: Any, *args: Any, **kwargs: Any) -> Path:
        with output_lock(folder, "sampling folder"):
            return sampler(system, positions, states, set_state, folder, *args, **kwargs)

    return locked


def _identity(identity: dict | None) -> dict:
    """The run.json entry of what the caller says defines the run besides the sampler's own
    settings (molecule, protocol, potential, ...); none when it says nothing."""
    return {} if identity is None else {"identity": identity}


def _context(system: Any, temperature: float, friction_per_ps: float, timestep_fs: float, seed: int,
             platform: str | None, sharing: int = 1) -> tuple[Any, Any]:  # fmt: skip
    """A Context with a LangevinMiddle integrator seeded with ``seed`` on :func:`platform_for`
    ``(platform, sharing)``: K Contexts side by side do not each start a thread per core."""
    import openmm
    from openmm import unit

    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, friction_per_ps / unit.picosecond, timestep_fs * unit.femtosecond
    )
    integrator.setRandomNumberSeed(seed)  # read when the Context is created, not afterwards
    return openmm.Context(system, integrator, *platform_for(platform, sharing)), integrator


def platform_for(platform: str | None, sharing: int = 1) -> tuple[Any, dict[str, str]]:
    """(OpenMM Platform, Context properties) for ``platform`` (None: OpenMM's own choice, the
    fastest); on the CPU platform, one of ``sharing`` Contexts stepped at once gets that share of
    the platform's threads (at least one)."""
    import openmm

    if platform is None:
        platforms = (openmm.Platform.getPlatform(i) for i in range(openmm.Platform.getNumPlatforms()))
        chosen = max(platforms, key=lambda p: p.getSpeed())
    else:
        chosen = openmm.Platform.getPlatformByName(platform)
    properties = {}
    if sharing > 1 and chosen.getName() == "CPU":
        threads = int(chosen.getPropertyDefaultValue("Threads") or os.cpu_count() or 1)
        properties["Threads"] = str(max(1, threads // sharing))
    return chosen, properties


def _reduced_row(context: Any, states: Sequence[Any], set_state: Callable[[Any, Any], None], kt: float) -> np.ndarray:
    """The reduced potential of the context's configuration in every state (leaves the last set)."""
    from openmm import unit

    u = np.empty(len(states))
    for m, other in enumerate(states):
        set_state(context, other)
        u[m] = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / kt
    return u


def _ns_per_day(steps: np.ndarray, seconds: np.ndarray, timestep_fs: float) -> np.ndarray:
    steps, seconds = np.asarray(steps, dtype=float), np.asarray(seconds, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(seconds > 0, steps * timestep_fs * units.NS_PER_FS / seconds * units.SECONDS_PER_DAY, np.nan)


def _equilibrate(context: Any, integrator: Any, positions: Any, box: Any, set_state: Callable[[Any, Any], None],
                 state: Any, minimize: bool, temperature: float, velocity_seed: int, steps: int) -> float:  # fmt: skip
    """Start ``state`` from ``positions`` (and ``box``): minimise if asked, draw velocities and
    run ``steps`` of dynamics; returns the seconds the dynamics took."""
    import openmm
    from openmm import unit

    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    set_state(context, state)
    if minimize:
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 200)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, velocity_seed)
    start = time.perf_counter()
    interrupt.step(integrator, steps)
    return time.perf_counter() - start


@_holding_folder
def sample_windows(
    system: Any,
    positions: Any,
    states: Sequence[Any],
    set_state: Callable[[Any, Any], None],
    folder: str | os.PathLike[str],
    temperature: float = 300.0,
    samples: int = 100,
    steps_per_sample: int = 250,
    equilibration_steps: int = 1000,
    timestep_fs: float = 2.0,
    friction_per_ps: float = 1.0,
    box: Any = None,
    platform: str | None = None,
    seed: int = 0,
    checkpoint_every: int = 1,
    progress: bool = True,
    callback: Callable[[int], None] | None = None,
    minimize: bool = True,
    identity: dict | None = None,
    label: str = "windows",
    batched: bool = False,
) -> Path:
    """Sample every state in turn (LangevinMiddle, NVT); returns ``folder``. Resumable.

    With the default ``checkpoint_every=1`` no completed sample is lost at a kill; with a larger
    value, samples after the last checkpoint are drawn again. ``callback(samples_done)`` is
    called after each checkpoint with the window's samples done. ``minimize=False`` skips the
    minimisation before the equilibration (see :func:`sample_replica_exchange`).
    ``identity`` (JSON-able) names what else defines the run (the molecule, the protocol, the
    potential): it is recorded in ``run.json`` with the sampler's settings, and resuming the
    folder with other settings or another identity is a
    :class:`~atomml.errors.ResumeMismatchError`. ``label`` names the progress bar. Dynamics
    runs in short bursts (:func:`atomml.fe.interrupt.step`), so a Ctrl-C is taken within a
    second or so, at a point from which the run resumes. ``batched=True`` samples all windows
    at once, each in its own Context and thread, with the ML force of every window evaluated in
    one call per step (:mod:`atomml.lockstep`), each Context on the CPU platform with its share
    of the platform's threads: the same windows and random seeds as one after the other (the
    same files, bit for bit, where each Context has as many threads either way: the CPU
    platform draws its random numbers per thread, the Reference platform from one stream for
    all Contexts); ``callback`` is then called by one window at a time."""
    from tqdm import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kt = units.kt(temperature)
    n_states = len(states)
    _claim(folder, {"n_states": n_states, "temperature": temperature, "steps_per_sample": steps_per_sample,
                    "timestep_fs": timestep_fs, "friction_per_ps": friction_per_ps, "seed": seed,
                    **_identity(identity)})  # fmt: skip
    window = functools.partial(_sample_window, system=system, positions=positions, states=states,
                               set_state=set_state, folder=folder, temperature=temperature, samples=samples,
                               steps_per_sample=steps_per_sample, equilibration_steps=equilibration_steps,
                               timestep_fs=timestep_fs, friction_per_ps=friction_per_ps, box=box, platform=platform,
                               seed=seed, checkpoint_every=checkpoint_every, minimize=minimize, kt=kt)  # fmt: skip
    stop, lock = threading.Event(), threading.Lock()

    def told(done: int) -> None:  # side by side, one window at a time tells the caller
        with lock:
            if callback is not None:
                callback(done)

    with tqdm(total=n_states * samples, unit="sample", disable=not progress, desc=label) as bar:
        _run_states([functools.partial(window, k, bar=bar, callback=told if batched else callback, stop=stop,
                                       sharing=n_states if batched else 1) for k in range(n_states)],
                    batched, stop)  # fmt: skip
    return folder


def _run_states(tasks: list[Callable[[], None]], batched: bool, stop: threading.Event | None = None) -> None:
    """The samplers' per-state tasks: side by side, one thread each (:func:`atomml.lockstep.side_by_side`,
    ``stop`` set when one fails), or in turn."""
    if batched:
        from ..lockstep import side_by_side

        side_by_side(tasks, stop)
    else:
        for task in tasks:
            task()


def _sample_window(k: int, *, system: Any, positions: Any, states: Sequence[Any], set_state: Callable[[Any, Any], None],
                   folder: Path, temperature: float, samples: int, steps_per_sample: int, equilibration_steps: int,
                   timestep_fs: float, friction_per_ps: float, box: Any, platform: str | None, seed: int,
                   checkpoint_every: int, minimize: bool, kt: float, bar: Any,
                   callback: Callable[[int], None] | None, stop: threading.Event | None = None,
                   sharing: int = 1) -> None:  # fmt: skip
    """Sample (or resume) window ``k`` of :func:`sample_windows`; returns early, at a
    checkpoint, once ``stop`` is set. ``sharing``: the windows sampled at once (:func:`_context`)."""
    import openmm

    state = states[k]
    rows, meta_path, xml_path = folder / f"window_{k}.u", folder / f"window_{k}.json", folder / f"window_{k}.state.xml"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    done = int(meta["samples"]) if meta else 0
    seconds, steps = (meta.get("dynamics_seconds", 0.0), meta.get("dynamics_steps", 0)) if meta else (0.0, 0)
    # a resumed window gets a fresh random stream
    context, integrator = _context(system, temperature, friction_per_ps, timestep_fs, seed + 1000 * k + 1 + done,
                                   platform, sharing)  # fmt: skip
    if meta:
        with open(rows, "r+b") as f:
            f.truncate(meta["bytes"])
        context.setState(openmm.XmlSerializer.deserialize(xml_path.read_text()))
    else:
        rows.unlink(missing_ok=True)
        seconds += _equilibrate(context, integrator, positions, box, set_state, state, minimize,
                                temperature, seed + k + 1, equilibration_steps)  # fmt: skip
        steps += equilibration_steps
    bar.update(min(done, samples))
    with open(rows, "ab") as out:
        for n in range(done, samples):
            set_state(context, state)
            start = time.perf_counter()
            interrupt.step(integrator, steps_per_sample)
            seconds, steps = seconds + time.perf_counter() - start, steps + steps_per_sample
            u = _reduced_row(context, states, set_state, kt)
            set_state(context, state)
            out.write(u.tobytes())
            out.flush()
            bar.update(1)
            if (n + 1) % checkpoint_every == 0 or n + 1 == samples:
                write_text(xml_path, openmm.XmlSerializer.serialize(
                    context.getState(getPositions=True, getVelocities=True)))  # fmt: skip
                meta = {"samples": n + 1, "bytes": out.tell(), "dynamics_seconds": seconds, "dynamics_steps": steps}
                write_text(meta_path, json.dumps(meta))
                if callback is not None:
                    callback(n + 1)
                if stop is not None and stop.is_set():
                    return


def read_u_kn(folder: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(u_kn (K, N), N_k): every complete sample recorded so far, grouped by state."""
    folder = Path(folder)
    n_states = json.loads((folder / "run.json").read_text())["n_states"]
    blocks, n_k = [], []
    for k in range(n_states):
        path = folder / f"window_{k}.u"
        data = np.fromfile(path, dtype=np.float64) if path.exists() else np.empty(0)
        data = data[: data.size // n_states * n_states].reshape(-1, n_states)  # drop a half-written row
        blocks.append(data)
        n_k.append(len(data))
    return np.concatenate(blocks).T if blocks else np.empty((n_states, 0)), np.array(n_k)


def sampling_speed(folder: str | os.PathLike[str]) -> np.ndarray:
    """Simulation speed of each state (ns/day of dynamics, equilibration included; NaN where
    no dynamics is recorded yet), from either sampler's checkpoints."""
    folder = Path(folder)
    settings = json.loads((folder / "run.json").read_text())
    n_states = settings["n_states"]
    if settings.get("sampler") == "replica_exchange":
        path = folder / REPLICA_EXCHANGE_CHECKPOINT
        meta = _load_checkpoint(path)["meta"] if path.exists() else {}
        seconds = meta.get("dynamics_seconds", [0.0] * n_states)
        steps = meta.get("dynamics_steps", [0] * n_states)
    else:
        seconds, steps = np.zeros(n_states), np.zeros(n_states)
        for k in range(n_states):
            path = folder / f"window_{k}.json"
            if path.exists():
                meta = json.loads(path.read_text())
                seconds[k], steps[k] = meta.get("dynamics_seconds", 0.0), meta.get("dynamics_steps", 0)
    return _ns_per_day(steps, seconds, settings["timestep_fs"])


# ---------------------------------------------------------------------------------------------
# Hamiltonian replica exchange


def _save_checkpoint(path: Path, meta: dict, **arrays: np.ndarray) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as f:  # the commit point: all of one iteration
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def _load_checkpoint(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        out = {key: data[key] for key in data.files}
    out["meta"] = json.loads(out["meta"].item())
    return out


def _exchange(u: np.ndarray, replica_of_state: np.ndarray, iteration: int, rng: np.random.Generator) -> np.ndarray:
    """Metropolis swaps between neighbouring states, even pairs on even iterations and odd pairs
    on odd ones. ``u[r, k]``: reduced potential of replica r in state k. Updates
    ``replica_of_state`` in place; returns per pair -1 (not attempted), 0 (rejected), 1 (accepted)."""
    n_states = len(replica_of_state)
    outcome = np.full(max(n_states - 1, 0), -1, dtype=np.int8)
    for k in range(iteration % 2, n_states - 1, 2):
        a, b = replica_of_state[k], replica_of_state[k + 1]
        # acceptance min(1, exp(-delta)) keeps the product of the states' Boltzmann weights
        delta = u[a, k + 1] + u[b, k] - u[a, k] - u[b, k + 1]
        draw = rng.random()  # drawn for every attempt, so the stream does not depend on outcomes
        accepted = bool(delta <= 0.0 or draw < np.exp(-delta))
        outcome[k] = accepted
        if accepted:
            replica_of_state[k], replica_of_state[k + 1] = b, a
    return outcome


@_holding_folder
def sample_replica_exchange(
    system: Any,
    positions: Any,
    states: Sequence[Any],
    set_state: Callable[[Any, Any], None],
    folder: str | os.PathLike[str],
    temperature: float = 300.0,
    samples: int = 100,
    steps_per_sample: int = 250,
    equilibration_steps: int = 1000,
    timestep_fs: float = 2.0,
    friction_per_ps: float = 1.0,
    box: Any = None,
    platform: str | None = None,
    seed: int = 0,
    progress: bool = True,
    callback: Callable[[int], None] | None = None,
    minimize: bool = True,
    identity: dict | None = None,
    label: str = "replicas",
    batched: bool = False,
) -> Path:
    """Hamiltonian replica exchange over ``states`` (see module doc); returns ``folder``.

    ``samples`` iterations, each giving one sample per state; every replica is first minimised
    and equilibrated (``equilibration_steps``) in its own state. One OpenMM Context serves all
    replicas in turn. The swaps use a generator seeded by (``seed``, iteration), so a run is
    reproducible. ``callback(iterations_done)`` is called after each iteration's checkpoint.
    Resumable; checkpoints after every iteration. ``minimize=False`` skips the minimisation
    (for potentials whose energy is only sound near sampled geometries: an L-BFGS line search
    tries far-off ones). ``identity``: what else defines the run (JSON-able), recorded in
    ``run.json``; resuming with another is refused (see :func:`sample_windows`).

    ``batched=True`` gives every state a Context of its own (integrator seed ``seed + 1 + k``;
    on the CPU platform its share of the threads) and steps them side by side, each in a
    thread, with the ML force of all replicas evaluated in one call per step
    (:mod:`atomml.lockstep`). The checkpoint then holds every Context's
    random-number state; a run resumed in the other mode keeps its samples and configurations
    and draws fresh random numbers."""
    import openmm
    from openmm import unit
    from tqdm import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kt = units.kt(temperature)
    n_states = len(states)
    _claim(folder, {"sampler": "replica_exchange", "n_states": n_states, "temperature": temperature,
                    "steps_per_sample": steps_per_sample, "timestep_fs": timestep_fs,
                    "friction_per_ps": friction_per_ps, "seed": seed, **_identity(identity)})  # fmt: skip
    n_contexts = n_states if batched else 1
    files = [folder / f"window_{k}.u" for k in range(n_states)] + [folder / "replicas.i32", folder / "exchanges.i8"]
    checkpoint = folder / REPLICA_EXCHANGE_CHECKPOINT

    def load(context: Any, r: int) -> None:
        context.setPeriodicBoxVectors(*(openmm.Vec3(*v) for v in boxes[r]))
        context.setPositions(coords[r])
        context.setVelocities(velocities[r])

    def store(context: Any, r: int) -> None:
        state = context.getState(getPositions=True, getVelocities=True)
        coords[r] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        velocities[r] = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
        boxes[r] = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)

    def commit(done: int, sizes: list[int]) -> None:
        meta = {"samples": done, "bytes": sizes, "dynamics_seconds": seconds.tolist(), "dynamics_steps": steps.tolist()}
        blobs = [np.frombuffer(c.createCheckpoint(), dtype=np.uint8) for c, _ in contexts]
        _save_checkpoint(checkpoint, meta, positions=coords, velocities=velocities, boxes=boxes,
                         replica_of_state=replica_of_state, context=np.concatenate(blobs),
                         context_sizes=np.array([b.size for b in blobs], dtype=np.int64))  # fmt: skip

    if checkpoint.exists():
        saved = _load_checkpoint(checkpoint)
        meta = saved["meta"]
        done = int(meta["samples"])
        seconds, steps = np.array(meta["dynamics_seconds"]), np.array(meta["dynamics_steps"])
        coords, velocities, boxes = saved["positions"], saved["velocities"], saved["boxes"]
        replica_of_state = saved["replica_of_state"]
        blobs = np.split(saved["context"], np.cumsum(saved.get("context_sizes", [saved["context"].size]))[:-1])
        same_mode = len(blobs) == n_contexts
        # the other mode's random streams cannot be carried over: fresh ones, seeded by the samples done
        contexts = [_context(system, temperature, friction_per_ps, timestep_fs,
                             seed + 1 + k + (0 if same_mode else 1000 * (done + 1)), platform, n_contexts)
                    for k in range(n_contexts)]  # fmt: skip
        if same_mode:
            for (context, _), blob in zip(contexts, blobs):
                context.loadCheckpoint(blob.tobytes())  # the integrator's random-number state
        for path, size in zip(files, meta["bytes"]):
            with open(path, "r+b") as f:
                f.truncate(size)
    else:
        for path in files:
            path.unlink(missing_ok=True)
        contexts = [_context(system, temperature, friction_per_ps, timestep_fs, seed + 1 + k, platform, n_contexts)
                    for k in range(n_contexts)]  # fmt: skip
        n_atoms = system.getNumParticles()
        coords, velocities = np.zeros((n_states, n_atoms, 3)), np.zeros((n_states, n_atoms, 3))
        boxes = np.zeros((n_states, 3, 3))
        seconds, steps = np.zeros(n_states), np.zeros(n_states, dtype=np.int64)

        def equilibrate(k: int) -> None:
            context, integrator = contexts[k % n_contexts]
            seconds[k] += _equilibrate(context, integrator, positions, box, set_state, states[k], minimize,
                                       temperature, seed + k + 1, equilibration_steps)  # fmt: skip
            steps[k] += equilibration_steps
            store(context, k)

        _run_states([functools.partial(equilibrate, k) for k in range(n_states)], batched)
        replica_of_state = np.arange(n_states, dtype=np.int32)
        done = 0
        commit(0, [0] * len(files))

    def advance(k: int, u: np.ndarray) -> None:
        """Replica ``replica_of_state[k]``: dynamics in state k, then its energy in every state."""
        context, integrator = contexts[k % n_contexts]
        r = replica_of_state[k]
        load(context, r)
        set_state(context, states[k])
        start = time.perf_counter()
        interrupt.step(integrator, steps_per_sample)
        seconds[k] += time.perf_counter() - start
        steps[k] += steps_per_sample
        store(context, r)
        u[r] = _reduced_row(context, states, set_state, kt)

    outs = [open(path, "ab") for path in files]
    try:
        bar = tqdm(total=samples, initial=min(done, samples), unit="iteration", disable=not progress, desc=label)
        with bar:
            for n in range(done, samples):
                u = np.empty((n_states, n_states))  # u[replica, state]
                _run_states([functools.partial(advance, k, u) for k in range(n_states)], batched)
                for k in range(n_states):  # the sample each state drew, before the swaps
                    outs[k].write(u[replica_of_state[k]].tobytes())
                outcome = _exchange(u, replica_of_state, n, np.random.default_rng([seed, n]))
                outs[-2].write(replica_of_state.astype(np.int32).tobytes())
                outs[-1].write(outcome.tobytes())
                for out in outs:
                    out.flush()
                commit(n + 1, [out.tell() for out in outs])
                bar.update(1)
                if callback is not None:
                    callback(n + 1)
    finally:
        for out in outs:
            out.close()
    return folder


def _round_trips(replica_of_state: np.ndarray) -> int:
    """Completed trips 0 -> K-1 -> 0 of all replicas; ``replica_of_state`` (iterations, K) after
    each iteration's swaps, replica k starting in state k."""
    n_states = replica_of_state.shape[1]
    if n_states < 2:
        return 0
    history = np.vstack([np.arange(n_states), replica_of_state])
    state_of_replica = np.argsort(history, axis=1)  # the inverse permutation of each row
    trips = 0
    for r in range(n_states):
        ends = [s for s in state_of_replica[:, r] if s in (0, n_states - 1)]
        visits = [e for i, e in enumerate(ends) if i == 0 or e != ends[i - 1]]  # alternating 0, K-1, 0, ...
        if visits and visits[0] != 0:
            visits = visits[1:]
        trips += max(len(visits) - 1, 0) // 2
    return trips


def replica_exchange_statistics(folder: str | os.PathLike[str]) -> dict:
    """What replica exchange recorded so far: ``replica_of_state`` (iterations, K), per
    neighbouring pair ``attempts`` and ``acceptance`` (accepted / attempted, NaN before the
    first attempt), and ``round_trips`` (0 -> K-1 -> 0, summed over replicas)."""
    folder = Path(folder)
    n_states = json.loads((folder / "run.json").read_text())["n_states"]
    perm = np.fromfile(folder / "replicas.i32", dtype=np.int32)
    flags = np.fromfile(folder / "exchanges.i8", dtype=np.int8)
    n = min(perm.size // n_states, flags.size // max(n_states - 1, 1)) if n_states > 1 else perm.size // n_states
    perm = perm[: n * n_states].reshape(n, n_states)
    flags = flags[: n * (n_states - 1)].reshape(n, n_states - 1)
    attempts = (flags >= 0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        acceptance = np.where(attempts > 0, (flags == 1).sum(axis=0) / np.maximum(attempts, 1), np.nan)
    return {"replica_of_state": perm, "attempts": attempts, "acceptance": acceptance, "round_trips": _round_trips(perm)}
