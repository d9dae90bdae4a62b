"""atomml in OpenMM through openmm-ml: the same energies and forces as the ASE calculator."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

import atomml
from atomml import testing, units
from atomml.models import create
from atomml.dynamics.openmm import topology
from atomml.resources import resource_folder

openmm = pytest.importorskip("openmm")
pytest.importorskip("openmmml")
from openmm import app, unit  # noqa: E402
from openmmml import MLPotential  # noqa: E402

from atomml.interfaces.openmm import AtomMLComputation  # noqa: E402

KJ_PER_MOL_NM = units.EV_TO_KJ_PER_MOL * units.NM_TO_ANGSTROM  # per eV/Å


def openmm_energy_forces(system, atoms, groups=-1, parameters=None):
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(atoms.positions * 0.1)
    if atoms.pbc.all():
        a, b, c = (v * 0.1 for v in atoms.cell.array)
        context.setPeriodicBoxVectors(a, b, c)
    for name, value in (parameters or {}).items():
        context.setParameter(name, value)
    state = context.getState(getEnergy=True, getForces=True, groups=groups)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, forces


def ase_energy_forces(potential, atoms):
    atoms = atoms.copy()
    atoms.calc = atomml.AtomMLCalculator(potential, dtype=torch.float64)
    return atoms.get_potential_energy() * units.EV_TO_KJ_PER_MOL, atoms.get_forces() * KJ_PER_MOL_NM


def assert_same(got, expected, rtol=1e-6):
    (e1, f1), (e2, f2) = got, expected
    assert abs(e1 - e2) <= rtol * abs(e2), (e1, e2)
    assert np.abs(f1 - f2).max() <= rtol * np.abs(f2).max(), np.abs(f1 - f2).max()


@pytest.fixture(scope="module")
def organic(tmp_path_factory):
    torch.manual_seed(0)
    potential = create("tensornet", elements=[1, 6, 8], cutoff=4.0, hidden_channels=16, num_rbf=8)
    path = atomml.save_potential(potential, tmp_path_factory.mktemp("pot") / "organic")
    return potential.double(), path


@pytest.fixture(scope="module")
def organic_hcno(tmp_path_factory):
    torch.manual_seed(1)
    potential = create("tensornet", elements=[1, 6, 7, 8], cutoff=4.0, hidden_channels=16, num_rbf=8)
    return atomml.save_potential(potential, tmp_path_factory.mktemp("pot") / "hcno")


def test_whole_periodic_system_matches_ase():
    import ase.io

    atoms = ase.io.read(resource_folder("md") / "structures" / "cu_fcc_108.extxyz")
    atoms.rattle(0.05, seed=1)
    system = MLPotential("atomml", potential="schnet-cu-emt-demo", precision="double").createSystem(topology(atoms))
    assert_same(openmm_energy_forces(system, atoms), ase_energy_forces(atomml.load_potential("schnet-cu-emt-demo"), atoms))


def test_molecule_with_charge_matches_ase(organic):
    potential, path = organic
    atoms = testing.random_molecule([1, 6, 8], 15, seed=4)
    atoms.info["charge"] = -1
    mlp = MLPotential("atomml", potential=str(path))
    system = mlp.createSystem(topology(atoms), precision="double", charge=-1)
    assert_same(openmm_energy_forces(system, atoms), ase_energy_forces(potential, atoms))


def water_box(n_side=3, spacing=3.1):
    from ase import Atoms
    from ase.build import molecule

    water = molecule("H2O")
    boxes = [water.positions + spacing * np.array([i, j, k]) for i in range(n_side) for j in range(n_side) for k in range(n_side)]
    atoms = Atoms(numbers=np.tile(water.numbers, n_side**3), positions=np.concatenate(boxes))
    atoms.set_cell(np.eye(3) * spacing * n_side)
    atoms.pbc = True
    return atoms


def tip3p_system(atoms):
    """A flexible TIP3P System and its Topology (water residues) for ``atoms`` (O, H, H, ...)."""
    top = app.Topology()
    chain = top.addChain()
    o, h = app.Element.getBySymbol("O"), app.Element.getBySymbol("H")
    for _ in range(len(atoms) // 3):
        residue = top.addResidue("HOH", chain)
        ao = top.addAtom("O", o, residue)
        h1, h2 = top.addAtom("H1", h, residue), top.addAtom("H2", h, residue)
        top.addBond(ao, h1)
        top.addBond(ao, h2)
    top.setPeriodicBoxVectors(atoms.cell.array * 0.1 * unit.nanometer)
    forcefield = app.ForceField("amber14/tip3pfb.xml")
    system = forcefield.createSystem(top, nonbondedMethod=app.PME, nonbondedCutoff=0.4 * unit.nanometer,
                                     constraints=None, rigidWater=False)  # fmt: skip
    return top, system


def test_mixed_system_and_lambda_interpolate(organic):
    """ML water in MM water: lambda_interpolate = 0 gives the MM energy, 1 replaces the ML
    water's internal MM energy with its ML energy (mechanical embedding)."""
    import copy

    potential, path = organic
    atoms = water_box()
    top, mm_system = tip3p_system(atoms)
    ml_atoms = [0, 1, 2]
    mixed = MLPotential("atomml", potential=str(path), precision="double").createMixedSystem(
        top, copy.deepcopy(mm_system), ml_atoms, forceGroup=1, interpolate=True
    )
    e_mm, _ = openmm_energy_forces(mm_system, atoms)
    e0, _ = openmm_energy_forces(mixed, atoms, parameters={"lambda_interpolate": 0.0})
    e1, f1 = openmm_energy_forces(mixed, atoms, parameters={"lambda_interpolate": 1.0})
    assert abs(e0 - e_mm) < 1e-6 * abs(e_mm)
    # the ML water's internal MM energy: bonds and angles (its nonbonded pairs are excluded)
    single = atoms[ml_atoms]
    single.pbc = False
    single_top, _ = tip3p_system(water_box(1))
    single_system = app.ForceField("amber14/tip3pfb.xml").createSystem(
        single_top, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False
    )
    e_internal, _ = openmm_energy_forces(single_system, single)
    e_ml, f_ml = ase_energy_forces(potential, single)
    assert abs((e1 - e0) - (e_ml - e_internal)) < 1e-6 * max(abs(e_ml), abs(e_internal))
    # without interpolation the ML force has its own group: the ML forces, on the ML atoms only
    # (with interpolation openmm-ml puts ML and MM terms of the ML atoms in one CustomCVForce)
    plain = MLPotential("atomml", potential=str(path), precision="double").createMixedSystem(
        top, copy.deepcopy(mm_system), ml_atoms, forceGroup=1
    )
    e_group, f_group = openmm_energy_forces(plain, atoms, groups={1})
    assert abs(e_group - e_ml) < 1e-6 * abs(e_ml)
    np.testing.assert_allclose(f_group[ml_atoms], f_ml, rtol=1e-6, atol=1e-6 * np.abs(f_ml).max())
    assert np.abs(f_group[3:]).max() == 0.0


