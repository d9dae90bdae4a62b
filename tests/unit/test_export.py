"""Architectures under torch.compile (one graph: fullgraph=True) and torch.export (saved, loaded and
run on other sizes), against the eager potential."""

from __future__ import annotations

import pytest
import torch

import atomml
from atomml import testing
from atomml.export import PotentialModule, energy_and_forces
from atomml.models import available, create, tiny_hyperparameters

ELEMENTS = [1, 6, 8]


def _setup(architecture):
    torch.manual_seed(0)
    potential = create(architecture, elements=ELEMENTS, **tiny_hyperparameters(architecture, ELEMENTS)).double()
    molecule = testing.random_molecule(ELEMENTS, 12, seed=1)
    crystal = testing.random_crystal(ELEMENTS, 20, seed=2)
    slab = testing.random_crystal(ELEMENTS, 15, seed=3, pbc=(True, True, False))
    return potential, PotentialModule(potential), molecule, crystal, slab


SINGLE_MODELS = [a for a in available() if a != "committee"]  # committees are not exported (test_committee.py)


@pytest.fixture(scope="module", params=SINGLE_MODELS)  # every registered single-model architecture
def setup(request):
    return _setup(request.param)


# TensorNet's dynamic fullgraph trace takes ~50 s on a 2-core CPU: a slow check (./test.sh -m slow).
# The default selection still traces TensorNet into one graph (with energy terms) by torch.export:
# test_exported_program_saved_loaded_and_run_on_other_sizes and test_energy_terms_export.
COMPILED = [pytest.param(a, marks=pytest.mark.slow) for a in SINGLE_MODELS]  # SchNet's: 7 s, slow since session 13 (CI time)


def reference(potential, structures):
    out = potential(atomml.from_ase(structures, dtype=torch.float64))
    return out["energy"].detach(), out["forces"].detach()


def assert_close(got, expected):
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_module_equals_potential(setup):
    potential, module, molecule, crystal, slab = setup
    structures = [molecule, crystal, slab]
    assert_close(energy_and_forces(module, module.example_inputs(structures)), reference(potential, structures))


def test_exported_program_saved_loaded_and_run_on_other_sizes(setup, tmp_path):
    potential, module, molecule, crystal, slab = setup
    program = torch.export.export(module, module.example_inputs([crystal, molecule]), dynamic_shapes=module.dynamic_shapes())
    torch.export.save(program, tmp_path / "potential.pt2")
    loaded = torch.export.load(tmp_path / "potential.pt2").module()
    for structures in ([slab], [molecule, crystal, slab, molecule]):
        assert_close(energy_and_forces(loaded, module.example_inputs(structures)), reference(potential, structures))


@pytest.mark.parametrize("architecture", COMPILED)
def test_compiles_to_one_graph(architecture):
    potential, module, molecule, crystal, slab = _setup(architecture)
    torch._dynamo.reset()
    # fullgraph=True: any graph break in the model is an error. aot_eager traces forward and
    # backward as the default inductor backend does, without the C++ code generation.
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend="aot_eager")
    for structures in ([crystal, molecule], [slab]):
        assert_close(energy_and_forces(compiled, module.example_inputs(structures)), reference(potential, structures))


def _with_terms():
    torch.manual_seed(1)
    potential = create("tensornet", elements=ELEMENTS, terms=[{"name": "zbl", "cutoff": 2.0}, {"name": "d2", "cutoff": 3.0}],
                       **tiny_hyperparameters("tensornet", ELEMENTS)).double()  # fmt: skip
    molecule, crystal = testing.random_molecule(ELEMENTS, 12, seed=1), testing.random_crystal(ELEMENTS, 20, seed=2)
    return potential, PotentialModule(potential), molecule, crystal


@pytest.mark.slow  # a dynamic fullgraph trace of TensorNet, ~25 s; the export below traces the same graph
def test_energy_terms_compile():
    """Terms run inside the one core energy function, so they compile into the same graph."""
    potential, module, molecule, crystal = _with_terms()
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, dynamic=True, backend="aot_eager")
    assert_close(energy_and_forces(compiled, module.example_inputs([crystal, molecule])), reference(potential, [crystal, molecule]))


def test_energy_terms_export():
    """... and export with the architecture, run on other sizes than traced."""
    potential, module, molecule, crystal = _with_terms()
    program = torch.export.export(module, module.example_inputs([crystal, molecule]), dynamic_shapes=module.dynamic_shapes())
    assert_close(energy_and_forces(program.module(), module.example_inputs([molecule, crystal])), reference(potential, [molecule, crystal]))
