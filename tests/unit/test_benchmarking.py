"""Measurement helpers of the benchmark programs (atomml.benchmarking)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from atomml.benchmarking import measure_call, pool_times, source_state, spawn_worker, wait_for_memory


def test_measure_call_time_and_memory():
    calls = []

    def call():
        calls.append(1)
        return torch.ones(3), torch.tensor([[1.0, -2.0, 0.5]])

    timed = measure_call(call, warmup=2, repeats=3)
    assert len(calls) == 5 and len(timed["seconds_all"]) == 3
    assert timed["seconds_min"] <= timed["seconds_median"]
    assert timed["energy_sum"] == 3.0 and timed["forces_abs_max"] == 2.0
    with pytest.raises(ValueError, match="measure"):
        measure_call(call, warmup=0, repeats=1, measure="speed")


MEMORY_WORKER = """
import json, torch
from atomml.benchmarking import measure_call

def call():
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    return block[:1], block[:3].reshape(1, 3)

print(json.dumps(measure_call(call, warmup=1, repeats=1, measure="memory")))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory from /proc")
def test_memory_of_one_call_counts_its_allocation():
    # In a fresh worker, as the benchmarks measure memory: inside the long pytest process other
    # threads and the heap left by earlier tests can give pages back during the call, and the
    # peak then reads as the RSS before it (this failed once in CI with extra_mib == 0.0).
    memory = spawn_worker(["-c", MEMORY_WORKER], measure="memory", label={"peer": "ones"})
    assert "error" not in memory, memory
    assert memory["peak_reset"]
    assert 60 < memory["extra_mib"] < 200
    assert memory["energy_sum"] == 1.0 and memory["forces_abs_max"] == 1.0


def test_pool_times_keeps_every_call_and_drops_failures():
    a = {"seconds_all": [1.0, 3.0], "seconds_median": 2.0, "seconds_min": 1.0, "energy_sum": 5.0}
    b = {"seconds_all": [0.5], "seconds_median": 0.5, "seconds_min": 0.5, "energy_sum": 5.0}
    pooled = pool_times(a, b)
    assert pooled["seconds_all"] == [1.0, 3.0, 0.5] and pooled["seconds_median"] == 1.0 and pooled["seconds_min"] == 0.5
    assert pool_times(None, b) is b and pool_times(a, {"error": "x"}) is a and pool_times({"error": "x"}, b) is b


def test_spawn_worker_reads_the_last_json_line(capsys):
    out = spawn_worker(["-c", "print('noise'); print('{\"seconds_median\": 0.25}')"], measure="time", label={"peer": "p"})
    assert out == {"seconds_median": 0.25}
    assert "0.250 s" in capsys.readouterr().err
    failed = spawn_worker(["-c", "raise SystemExit(3)"], measure="memory", label={"peer": "p"})
    assert failed == {"error": "worker exited with 3", "peer": "p"}
    env = spawn_worker(["-c", "import json, os; print(json.dumps({'t': os.environ['MALLOC_ARENA_MAX']}))"],
                       measure="memory", label={})  # fmt: skip
    assert env == {"t": "2"}


def test_wait_for_memory_and_source_state():
    assert wait_for_memory("tiny", n_atoms=1, mib_per_atom=0.0, max_wait_s=0.0)
    assert not wait_for_memory("huge", n_atoms=10**12, mib_per_atom=1.0, max_wait_s=0.0)
    state = source_state()
    assert set(state) == {"commit", "atomml_uncommitted_changes", "atomml_diff_sha256"}
    json.dumps(state)


def test_emit_json_prints_and_writes(tmp_path, capsys):
    from atomml.benchmarking import emit_json

    emit_json({"a": [1, 2]}, tmp_path / "out.json")
    printed = capsys.readouterr().out
    assert json.loads(printed) == {"a": [1, 2]} == json.loads((tmp_path / "out.json").read_text())
    assert printed.count("\n") > 1  # indented for people
    emit_json({"a": 1}, worker=True)
    assert capsys.readouterr().out == '{"a": 1}\n'  # one line: spawn_worker reads the last line
