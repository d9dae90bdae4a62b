"""Ctrl-C during a free-energy run: the first is taken at the next safe point, a second at once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from atomml.fe import interrupt
from atomml.fe.cost import duration


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)  # the handler runs in this (the main) thread at the next bytecode


def test_first_ctrl_c_waits_for_a_safe_point_and_a_second_one_does_not(capsys):
    with interrupt.deferred():
        ctrl_c()  # no KeyboardInterrupt here: only a flag
        assert "stopping at the next safe point" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()
    interrupt.check()  # the flag goes with the block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class Integrator:
    """Records the bursts it is asked for; a Ctrl-C arrives during the second."""

    def __init__(self) -> None:
        self.bursts: list[int] = []

    def step(self, steps: int) -> None:
        self.bursts.append(steps)
        if len(self.bursts) == 2:
            ctrl_c()


def test_dynamics_runs_in_bursts_and_stops_after_the_one_a_ctrl_c_arrives_in():
    integrator = Integrator()
    with interrupt.deferred(), pytest.raises(KeyboardInterrupt):
        interrupt.step(integrator, 10 * interrupt.CHUNK_STEPS)
    assert integrator.bursts == [interrupt.CHUNK_STEPS] * 2
    bursts: list[int] = []
    quiet = type("Quiet", (), {"step": staticmethod(bursts.append)})()  # no Ctrl-C
    interrupt.step(quiet, 2 * interrupt.CHUNK_STEPS + 7)
    assert bursts == [interrupt.CHUNK_STEPS, interrupt.CHUNK_STEPS, 7]


@pytest.mark.parametrize("seconds, text", [(12.4, "12 s"), (600, "10 min"), (3 * 3600 + 5 * 60, "3 h 05 min")])
def test_durations_read_as_people_say_them(seconds, text):
    assert duration(seconds) == text
