"""Energy terms (atomml.terms) against torchmd-net's priors, analytic values and brute force.

torchmd-net's priors take positions in the dataset's length unit and return energies in its
energy unit; here the dataset is Å and eV (distance_scale 1e-10 m, energy_scale e J), except
for Coulomb (see test_coulomb_equals_torchmdnet_prior).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

import atomml
from atomml import testing, units
from atomml.errors import InputError
from atomml.models import create, tiny_hyperparameters
from atomml.terms import available, create_term, tiny_settings

priors = pytest.importorskip("torchmdnet.priors")

ELEMENTS = [1, 6, 7, 8, 16]
EV_J = units.ELEMENTARY_CHARGE_C
TORCHMDNET_ZBL_J_M = 2.30707755e-28  # e^2 / (4 pi eps0) as torchmd-net's ZBL writes it


def structures(seed: int, n: int = 3) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = testing.random_molecule(ELEMENTS, int(rng.integers(6, 25)), seed=seed + k, min_distance=0.8, density=0.1)
        charges = rng.normal(scale=0.4, size=len(atoms))
        atoms.set_initial_charges(charges - charges.mean())  # neutral: fragments far apart add up
        out.append(atoms)
    return out


def zero_potential(terms: list[dict], elements=ELEMENTS):
    """A tiny SchNet whose readout is zeroed: the potential's energy is that of its terms."""
    potential = create("schnet", elements=elements, terms=terms, **tiny_hyperparameters("schnet", elements)).double()
    torch.nn.init.zeros_(potential.model.readout[-1].weight)
    torch.nn.init.zeros_(potential.model.readout[-1].bias)
    return potential


def ours(potential, batch: list[Atoms]) -> tuple[np.ndarray, np.ndarray]:
    out = potential(atomml.from_ase(batch, dtype=torch.float64))
    return out["energy"].detach().numpy(), out["forces"].detach().numpy()


def theirs(prior, batch: list[Atoms], length: float = 1.0, box=None, charges: bool = False):
    """Energy (B,) and forces (N, 3) of a torchmd-net prior; ``length`` multiplies positions."""
    z = torch.tensor(np.concatenate([a.numbers for a in batch]))
    pos = torch.tensor(np.concatenate([a.positions for a in batch]) * length, requires_grad=True)
    index = torch.cat([torch.full((len(a),), k) for k, a in enumerate(batch)])
    extra = {"partial_charges": torch.tensor(np.concatenate([a.get_initial_charges() for a in batch]))} if charges else None
    y = prior.post_reduce(torch.zeros(len(batch), 1, dtype=torch.float64), z, pos, index, box, extra)
    (grad,) = torch.autograd.grad(y.sum(), pos)
    return y.detach().squeeze(-1).numpy(), -grad.numpy() * length


def assert_same(a, b, rtol=1e-6):
    (e1, f1), (e2, f2) = a, b
    np.testing.assert_allclose(e1, e2, rtol=rtol, atol=0)
    assert np.abs(f1 - f2).max() <= rtol * np.abs(f2).max()
    assert np.abs(e2).min() > 1e-8, "the reference energies vanish: the comparison would be vacuous"


def zbl_prior(cutoff: float):
    return priors.ZBL(cutoff, 64, atomic_number=list(range(100)), distance_scale=1e-10, energy_scale=EV_J).double()


def test_zbl_equals_torchmdnet_prior():
    batch = structures(1)
    prior = zbl_prior(2.5)
    potential = zero_potential([{"name": "zbl", "cutoff": 2.5}])
    assert_same(ours(potential, batch), theirs(prior, batch))
    # torchmd-net raises its integer atomic numbers to the power 0.23 in float32 (~1e-7
    # relative) and writes e^2/(4 pi eps0) with nine digits (1e-9): without both, the two agree
    # to round-off
    prior.atomic_number = prior.atomic_number.double()
    energy, forces = theirs(prior, batch)
    exact = units.COULOMB_EV_ANGSTROM * EV_J * 1e-10 / TORCHMDNET_ZBL_J_M
    assert_same(ours(potential, batch), (energy * exact, forces * exact), rtol=1e-12)


def test_zbl_periodic_equals_torchmdnet_prior():
    atoms = testing.random_crystal([1, 6, 8], 30, seed=3, density=0.08, min_distance=0.8)
    atoms.set_cell(np.diag([7.0, 7.5, 8.0]), scale_atoms=True)
    prior = zbl_prior(3.0)
    prior.atomic_number = prior.atomic_number.double()  # see test_zbl_equals_torchmdnet_prior
    energy, forces = theirs(prior, [atoms], box=torch.tensor(atoms.cell.array))
    exact = units.COULOMB_EV_ANGSTROM * EV_J * 1e-10 / TORCHMDNET_ZBL_J_M
    assert_same(ours(zero_potential([{"name": "zbl", "cutoff": 3.0}]), [atoms]), (energy * exact, forces * exact), rtol=1e-12)


def test_d2_equals_torchmdnet_prior():
    batch = structures(2)
    prior = priors.D2(6.0, 64, atomic_number=list(range(100)), distance_scale=1e-10, energy_scale=EV_J, dtype=torch.float64)
    assert_same(ours(zero_potential([{"name": "d2", "cutoff": 6.0}]), batch), theirs(prior, batch), rtol=1e-12)