@pytest.mark.slow  # ~35 s of MD; the default selection checks these forces against ASE (test_whole_periodic_system_matches_ase)
def test_nve_energy_conserved_over_2000_steps():
    import ase.io

    atoms = ase.io.read(resource_folder("md") / "structures" / "cu_fcc_108.extxyz")
    system = MLPotential("atomml", potential="schnet-cu-emt-demo", precision="double").createSystem(topology(atoms))
    integrator = openmm.VerletIntegrator(1.0 * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(atoms.positions * 0.1)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    energies = []
    for _ in range(20):
        integrator.step(100)
        state = context.getState(getEnergy=True)
        energies.append((state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole))
    kt = units.kt(300)
    spread = (max(energies) - min(energies)) / len(atoms)
    assert spread < 0.01 * kt, f"total energy varies by {spread:.3g} kJ/mol per atom over 2,000 steps"


def test_openmm_md_resumes_exactly_after_a_kill(tmp_path):
    """Run 20 steps, leave half-written junk in trajectory and log (a kill mid-frame), then
    extend to 40: the log equals that of an uninterrupted 40-step run, the DCD has 5 frames."""
    import struct

    import ase.io

    from atomml.dynamics import MDSettings
    from atomml.dynamics.openmm import run_openmm_md

    atoms = ase.io.read(resource_folder("md") / "structures" / "cu_fcc_108.extxyz")
    kwargs = dict(precision="double", platform="Reference", progress=False)

    def settings(steps):
        return MDSettings(ensemble="nve", timestep_fs=2.0, steps=steps, interval=10, seed=3)

    straight = run_openmm_md(atoms, "schnet-cu-emt-demo", settings(40), tmp_path / "a.dcd", **kwargs)
    first = run_openmm_md(atoms, "schnet-cu-emt-demo", settings(20), tmp_path / "b.dcd", **kwargs)
    assert first.steps_done == 20
    for name in ("b.dcd", "b.log"):
        with open(tmp_path / name, "ab") as f:
            f.write(b"\x00half a frame")
    resumed = run_openmm_md(atoms, "schnet-cu-emt-demo", settings(40), tmp_path / "b.dcd", **kwargs)
    assert resumed.resumed_from == 20 and resumed.steps_done == 40
    assert (tmp_path / "b.log").read_text() == (tmp_path / "a.log").read_text()
    assert straight.log.read_text().count("\n") == 6  # header + 5 frames
    for name in ("a.dcd", "b.dcd"):
        data = (tmp_path / name).read_bytes()
        assert struct.unpack("<i", data[8:12])[0] == 5
    assert (tmp_path / "a.dcd").stat().st_size == (tmp_path / "b.dcd").stat().st_size


def test_openmm_md_refuses_slabs():
    from atomml.dynamics import MDSettings
    from atomml.dynamics.openmm import run_openmm_md

    slab = testing.random_crystal([29], 8, seed=1, pbc=(True, True, False))
    with pytest.raises(ValueError, match="fully periodic or a non-periodic"):
        run_openmm_md(slab, "schnet-cu-emt-demo", MDSettings(steps=1), "x.dcd", progress=False)


def test_cli_md_with_openmm_engine(tmp_path, capsys):
    import json

    from atomml.cli import main

    structure = resource_folder("md") / "structures" / "cu_fcc_108.extxyz"
    out = tmp_path / "run.dcd"
    argv = ["md", str(structure), "-p", "schnet-cu-emt-demo", "--engine", "openmm", "--ensemble", "nvt",
            "--small-system", "off", "--timestep", "2", "--steps", "20", "--interval", "10", "-o", str(out),
            "--no-progress"]  # fmt: skip
    made = []
    original = AtomMLComputation.__init__

    def spy(self, *args, **kwargs):
        made.append(kwargs.get("small_system"))
        original(self, *args, **kwargs)

    with mock.patch.object(AtomMLComputation, "__init__", spy):
        assert main(argv) == 0
    assert made == [False], "--small-system reaches the OpenMM force"
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps_done"] == 20 and out.exists() and (tmp_path / "run.log").exists()
    assert main(argv[:-5] + ["--steps", "30", "--interval", "10", "-o", str(out), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["resumed_from"] == 20


@pytest.mark.slow  # ~25 s; ML in TIP3P also runs in the default selection (tests/integration/test_fe_hydration.py)
def test_drug_like_molecule_ml_in_tip3p_water_langevin_2fs_hmr(organic_hcno, tmp_path):
    """Aspirin (GAFF2/AM1-BCC via AmberTools) in TIP3P: the molecule ML, the water MM and rigid,
    hydrogen mass repartitioning, LangevinMiddle at 2 fs. The run is at lambda_interpolate = 0.5:
    a random-weight potential has no bonds to hold aspirin together (atoms run into each other
    at lambda = 1), so half of its MM internal energy stays. With a trained organic potential
    (issue 6) this becomes lambda = 1. It checks the plumbing: the ML force acts, the run is
    stable and thermal."""
    pytest.importorskip("rdkit")
    from openmm import LangevinMiddleIntegrator

    from atomml.mm import solvated_molecule

    setup, _ = solvated_molecule("CC(=O)Oc1ccccc1C(=O)O", tmp_path / "aspirin", padding=7.0)
    prmtop, inpcrd = app.AmberPrmtopFile(str(setup.prmtop)), app.AmberInpcrdFile(str(setup.inpcrd))
    mm_system = prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.8 * unit.nanometer,
                                    constraints=None, rigidWater=True, hydrogenMass=2.0 * unit.amu)  # fmt: skip
    mixed = MLPotential("atomml", potential=str(organic_hcno)).createMixedSystem(
        prmtop.topology, mm_system, list(setup.molecule_atoms), interpolate=True
    )
    masses = [mixed.getParticleMass(i).value_in_unit(unit.amu) for i in setup.molecule_atoms]
    assert min(masses) >= 2.0 - 1e-9, "hydrogen masses were repartitioned"
    constrained = {i for k in range(mixed.getNumConstraints()) for i in mixed.getConstraintParameters(k)[:2]}
    assert constrained and not constrained & set(setup.molecule_atoms), "only the MM water is constrained"
    integrator = LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 2 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    simulation = app.Simulation(prmtop.topology, mixed, integrator, openmm.Platform.getPlatformByName("CPU"))
    simulation.context.setPositions(inpcrd.positions)
    simulation.context.setPeriodicBoxVectors(*inpcrd.boxVectors)
    simulation.context.setParameter("lambda_interpolate", 0.5)
    e_half = simulation.context.getState(getEnergy=True).getPotentialEnergy()
    simulation.context.setParameter("lambda_interpolate", 0.0)
    assert simulation.context.getState(getEnergy=True).getPotentialEnergy() != e_half, "the ML term acts"
    simulation.context.setParameter("lambda_interpolate", 0.5)
    simulation.minimizeEnergy(maxIterations=50)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    simulation.step(200)
    state = simulation.context.getState(getEnergy=True, getPositions=True)
    assert np.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    dof = 3 * mixed.getNumParticles() - mixed.getNumConstraints() - 3
    temperature = 2 * state.getKineticEnergy() / (dof * unit.MOLAR_GAS_CONSTANT_R)
    assert 200 < temperature.value_in_unit(unit.kelvin) < 400


def test_registers_itself_without_the_entry_point(monkeypatch):
    """From a source tree (no installed entry point) openmm-ml does not know "atomml";
    ensure_registered adds it, once."""
    from openmmml import MLPotential

    from atomml.interfaces.openmm_plugin import AtomMLPotentialImplFactory, ensure_registered

    monkeypatch.setattr(MLPotential, "_implFactories", {})
    with pytest.raises(KeyError):
        MLPotential("atomml", potential="schnet-cu-emt-demo")
    ensure_registered()
    ensure_registered()
    assert list(MLPotential._implFactories) == ["atomml"]
    assert isinstance(MLPotential._implFactories["atomml"], AtomMLPotentialImplFactory)
    MLPotential("atomml", potential="schnet-cu-emt-demo")


@pytest.mark.parametrize("module", ["atomml.interfaces.openmm", "atomml.openmm"])
def test_atomml_openmm_imports_before_openmm_ml(module):
    """openmm-ml loads its entry points while it is itself being imported; importing atomml's
    OpenMM module first (which imports openmm-ml) must not meet a half-imported atomml module
    (the old path too, while it lasts)."""
    import subprocess
    import sys

    script = (f"import {module}\nfrom openmmml import MLPotential\n"
              "MLPotential('atomml', potential='schnet-cu-emt-demo')\nprint('ok')")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]
