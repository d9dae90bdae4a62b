"""The batched engine of ``atomml screen`` against ASE, structure by structure.

References: ASE's FIRE (with ``FrechetCellFilter`` for cells) through ``atomml.relax``, ASE's
``VelocityVerlet``, and ``AtomMLCalculator``. The batch's forward pass sums in another order than
one structure's, so energies agree to float32 round-off of the network (~1e-6 eV here), not
bit for bit; the FIRE step counts, which any real difference in the arithmetic would change,
must be equal.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk, molecule

import atomml
from atomml.potential_file import load_potential
from atomml.screen.engine import Evaluator, Job, initial_velocities, md, relax, single_point


def _jobs(structures):
    return [
        Job(key=i, numbers=a.numbers.copy(), positions=a.positions.copy(), cell=a.cell.array.copy(), pbc=a.pbc.copy(),
            charge=float(a.info.get("charge", 0)))
        for i, a in enumerate(structures)
    ]  # fmt: skip


def _run(fn, structures, evaluator, **kwargs):
    out: list[Job] = []
    fn(_jobs(structures), evaluator, done=out.append, **kwargs)
    assert sorted(j.key for j in out) == list(range(len(structures)))  # each exactly once
    return sorted(out, key=lambda j: j.key)


@pytest.fixture(scope="module")
def organic():
    return load_potential("tensornet-organic-gfn2")


@pytest.fixture(scope="module")
def metals():
    return load_potential("tensornet-metals-emt")


def _molecules():
    rng = np.random.default_rng(0)
    mols = [molecule(n) for n in ("CH3CH2OH", "CH3COOH", "C6H6", "CH3CH2NH2")]
    for m in mols:
        m.rattle(0.05, rng=rng)
    return mols


def _alloys():
    rng = np.random.default_rng(1)
    cells = []
    for host, guest, scale in (("Cu", "Ni", 1.02), ("Al", "Cu", 0.98)):
        cell = bulk(host, "fcc", cubic=True)
        cell.symbols[::3] = guest
        cell.set_cell(cell.cell.array * scale + np.diag([0.05, -0.03, 0.02]), scale_atoms=True)
        cell.rattle(0.05, rng=rng)
        cells.append(cell)
    return cells


def test_relax_positions_follows_ase_fire(organic):
    mols = _molecules()[:3]
    # a small atom budget, so that structures leave and join the batch while others relax
    jobs = _run(relax, mols, Evaluator(organic), fmax=0.04, max_steps=200, cell=False, max_atoms=20)
    for job, mol in zip(jobs, mols):
        ref = atomml.relax(mol, organic, fmax=0.04, steps=200, cell=False)
        assert job.status == "ok" and ref.converged
        assert job.steps == ref.steps
        assert job.energy == pytest.approx(ref.energy, abs=2e-6)
        np.testing.assert_allclose(job.positions, ref.final_structure.positions, atol=1e-5)
        assert job.fmax == pytest.approx(np.linalg.norm(ref.forces, axis=1).max(), abs=1e-5)


def test_relax_cell_follows_ase_frechet_cell_filter(metals):
    cells = _alloys()
    jobs = _run(relax, cells, Evaluator(metals), fmax=0.03, max_steps=300, cell=True, max_atoms=4)
    for job, cell in zip(jobs, cells):
        ref = atomml.relax(cell, metals, fmax=0.03, steps=300, cell=True)
        assert job.status == "ok" and ref.converged
        assert job.steps == ref.steps
        assert job.energy == pytest.approx(ref.energy, abs=2e-6)
        np.testing.assert_allclose(job.cell, ref.final_structure.cell.array, atol=1e-6)
        np.testing.assert_allclose(job.stress, ref.stress, atol=1e-7)


def test_not_converged_and_step_limit(organic):
    jobs = _run(relax, _molecules()[:2], Evaluator(organic), fmax=1e-4, max_steps=5, cell=False, max_atoms=100)
    for job in jobs:
        assert job.status == "not_converged" and job.steps == 5 and "after 5 steps" in job.message
        assert np.isfinite(job.energy)


def test_single_point_matches_the_calculator_and_the_committee_spread(organic, metals):
    structures = [*_molecules()[:2]]
    perturbed = load_potential("tensornet-organic-gfn2")
    with np.errstate(all="ignore"):
        for p in perturbed.parameters():
            p.data.mul_(1.001)
    jobs = _run(single_point, structures, Evaluator([organic, perturbed]), max_atoms=100)
    for job, mol in zip(jobs, structures):
        e1 = atomml.AtomMLCalculator(organic).get_potential_energy(mol)
        e2 = atomml.AtomMLCalculator(perturbed).get_potential_energy(mol)
        assert job.status == "ok"
        assert job.energy == pytest.approx((e1 + e2) / 2, abs=2e-6)
        assert job.uncertainty == pytest.approx(abs(e1 - e2) / 2, abs=2e-6)  # population std of two
        assert job.uncertainty > 1e-4
    cells = _alloys()
    jobs = _run(single_point, [cells[0], molecule("H2O"), cells[1]][::2], Evaluator(metals), max_atoms=100)
    for job, cell in zip(jobs, cells):
        calc = atomml.AtomMLCalculator(metals)
        assert job.energy == pytest.approx(calc.get_potential_energy(cell), abs=2e-6)
        np.testing.assert_allclose(job.stress, calc.get_stress(cell), atol=1e-8)
        assert np.isnan(job.uncertainty)


def test_md_without_friction_is_ase_velocity_verlet(organic):
    from ase.md.verlet import VelocityVerlet

    mol = _molecules()[0]
    out: list[Job] = []
    md(_jobs([mol]), Evaluator(organic), steps=20, timestep_fs=0.5, temperature_K=300, friction_per_fs=0.0, seed=3,
       max_atoms=100, done=out.append)  # fmt: skip
    (job,) = out
    ref = mol.copy()
    ref.set_velocities(initial_velocities(_jobs([mol])[0], 300, seed=3))  # the engine's starting velocities
    ref.calc = atomml.AtomMLCalculator(organic)
    VelocityVerlet(ref, timestep=0.5 * units.fs).run(20)
    assert job.status == "ok" and job.steps == 20
    np.testing.assert_allclose(job.positions, ref.positions, atol=1e-7)
    assert job.energy == pytest.approx(ref.get_potential_energy(), abs=2e-6)
    # NVE: the total energy holds to a small drift; the summary says so
    assert abs(job.md["md_drift_eV_per_atom_ps"]) < 0.05
    assert 50 < job.md["md_temperature_K"] < 600


def test_a_structure_that_fails_in_the_batch_fails_alone(organic):
    mols = _molecules()[:3]
    jobs = _jobs(mols)
    jobs[1].positions[1] = jobs[1].positions[0] + 0.01  # overlapping atoms inside the batch
    out: list[Job] = []
    single_point(jobs, Evaluator(organic), max_atoms=1000, done=out.append)
    status = {j.key: j.status for j in out}
    assert status == {0: "ok", 1: "overlapping_atoms", 2: "ok"}
    assert np.isfinite([j.energy for j in out if j.key != 1]).all()


def test_check_names_the_problem(organic):
    ev = Evaluator(organic)
    (job,) = _jobs([molecule("CH4")])
    assert ev.check(job) is None
    job.numbers = job.numbers.copy()
    job.numbers[0] = 14
    assert ev.check(job)[0] == "unknown_element" and "Si" in ev.check(job)[1]
    (job,) = _jobs([molecule("CH4")])
    job.positions[2] = np.nan
    assert ev.check(job)[0] == "invalid_geometry"
    (job,) = _jobs([molecule("CH4")])
    job.positions[2] = job.positions[1]
    assert ev.check(job)[0] == "overlapping_atoms"