def test_coulomb_equals_torchmdnet_prior():
    """torchmd-net converts positions to nm and the energy with the dataset's length unit, which
    is right for data in nm only: compare there (positions given to it in nm). Its Coulomb
    constant is cut to six digits (2.30707e-28 J m, CODATA 2018: 2.307077552e-28): that ratio,
    3.3e-6, is the whole difference."""
    from atomml.convert.torchmdnet import TORCHMDNET_COULOMB_J_M

    batch = structures(3)
    # switch distances in nm for torchmd-net, Å for atomml; torchmd-net makes float32 tensors of
    # them, so they are chosen exact in binary
    prior = priors.Coulomb(0.0625, 0.375, 64, distance_scale=1e-9, energy_scale=EV_J)
    potential = zero_potential([{"name": "coulomb", "lower_switch": 0.625, "upper_switch": 3.75}])
    energy, forces = theirs(prior, batch, length=0.1, charges=True)
    exact = units.COULOMB_EV_ANGSTROM * EV_J * 1e-10 / TORCHMDNET_COULOMB_J_M
    assert 3e-6 < exact - 1 < 4e-6
    assert_same(ours(potential, batch), (energy * exact, forces * exact), rtol=1e-10)


def test_coulomb_is_the_analytic_energy_beyond_the_switch():
    atoms = Atoms("OH", positions=[[0, 0, 0], [0, 0, 7.0]], charges=[0.8, -0.3])
    potential = zero_potential([{"name": "coulomb", "lower_switch": 0.5, "upper_switch": 4.0}])
    energy, forces = ours(potential, [atoms])
    exact = units.COULOMB_EV_ANGSTROM * 0.8 * -0.3 / 7.0
    np.testing.assert_allclose(energy, [exact], rtol=1e-12)
    np.testing.assert_allclose(forces[1, 2], exact / 7.0, rtol=1e-10)  # -dE/dz = E / z (attractive)


def test_coulomb_refuses_missing_charges_and_periodic_structures():
    potential = zero_potential([{"name": "coulomb"}])
    with pytest.raises(InputError, match="partial charges"):
        ours(potential, [testing.random_molecule(ELEMENTS, 5)])
    crystal = testing.random_crystal(ELEMENTS, 5, seed=1)
    crystal.set_initial_charges(np.zeros(5))
    with pytest.raises(InputError, match="non-periodic"):
        ours(potential, [crystal])


def test_d2_periodic_against_brute_force():
    """Pairs across periodic images, summed with ASE's neighbour list and numpy."""
    from ase.neighborlist import neighbor_list

    from atomml.terms.dispersion import C6_TO_EV_A6, GRIMME_D2

    atoms = testing.random_crystal([1, 6, 8], 6, seed=4, density=0.07)
    cutoff = 6.0
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    c6 = np.array([GRIMME_D2[z - 1][0] for z in atoms.numbers]) * C6_TO_EV_A6
    r0 = np.array([GRIMME_D2[z - 1][1] for z in atoms.numbers])
    damping = 1 / (1 + np.exp(-20 * (d / (r0[i] + r0[j]) - 1)))
    expected = -0.5 * np.sum(np.sqrt(c6[i] * c6[j]) / d**6 * damping)
    energy, _ = ours(zero_potential([{"name": "d2", "cutoff": cutoff}], elements=[1, 6, 8]), [atoms])
    np.testing.assert_allclose(energy, [expected], rtol=1e-12)


def test_d2_refuses_elements_without_parameters():
    with pytest.raises(ValueError, match="H to Xe"):
        zero_potential([{"name": "d2"}], elements=[1, 79])


@pytest.mark.parametrize("name", available())
def test_every_term_passes_the_battery(name):
    """Each registered term with its tiny preset, on a tiny potential: forces and stress by
    finite differences, invariance, batches (periodic checks where the term allows them)."""
    term = create_term(name, **tiny_settings(name, ELEMENTS))
    potential = create("tensornet", elements=ELEMENTS, terms=[term], **tiny_hyperparameters("tensornet", ELEMENTS)).double()
    molecules = structures(5, n=2)
    for atoms in molecules:
        testing.check_forces_finite_difference(potential, atoms)
        testing.check_invariance(potential, atoms)
    testing.check_batch_consistency(potential, molecules)
    testing.check_fragment_additivity(potential, molecules[0], molecules[1])
    if not term.long_range:
        crystal = testing.random_crystal(ELEMENTS, 8, seed=6)
        testing.check_stress_finite_difference(potential, crystal)
        testing.check_supercell_additivity(potential, crystal)
        testing.check_cutoff_smoothness(potential, element=6)


def test_terms_save_load_and_report_long_range(tmp_path):
    potential = zero_potential([{"name": "zbl", "cutoff": 2.0}, {"name": "coulomb"}])
    assert potential.long_range and potential.cutoff == 3.5
    path = atomml.save_potential(potential, tmp_path / "p")
    header = atomml.read_header(path)
    assert header["format_version"] == 3 and [t["name"] for t in header["energy_terms"]] == ["zbl", "coulomb"]
    from atomml.potential_file import is_long_range

    assert is_long_range(header)
    loaded = atomml.load_potential(path).double()
    batch = structures(7)
    assert_same(ours(loaded, batch), ours(potential, batch), rtol=1e-12)
    # without terms: the same version, and not long-range
    plain = atomml.save_potential(create("schnet", elements=[1], **tiny_hyperparameters("schnet", [1])), tmp_path / "q")
    assert atomml.read_header(plain)["format_version"] == 3 and not is_long_range(atomml.read_header(plain))
