"""Window sampling and Hamiltonian replica exchange on a 3-D harmonic oscillator (exact answer),
with resume after a kill."""

from __future__ import annotations

import functools

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
pytest.importorskip("pymbar")
from openmm import unit  # noqa: E402

from atomml.fe import estimators as est  # noqa: E402
from atomml.fe.sampling import (  # noqa: E402
    read_u_kn,
    replica_exchange_statistics,
    sample_replica_exchange,
    sample_windows,
    sampling_speed,
)

K0, K1 = 200.0, 800.0  # kJ/mol/nm^2
T = 300.0
STATES = [0.0, 0.25, 0.5, 0.75, 1.0]


def one_particle(energy: str, **parameters: float):
    """A 12 amu particle in the external potential ``energy`` with these global parameters."""
    system = openmm.System()
    system.addParticle(12.0)
    force = openmm.CustomExternalForce(energy)
    for name, value in parameters.items():
        force.addGlobalParameter(name, value)
    force.addParticle(0, [])
    system.addForce(force)
    return system


def oscillator():
    return one_particle("0.5*(k0 + lambda*(k1 - k0))*(x^2 + y^2 + z^2)", **{"lambda": 0.0, "k0": K0, "k1": K1})


def set_lambda(context, lam):
    context.setParameter("lambda", lam)


def run(folder, samples, batched=False, platform="Reference"):
    # 0.5 ps between samples: longer than the oscillator's relaxation, so MBAR's error (which takes
    # the samples as independent) is right; at 0.1 ps the z-scores over seeds have an rms of ~2
    return sample_windows(oscillator(), [[0.01, 0.0, 0.0]] * unit.nanometer, STATES, set_lambda, folder,
                          temperature=T, samples=samples, steps_per_sample=250, equilibration_steps=200,
                          timestep_fs=2.0, friction_per_ps=10.0, platform=platform, checkpoint_every=5,
                          progress=False, batched=batched)  # fmt: skip


@pytest.mark.parametrize("batched", [False, True], ids=["in_turn", "batched"])
def test_windows_give_exact_free_energy_and_resume(tmp_path, batched):
    run = functools.partial(globals()["run"], batched=batched)
    run(tmp_path, 60)
    u_kn, n_k = read_u_kn(tmp_path)
    assert n_k.tolist() == [60] * 5
    # a kill in the middle of writing: half a row at the end of window 2; then extend the run
    with open(tmp_path / "window_2.u", "ab") as f:
        f.write(b"\x00" * 12)
    assert read_u_kn(tmp_path)[1].tolist() == [60] * 5, "half-written rows are not read"
    run(tmp_path, 150)
    u_kn2, n_k2 = read_u_kn(tmp_path)
    assert n_k2.tolist() == [150] * 5
    for k in range(5):  # the first 60 samples of every window are kept as they were
        start, start2 = 60 * k, 150 * k
        np.testing.assert_array_equal(u_kn2[:, start2 : start2 + 60], u_kn[:, start : start + 60])
    result = est.mbar(u_kn2, n_k2, T).result
    exact = 1.5 * np.log(K1 / K0)  # 3-D: ln(Z0/Z1) = (3/2) ln(k1/k0)
    assert abs(result.value_kt - exact) < 4 * result.error_kt, (result, exact)


def test_other_settings_are_refused(tmp_path):
    run(tmp_path, 5)
    with pytest.raises(ValueError, match="other settings"):
        sample_windows(oscillator(), [[0.01, 0.0, 0.0]] * unit.nanometer, STATES, set_lambda, tmp_path,
                       temperature=310.0, samples=5, platform="Reference", progress=False)  # fmt: skip


# --- Hamiltonian replica exchange -----------------------------------------------------------


def run_hrex(folder, samples, states=STATES, system=None, set_state=set_lambda, steps_per_sample=50, callback=None,
             batched=False, platform="Reference"):  # fmt: skip
    return sample_replica_exchange(system or oscillator(), [[0.01, 0.0, 0.0]] * unit.nanometer, states, set_state,
                                   folder, temperature=T, samples=samples, steps_per_sample=steps_per_sample,
                                   equilibration_steps=200, timestep_fs=2.0, friction_per_ps=10.0,
                                   platform=platform, seed=3, progress=False, callback=callback,
                                   batched=batched)  # fmt: skip


def shifted_oscillator():
    """The K0 oscillator with its centre moved along x by the global parameter ``shift`` (nm)."""
    return one_particle("0.5*k0*((x - shift)^2 + y^2 + z^2)", shift=0.0, k0=K0)


def set_shift(context, shift):
    context.setParameter("shift", shift)


