"""All replicas' ML forces in one call (atomml.lockstep): the meeting of threads, OpenMM
Contexts stepped side by side against the same Contexts stepped in turn, and the samplers."""

from __future__ import annotations

import functools
import threading

import numpy as np
import pytest

from atomml import lockstep


class Doubling:
    """A stand-in ML computation: energy = sum of positions, forces = 2 x positions; counts the
    batched calls and the replicas that had requests in each."""

    batch_group = "doubling"

    def __init__(self, fail_on: float | None = None):
        self.batches: list[np.ndarray] = []
        self.fail_on = fail_on

    def batch_evaluator(self, replicas):
        def evaluate(positions, cells):
            assert positions.shape[0] == replicas and cells is None
            if self.fail_on is not None and np.any(positions == self.fail_on):
                raise FloatingPointError("bad configuration")
            self.batches.append(positions.copy())
            return positions.sum(axis=(1, 2)), 2.0 * positions

        return evaluate


def test_each_member_gets_its_own_result_from_shared_calls():
    computation, group = Doubling(), lockstep.Lockstep(3)
    calls = {0: 5, 1: 5, 2: 2}  # the third replica stops early: the others go on without it

    def task(k):
        out = []
        for n in range(calls[k]):
            xyz = np.full((2, 3), 10.0 * k + n)
            energy, forces = lockstep.current().evaluate(computation, xyz, None)
            out.append((energy, forces))
        return out

    results = lockstep.side_by_side([functools.partial(task, k) for k in range(3)], group=group)
    for k, out in enumerate(results):
        assert [e for e, _ in out] == [6 * (10.0 * k + n) for n in range(calls[k])]
        for n, (_, forces) in enumerate(out):
            np.testing.assert_array_equal(forces, np.full((2, 3), 2 * (10.0 * k + n)))
    assert group.requests == 12
    assert group.calls == len(computation.batches) == 5  # one call per round, not per replica
    # replica k always in slot k; a slot with no request keeps its last positions
    last = computation.batches[-1]
    assert last[0, 0, 0] == 4.0 and last[1, 0, 0] == 14.0 and last[2, 0, 0] == 21.0
    assert lockstep.current() is None  # outside a run: evaluate on your own


def test_a_failure_reaches_the_waiting_replicas_and_stops_the_run():
    computation = Doubling(fail_on=13.0)
    stop = threading.Event()

    def task(k):
        for n in range(10):
            if stop.is_set():
                return "stopped"
            lockstep.current().evaluate(computation, np.full((1, 3), 10.0 * k + n), None)
        return "done"

    with pytest.raises(FloatingPointError, match="bad configuration"):
        lockstep.side_by_side([functools.partial(task, k) for k in range(2)], stop)
    assert stop.is_set()


def test_side_by_side_refuses_nesting_and_a_group_of_another_size():
    with pytest.raises(ValueError, match="2 slots for 3 tasks"):
        lockstep.side_by_side([lambda: None] * 3, group=lockstep.Lockstep(2))
    with pytest.raises(RuntimeError, match="do not nest"):
        lockstep.side_by_side([lambda: lockstep.side_by_side([lambda: None])])


def test_ctrl_c_in_the_calling_thread_stops_every_replica_at_its_next_safe_point():
    import _thread
    import time

    from atomml.fe import interrupt

    ended = []

    def task(k):
        try:
            for n in range(1000):
                if k == 0 and n == 5:
                    _thread.interrupt_main()  # as a Ctrl-C would: KeyboardInterrupt in the main thread
                interrupt.check()  # a safe point between bursts of dynamics
                time.sleep(0.01)
        finally:
            ended.append(k)

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        lockstep.side_by_side([functools.partial(task, k) for k in range(3)])
    assert sorted(ended) == [0, 1, 2] and time.monotonic() - start < 5.0
    interrupt.check()  # the request ended with the run


# --- OpenMM -----------------------------------------------------------------------------------

openmm = pytest.importorskip("openmm")
pytest.importorskip("openmmml")
from openmm import unit  # noqa: E402

