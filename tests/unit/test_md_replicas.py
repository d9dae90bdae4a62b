"""K replicas of one molecule in one batched call per step (issue 16): batching changes nothing,
the integrators are ASE's (velocity Verlet, Langevin BAOAB) on every replica, NVE conserves
energy, the thermostat samples the target temperature, a killed run resumes bit for bit, and
``atomml md --replicas K`` writes K trajectories that ASE reads."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.cluster import Icosahedron
from ase.constraints import FixAtoms
from ase.io import read

from atomml import units
from atomml.cli import main
from atomml.dynamics import MDSettings
from atomml.dynamics.frames import UnstableRunError
from atomml.dynamics.replicas import replica_trajectories, run_replicas
from atomml.dynamics.resume import decode
from atomml.errors import InputError, ResumeMismatchError
from atomml.fast import GeneralPath
from atomml.interfaces.ase import AtomMLCalculator
from atomml.models import create
from atomml.potential_file import load_potential

NVT = MDSettings(ensemble="nvt", temperature=300.0, timestep_fs=2.0, steps=20, interval=5, friction_per_fs=0.02, seed=7)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: more threads only add overhead, and contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _settings(**changes) -> MDSettings:
    return MDSettings(**{**NVT.__dict__, **changes})


def _cluster() -> Atoms:
    return Icosahedron("Cu", 2)  # 13 atoms, a molecule in vacuum


def _potential():
    torch.manual_seed(0)
    potential = create("schnet", elements=[29], cutoff=4.0, n_atom_basis=8, n_filters=8, n_interactions=1, n_rbf=6)
    potential.energy_scale.fill_(0.05)  # a weak random potential keeps this small MD well-behaved
    return potential


def _evaluator(potential, replicas: int) -> GeneralPath:
    # float64 and skin=0: forces are a function of the positions alone (no neighbour-list history)
    return GeneralPath(potential, _cluster().numbers, replicas=replicas, dtype=torch.float64, skin=0.0)


def _record(trajectory):
    return json.loads(trajectory.with_name(trajectory.name + ".state.json").read_text())


def _state(trajectory) -> dict[str, np.ndarray]:
    state = _record(trajectory)["state"]
    return {"positions": decode(state["positions"]), "momenta": decode(state["momenta"])}


def _run(potential, settings, trajectory, replicas, **options):
    return run_replicas(_cluster(), _evaluator(potential, replicas), settings, trajectory, progress=False,
                        replicas=replicas, **options)  # fmt: skip


# --- batching changes nothing -------------------------------------------------------------------


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_replica_k_of_a_batch_is_the_run_of_that_replica_alone(tmp_path, ensemble):
    """Replica k of a K = 3 run follows the one-replica run with replica k's stream
    (``first_replica=k``), to float64 round-off; the three replicas differ from each other."""
    potential, settings = _potential(), _settings(ensemble=ensemble)
    batch = _run(potential, settings, tmp_path / "batch.extxyz", 3)
    assert [p.name for p in batch.trajectories] == ["batch.r0.extxyz", "batch.r1.extxyz", "batch.r2.extxyz"]
    together = _state(tmp_path / "batch.extxyz")
    for k in range(3):
        alone = _run(potential, settings, tmp_path / f"alone{k}.extxyz", 1, first_replica=k)
        assert alone.trajectories == [tmp_path / f"alone{k}.r{k}.extxyz"]
        state = _state(tmp_path / f"alone{k}.extxyz")
        for key in ("positions", "momenta"):
            np.testing.assert_allclose(state[key][0], together[key][k], rtol=0, atol=1e-10, err_msg=key)
        frames, batch_frames = read(alone.trajectory, ":"), read(batch.trajectories[k], ":")
        assert [f.info["step"] for f in frames] == [f.info["step"] for f in batch_frames] == [0, 5, 10, 15, 20]
        assert all(f.info["replica"] == k for f in frames + batch_frames)
        assert np.array_equal(frames[0].get_momenta(), batch_frames[0].get_momenta())  # the same initial draw
    assert not np.allclose(together["positions"][0], together["positions"][1], atol=1e-3)


# --- the integrators: ASE's, replica by replica -----------------------------------------------


def _ase_reference(potential, trajectory, settings, k):
    """Replica ``k`` propagated by ASE's own integrator from the state recorded at step 0 (its
    positions, momenta and random stream): velocity Verlet, or LangevinBAOAB with FixCom."""
    from ase import units as ase_units
    from ase.constraints import FixCom
    from ase.md.langevinbaoab import LangevinBAOAB
    from ase.md.verlet import VelocityVerlet

    record = _record(trajectory)
    assert record["step"] == 0
    atoms = _cluster()
    atoms.set_positions(decode(record["state"]["positions"])[k])
    atoms.set_momenta(decode(record["state"]["momenta"])[k], apply_constraint=False)
    atoms.calc = AtomMLCalculator(potential, device="cpu", dtype=torch.float64, skin=0.0, small_system=False)
    dt = settings.timestep_fs * units.FS
    if settings.ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep=dt)
    else:
        rng = np.random.default_rng()
        rng.bit_generator.state = record["state"]["rng"][k]
        atoms.set_constraint(FixCom())
        # atomml's Boltzmann constant is CODATA 2018's, ASE's by default 2014's (4e-7 apart): the
        # same kT, in eV, for the noise
        temperature = settings.temperature * units.BOLTZMANN_EV_PER_K / ase_units.kB
        dyn = LangevinBAOAB(atoms, timestep=dt, temperature_K=temperature, rng=rng,
                            T_tau=units.FS / settings.friction_per_fs)  # fmt: skip
    dyn.run(settings.steps)
    return atoms.get_positions(), atoms.get_momenta()


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_every_replica_follows_ases_integrator(tmp_path, ensemble):
    """NVE is ASE's VelocityVerlet and NVT ASE's LangevinBAOAB (with FixCom, as this engine
    keeps each replica's centre of mass at rest) driven by the same random numbers: another
    implementation of the same integrator, units and time step included."""
    potential, settings = _potential(), _settings(ensemble=ensemble, steps=30, interval=30)
    _run(potential, _settings(ensemble=ensemble, steps=0), tmp_path / "start.extxyz", 2)
    _run(potential, settings, tmp_path / "md.extxyz", 2)
    state = _state(tmp_path / "md.extxyz")
    for k in range(2):
        positions, momenta = _ase_reference(potential, tmp_path / "start.extxyz", settings, k)
        np.testing.assert_allclose(state["positions"][k], positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(state["momenta"][k], momenta, rtol=0, atol=1e-9)


def test_nve_conserves_energy_to_second_order_in_the_time_step(tmp_path):
    """0.3 ps of a trained potential at 2 fs (its recommended step) and at 1 fs, from the same
    start (the same streams): every replica's total energy stays within a small fraction of kT
    of its start, without drift, and its excursions shrink four-fold as the step halves, as a
    second-order integrator's do."""
    potential = load_potential("schnet-cu-emt-demo")
    kt = units.BOLTZMANN_EV_PER_K * NVT.temperature
    excursions = {}
    for dt, steps, interval in ((2.0, 150, 5), (1.0, 300, 10)):
        settings = _settings(ensemble="nve", timestep_fs=dt, steps=steps, interval=interval)
        evaluator = GeneralPath(potential, _cluster().numbers, replicas=2, dtype=torch.float64)
        result = run_replicas(_cluster(), evaluator, settings, tmp_path / f"{dt}.extxyz", progress=False, replicas=2)
        log = np.loadtxt(result.log)
        totals = [log[log[:, 6] == k][:, 4] for k in range(2)]
        assert all(len(total) == 31 for total in totals)  # frames at the same times
        excursions[dt] = np.array([np.abs(total - total[0]).max() for total in totals]) / kt
        assert abs(result.energy_drift_eV_per_atom_per_ps) < 1e-3 * kt
    assert (excursions[2.0] < 0.05).all() and (excursions[1.0] < 0.015).all(), excursions
    ratio = excursions[2.0] / excursions[1.0]
    assert ((3.0 < ratio) & (ratio < 5.0)).all(), ratio


class _Springs:
    """A harmonic molecule: a spring of stiffness ``k`` (eV/Å²) between every pair of atoms,
    E = k/2 sum_{i<j} |r_i - r_j|². Translation and rotation invariant, with 3N - 3 harmonic
    modes, so equipartition gives <E_pot> = (3N - 3) kT / 2 exactly, and BAOAB samples a
    harmonic system's configurations without time-step error (Leimkuhler & Matthews 2013)."""

    def __init__(self, n_atoms: int, replicas: int, k: float = 1.0):
        self.n_atoms, self.replicas, self.k = n_atoms, replicas, k
        self.energies: list[np.ndarray] = []  # every call's, for the averages

    def __call__(self, positions):
        positions = np.asarray(positions).reshape(self.replicas, self.n_atoms, 3)
        centred = positions - positions.mean(axis=1, keepdims=True)
        # sum_{i<j} |r_i - r_j|² = N sum_i |r_i - mean|²
        energies = 0.5 * self.k * self.n_atoms * np.einsum("kni,kni->k", centred, centred)
        self.energies.append(energies)
        return energies, -self.k * self.n_atoms * centred


def test_the_langevin_thermostat_samples_the_target_temperature(tmp_path):
    """16 replicas of a 4-atom harmonic molecule at 300 K (omega dt = 0.06): the kinetic
    temperature (3N - 3 degrees of freedom) and the potential energy ((3N - 3) kT / 2) average
    to their canonical values, within 4 standard errors (taken from the spread between the
    independent replicas; here 304.5 +- 3.6 K and 4.60 +- 0.07 kT). Counting 3N degrees of
    freedom (228 K), or leaving the centre of mass to the thermostat (404 K), fails it."""
    n, replicas = 4, 16
    atoms = Atoms("C4", positions=[[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]])  # near the springs' rest
    springs = _Springs(n, replicas)
    settings = _settings(temperature=300.0, timestep_fs=1.0, steps=2000, interval=25, friction_per_fs=0.05)
    result = run_replicas(atoms, springs, settings, tmp_path / "md.extxyz", progress=False, replicas=replicas)
    log = np.loadtxt(result.log)
    burn_in = 200  # steps: several thermostat times (1/friction = 20 fs)
    kt = units.BOLTZMANN_EV_PER_K * settings.temperature
    kinetic = np.array([log[(log[:, 6] == k) & (log[:, 0] >= burn_in)][:, 5].mean() for k in range(replicas)])
    potential = np.stack(springs.energies)[burn_in:].mean(axis=0) / kt  # call i: the forces at step i
    for means, target in ((kinetic, settings.temperature), (potential, (3 * n - 3) / 2)):
        error = means.std(ddof=1) / np.sqrt(replicas)
        assert error < 0.02 * target  # the test resolves a 2 % error (8 % at 4 standard errors)
        assert abs(means.mean() - target) < 4 * error, (means.mean(), target, error)
    logged = [log[log[:, 6] == k][:, 5].mean() for k in range(replicas)]
    np.testing.assert_allclose(result.mean_temperatures, logged, rtol=0, atol=5e-4)  # the log's 3 decimals


# --- resume -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path, ensemble):
    """N steps straight, and N/2 steps (with half-written frames after them, as a kill leaves)
    resumed to N: the same state to the last bit and the same files, byte for byte."""
    potential, settings = _potential(), _settings(ensemble=ensemble)
    _run(potential, settings, tmp_path / "straight.extxyz", 2)
    part = tmp_path / "part.extxyz"
    _run(potential, _settings(ensemble=ensemble, steps=10), part, 2)
    with open(replica_trajectories(part, 2)[1], "a") as f:
        f.write('13\nLattice="half a frame')
    with open(part.with_suffix(".log"), "a") as f:
        f.write("15 0.03 -1.2")
    assert _run(potential, settings, part, 2).resumed_from == 10
    straight, resumed = _record(tmp_path / "straight.extxyz"), _record(part)
    assert straight["step"] == resumed["step"] == 20
    assert straight["state"] == resumed["state"]  # positions, momenta (float64 bytes) and the random streams
    for a, b in zip(replica_trajectories(tmp_path / "straight.extxyz", 2), replica_trajectories(part, 2)):
        assert a.read_bytes() == b.read_bytes()
    assert part.with_suffix(".log").read_text() == (tmp_path / "straight.log").read_text()


class _KilledAfter:
    """An evaluator that stops the process (as Ctrl-C or a kill would) at its ``calls``-th call,
    between two frames."""

    def __init__(self, evaluator, calls: int):
        self.inner, self.calls = evaluator, calls
        self.potential, self.replicas, self.n_atoms = evaluator.potential, evaluator.replicas, evaluator.n_atoms

    def __call__(self, positions):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return self.inner(positions)


def test_a_run_interrupted_between_frames_resumes_to_the_same_result(tmp_path):
    potential = _potential()
    _run(potential, NVT, tmp_path / "straight.extxyz", 2)
    part = tmp_path / "part.extxyz"
    with pytest.raises(KeyboardInterrupt):  # step 0's call, then 13 steps: stops within the third interval
        run_replicas(_cluster(), _KilledAfter(_evaluator(potential, 2), 14), NVT, part, progress=False, replicas=2)
    assert _record(part)["step"] == 10
    assert _run(potential, NVT, part, 2).resumed_from == 10
    assert _record(part)["state"] == _record(tmp_path / "straight.extxyz")["state"]
    assert part.with_suffix(".log").read_text() == (tmp_path / "straight.log").read_text()


def test_resume_refuses_another_replica_count_or_first_replica(tmp_path):
    potential = _potential()
    traj = tmp_path / "md.extxyz"
    _run(potential, _settings(steps=5), traj, 2)
    with pytest.raises(ResumeMismatchError, match=r"replicas: 2 then, 3 now"):
        _run(potential, NVT, traj, 3)
    with pytest.raises(ResumeMismatchError, match=r"first_replica: 0 then, 4 now"):
        _run(potential, NVT, traj, 2, first_replica=4)
    assert _run(potential, NVT, traj, 2).resumed_from == 5


# --- checks -----------------------------------------------------------------------------------


class _NaNAfter:
    """The evaluator, with replica 1's forces turned to NaN from its ``calls``-th call on."""

    def __init__(self, evaluator, calls: int):
        self.inner, self.calls = evaluator, calls

    def __call__(self, positions):
        energies, forces = self.inner(positions)
        self.calls -= 1
        if self.calls < 0:
            forces[1] = np.nan
        return energies, forces


def test_a_replica_that_blows_up_stops_the_run_naming_it(tmp_path):
    traj = tmp_path / "md.extxyz"
    with pytest.raises(UnstableRunError, match=r"replica 1: the run blew up at step 8: the energy or forces are not "
                       r"finite.*keep the frames up to step 5"):  # fmt: skip
        run_replicas(_cluster(), _NaNAfter(_evaluator(_potential(), 2), 8), NVT, traj, progress=False, replicas=2)
    for path in replica_trajectories(traj, 2):
        assert [frame.info["step"] for frame in read(path, ":")] == [0, 5]
    assert _record(traj)["step"] == 5


def test_npt_constraints_and_a_mismatched_evaluator_are_refused(tmp_path):
    evaluator = _evaluator(_potential(), 2)
    npt = MDSettings(ensemble="npt", steps=10)
    with pytest.raises(InputError, match="NVE and NVT only"):
        run_replicas(_cluster(), evaluator, npt, tmp_path / "md.extxyz", progress=False, replicas=2)
    with pytest.raises(InputError, match="built for 2 replicas of 13 atoms, the run has 3 of 13"):
        run_replicas(_cluster(), evaluator, NVT, tmp_path / "md.extxyz", progress=False, replicas=3)
    fixed = _cluster()
    fixed.set_constraint(FixAtoms(indices=[0]))
    with pytest.raises(InputError, match=r"constraints \(FixAtoms\), which the replica engine does not apply"):
        run_replicas(fixed, evaluator, NVT, tmp_path / "md.extxyz", progress=False, replicas=2)
    assert not list(tmp_path.iterdir())


# --- the command line -------------------------------------------------------------------------


def _main(argv) -> int:
    threads = torch.get_num_threads()
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def test_cli_replicas_write_trajectories_that_ase_reads(tmp_path, capsys):
    """Each replica's frames carry the potential's energy and forces at their positions
    (computed anew by the ASE calculator), and the log one line per frame and replica."""
    structure = tmp_path / "cu13.xyz"
    _cluster().write(structure)
    out = tmp_path / "md.extxyz"
    argv = ["md", str(structure), "-p", "schnet-cu-emt-demo", "--replicas", "2", "--steps", "20", "-o", str(out),
            "--small-system", "off", "--dtype", "float64", "--threads", "1", "--no-progress"]  # fmt: skip
    assert _main(argv) == 0
    captured = capsys.readouterr()
    assert "2 replicas (general path" in captured.err
    summary = json.loads(captured.out)
    assert summary["replicas"] == 2 and summary["steps_done"] == 20
    assert summary["trajectories"] == [str(tmp_path / "md.r0.extxyz"), str(tmp_path / "md.r1.extxyz")]
    calculator = AtomMLCalculator("schnet-cu-emt-demo", device="cpu", dtype=torch.float64, small_system=False)
    for path in summary["trajectories"]:
        frames = read(path, ":")
        assert [frame.info["step"] for frame in frames] == [0, 10, 20]
        for frame in frames:
            atoms = frame.copy()
            atoms.calc = calculator
            assert frame.get_potential_energy() == pytest.approx(atoms.get_potential_energy(), abs=1e-5)
            np.testing.assert_allclose(frame.get_forces(), atoms.get_forces(), atol=1e-5)  # positions stored to 1e-8 Å
    log = np.loadtxt(tmp_path / "md.log")
    assert log.shape == (6, 7) and log[:, 6].tolist() == [0, 1] * 3
    assert not np.allclose(read(summary["trajectories"][0], -1).positions, read(summary["trajectories"][1], -1).positions)


@pytest.mark.parametrize(
    "options, says",
    [
        (["--ensemble", "npt"], "--replicas runs nve or nvt only"),
        (["--engine", "openmm"], "--replicas with --engine openmm is not supported yet"),
        (["--replicas", "0"], "--replicas must be at least 1, got 0"),
    ],
)
def test_cli_refuses_replicas_it_cannot_run(tmp_path, capsys, options, says):
    structure = tmp_path / "cu13.xyz"
    _cluster().write(structure)
    argv = ["md", str(structure), "-p", "schnet-cu-emt-demo", "--replicas", "2", "-o", str(tmp_path / "md.extxyz"),
            "--no-progress", *options]  # fmt: skip
    assert _main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("atomml md: error: ") and says in error, error
    assert re.fullmatch(r"[^\n]+", error)  # one line, before anything ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cu13.xyz"]
