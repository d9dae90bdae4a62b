"""The physics battery (atomml.testing) for every registered architecture, float32 and float64."""

from __future__ import annotations

import pytest
import torch

from atomml import testing
from atomml.models import available, create, tiny_hyperparameters

ELEMENTS = [1, 6, 8, 29]


def make(arch: str, dtype: torch.dtype):
    """The architecture's tiny preset (3.5 Å for atomml's own)."""
    torch.manual_seed(0)
    potential = create(arch, elements=ELEMENTS, atomic_energies={1: -0.5, 6: -1.0}, **tiny_hyperparameters(arch, ELEMENTS))
    return potential.to(dtype)


ARCHS = available()  # every registered architecture, plugins included


@pytest.fixture(scope="module")
def molecule():
    return testing.random_molecule(ELEMENTS, 14, seed=1)


@pytest.fixture(scope="module")
def crystal():
    return testing.random_crystal(ELEMENTS, 10, seed=2)


@pytest.fixture(scope="module")
def slab():
    return testing.random_crystal(ELEMENTS, 10, seed=3, pbc=(True, True, False))


@pytest.fixture(scope="module")
def tiny_cell():
    # a cell smaller than the cutoff: atoms see periodic images of themselves
    return testing.random_crystal(ELEMENTS, 2, seed=4, density=0.08, min_distance=1.2)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("structure", ["molecule", "crystal", "slab", "tiny_cell"])
def test_invariance(arch, dtype, structure, request):
    atoms = request.getfixturevalue(structure)
    potential = make(arch, dtype)
    forces = potential(__import__("atomml").from_ase(atoms, dtype=dtype))["forces"]
    assert float(forces.abs().max()) > 1e-3, "forces vanish: the check would be vacuous"
    testing.check_invariance(potential, atoms)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("structure", ["crystal", "slab", "tiny_cell"])
def test_periodic_wrapping(arch, structure, request):
    testing.check_periodic_wrapping(make(arch, torch.float64), request.getfixturevalue(structure))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("structure", ["molecule", "crystal", "slab", "tiny_cell"])
def test_forces_finite_difference(arch, structure, request):
    testing.check_forces_finite_difference(make(arch, torch.float64), request.getfixturevalue(structure))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("structure", ["crystal", "slab", "tiny_cell"])
def test_stress_finite_difference(arch, structure, request):
    testing.check_stress_finite_difference(make(arch, torch.float64), request.getfixturevalue(structure))


@pytest.mark.parametrize("arch", ARCHS)
def test_cutoff_smoothness(arch, dtype):
    testing.check_cutoff_smoothness(make(arch, dtype), element=6)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("structure", ["crystal", "slab", "tiny_cell"])
def test_supercell_additivity(arch, dtype, structure, request):
    testing.check_supercell_additivity(make(arch, dtype), request.getfixturevalue(structure))


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_consistency(arch, dtype, molecule, crystal, tiny_cell):
    potential = make(arch, dtype)
    testing.check_batch_consistency(potential, [molecule, crystal, molecule[:5], tiny_cell])
    testing.check_batch_consistency(potential, [crystal, tiny_cell, crystal])


@pytest.mark.parametrize("arch", ARCHS)
def test_no_gradient_leak(arch, molecule, crystal, slab):
    testing.check_no_gradient_leak(make(arch, torch.float64), [molecule, crystal, slab])


def _nve_cases() -> list:
    """Slow checks (CI time): a committee's NVE run (three members per force call, ~20 s; its energy
    is its members' mean, each conserving energy in its own right) and TensorNet's float32 one
    (6 s; its float64 run and SchNet's float32 run stay in the default selection)."""
    cases = []
    for arch in ARCHS:
        for dtype in (torch.float32, torch.float64):
            slow = arch == "committee" or (arch == "tensornet" and dtype == torch.float32)
            marks = [pytest.mark.slow] if slow else []
            cases.append(pytest.param(arch, dtype, marks=marks, id=f"{str(dtype).replace('torch.', '')}-{arch}"))
    return cases


@pytest.mark.parametrize("arch, dtype", _nve_cases())
def test_nve_conservation(arch, dtype):
    # atoms well apart: a random-weight model has no short-range repulsion, and atoms that start
    # 1 Å apart can run into each other within the 100 fs (an overlap error, not a drift)
    crystal = testing.random_crystal(ELEMENTS, 10, seed=2, min_distance=1.7, density=0.05)
    testing.check_nve_conservation(make(arch, dtype), crystal * (2, 2, 2), steps=200)


@pytest.mark.parametrize("arch", ARCHS)
def test_isolated_atoms(arch, dtype):
    testing.check_isolated_atoms(make(arch, dtype))


@pytest.mark.parametrize("arch", ARCHS)
def test_fragment_additivity(arch, molecule):
    testing.check_fragment_additivity(make(arch, torch.float64), molecule, testing.random_molecule(ELEMENTS, 6, seed=7))


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_inputs(arch, molecule):
    testing.check_bad_inputs(make(arch, torch.float32), molecule)


def test_battery_runs_without_pytest():
    """A plugin's own test script can run the battery where pytest is not installed."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.modules['pytest'] = None  # importing pytest now fails, as where it is not installed\n"
        "import torch\n"
        "from atomml import testing\n"
        "from atomml.models import create, tiny_hyperparameters\n"
        "p = create('schnet', elements=[1, 8], **tiny_hyperparameters('schnet', [1, 8]))\n"
        "m = testing.random_molecule([1, 8], 6, seed=1)\n"
        "testing.check_bad_inputs(p, m)\n"
        "testing.check_isolated_atoms(p)\n"
        "testing.check_equivariant(lambda v: v * v.norm(dim=-1, keepdim=True), [torch.randn(4, 3)], [testing.vector()], testing.vector())\n"
        "try:\n"
        "    testing.check_equivariant(lambda v: v + 1.0, [torch.randn(4, 3)], [testing.vector()], testing.vector())\n"
        "except AssertionError:\n"
        "    print('caught')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("caught")
