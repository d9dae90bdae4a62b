"""CPU threads: the default from the CPUs a process may use, and passive OpenMP for the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from atomml.threads import available_cpus, set_threads


def _affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1), ("400000000 100000", None)],
)
def test_available_cpus_follows_the_affinity_and_the_cgroup_quota(tmp_path, cpu_max, expected):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    affinity = _affinity()
    assert available_cpus(tmp_path) == (affinity if expected is None else min(affinity, expected))


def test_available_cpus_reads_cgroup_v1(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert available_cpus(tmp_path) == _affinity()


def test_set_threads():
    import torch

    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
        assert set_threads() == available_cpus()
        with pytest.raises(ValueError, match="--threads must be at least 1"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_the_command_makes_openmp_passive_before_torch_loads():
    code = (
        "import json, os, sys; import atomml; light = 'torch' not in sys.modules; import atomml.cli as cli; "
        "print(json.dumps([light, 'torch' not in sys.modules, cli.OPENMP_PASSIVE, os.environ['OMP_WAIT_POLICY']]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout) == [True, True, True, "PASSIVE"]
    # a policy the user chose is kept
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout)[3] == "ACTIVE"