@pytest.mark.parametrize("batched", [False, True], ids=["in_turn", "batched"])
def test_replica_exchange_gives_exact_free_energy(tmp_path, batched):
    # 0.5 ps between samples, longer than the oscillator's relaxation (~0.25 ps for its energy),
    # so MBAR's error, which takes the samples as independent, is right (at 0.1 ps the z-scores
    # over seeds have an rms of ~2)
    run_hrex(tmp_path, 150, steps_per_sample=250, batched=batched)
    u_kn, n_k = read_u_kn(tmp_path)
    assert n_k.tolist() == [150] * 5
    result = est.mbar(u_kn, n_k, T).result
    exact = 1.5 * np.log(K1 / K0)
    assert abs(result.value_kt - exact) < 4 * result.error_kt, (result, exact)
    stats = replica_exchange_statistics(tmp_path)
    assert stats["replica_of_state"].shape == (150, 5)
    assert all(sorted(row) == list(range(5)) for row in stats["replica_of_state"])  # permutations
    assert stats["attempts"].tolist() == [75, 75, 75, 75]  # even pairs on even iterations, odd on odd
    assert np.all(stats["acceptance"] > 0.3) and stats["round_trips"] > 0
    speed = sampling_speed(tmp_path)
    assert speed.shape == (5,) and np.all(np.isfinite(speed)) and np.all(speed > 0)


def test_window_speed_is_recorded(tmp_path):
    run(tmp_path, 5)
    speed = sampling_speed(tmp_path)
    assert speed.shape == (5,) and np.all(np.isfinite(speed)) and np.all(speed > 0)


def test_exchange_acceptance_obeys_detailed_balance(tmp_path):
    # identical states: every swap leaves the weights unchanged, so every one is accepted
    run_hrex(tmp_path / "same", 20, states=[0.5, 0.5, 0.5])
    assert replica_exchange_statistics(tmp_path / "same")["acceptance"].tolist() == [1.0, 1.0]
    # centres 2 nm apart (k d^2 = 320 kT): no overlap, no swap
    run_hrex(tmp_path / "apart", 20, states=[0.0, 2.0], system=shifted_oscillator(), set_state=set_shift)
    assert replica_exchange_statistics(tmp_path / "apart")["acceptance"].tolist() == [0.0]
    # centres d apart: delta = beta k d (x_b - x_a) is Gaussian with mean m = beta k d^2 and variance
    # 2 m, so the mean acceptance of min(1, exp(-delta)) is erfc(sqrt(m) / 2) exactly
    from scipy.special import erfc

    m = 2.0
    d = np.sqrt(m * est.FreeEnergy(0, 0, T, "").kt_in_kj_per_mol / K0)
    run_hrex(tmp_path / "near", 800, states=[0.0, d], system=shifted_oscillator(), set_state=set_shift,
             steps_per_sample=200)  # fmt: skip
    stats = replica_exchange_statistics(tmp_path / "near")
    outcomes = np.fromfile(tmp_path / "near" / "exchanges.i8", dtype=np.int8)[::2].astype(float)  # attempts only
    n_eff = outcomes.size / est.statistical_inefficiency(outcomes)
    expected = erfc(np.sqrt(m) / 2)
    sigma = np.sqrt(expected * (1 - expected) / n_eff)
    assert abs(stats["acceptance"][0] - expected) < 4 * sigma, (stats["acceptance"][0], expected, sigma)


class Killed(Exception):
    pass


# batched: a Context per state, on the CPU platform, whose random streams are the Contexts' own
# (the Reference platform's is one stream for all, drawn from in whatever order the threads run)
@pytest.mark.parametrize("batched", [False, True], ids=["in_turn", "batched"])
def test_replica_exchange_resumes_exactly_after_a_kill(tmp_path, batched, one_openmm_thread):
    run_hrex = functools.partial(globals()["run_hrex"], batched=batched, platform="CPU" if batched else "Reference")
    run_hrex(tmp_path / "straight", 12)
    seen = []

    def kill_after_5(done):
        seen.append(read_u_kn(tmp_path / "killed")[1].tolist())  # readable while it runs
        if done == 5:
            raise Killed

    with pytest.raises(Killed):
        run_hrex(tmp_path / "killed", 12, callback=kill_after_5)
    assert seen == [[n] * 5 for n in range(1, 6)]
    for name in ("window_1.u", "replicas.i32", "exchanges.i8"):  # a kill in the middle of writing
        with open(tmp_path / "killed" / name, "ab") as f:
            f.write(b"\x01" * 5)
    run_hrex(tmp_path / "killed", 12)
    (u_a, n_a), (u_b, n_b) = read_u_kn(tmp_path / "straight"), read_u_kn(tmp_path / "killed")
    assert n_a.tolist() == n_b.tolist() == [12] * 5
    np.testing.assert_array_equal(u_a, u_b)  # bitwise: the integrator's random state is restored too
    a, b = replica_exchange_statistics(tmp_path / "straight"), replica_exchange_statistics(tmp_path / "killed")
    np.testing.assert_array_equal(a["replica_of_state"], b["replica_of_state"])
    run_hrex(tmp_path / "killed", 12)  # complete: nothing new
    np.testing.assert_array_equal(read_u_kn(tmp_path / "killed")[0], u_a)
    with pytest.raises(ValueError, match="other settings"):  # not a windows folder
        run(tmp_path / "killed", 12)


@pytest.fixture
def one_openmm_thread():
    """OpenMM's CPU platform on one thread: the Contexts side by side get one each (their share of
    the threads), and the CPU platform's random numbers depend on its thread count."""
    cpu = openmm.Platform.getPlatformByName("CPU")
    before = cpu.getPropertyDefaultValue("Threads")
    cpu.setPropertyDefaultValue("Threads", "1")
    yield
    cpu.setPropertyDefaultValue("Threads", before)


