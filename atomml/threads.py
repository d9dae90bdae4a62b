"""How many CPU threads a command uses, and keeping idle ones from spinning.

torch sizes its thread pool from the cores it sees, which on a shared machine or in a container
can be more than the process may use: the CPUs in its affinity mask, further limited by a
cgroup CPU quota (``/sys/fs/cgroup/cpu.max``, or ``cpu.cfs_quota_us`` on cgroup v1). More
threads than that make every parallel region wait for threads that are not running.

Idle OpenMP threads also spin for a while before they sleep (GNU ``libgomp`` by default), which
on a busy machine takes CPU from the work that is running. ``OMP_WAIT_POLICY=PASSIVE`` makes
them sleep at once, but the OpenMP runtime reads it when it is loaded, i.e. when torch is first
imported: :func:`passive_openmp` must run before that (the ``atomml`` command does it first
thing), and says whether it was in time.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_quota_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), None when there is none."""
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may actually use: its affinity mask, limited by a cgroup quota
    (rounded up: a quota of 1.5 CPUs runs two threads at three quarters each)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota_cpus(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def passive_openmp() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; True when it takes effect
    (torch not yet imported, or the user's own setting is in place)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return True
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "torch" not in sys.modules


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` torch CPU threads (default: :func:`available_cpus`); returns the number.

    Raises ValueError for a number below 1.
    """
    import torch

    if threads is None:
        threads = available_cpus()
    elif threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(int(threads))
    return torch.get_num_threads()
