"""A third-party plugin: a tiny architecture and a tiny energy term defined only here, found
through entry-point metadata as an installed package's would be, then built, run through the
battery, saved, loaded (in this process and in a fresh interpreter) and run in OpenMM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import atomml
from atomml import testing, units
from atomml.models import ARCHITECTURES, available, create, tiny_hyperparameters
from atomml.terms import TERMS
from atomml.terms import available as available_terms

PLUGIN = '''
"""A tiny architecture (radial pair sums, with predicted charges) and a tiny repulsion term."""

import dataclasses
import math

import torch
from torch import nn

from atomml.contract import ArchitectureOutput
from atomml.nn.scatter import scatter_sum
from atomml.terms.base import EnergyTerm, edges_within, pair_energies_per_atom


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    elements: tuple
    cutoff: float = 3.0
    features: int = 8

    @classmethod
    def tiny(cls, elements):
        return cls(elements=tuple(elements), cutoff=3.0, features=6)


class TinyNet(nn.Module):
    config_cls = TinyConfig

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(len(config.elements), config.features)
        self.radial = nn.Linear(4, config.features)
        self.energy = nn.Linear(config.features, 1)
        self.charge = nn.Linear(config.features, 1)

    def forward(self, graph, species, edge_index, edge_vec):
        d = edge_vec.norm(dim=1, keepdim=True)
        envelope = 0.5 * (torch.cos(d * (math.pi / self.config.cutoff)) + 1.0)
        basis = torch.cat([torch.exp(-k * d) for k in (0.5, 1.0, 2.0, 4.0)], dim=1)
        h = self.embedding(species).to(d.dtype)
        messages = self.radial(basis) * envelope * h[edge_index[1]]
        h = h + torch.tanh(scatter_sum(messages, edge_index[0], h.shape[0]))
        return ArchitectureOutput(self.energy(h).squeeze(-1), node_features=h, charges=0.3 * torch.tanh(self.charge(h)).squeeze(-1))


@dataclasses.dataclass(frozen=True)
class TinyRepulsionConfig:
    strength: float = 0.5
    cutoff: float = 2.0

    @classmethod
    def tiny(cls, elements=()):
        return cls()


class TinyRepulsion(EnergyTerm):
    config_cls = TinyRepulsionConfig

    def forward(self, inputs):
        within, d = edges_within(inputs, self.config.cutoff)
        energy = self.config.strength * (1.0 - d / self.config.cutoff) ** 3 * within.to(d.dtype)
        return pair_energies_per_atom(energy, inputs.edge_index, inputs.positions.shape[0])
'''

ENTRY_POINTS = """
[atomml.architectures]
tinynet = atomml_tiny_plugin:TinyNet

