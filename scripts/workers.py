"""The data generators' worker pool: jobs in spawned processes, one thread each, with progress.

Shared by ``generate_metals_data.py``, ``generate_organic_data.py`` and
``generate_organic_extra.py`` (imported from their ``main``: the scripts' folder is on the path
when a script runs).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm


def run_jobs(function: Callable[[Any], Any], jobs: Sequence[Any], workers: int, unit: str,
             report: Callable[[Any], None] | None = None) -> float:
    """Run ``function`` over ``jobs`` in ``workers`` processes; ``report`` sees each result as it
    comes. Returns the elapsed seconds."""
    # One OpenMP/BLAS thread per worker: the cores are shared out by processes, and a fixed
    # reduction order keeps the MD bit-for-bit reproducible. Spawned workers start with this
    # environment, so their OpenMP runtime (loaded with tblite or numpy) reads it.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    # On SIGTERM (timeout, kill) leave through the pool's context manager, which ends the workers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    start = time.perf_counter()
    if jobs:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for result in tqdm(pool.imap_unordered(function, jobs), total=len(jobs), unit=unit):
                if report is not None:
                    report(result)
    return time.perf_counter() - start
