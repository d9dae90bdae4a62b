"""Fixtures shared by the unit and integration tests.

- ``dtype``: each test that takes it runs in float32 and float64 (``tolerance`` gives the
  battery's (rtol, atol) for it: ``atomml.testing.TOLERANCES``);
- ``device``: the CPU, and CUDA where a GPU is present, so the same tests check both.

Slow checks carry ``@pytest.mark.slow`` and run with ``./test.sh -m slow``.
"""

from __future__ import annotations

import os

# As the atomml command runs (atomml.threads.passive_openmp), set before torch loads OpenMP: with
# OpenMP's spinning threads, an ML force called back from inside OpenMM's CPU platform waits
# ~0.3 s per call for a CPU on a 2-core machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# SciPy's OpenBLAS threads otherwise spin against torch's: a 3x3 expm (ASE's FrechetCellFilter
# calls ten per step) took ~10 ms instead of ~0.1 ms on a 2-core machine
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from atomml.testing import TOLERANCES

# One torch thread in the test process (subprocesses keep their own defaults): the suite's
# structures are small, and on the 2-core CI machine a second intra-op thread made a batch of
# molecules 1.8x slower, not faster (scripts/bench_screen.py). Tests that need a count set it.
torch.set_num_threads(1)

# The calculator and the OpenMM force move a molecule to the compiled small-system path on their
# own after a few calls (atomml.fast); a compile takes ~1 min per molecule size, so the suite
# keeps that automatic choice off and tests/unit/test_fast.py switches it on where it is tested.
os.environ.setdefault("ATOMML_SMALL_SYSTEM", "0")

DTYPES = (torch.float32, torch.float64)
DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture
def tolerance(dtype) -> tuple[float, float]:
    return TOLERANCES[dtype]