def test_batched_windows_write_the_files_of_windows_in_turn(tmp_path, one_openmm_thread):
    """Side by side, each window keeps its own Context and random stream (CPU platform): the
    samples are those of the windows one after the other, bit for bit."""
    run(tmp_path / "in_turn", 6, platform="CPU")
    run(tmp_path / "batched", 6, batched=True, platform="CPU")
    for k in range(len(STATES)):
        name = f"window_{k}.u"
        assert (tmp_path / "batched" / name).read_bytes() == (tmp_path / "in_turn" / name).read_bytes()


def test_replica_exchange_resumed_in_the_other_mode_keeps_its_samples(tmp_path):
    run_hrex(tmp_path, 6)
    kept = read_u_kn(tmp_path)[0]
    run_hrex(tmp_path, 10, batched=True)  # fresh random streams, the configurations carried on
    u_kn, n_k = read_u_kn(tmp_path)
    assert n_k.tolist() == [10] * 5
    for k in range(5):
        np.testing.assert_array_equal(u_kn[:, 10 * k : 10 * k + 6], kept[:, 6 * k : 6 * k + 6])
    run_hrex(tmp_path, 12)  # and back
    assert read_u_kn(tmp_path)[1].tolist() == [12] * 5
    assert replica_exchange_statistics(tmp_path)["replica_of_state"].shape == (12, 5)


# --- what a leg still costs ---------------------------------------------------------------


def recorded_steps(folder, sampler):
    """The steps of dynamics a sampler recorded in its checkpoints (equilibration included)."""
    import json

    if sampler == "replica_exchange":
        with np.load(folder / "replica_exchange.npz") as data:
            return int(sum(json.loads(data["meta"].item())["dynamics_steps"]))
    return sum(json.loads((folder / f"window_{k}.json").read_text())["dynamics_steps"] for k in range(len(STATES)))


@pytest.mark.parametrize("sampler", ["windows", "replica_exchange"])
def test_remaining_work_is_what_the_sampler_then_runs(tmp_path, sampler):
    """The work left in a folder (fresh, part-sampled, complete) is the dynamics the sampler's own
    counters then record, and the samples it then adds."""
    from atomml.fe.cost import remaining_work

    def work(samples):
        return remaining_work(tmp_path, len(STATES), samples, 250 if sampler == "windows" else 50, 200, sampler)

    def sample(samples):
        return run(tmp_path, samples) if sampler == "windows" else run_hrex(tmp_path, samples)

    fresh = work(8)
    sample(3)
    part, after_3 = work(8), recorded_steps(tmp_path, sampler)
    assert fresh.steps == after_3 + part.steps and fresh.evaluations == 8 * len(STATES)
    assert part.evaluations == 5 * len(STATES)
    sample(8)
    assert recorded_steps(tmp_path, sampler) == fresh.steps and work(8).done and not work(9).done
    assert read_u_kn(tmp_path)[1].tolist() == [8] * len(STATES)


def test_leg_clock_tells_the_time_left_after_the_first_samples_and_on_the_way(tmp_path):
    import functools

    from atomml.fe.cost import LegClock, chain, remaining_work

    lines, calls = [], []
    work = functools.partial(remaining_work, tmp_path, len(STATES), 20, 50, 200, "replica_exchange")
    clock = LegClock("test leg", work, lines.append, later_seconds=7200.0, after_seconds=0.0)
    run_hrex(tmp_path, 20, callback=chain(calls.append, None, clock))
    assert calls == list(range(1, 21))
    # after the first iteration (5 x 200 equilibration + 5 x 50 of 5 x 1200 steps), then at a
    # quarter, half and three quarters of the steps
    assert [line.split(" of its steps")[0] for line in lines] == ["test leg: 21%", "test leg: 25%", "test leg: 50%",
                                                                   "test leg: 75%"], lines  # fmt: skip
    assert all("this leg about " in line and "the run about 2 h" in line for line in lines)


def test_chunked_steps_follow_the_same_trajectory():
    """atomml.fe.interrupt.step (short bursts, so that Ctrl-C is taken promptly) is step(n)."""
    from atomml.fe import interrupt

    positions = []
    for stepper in (lambda integrator, n: integrator.step(n), interrupt.step):
        integrator = openmm.LangevinMiddleIntegrator(T * unit.kelvin, 10.0 / unit.picosecond, 2.0 * unit.femtosecond)
        integrator.setRandomNumberSeed(5)
        context = openmm.Context(oscillator(), integrator, openmm.Platform.getPlatformByName("Reference"))
        context.setPositions([[0.01, 0.0, 0.0]] * unit.nanometer)
        context.setVelocitiesToTemperature(T * unit.kelvin, 5)
        stepper(integrator, 2 * interrupt.CHUNK_STEPS + 37)
        positions.append(context.getState(getPositions=True).getPositions(asNumpy=True)._value)
    np.testing.assert_array_equal(positions[0], positions[1])