[atomml.energy_terms]
tinyrep = atomml_tiny_plugin:TinyRepulsion
"""

ELEMENTS = [1, 6, 8]


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """The plugin as an installed distribution: a module and its dist-info on sys.path."""
    (tmp_path / "atomml_tiny_plugin.py").write_text(PLUGIN)
    info = tmp_path / "atomml_tiny_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: atomml-tiny-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    ARCHITECTURES.unregister("tinynet")
    TERMS.unregister("tinyrep")
    sys.modules.pop("atomml_tiny_plugin", None)


def build(terms):
    torch.manual_seed(0)
    potential = create("tinynet", elements=ELEMENTS, terms=terms, **tiny_hyperparameters("tinynet", ELEMENTS))
    return potential.double()


def neutral_molecule(n, seed):
    atoms = testing.random_molecule(ELEMENTS, n, seed=seed)
    atoms.set_initial_charges(np.zeros(n))
    return atoms


def test_plugin_is_found_built_checked_saved_and_loaded(plugin, tmp_path):
    assert "tinynet" in available() and "tinyrep" in available_terms()
    # a short-range potential: the whole battery, periodic checks included
    short = build([{"name": "tinyrep"}])
    molecule, crystal = neutral_molecule(10, 1), testing.random_crystal(ELEMENTS, 8, seed=2)
    for atoms in (molecule, crystal):
        testing.check_invariance(short, atoms)
        testing.check_forces_finite_difference(short, atoms)
    testing.check_stress_finite_difference(short, crystal)
    testing.check_supercell_additivity(short, crystal)
    testing.check_periodic_wrapping(short, crystal)
    testing.check_cutoff_smoothness(short, element=6)
    testing.check_batch_consistency(short, [molecule, molecule[:4]])
    testing.check_isolated_atoms(short)
    testing.check_fragment_additivity(short, molecule, neutral_molecule(6, 3))
    testing.check_bad_inputs(short.float(), molecule)

    # with Coulomb on the plugin's predicted charges: long-range, in the file and after loading
    potential = build([{"name": "tinyrep"}, {"name": "coulomb", "charges": "predicted"}])
    assert potential.long_range
    testing.check_forces_finite_difference(potential, molecule)
    # predicted charges are shifted to the structure's total charge over all its atoms, so two
    # far-apart fragments exchange charge: the additivity check sees that non-locality
    with pytest.raises(AssertionError, match="do not add up"):
        testing.check_fragment_additivity(potential, molecule, neutral_molecule(6, 3))
    path = atomml.save_potential(potential, tmp_path / "tiny")
    header = atomml.read_header(path)
    assert header["architecture"] == "tinynet" and [t["name"] for t in header["energy_terms"]] == ["tinyrep", "coulomb"]
    loaded = atomml.load_potential(path, dtype=torch.float64)
    graph = atomml.from_ase(molecule, dtype=torch.float64)
    expected = potential(graph)
    got = loaded(graph)
    torch.testing.assert_close(got["energy"], expected["energy"], rtol=1e-12, atol=0)
    torch.testing.assert_close(got["forces"], expected["forces"], rtol=1e-12, atol=1e-12)

    # a fresh interpreter finds the plugin by its entry point alone (nothing imports it)
    script = textwrap.dedent(f"""
        import json, sys, torch, atomml
        from ase.io import read
        potential = atomml.load_potential({str(path)!r}, dtype=torch.float64)
        atoms = read({str(tmp_path / "m.extxyz")!r})
        energy = float(potential(atomml.from_ase(atoms, dtype=torch.float64))["energy"][0])
        print(json.dumps({{"energy": energy, "plugin_imported_by_atomml": "atomml_tiny_plugin" in sys.modules}}))
    """)
    molecule.write(tmp_path / "m.extxyz")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["plugin_imported_by_atomml"]
    from ase.io import read

    written = float(potential(atomml.from_ase(read(tmp_path / "m.extxyz"), dtype=torch.float64))["energy"][0].detach())
    assert abs(result["energy"] - written) <= 1e-10 * abs(written)


def test_plugin_runs_in_openmm_and_reports_long_range(plugin, tmp_path):
    openmm = pytest.importorskip("openmm")
    pytest.importorskip("openmmml")
    from openmm import unit
    from openmmml import MLPotential

    from atomml.dynamics.openmm import topology

    molecule = neutral_molecule(9, 4)
    for terms, long_range in (([{"name": "tinyrep"}], False), ([{"name": "coulomb", "charges": "predicted"}], True)):
        potential = build(terms)
        path = atomml.save_potential(potential, tmp_path / f"tiny{len(terms)}{long_range}")
        ml = MLPotential("atomml", potential=str(path), precision="double")
        assert ml._impl.getMLLongRange() is long_range
        system = ml.createSystem(topology(molecule))
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(molecule.positions * units.ANGSTROM_TO_NM)
        state = context.getState(getEnergy=True, getForces=True)
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * units.KJ_PER_MOL_TO_EV
        forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        expected = potential(atomml.from_ase(molecule, dtype=torch.float64))
        assert abs(energy - float(expected["energy"][0].detach())) <= 1e-9 * abs(energy)
        reference = expected["forces"].detach().numpy() * units.EV_TO_KJ_PER_MOL * units.NM_TO_ANGSTROM
        assert np.abs(forces - reference).max() <= 1e-9 * np.abs(reference).max()
    # a potential named only in createSystem's arguments: its range is unknown to openmm-ml
    assert MLPotential("atomml")._impl.getMLLongRange() is None
