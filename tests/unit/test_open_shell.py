"""A potential trained on closed-shell molecules warns about odd-electron inputs (radicals),
once per composition and charge, through every interface that reaches ``Potential.forward``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase.build import molecule

import atomml
from atomml.models import create


def closed_shell_potential(flag=True):
    torch.manual_seed(0)
    metadata = {"name": "tiny-closed-shell", "closed_shell_only": flag}
    return create("schnet", elements=[1, 6, 8], cutoff=4.0, n_atom_basis=8, n_filters=8, n_interactions=1, n_rbf=4,
                  metadata=metadata)  # fmt: skip


def open_shell_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, UserWarning) and "odd number" in str(w.message)]


def test_a_radical_warns_once_per_calculator_not_per_step():
    atoms = molecule("CH3")  # 6 + 3 = 9 electrons
    atoms.calc = atomml.AtomMLCalculator(closed_shell_potential())
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(5):  # MD-like: new positions each call
            atoms.positions += rng.normal(0, 0.01, atoms.positions.shape)
            atoms.get_forces()
    messages = open_shell_warnings(record)
    assert len(messages) == 1, messages
    assert "CH3" in messages[0] and "9 electrons" in messages[0] and "tiny-closed-shell" in messages[0]
    assert "charge" in messages[0]  # what to do: give the charge of an ion


@pytest.mark.parametrize(
    "name, charge", [("CH4", None), ("CH3", 1), ("CH3", -1), ("H2O", 0)], ids=["methane", "cation", "anion", "water"]
)
def test_closed_shell_inputs_do_not_warn(name, charge):
    atoms = molecule(name)
    if charge is not None:
        atoms.info["charge"] = charge
    atoms.calc = atomml.AtomMLCalculator(closed_shell_potential())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        atoms.get_potential_energy()
    assert open_shell_warnings(record) == []


def test_potentials_without_the_marker_do_not_warn():
    for flag in (False, None):
        atoms = molecule("CH3")
        atoms.calc = atomml.AtomMLCalculator(closed_shell_potential(flag))
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            atoms.get_potential_energy()
        assert open_shell_warnings(record) == []


def test_a_batch_names_each_odd_composition_once():
    potential = closed_shell_potential()
    batch = [molecule("CH4"), molecule("CH3"), molecule("OH"), molecule("CH3"), molecule("H2O")]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        potential(atomml.from_ase(batch))
        potential(atomml.from_ase(batch))
    messages = open_shell_warnings(record)
    assert len(messages) == 2, messages
    assert "CH3" in messages[0] and "9 electrons" in messages[0]
    assert "HO" in messages[1] and "9 electrons" in messages[1]


def test_the_shipped_organic_potential_warns_on_a_methyl_radical():
    """Needs the shipped header's ``metadata["closed_shell_only"]`` (tensornet-organic-gfn2)."""
    assert atomml.read_header("tensornet-organic-gfn2")["metadata"].get("closed_shell_only") is True
    atoms = molecule("CH3")
    atoms.calc = atomml.AtomMLCalculator("tensornet-organic-gfn2")
    with pytest.warns(UserWarning, match="9 electrons, an odd number"):
        atoms.get_potential_energy()
