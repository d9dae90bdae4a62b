"""The hydration workflow end to end on a tiny setting (methane, few states, short sampling).

The number is not meaningful at this length; the test checks that every stage runs, that the
outputs are written (summary, plots), that the default protocol loads, and that a second run
resumes instead of starting over. FreeSolv validation is a long script run, not a CI test.
"""

from __future__ import annotations

import json

import numpy as np

import pytest

pytest.importorskip("openmm")
pytest.importorskip("rdkit")
pytest.importorskip("pymbar")

TINY = ("padding: 6.0\ncutoff_nm: 0.7\nelectrostatics: [1.0, 0.0]\nsterics: [1.0, 0.5, 0.0]\n"
        "samples: 12\nsteps_per_sample: 20\nequilibration_steps: 50\ndensity_equilibration_ps: 6.0\n")  # fmt: skip


def test_hydration_workflow_tiny(tmp_path):
    from atomml.cli import main
    from atomml.fe.hydration import default_protocol

    assert default_protocol().samples == 500
    protocol = tmp_path / "tiny.yaml"
    protocol.write_text(TINY)
    out = tmp_path / "methane"
    argv = ["fe", "hydration", "C", "--protocol", str(protocol), "-o", str(out), "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["states"] == ["elec=1, vdw=1", "elec=0, vdw=1", "elec=0, vdw=0.5", "elec=0, vdw=0"]
    assert abs(summary["dG_hydration_kcal_per_mol"]) < 20 and summary["dG_hydration_error_kcal_per_mol"] > 0
    assert summary["sampler"] == "windows" and "replica_exchange" not in summary
    # the solute's dispersion tail beyond 0.7 nm (tests/test_fe_alchemy.py checks its closed form):
    # a few tenths of kT, removed with the coupling, so decoupling costs that much more
    tail = summary["solute_dispersion_correction_kt"]
    assert -1.0 < tail < -0.05
    assert summary["dF_decouple_solvent_kt"] == pytest.approx(summary["dF_decouple_solvent_sampled_kt"] - tail)
    for leg in ("solvent", "vacuum"):
        assert len(summary["ns_per_day_per_state"][leg]) == 4 and min(summary["ns_per_day_per_state"][leg]) > 0
    for leg in ("solvent", "vacuum"):
        for png in ("overlap.png", "convergence.png"):
            assert (out / leg / png).read_bytes()[:4] == b"\x89PNG"
    from openmm import app, unit

    npt = list((out / "setup").glob("solvent_npt_6ps_*.xml"))
    assert len(npt) == 1
    import openmm

    before = app.AmberInpcrdFile(str(out / "setup" / "solvent.inpcrd")).boxVectors
    after = openmm.XmlSerializer.deserialize(npt[0].read_text()).getPeriodicBoxVectors()
    volume = [float(b[0][0].value_in_unit(unit.nanometer) * b[1][1].value_in_unit(unit.nanometer)
                    * b[2][2].value_in_unit(unit.nanometer)) for b in (before, after)]
    assert volume[1] < 0.95 * volume[0]  # tleap's box is too dilute: NPT shrinks it before sampling (3 ps gave 4.9-6 %: too close to the bar)
    samples = (out / "solvent" / "window_0.u").read_bytes()
    prmtop = (out / "setup" / "solvent.prmtop").read_bytes()
    assert main(argv) == 0  # complete: reuses the set-up, resumes, samples nothing new
    assert (out / "solvent" / "window_0.u").read_bytes() == samples
    assert (out / "setup" / "solvent.prmtop").read_bytes() == prmtop
    assert json.loads((out / "summary.json").read_text())["dG_hydration_kt"] == summary["dG_hydration_kt"]


def test_hydration_with_replica_exchange_tiny(tmp_path):
    from atomml.fe.hydration import HydrationProtocol, hydration_free_energy
    from atomml.fe.sampling import read_u_kn

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + "sampler: replica_exchange\n")
    protocol = HydrationProtocol.from_yaml(path)
    summary = hydration_free_energy("C", tmp_path / "methane", protocol, progress=False)
    assert summary["sampler"] == "replica_exchange"
    assert abs(summary["dG_hydration_kcal_per_mol"]) < 20 and summary["dG_hydration_error_kcal_per_mol"] > 0
    for leg in ("solvent", "vacuum"):
        assert read_u_kn(tmp_path / "methane" / leg)[1].tolist() == [12] * 4
        exchange = summary["replica_exchange"][leg]
        assert len(exchange["acceptance"]) == 3 and all(0 <= a <= 1 for a in exchange["acceptance"])
        assert exchange["round_trips"] >= 0
        assert min(summary["ns_per_day_per_state"][leg]) > 0
    written = json.loads((tmp_path / "methane" / "summary.json").read_text())
    assert written["replica_exchange"] == summary["replica_exchange"]


def test_protocol_refuses_unknown_keys(tmp_path):
    from atomml.fe.hydration import HydrationProtocol

    path = tmp_path / "p.yaml"
    path.write_text("samplez: 3\n")
    with pytest.raises(ValueError, match="unknown protocol keys"):
        HydrationProtocol.from_yaml(path)
    path.write_text("sampler: remd\n")
    with pytest.raises(ValueError, match="sampler must be one of"):
        HydrationProtocol.from_yaml(path)


