"""atomml's SchNet computes the same function as schnetpack 2.1.1's SchNet.

schnetpack lives in its own environment (.bench-venv/, made by scripts/setup_bench_env.sh: its
pins conflict with ours), so the comparison runs there in a subprocess that prints JSON
(``scripts/bench_schnet.py --check``): same weights copied into both models, float64, four
molecules and two periodic water boxes (one sheared, smaller than twice the cutoff).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH_PYTHON = ROOT / ".bench-venv" / "bin" / "python"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agreement() -> dict:
    # The setup script returns at once when the environment is up to date.
    setup = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup_bench_env.sh")], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    assert setup.returncode == 0, f"setup_bench_env.sh failed:\n{setup.stderr[-4000:]}"
    proc = subprocess.run(
        [str(BENCH_PYTHON), str(ROOT / "scripts" / "bench_schnet.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"agreement check failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def test_structures_cover_molecules_and_periodic_boxes(agreement):
    structures = agreement["structures"]
    assert agreement["dtype"] == "float64"
    assert agreement["schnetpack"] == "2.1.1"
    assert sum(not s["periodic"] for s in structures.values()) >= 3
    assert sum(s["periodic"] for s in structures.values()) >= 2
    for s in structures.values():
        # non-trivial values, so that a relative difference means something
        assert abs(s["energy_schnetpack"]) > 1e-3
        assert s["forces_max_abs"] > 1e-2


@pytest.mark.parametrize("quantity", ["energy", "forces"])
def test_energies_and_forces_agree_in_float64(agreement, quantity):
    for name, s in agreement["structures"].items():
        diff = s[f"{quantity}_rel_diff"]
        assert 0.0 <= diff < 1e-6, f"{name}: {quantity} relative difference {diff:.3g}"


def test_architecture_exact_with_the_same_radial_buffers(agreement):
    """The ~1e-7 left above comes from the fixed Gaussian buffers, which both codes store in
    float32 but round differently; with schnetpack given atomml's buffers, the two agree to
    float64 round-off."""
    assert agreement["rbf_offsets_max_abs_diff"] < 1e-6
    assert agreement["rbf_coefficient_max_rel_diff"] < 1e-6
    synced = agreement["synced_radial_buffers"]
    assert synced["max_energy_rel_diff"] < 1e-12
    assert synced["max_forces_rel_diff"] < 1e-12