CU4 = np.array([[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [0.0, 2.5, 0.0], [0.0, 0.0, 2.5]])  # Å


def cu_cluster_system(interpolate: bool):
    """Four Cu atoms with the demo Cu potential as an openmm-ml force (inside a CustomCVForce
    with ``interpolate``, whose copies OpenMM gives each Context), on the general path."""
    import ase
    from openmmml import MLPotential

    from atomml.interfaces.openmm import molecule_topology
    from atomml.interfaces.openmm_plugin import ensure_registered

    ensure_registered()
    molecule = molecule_topology(ase.Atoms("Cu4", positions=CU4))
    ml = MLPotential("atomml", potential="schnet-cu-emt-demo", device="cpu", precision="double", small_system=False)
    if not interpolate:
        return ml.createSystem(molecule.topology), molecule
    mm = openmm.System()
    for _ in range(4):
        mm.addParticle(63.546)
    return ml.createMixedSystem(molecule.topology, mm, [0, 1, 2, 3], interpolate=True), molecule


@pytest.mark.parametrize("interpolate", [False, True])
def test_contexts_side_by_side_follow_their_trajectories_in_turn(interpolate):
    system, molecule = cu_cluster_system(interpolate)
    starts = [molecule.positions.value_in_unit(unit.nanometer) + 0.004 * k * np.eye(4, 3) for k in range(3)]

    def contexts():
        out = []
        for k, start in enumerate(starts):
            integrator = openmm.VerletIntegrator(1.0 * unit.femtosecond)
            context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
            if interpolate:
                context.setParameter("lambda_interpolate", 0.5 + 0.25 * k)
            context.setPositions(start)
            out.append((context, integrator))
        return out

    def final(context):
        return context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)

    in_turn = contexts()
    for _, integrator in in_turn:
        integrator.step(30)
    together, group = contexts(), lockstep.Lockstep(3)
    lockstep.side_by_side([functools.partial(integrator.step, 30) for _, integrator in together], group=group)
    for (a, _), (b, _) in zip(in_turn, together):
        np.testing.assert_allclose(final(b), final(a), rtol=0, atol=1e-9)  # nm, float64 round-off
    assert group.requests >= 3 * 30 and group.calls <= group.requests / 2  # shared calls, not one each
    assert not np.allclose(final(together[0][0]), final(together[1][0]))  # each kept its own state


def test_batched_windows_sample_as_windows_in_turn(tmp_path):
    """sample_windows(batched=True) with an ML force: the same random streams and files as in
    turn (OpenMM's CPU platform on one thread in both: its random numbers depend on its thread
    count), the ML forces from shared calls (float64 round-off apart)."""
    from atomml.fe.sampling import read_u_kn, sample_windows

    cpu = openmm.Platform.getPlatformByName("CPU")
    before = cpu.getPropertyDefaultValue("Threads")
    cpu.setPropertyDefaultValue("Threads", "1")
    try:
        run_windows_both_ways(tmp_path)
    finally:
        cpu.setPropertyDefaultValue("Threads", before)
    (u_a, n_a), (u_b, n_b) = read_u_kn(tmp_path / "in_turn"), read_u_kn(tmp_path / "batched")
    assert n_a.tolist() == n_b.tolist() == [3, 3, 3]
    np.testing.assert_allclose(u_b, u_a, rtol=1e-9, atol=1e-9)


def run_windows_both_ways(tmp_path):
    from atomml.fe.sampling import sample_windows

    system, molecule = cu_cluster_system(interpolate=True)

    def set_lambda(context, value):
        context.setParameter("lambda_interpolate", value)

    for name, batched in (("in_turn", False), ("batched", True)):
        sample_windows(system, molecule.positions, [0.0, 0.5, 1.0], set_lambda, tmp_path / name, temperature=300.0,
                       samples=3, steps_per_sample=10, equilibration_steps=10, timestep_fs=1.0, platform="CPU",
                       progress=False, minimize=False, batched=batched)  # fmt: skip
