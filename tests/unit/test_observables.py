"""Observables with a committee's interval by reweighting (atomml.uncertainty.observables),
checked where the answer is known: a harmonic well sampled exactly with one spring constant and
reweighted to others gives <x^2> = kT/k and <E> = kT/2 within the effective sample size's
error; far-off members are flagged; a committee's member energies are its members'."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule

from atomml.models import committee_of, create, tiny_hyperparameters
from atomml.uncertainty.observables import interval, member_energies, reweight
from atomml.units import BOLTZMANN_EV_PER_K

T = 300.0
KT = BOLTZMANN_EV_PER_K * T


def test_reweighting_a_harmonic_well_gives_each_members_averages():
    rng = np.random.default_rng(7)
    sampled_k, springs = 1.0, np.array([0.8, 0.9, 1.0, 1.1, 1.25])  # eV/Å^2
    x = rng.normal(0.0, np.sqrt(KT / sampled_k), 200_000)  # exact Boltzmann samples of k0 x^2 / 2
    energies = 0.5 * springs[:, None] * x[None, :] ** 2
    rw = reweight(energies, 0.5 * sampled_k * x**2, T)
    assert rw.ess[2] == pytest.approx(len(x))  # the sampled member itself: uniform weights
    result = interval(np.column_stack([x**2, energies.T]), rw)  # x^2, and each member's energy
    for k, spring in enumerate(springs):
        x2, energy = result["members"][k, 0], result["members"][k, 1 + k]
        se_x2 = np.sqrt(2.0) * (KT / spring) / np.sqrt(rw.ess[k])  # Var(x^2) = 2 (kT/k)^2
        assert abs(x2 - KT / spring) < 4 * se_x2, (k, x2, KT / spring)
        assert abs(energy - KT / 2) < 4 * (KT / np.sqrt(2.0)) / np.sqrt(rw.ess[k])  # Var(E) = (kT)^2 / 2
    members_x2 = result["members"][:, 0]
    # the members' spread is the interval: the stiffest and softest members bound it
    assert members_x2.min() <= result["low"][0] < result["mean"][0] < result["high"][0] <= members_x2.max()
    assert result["high"][0] - result["low"][0] > 0.3 * (KT / springs.min() - KT / springs.max())
    assert result["mean"][0] == pytest.approx(members_x2.mean()) and result["std"][0] == pytest.approx(members_x2.std())
    assert result["flagged"] == []


def test_members_without_overlap_are_flagged():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, np.sqrt(KT), 2000)
    energies = np.stack([0.5 * x**2, 0.5 * (x - 4 * np.sqrt(KT)) ** 2])  # the second's well is 4 sigma away
    rw = reweight(energies, 0.5 * x**2, T)
    assert rw.ess[1] < 100 < rw.ess[0]
    assert interval(x**2, rw, min_ess=100)["flagged"] == [1]
    with pytest.raises(ValueError, match="frames"):
        interval(x[:10], rw)
    with pytest.raises(ValueError, match="temperature"):
        reweight(energies, 0.5 * x**2, 0.0)


def test_member_energies_of_a_committee_on_frames():
    elements = [1, 6, 8]
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(create("tensornet", elements=elements, **tiny_hyperparameters("tensornet", elements)).double())
    frames = []
    for seed in range(5):
        atoms = molecule("CH3OH")
        atoms.rattle(0.05, seed=seed)
        frames.append(atoms)
    energies = member_energies(committee_of(members), frames, batch_size=2)
    assert energies.shape == (3, 5)
    from atomml.graph import from_ase

    for k, member in enumerate(members):
        expected = member(from_ase(frames, dtype=torch.float64), compute_forces=False)["energy"].detach().numpy()
        np.testing.assert_allclose(energies[k], expected, rtol=1e-12, atol=1e-12)
