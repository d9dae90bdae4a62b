"""Attacks on the output lock: a second writer, a killed owner, a lock file from nobody."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from atomml.errors import AtomMLError, OutputInUseError
from atomml.locks import lock_path, output_lock, owner

HOLD = "import sys, time\nfrom atomml.locks import output_lock\nwith output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"


def _holder(output):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_and_named(tmp_path):
    out = tmp_path / "md.extxyz"
    proc = _holder(out)
    try:
        with pytest.raises(OutputInUseError, match=rf"process {proc.pid} .*wait for that run") as info:
            with output_lock(out, "MD trajectory"):
                pass
        assert isinstance(info.value, AtomMLError) and str(out) in str(info.value)
        assert owner(out)["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_same_process_cannot_hold_one_output_twice(tmp_path):
    with output_lock(tmp_path / "run"), pytest.raises(OutputInUseError):
        with output_lock(tmp_path / "run"):
            pass


def test_lock_of_a_killed_owner_is_stale_and_taken_over(tmp_path):
    out = tmp_path / "md.extxyz"
    proc = _holder(out)
    proc.kill()
    proc.wait()
    assert lock_path(out).exists()  # SIGKILL left the file behind ...
    assert owner(out) is None  # ... but nobody holds it
    with output_lock(out):
        assert owner(out)["pid"] == os.getpid()
    assert not lock_path(out).exists()


def test_lock_file_with_garbage_and_no_owner_is_taken_over(tmp_path):
    out = tmp_path / "train"
    lock_path(out).write_text("not json, pid 1")
    with output_lock(out):
        assert owner(out)["pid"] == os.getpid()


def test_lock_released_when_the_block_raises(tmp_path):
    out = tmp_path / "x"
    with pytest.raises(KeyError), output_lock(out):
        raise KeyError("boom")
    with output_lock(out):
        pass


def test_many_processes_race_for_one_output_exactly_one_wins(tmp_path):
    out = tmp_path / "race"
    code = (
        "import sys, time\nfrom atomml.locks import output_lock\nfrom atomml.errors import OutputInUseError\n"
        "time.sleep(float(sys.argv[2]) - time.time())\n"
        "try:\n    with output_lock(sys.argv[1]):\n        time.sleep(2); print('won')\n"
        "except OutputInUseError:\n    print('refused')\n"
    )
    start = time.time() + 4
    procs = [subprocess.Popen([sys.executable, "-c", code, str(out), str(start)], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    results = sorted(p.communicate()[0].strip() for p in procs)
    assert results == ["refused", "refused", "refused", "won"]
