"""Measuring time and memory per call, each measurement in a fresh process.

The peer benchmarks in ``scripts/`` (``bench_schnet.py``, ``bench_tensornet.py``, ...) share
these helpers. A benchmark program runs itself again as a worker subprocess for every (peer,
system, measurement), one at a time, so that no peer inherits another's allocations, caches or
thread pools:

- time: the median of ``repeats`` calls after ``warmup`` calls (:func:`measure_call`);
- memory: the peak extra resident memory of one call after the warm-up. The kernel's peak-RSS
  counter is reset (``/proc/self/clear_refs`` = 5, which also resets ``ru_maxrss``), the
  current RSS is read, one call is made, and extra = peak RSS (VmHWM) - RSS before the call.
  The worker runs with glibc's mmap threshold fixed (:data:`MALLOC_ENV`), so that tensors freed
  by the warm-up calls go back to the kernel instead of staying in the heap, where the
  measured call would reuse them unseen.

Linux only for the memory measurement (``/proc``).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# glibc settings for memory workers: freed blocks of 128 KiB and more are unmapped at once.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "262144", "MALLOC_ARENA_MAX": "2"}
MEASURES = ("time", "memory")


def _proc_status() -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, bytes."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_call(
    call: Callable[[], tuple[torch.Tensor, torch.Tensor]], *, warmup: int, repeats: int, measure: str = "time"
) -> dict[str, Any]:
    """Time or memory of ``call()``, which returns (energies, forces).

    ``measure="time"``: seconds of ``repeats`` calls after ``warmup`` calls (median, minimum,
    all). ``measure="memory"``: peak extra RSS of one call after the warm-up, MiB, and whether
    the peak counter could be reset (``peak_reset``). Both add the last call's energy sum and
    largest force component, so that peers can be checked to have computed the same thing.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    result: dict[str, Any] = {}
    energy = forces = None
    for _ in range(warmup):
        energy, forces = call()
    gc.collect()
    if measure == "memory":
        reset = _reset_peak_rss()
        before = _proc_status()["VmRSS"]
        energy, forces = call()
        peak = _proc_status()["VmHWM"]
        result.update(peak_reset=reset, rss_before_mib=before / 2**20, peak_rss_mib=peak / 2**20,
                      extra_mib=(peak - before) / 2**20)  # fmt: skip
    else:
        if repeats < 1:
            raise ValueError("repeats must be at least 1")
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            energy, forces = call()
            times.append(time.perf_counter() - t0)
        result.update(seconds_median=statistics.median(times), seconds_min=min(times), seconds_all=times)
    assert energy is not None and forces is not None
    result["energy_sum"] = float(energy.sum())
    result["forces_abs_max"] = float(forces.abs().max())
    return result


def spawn_worker(
    argv: Sequence[str],
    *,
    measure: str,
    label: dict[str, str],
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    tag: str = "bench",
) -> dict[str, Any]:
    """Run ``python argv...`` in a fresh process and return the JSON object on its last line
    of stdout.

    Memory runs get :data:`MALLOC_ENV`. ``label`` names the run in the progress line (stderr)
    and in the result when the worker fails (``{"error": ..., **label}``, its stderr tail on
    this process's stderr).
    """
    cmd = [sys.executable, *map(str, argv)]
    full_env = dict(os.environ, **(env or {}))
    if measure == "memory":
        full_env.update(MALLOC_ENV)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return {"error": f"worker exited with {proc.returncode}", **label}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if "seconds_median" in out:
        summary = f"{out['seconds_median']:.3f} s"
    elif "extra_mib" in out:
        summary = f"{out['extra_mib']:.0f} MiB"
    else:
        summary = "done"
    print(f"[{tag}] {' '.join(f'{v:10s}' for v in label.values())} {measure:6s} {summary}"
          f"  (subprocess {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    return out


def emit_json(result: Any, output: str | os.PathLike[str] | None = None, *, worker: bool = False) -> None:
    """Print a benchmark's result as JSON, and write it to ``output`` too where given. A worker
    prints one line: :func:`spawn_worker` reads the last line of its stdout."""
    text = json.dumps(result, indent=None if worker else 2)
    if output:
        Path(output).write_text(text + "\n")
    print(text)


def pool_times(previous: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Pool the timed calls of two rounds of the same measurement (a failed round is dropped)."""
    if previous is None or "error" in previous:
        return new
    if "error" in new:
        return previous
    times = previous["seconds_all"] + new["seconds_all"]
    return {**previous, "seconds_all": times, "seconds_median": statistics.median(times), "seconds_min": min(times)}


def available_mib() -> float:
    """MemAvailable from /proc/meminfo, MiB (infinite where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def wait_for_memory(name: str, n_atoms: int, mib_per_atom: float, max_wait_s: float, poll_s: float = 30.0) -> bool:
    """Wait (up to ``max_wait_s``) until the available memory covers ``n_atoms * mib_per_atom``
    + 1 GiB, so that a large run never pushes a shared machine into the OOM killer; False if it
    never did (the caller skips the run). ``name`` labels the progress lines."""
    need = n_atoms * mib_per_atom + 1024
    deadline = time.monotonic() + max_wait_s
    while True:
        free = available_mib()
        if free >= need:
            return True
        if time.monotonic() >= deadline:
            print(f"[bench] {name}: {free:.0f} MiB available, ~{need:.0f} MiB needed: skipped", file=sys.stderr, flush=True)
            return False
        print(f"[bench] {name}: waiting for memory ({free:.0f} of ~{need:.0f} MiB available)", file=sys.stderr, flush=True)
        time.sleep(poll_s)


def source_state() -> dict[str, Any]:
    """Which atomml source a run used: the git commit of the checkout that holds this package
    and whether the package folder differs from it (a hash of the diff); ``commit`` is None
    for an installed copy outside a git checkout."""
    package = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(["git", *args], cwd=package, capture_output=True, text=True)
        except OSError:  # no git on this machine
            return ""
        return proc.stdout if proc.returncode == 0 else ""

    diff = git("diff", "HEAD", "--", ".")
    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "atomml_uncommitted_changes": bool(diff),
        "atomml_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
    }


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