def test_ml_end_state_correction_tiny(tmp_path):
    """MM -> ML correction on a tiny setting: runs both legs, writes the summary, resumes."""
    import torch

    import atomml
    from atomml.fe.hydration import HydrationProtocol
    from atomml.fe.mlmm import EndStateProtocol, end_state_correction
    from atomml.models import create

    torch.manual_seed(0)
    potential = create("tensornet", elements=[1, 6], hidden_channels=8, num_layers=1, num_rbf=8, cutoff=4.0)
    potential.energy_scale.fill_(0.01)  # a weak random ML solute keeps the tiny run well-behaved
    path = atomml.save_potential(potential, tmp_path / "ch.safetensors")
    (tmp_path / "tiny.yaml").write_text(TINY)
    protocol = HydrationProtocol.from_yaml(tmp_path / "tiny.yaml")
    stages = EndStateProtocol(lambdas=(0.0, 0.5, 1.0), samples=4, steps_per_sample=5, equilibration_steps=10)
    summary = end_state_correction("C", str(path), tmp_path / "methane", protocol, stages, progress=False)
    assert summary["lambdas"] == [0.0, 0.5, 1.0] and summary["ddG_mm_to_ml_error_kcal_per_mol"] > 0
    assert np.isfinite(summary["ddG_mm_to_ml_kcal_per_mol"])
    assert min(summary["ns_per_day_per_window"]["solvent"]) > 0
    again = end_state_correction("C", str(path), tmp_path / "methane", protocol, stages, progress=False)
    assert again["ddG_mm_to_ml_kt"] == summary["ddG_mm_to_ml_kt"]
    with pytest.raises(ValueError, match="from 0"):
        EndStateProtocol(lambdas=(0.5, 1.0))


def test_legs_run_apart_within_a_budget_and_summarise_what_is_stored(tmp_path):
    """run_leg with a spent wall-clock budget stops after one replica-exchange iteration (its
    checkpoint); summarise analyses the stored samples and flags the early stop and the few
    uncorrelated samples; running on without a budget completes the protocol."""
    from atomml.fe.hydration import HydrationProtocol, run_leg, summarise
    from atomml.fe.sampling import read_u_kn

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + "sampler: replica_exchange\n")
    protocol = HydrationProtocol.from_yaml(path)
    folder = tmp_path / "methane"
    for leg in ("vacuum", "solvent"):
        for expected in (1, 2):
            assert run_leg("C", folder, leg, protocol, max_minutes=0.0, progress=False) is False
            assert read_u_kn(folder / leg)[1].tolist() == [expected] * 4
    summary = summarise("C", folder, protocol)
    assert summary["samples_per_state"] == {"solvent": [2] * 4, "vacuum": [2] * 4}
    assert any("2 of the protocol's 12 samples per state (stopped early)" in f for f in summary["flags"])
    assert any("uncorrelated samples" in f for f in summary["flags"])
    assert run_leg("C", folder, "vacuum", protocol, progress=False) is True
    assert read_u_kn(folder / "vacuum")[1].tolist() == [12] * 4
    with pytest.raises(ValueError, match="leg must be one of"):
        run_leg("C", folder, "gas", protocol)


def test_ml_legs_keep_the_solutes_hydrogen_constraints(tmp_path):
    """openmm-ml drops the ML atoms' constraints unless told not to; the ML/MM legs run at the
    MM legs' 2 fs with heavy hydrogens, which needs the X-H constraints (4 in methane)."""
    from atomml.fe.hydration import HydrationProtocol, leg_system
    from atomml.fe.mlmm import EndStateProtocol, mixed_system
    from atomml.mm import solvated_molecule

    (tmp_path / "tiny.yaml").write_text(TINY)
    protocol = HydrationProtocol.from_yaml(tmp_path / "tiny.yaml")
    _, vacuum = solvated_molecule("C", tmp_path / "setup", padding=protocol.padding, seed=protocol.seed)
    mm, _, _ = leg_system(vacuum, protocol, False)
    mixed = mixed_system(vacuum, "schnet-cu-emt-demo", protocol, EndStateProtocol(), False, device="cpu")
    assert mm.getNumConstraints() == mixed.getNumConstraints() == 4


@pytest.mark.parametrize("force_field, r_min_half, epsilon", [("gaff2", 1.4593, 0.0208), ("gaff", 1.4870, 0.0157)])
def test_force_field_choice_reaches_the_system(tmp_path, force_field, r_min_half, epsilon):
    """GAFF2 (default) or GAFF 1.x: methane's hydrogens carry that force field's hc
    Lennard-Jones parameters (gaff2.dat / gaff.dat: R*/2 in Å, epsilon in kcal/mol), and an
    earlier set-up of the other force field is not reused."""
    import openmm
    from openmm import app, unit

    from atomml.mm import solvated_molecule

    other = "gaff" if force_field == "gaff2" else "gaff2"
    solvated_molecule("C", tmp_path, padding=None, force_field=other)
    vacuum, _ = solvated_molecule("C", tmp_path, padding=None, force_field=force_field)
    system = app.AmberPrmtopFile(str(vacuum.prmtop)).createSystem()
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    _, sigma, eps = nb.getParticleParameters(1)  # a hydrogen (the carbon is first)
    assert sigma.value_in_unit(unit.angstrom) == pytest.approx(2 * r_min_half / 2 ** (1 / 6), rel=1e-4)
    assert eps.value_in_unit(unit.kilocalorie_per_mole) == pytest.approx(epsilon, rel=1e-4)
    with pytest.raises(ValueError, match="force_field"):
        solvated_molecule("C", tmp_path, padding=None, force_field="gaff3")
