"""The small-system path (atomml.fast) against the general path (Potential.forward).

The padded, paired layout is checked in float64 without compiling (the same inputs the compiled
graph gets), to 1e-10, over molecules of several sizes, charges and element sets, periodic cells
and batches of replicas. The compiled path itself is checked in float32 on one small molecule with
SchNet (a ~40 s compile on a 2-core CPU, once per run: the artefacts are cached on disk), through
an MD run with neighbour-list rebuilds, the ASE calculator's automatic switch and the OpenMM force.
TensorNet compiled (~2 min) is behind the ``slow`` marker.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from atomml import fast, units
from atomml.errors import InputError
from atomml.interfaces.ase import AtomMLCalculator
from atomml.models import create, tiny_hyperparameters

ELEMENTS = [1, 6, 7, 8, 29]


def _potential(arch: str, dtype: torch.dtype = torch.float64, **extra):
    torch.manual_seed(0)
    return create(arch, elements=ELEMENTS, **{**tiny_hyperparameters(arch, ELEMENTS), **extra}).to(dtype)


def _general(potential, atoms_list):
    """Energies, forces, per-atom energies of each structure through Potential.forward."""
    from atomml import from_ase

    out = []
    for atoms in atoms_list:
        result = potential(from_ase(atoms, dtype=torch.float64))
        out.append(
            (
                float(result["energy"][0].detach()),
                result["forces"].detach().numpy(),
                result["energies"].detach().numpy(),
            )
        )
    return out


def _replicas(atoms: Atoms, k: int, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    copies = []
    for _ in range(k):
        a = atoms.copy()
        a.positions += 0.08 * rng.standard_normal(a.positions.shape)
        copies.append(a)
    return copies


def _ammonium() -> Atoms:
    a = molecule("NH3")
    return Atoms("NH4", positions=np.vstack([a.positions, [0.0, 0.0, -1.0]]), info={"charge": 1.0})


WATERS_7A_APART = [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [7, 0, 0], [7.96, 0, 0], [6.76, 0.93, 0]]
CASES = {
    "ethanol": (molecule("CH3CH2OH"), 1),
    "ammonium_cation": (_ammonium(), 1),
    "acetamide_3_replicas": (molecule("CH3CONH2"), 3),
    "water_dimer_far_apart": (Atoms("OH2OH2", positions=WATERS_7A_APART), 2),
    "copper_cluster": (bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1)).copy(), 1),
}


@pytest.mark.parametrize("arch", ["tensornet", "schnet"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_padded_layout_equals_the_general_path(arch, case):
    atoms, k = CASES[case]
    atoms = atoms.copy()
    atoms.pbc = False
    atoms.cell = np.zeros((3, 3))
    potential = _potential(arch)
    replicas = _replicas(atoms, k, seed=k)
    path = fast.SmallSystemPath(potential, atoms.numbers, replicas=k, charge=atoms.info.get("charge", 0.0),
                                dtype=torch.float64, compile=False)  # fmt: skip
    energy, forces, atom_energies = path.evaluate(np.stack([a.positions for a in replicas]))
    for r, (e, f, ae) in enumerate(_general(potential, replicas)):
        assert energy[r] == pytest.approx(e, rel=1e-12, abs=1e-10)
        np.testing.assert_allclose(forces[r], f, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(atom_energies[r], ae, rtol=1e-10, atol=1e-10)
    assert path.capacity >= path._pairs.shape[1]  # the padded list holds every pair of the skin list


@pytest.mark.parametrize("arch", ["tensornet", "schnet"])
def test_periodic_cells_and_replicas_with_their_own_cells(arch):
    potential = _potential(arch)
    base = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)  # a cell smaller than twice the cutoff: images count
    replicas = _replicas(base, 2, seed=3)
    replicas[1].set_cell(replicas[1].cell * 1.03, scale_atoms=True)
    path = fast.SmallSystemPath(potential, base.numbers, replicas=2, cell=base.cell, pbc=True,
                                dtype=torch.float64, compile=False)  # fmt: skip
    energy, forces = path(np.stack([a.positions for a in replicas]), np.stack([np.asarray(a.cell) for a in replicas]))
    for r, (e, f, _) in enumerate(_general(potential, replicas)):
        assert energy[r] == pytest.approx(e, rel=1e-12, abs=1e-10)
        np.testing.assert_allclose(forces[r], f, rtol=1e-10, atol=1e-10)


def test_bad_input_gets_the_general_paths_errors():
    potential = _potential("schnet")
    water = molecule("H2O")
    path = fast.SmallSystemPath(potential, water.numbers, dtype=torch.float64, compile=False)
    overlapping = water.positions.copy()
    overlapping[1] = overlapping[0] + 0.01
    with pytest.raises(InputError, match="overlapping atoms"):
        path(overlapping)
    broken = water.positions.copy()
    broken[2, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        path(broken)
    with pytest.raises(InputError, match="does not know element"):
        fast.SmallSystemPath(potential, [1, 1, 92], compile=False)


def test_potentials_it_cannot_run_take_the_general_path():
    torch.manual_seed(0)
    potential = create(
        "schnet", elements=ELEMENTS, terms=[{"name": "coulomb"}], **tiny_hyperparameters("schnet", ELEMENTS)
    )
    assert "long-range" in fast.unsupported(potential)
    with pytest.raises(ValueError, match="long-range"):
        fast.SmallSystemPath(potential, [8, 1, 1])
    assert isinstance(fast.replica_evaluator(potential, [8, 1, 1]), fast.GeneralPath)
    assert isinstance(fast.replica_evaluator(_potential("schnet"), [8, 1, 1], small_system=False), fast.GeneralPath)
    with pytest.raises(ValueError, match="small_system"):
        AtomMLCalculator(_potential("schnet"), small_system="sometimes")


# -- the compiled path (one compile per run of the suite) ----------------------------------


@pytest.fixture(scope="module")
def schnet32():
    return _potential("schnet", torch.float32)


@pytest.fixture(scope="module")
def trajectory(schnet32):
    """Frames of a hot NVE run of ethanol on the general path, with neighbour lists rebuilt."""
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    atoms = molecule("CH3CH2OH")
    atoms.calc = AtomMLCalculator(schnet32, small_system=False, skin=0.2)
    thermalize_momenta(atoms, temperature_K=1500, rng=np.random.default_rng(0))
    frames = []
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.FS)
    dyn.attach(lambda: frames.append(atoms.positions.copy()), interval=1)
    dyn.run(60)
    return atoms.numbers, np.array(frames)


def test_compiled_path_follows_md_through_neighbour_list_rebuilds(schnet32, trajectory):
    numbers, frames = trajectory
    general = fast.GeneralPath(schnet32, numbers, skin=0.0)
    compiled = fast.SmallSystemPath(schnet32, numbers, skin=0.2)
    rtol, atol = 1e-4, 2e-5  # float32 round-off of energies ~ -1 eV and forces ~ 1 eV/Å
    for x in frames:
        e, f = general(x[None])
        ec, fc = compiled(x[None])
        np.testing.assert_allclose(ec, e, rtol=rtol, atol=atol)
        np.testing.assert_allclose(fc, f, rtol=rtol, atol=atol)
    assert compiled.neighbor_list_builds > 1
    assert compiled.compiles >= 1 and compiled.compiled  # really compiled, not the eager fallback


def test_calculator_and_openmm_force_switch_to_the_compiled_path(schnet32, trajectory, monkeypatch):
    monkeypatch.setenv(fast.ENVIRONMENT_SWITCH, "1")
    monkeypatch.setattr(fast, "AUTO_AFTER_CALLS", 3)
    numbers, frames = trajectory
    general = fast.GeneralPath(schnet32, numbers, skin=0.0)
    calc = AtomMLCalculator(schnet32)  # small_system="auto"
    atoms = Atoms(numbers, positions=frames[0])
    atoms.calc = calc
    for n, x in enumerate(frames[:5]):
        atoms.positions = x
        forces = atoms.get_forces()
        assert (calc._small is not None) == (n + 1 >= 3)
        e, f = general(x[None])
        assert atoms.get_potential_energy() == pytest.approx(float(e[0]), rel=1e-5, abs=2e-5)
        np.testing.assert_allclose(forces, f[0], rtol=1e-4, atol=2e-5)
        assert atoms.get_potential_energies().sum() == pytest.approx(float(e[0]), rel=1e-5, abs=2e-5)

    pytest.importorskip("openmmml")
    from openmm import unit

    from atomml.interfaces.openmm import FORCE_PER_EV_PER_A, AtomMLComputation

    class State:
        def __init__(self, x):
            self.x = x

        def getPositions(self, asNumpy=True):
            return (self.x / 10.0) * unit.nanometer

    computation = AtomMLComputation(schnet32, numbers, periodic=False, device="cpu", small_system=True)
    for x in frames[:3]:
        energy, forces = computation(State(x))
        e, f = general(x[None])
        assert computation.small is not None
        assert energy == pytest.approx(float(e[0]) * units.EV_TO_KJ_PER_MOL, rel=1e-5, abs=2e-3)
        np.testing.assert_allclose(forces, f[0] * FORCE_PER_EV_PER_A, rtol=1e-4, atol=2e-3)


@pytest.mark.slow
def test_compiled_tensornet_equals_the_general_path():
    potential = _potential("tensornet", torch.float32)
    atoms = molecule("CH3CONH2")
    replicas = _replicas(atoms, 2, seed=5)
    positions = np.stack([a.positions for a in replicas])
    compiled = fast.SmallSystemPath(potential, atoms.numbers, replicas=2)
    e, f = fast.GeneralPath(potential, atoms.numbers, replicas=2)(positions)
    ec, fc = compiled(positions)
    np.testing.assert_allclose(ec, e, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(fc, f, rtol=1e-4, atol=2e-5)
    assert compiled.compiles == 1 and compiled.compiled
