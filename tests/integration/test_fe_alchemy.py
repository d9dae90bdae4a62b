"""Alchemical decoupling: end states and electrostatic scaling equal hand-built reference Systems."""

from __future__ import annotations

import copy

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
from openmm import app, unit  # noqa: E402

from atomml.fe.alchemy import AlchemicalState, Schedule, alchemical_system, set_state  # noqa: E402

SOLUTE = [0, 1, 2]  # the first water


def water_system(n_side=3, spacing=3.1):
    from ase.build import molecule

    water = molecule("H2O")
    positions = np.concatenate([water.positions + spacing * np.array([i, j, k])
                                for i in range(n_side) for j in range(n_side) for k in range(n_side)])  # fmt: skip
    top = app.Topology()
    chain = top.addChain()
    o, h = app.Element.getBySymbol("O"), app.Element.getBySymbol("H")
    for _ in range(n_side**3):
        res = top.addResidue("HOH", chain)
        ao = top.addAtom("O", o, res)
        for name in ("H1", "H2"):
            top.addBond(ao, top.addAtom(name, h, res))
    box = np.eye(3) * spacing * n_side * 0.1
    top.setPeriodicBoxVectors(box * unit.nanometer)
    system = app.ForceField("amber14/tip3pfb.xml").createSystem(
        top, nonbondedMethod=app.PME, nonbondedCutoff=0.45 * unit.nanometer, constraints=None, rigidWater=False
    )
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.setUseDispersionCorrection(False)
    return system, positions * 0.1, box


def energy(system, positions, box, state=None):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    if state is not None:
        set_state(context, state)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def scaled(system, charge_scale, lj_off):
    """The reference: the solute's charges scaled (exceptions by the square), LJ to it removed."""
    system = copy.deepcopy(system)
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    for i in SOLUTE:
        q, sigma, eps = nb.getParticleParameters(i)
        nb.setParticleParameters(i, q * charge_scale, sigma, eps * (0.0 if lj_off else 1.0))
    for k in range(nb.getNumExceptions()):
        i, j, qq, sigma, eps = nb.getExceptionParameters(k)
        if i in SOLUTE and j in SOLUTE:
            nb.setExceptionParameters(k, i, j, qq * charge_scale**2, sigma, eps)
    return system


@pytest.fixture(scope="module")
def systems():
    system, positions, box = water_system()
    return system, alchemical_system(system, SOLUTE), positions, box


def test_fully_coupled_equals_original(systems):
    system, alchemical, positions, box = systems
    e0, e1 = energy(system, positions, box), energy(alchemical, positions, box, AlchemicalState(1.0, 1.0))
    assert abs(e1 - e0) < 1e-6 * abs(e0)


@pytest.mark.parametrize("scale", [0.5, 0.0])
def test_electrostatics_scale_the_solute_charges(systems, scale):
    system, alchemical, positions, box = systems
    expected = energy(scaled(system, scale, lj_off=False), positions, box)
    got = energy(alchemical, positions, box, AlchemicalState(scale, 1.0))
    assert abs(got - expected) < 1e-6 * abs(expected)


def test_decoupled_state_has_no_solute_interactions(systems):
    system, alchemical, positions, box = systems
    expected = energy(scaled(system, 0.0, lj_off=True), positions, box)
    got = energy(alchemical, positions, box, AlchemicalState(0.0, 0.0))
    assert abs(got - expected) < 1e-6 * abs(expected)


def test_soft_core_is_finite_on_top_of_another_atom(systems):
    _, alchemical, positions, box = systems
    state = AlchemicalState(0.0, 0.5)
    reference = energy(alchemical, positions, box, state)
    positions = positions.copy()
    positions[:3] += positions[3] + 0.002 - positions[0]  # the solute's O 0.03 Å from a solvent O
    # plain LJ there would be ~1e20 kJ/mol; the soft core stays of order epsilon
    assert abs(energy(alchemical, positions, box, state) - reference) < 100.0
    assert energy(alchemical, positions, box, AlchemicalState(0.0, 1.0)) > 1e10  # full LJ: no soft core


def test_schedule_names_states_by_meaning():
    from atomml.fe.hydration import default_protocol

    schedule = default_protocol().schedule  # the shipped schedule, md/protocols/hydration.yaml
    assert len(schedule) == 16
    assert schedule.states[0] == AlchemicalState(1.0, 1.0) and schedule.states[-1] == AlchemicalState(0.0, 0.0)
    assert all(s.electrostatics == 0.0 for s in schedule.states if s.sterics < 1.0)
    assert len(Schedule.decoupling([1, 0], [1, 0.5, 0])) == 4  # (1,1) (0,1) (0,0.5) (0,0)
    with pytest.raises(ValueError, match="fall strictly"):
        Schedule.decoupling([1.0, 0.5], [1.0, 0.0])
    with pytest.raises(ValueError, match="fall strictly"):
        Schedule.decoupling([1.0, 0.0], [])
    with pytest.raises(ValueError, match="electrostatics off before sterics"):
        AlchemicalState(0.5, 0.5)


def test_solute_dispersion_correction_is_the_analytic_tail():
    """The solute's long-range correction (alchemical_system(dispersion_correction=True)) against
    the closed form: per solute-environment pair 16 pi eps [sigma^12/(9 rc^9) - sigma^6/(3 rc^3)] / V,
    the LJ energy beyond the cutoff of a uniform environment; the decoupled state has none.
    OpenMM's pair counting differs from the closed form at order 1/N (N particles): 1.2 % in this
    81-atom box, < 0.1 % for a solvated solute."""
    system, positions, box = water_system()
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    nb.setUseDispersionCorrection(True)
    with_tail, without = (alchemical_system(system, SOLUTE, dispersion_correction=flag) for flag in (True, False))
    coupled, decoupled = AlchemicalState(1.0, 1.0), AlchemicalState(0.0, 0.0)
    tail = energy(with_tail, positions, box, coupled) - energy(without, positions, box, coupled)

    rc = nb.getCutoffDistance().value_in_unit(unit.nanometer)
    params = [nb.getParticleParameters(i) for i in range(system.getNumParticles())]
    expected = 0.0
    for i in SOLUTE:
        for j in range(system.getNumParticles()):
            if j in SOLUTE:
                continue
            sigma = 0.5 * (params[i][1] + params[j][1]).value_in_unit(unit.nanometer)
            eps = np.sqrt((params[i][2] * params[j][2]).value_in_unit(unit.kilojoule_per_mole**2))
            expected += 16 * np.pi * eps * (sigma**12 / (9 * rc**9) - sigma**6 / (3 * rc**3))
    expected /= np.linalg.det(box)
    assert expected < -0.01
    assert tail == pytest.approx(expected, rel=1.5 / system.getNumParticles())
    assert energy(with_tail, positions, box, decoupled) == pytest.approx(energy(without, positions, box, decoupled), abs=1e-9)
