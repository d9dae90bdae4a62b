"""The torch-sim model and batched relaxation (atomml.interfaces.torch_sim): torch-sim's own interface checks, the ASE calculator's numbers on
every structure of a batch, the total charge, ASE's cell-filter forces, ASE's FIRE.

Run with torch-sim 0.3.0 in .venv (Python 3.11) and with 0.6.2 by dev/torchsim-py312.sh
(Python 3.12): where their APIs differ, the tests take ase_fire and check what
each version does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.filters import FrechetCellFilter
from ase.stress import voigt_6_to_full_3x3_stress

import atomml
from atomml.models import create

ts = pytest.importorskip("torch_sim")
from torch_sim.models.interface import validate_model_outputs  # noqa: E402

from atomml.interfaces.torch_sim import AtomMLModel, ase_fire, relax, with_charge  # noqa: E402

METALS, ORGANIC = "tensornet-metals-emt", "tensornet-organic-gfn2"
STATE_EXTRAS = hasattr(ts.SimState, "system_extras")  # torch-sim 0.6: states carry per-system extras


def strained(atoms: Atoms, seed: int) -> Atoms:
    """A rattled copy under a random non-symmetric strain: a cell whose transpose is another
    cell, so that a row/column mix-up changes every number."""
    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.03 * rng.standard_normal((3, 3))), scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def crystals() -> list[Atoms]:
    return [strained(bulk("Cu", "fcc", a=3.6) * (2, 2, 2), 1), strained(bulk("Al", "fcc", a=4.05, cubic=True), 2),
            strained(bulk("Au", "hcp", a=2.9, c=4.8) * (2, 1, 1), 3)]  # fmt: skip


def molecules() -> list[Atoms]:
    boxed = molecule("CH3COOH")
    boxed.center(vacuum=4.0)  # a box, not periodic: a molecule all the same
    return [molecule("CH3CH2OH"), molecule("H2O"), boxed, molecule("C6H6")]


def state_of(structures: list[Atoms], dtype: torch.dtype = torch.float64, device: str = "cpu"):
    return ts.io.atoms_to_state(structures, torch.device(device), dtype)


def test_torch_sim_validates_the_model(device, dtype):
    """torch-sim's own contract check (crystals in one batch and each alone, inputs unchanged:
    Si and Fe in 0.3.0; Si, Mg and Fe, a translation by a lattice vector and a benzene molecule
    in 0.6.2) on a small random TensorNet, with float64 and float32 states."""
    torch.manual_seed(0)
    elements = [1, 6, 12, 14, 26]  # H, C, Mg, Si, Fe
    potential = create("tensornet", elements=elements, cutoff=4.0, hidden_channels=8, num_layers=1, num_rbf=8)
    model = AtomMLModel(potential, device=device, dtype=dtype, compute_stress=False)
    validate_model_outputs(model, device, dtype)  # switches stress on through the setter
    assert model.compute_stress
    out = model(state_of([bulk("Si", "diamond", a=5.43)], dtype, device))
    assert out["energy"].dtype == out["forces"].dtype == out["stress"].dtype == dtype
    assert potential.dtype == torch.float32  # the network keeps its own dtype; the caller's object unchanged


# The model puts all systems of a state in one graph and evaluates the potential once, as
# atomml.evaluate does; the calculator evaluates one structure at a time. The float32 network
# then sees the same edges in another order (the calculator's neighbour list is built with a
# 0.5 Å skin and filtered), so sums round differently: measured ~1e-7 relative on energies,
# <1e-6 eV/Å on forces, ~1e-8 eV/Å³ on stress (and bit-identical results with skin=0). The
# metals' EMT-like totals are near zero (~0.3 eV for 8 atoms), so the energy tolerance has an
# absolute floor of 1e-6 eV per atom, ten times the round-off of a float32 per-atom energy.
@pytest.mark.parametrize("name", [METALS, ORGANIC])
def test_every_structure_of_a_batch_matches_the_calculator(name):
    structures = crystals() if name == METALS else molecules()
    model = AtomMLModel(name, device="cpu")
    out = model(state_of(structures))
    forces = torch.split(out["forces"], [len(a) for a in structures])
    calc = atomml.AtomMLCalculator(name, device="cpu")
    for b, atoms in enumerate(structures):
        atoms.calc = calc
        energy = atoms.get_potential_energy()
        assert float(out["energy"][b]) == pytest.approx(energy, rel=1e-6, abs=1e-6 * len(atoms)), b
        np.testing.assert_allclose(forces[b].numpy(), atoms.get_forces(), rtol=0, atol=1e-5, err_msg=str(b))
        if name == METALS:
            stress = voigt_6_to_full_3x3_stress(atoms.get_stress())
            np.testing.assert_allclose(out["stress"][b].numpy(), stress, rtol=0, atol=1e-6, err_msg=str(b))
        else:  # torch-sim keeps "stress" in the output; molecules have none
            assert torch.isnan(out["stress"][b]).all()


def test_total_charge_from_the_state():
    """with_charge gives a state a charge that the model reads and that an optimiser's state
    keeps through splitting and concatenation: torch-sim 0.6.2 keeps it as a state extra (also
    through the optimiser's init, and reads atoms.info into one itself), 0.3.0, whose states
    have none, as an attribute of a subclass (given again to the optimiser's state)."""
    hydroxide = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    structures = [hydroxide, molecule("H2O")]
    model = AtomMLModel(ORGANIC, device="cpu")
    state = with_charge(state_of(structures), [-1.0, 0.0])
    init, _ = ase_fire(model, cell=False)
    fire_state = init(state)
    if STATE_EXTRAS:
        assert fire_state.system_extras["charge"].tolist() == [-1.0, 0.0]
    else:
        fire_state = with_charge(fire_state, state.charge)
    rejoined = ts.state.concatenate_states(fire_state.split()[::-1])
    calc = atomml.AtomMLCalculator(ORGANIC, device="cpu")
    hydroxide.info["charge"] = -1
    structures[1].info["charge"] = 0
    expected = [calc.get_potential_energy(a) for a in structures]
    assert model(state)["energy"].tolist() == pytest.approx(expected, rel=1e-6)
    assert model(rejoined)["energy"].tolist() == pytest.approx(expected[::-1], rel=1e-6)
    assert fire_state.energy.tolist() == pytest.approx(expected, rel=1e-6)
    if STATE_EXTRAS:  # torch-sim's own reading of atoms.info, under either of its names for it
        for name in ("charge", "total_charge"):
            native = ts.io.atoms_to_state(
                structures, torch.device("cpu"), torch.float64, system_extras_map={name: "charge"}
            )
            assert model(native)["energy"].tolist() == pytest.approx(expected, rel=1e-6), name
    with pytest.warns(UserWarning, match="odd number"):  # neutral OH is a radical: the potential says so
        neutral = model(with_charge(state, 0.0))["energy"]  # a new charge replaces the old one
        with pytest.warns(UserWarning, match="carries no total charge"):  # after charged ones: said
            uncharged = model(state_of(structures))["energy"]  # a state without a charge is neutral
    assert abs(float(neutral[0]) - expected[0]) > 1e-3  # the charge is not a no-op for this potential
    assert uncharged.tolist() == pytest.approx(neutral.tolist(), rel=1e-6)


def test_frechet_cell_fire_sees_the_forces_of_ases_frechet_cell_filter():
    """torch-sim's cell optimiser turns the model's stress into cell forces as ASE's
    FrechetCellFilter does: both sign conventions (stress, virial) and the cell's
    orientation agree. Tolerance as for forces above."""
    structures = crystals()[:2]
    init, _ = ase_fire(AtomMLModel(METALS, device="cpu"), cell=True)
    state = init(state_of(structures))
    forces = torch.split(state.forces, [len(a) for a in structures])
    for b, atoms in enumerate(structures):
        atoms.calc = atomml.AtomMLCalculator(METALS, device="cpu")
        expected = FrechetCellFilter(atoms).get_forces()
        np.testing.assert_allclose(forces[b].numpy(), expected[:-3], rtol=0, atol=1e-5)
        np.testing.assert_allclose(state.cell_forces[b].numpy(), expected[-3:], rtol=0, atol=1e-5)


def test_relax_follows_ases_fire():
    """One torch-sim call relaxes molecules (a charged one included) and, in another, a cell,
    as atomml.relax (ASE's FIRE) does: the same criterion, (nearly) the same steps. torch-sim's
    FIRE lowers its mixing parameter one step before ASE's does, so paths may part slightly:
    steps within 1 and energies within 1e-4 eV (measured: equal steps, <1e-5 eV)."""
    hydroxide = Atoms("OH", positions=[[0, 0, 0], [0, 0, 1.05]])
    hydroxide.info["charge"] = -1
    molecules_ = [molecule("H2O"), hydroxide, molecule("NH3")]
    for atoms in molecules_:
        atoms.rattle(0.05, seed=7)
    cell = crystals()[1]
    results = relax(molecules_, ORGANIC, fmax=0.05, max_steps=200, cell=True)  # molecules: positions only
    results += relax([cell], METALS, fmax=0.02, max_steps=200, cell=True)
    references = [atomml.relax(a, ORGANIC, fmax=0.05, steps=200, cell=False) for a in molecules_]
    references.append(atomml.relax(cell, METALS, fmax=0.02, steps=200, cell=True))
    for result, reference in zip(results, references):
        assert result["converged"] and reference.converged
        assert abs(result["steps"] - reference.steps) <= 1
        assert result["energy"] == pytest.approx(reference.energy, abs=1e-4)
        assert result["fmax"] == pytest.approx(np.linalg.norm(reference.forces, axis=1).max(), abs=5e-3)
    assert results[-1]["atoms"].get_volume() == pytest.approx(references[-1].final_structure.get_volume(), rel=1e-4)
    assert cell.get_volume() == crystals()[1].get_volume()  # the input is not changed


def test_relax_batches_swaps_and_keeps_the_order():
    """Small batches (max_atoms) with structures swapped in and out, a step cap, a structure
    converged at the start (no step, as ASE), and a refusal of partial periodicity."""
    structures = [molecule(name) for name in ("H2O", "CH4", "NH3", "CH3OH", "C2H4")]
    for seed, atoms in enumerate(structures):
        atoms.rattle(0.05, seed=seed)
    results = relax(structures, ORGANIC, fmax=0.05, max_steps=200, cell=False, max_atoms=8)
    assert [r["atoms"].get_chemical_formula() for r in results] == [a.get_chemical_formula() for a in structures]
    assert all(r["converged"] and r["fmax"] < 0.05 and r["steps"] > 0 for r in results)
    again = relax([results[0]["atoms"], structures[1]], ORGANIC, fmax=0.05, max_steps=3, cell=False)
    assert again[0]["steps"] == 0 and again[0]["converged"]
    assert again[0]["energy"] == pytest.approx(results[0]["energy"], abs=1e-9)
    assert again[1]["steps"] == 3 and not again[1]["converged"]
    slab = bulk("Cu", cubic=True)
    slab.pbc = [True, True, False]
    with pytest.raises(atomml.InputError, match="some axes"):
        relax([slab], METALS, fmax=0.05, max_steps=10, cell=False)


def test_a_state_that_lost_its_charge_is_said():
    """torch-sim 0.3.0's integrate re-initialises the state and drops with_charge's charge: a
    model that has seen a charged state warns (once) when a later one carries none."""
    import warnings

    hydroxide = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    model = AtomMLModel(ORGANIC, device="cpu")
    neutral = state_of([molecule("H2O")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(neutral)  # no charge ever seen: nothing to say
        model(with_charge(state_of([hydroxide, molecule("H2O")]), [-1.0, 0.0]))
    with pytest.warns(UserWarning, match="carries no total charge, but an earlier state"):
        model(neutral)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(neutral)  # said once
