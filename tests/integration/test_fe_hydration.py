"""The hydration workflow end to end on a tiny setting (methane, few states, short sampling).

The number is not meaningful at this length; the test checks that every stage runs, that the
outputs are written (summary, plots), that the default protocol loads, and that a second run
resumes instead of starting over. FreeSolv validation is a long script run, not a CI test.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openmm")
pytest.importorskip("rdkit")
pytest.importorskip("pymbar")

TINY = ("padding: 6.0\ncutoff_nm: 0.7\nelectrostatics: [1.0, 0.0]\nsterics: [1.0, 0.5, 0.0]\n"
        "samples: 12\nsteps_per_sample: 20\nequilibration_steps: 50\ndensity_equilibration_ps: 6.0\n")  # fmt: skip
ML_POTENTIAL = "tensornet-organic-gfn2"  # trained on GFN2-xTB molecules: methane keeps its shape under it


@pytest.fixture
def tiny_protocol(tmp_path) -> Path:
    """The tiny protocol file: methane in a 6 Å water shell, 4 states, 12 short samples each."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def methane_setup(tmp_path_factory) -> Path:
    """Methane's set-up under the tiny protocol with its NPT-equilibrated box, made once (on the
    Reference platform: the same box on every run) for the tests that copy it (:func:`with_setup`)."""
    from atomml.fe.hydration import HydrationProtocol, equilibrated, leg_setups, leg_system, npt_state_path

    folder = tmp_path_factory.mktemp("methane")
    (folder / "tiny.yaml").write_text(TINY)
    protocol = HydrationProtocol.from_yaml(folder / "tiny.yaml")
    solvated, _ = leg_setups("C", folder, protocol)
    mm, positions, box = leg_system(solvated, protocol, solvent=True)
    equilibrated(mm, positions, box, protocol, npt_state_path(solvated, protocol), platform="Reference")
    return folder / "setup"


@pytest.fixture
def one_torch_thread():
    """The ML solute (5 atoms) gains nothing from threads, and on a busy machine their waiting
    costs ten times the work (31 against 385 ms per call measured at a load of 8 on 2 cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def with_setup(methane_setup: Path, folder: Path) -> Path:
    """``folder`` holding a copy of the shared methane set-up (legs reuse it, as a resumed run would)."""
    shutil.copytree(methane_setup, folder / "setup")
    return folder


def test_hydration_workflow_tiny(tmp_path, tiny_protocol, capsys):
    """From SMILES through the set-up and its NPT box to the summary, in one command, which
    says each set-up stage and the time the legs will take before it samples them."""
    from atomml.cli import main
    from atomml.fe.hydration import default_protocol

    assert default_protocol().samples == 500
    out = tmp_path / "methane"
    argv = ["fe", "hydration", "C", "--protocol", str(tiny_protocol), "-o", str(out), "--no-progress"]
    assert main(argv) == 0
    said = capsys.readouterr().err
    stages = ["set-up 1/3: 3D conformer of C", "set-up 1/3: done in", "set-up 2/3: AM1-BCC charges", "set-up 2/3: done in",
              "set-up 3/3: missing parameters, TIP3P box with 6 Å of water", "set-up 3/3: done in",
              "density equilibration: 6 ps NPT of the solvated box", "density equilibration: done in",
              "time to sample, timed on this machine", "solvent 4 states x 12 samples", "vacuum 4 states x 12 samples"]
    assert [said.index(stage) for stage in stages] == sorted(said.index(stage) for stage in stages), said
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


@pytest.mark.slow  # the replica-exchange sampler itself runs in the default selection (test_fe_sampling.py)
def test_hydration_with_replica_exchange_tiny(tmp_path, tiny_protocol, methane_setup):
    from atomml.fe.hydration import HydrationProtocol, hydration_free_energy
    from atomml.fe.sampling import read_u_kn

    tiny_protocol.write_text(TINY + "sampler: replica_exchange\n")
    protocol = HydrationProtocol.from_yaml(tiny_protocol)
    summary = hydration_free_energy("C", with_setup(methane_setup, tmp_path / "methane"), protocol, progress=False)
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


def min_hydrogen_distance(state_xml: Path) -> float:
    """The shortest H-H distance (Å) of methane (atoms 1-4) in an OpenMM state file."""
    import openmm

    state = openmm.XmlSerializer.deserialize(state_xml.read_text())
    h = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.angstrom)[1:5]
    return float(min(np.linalg.norm(h[i] - h[j]) for i in range(4) for j in range(i + 1, 4)))


def test_ml_end_state_correction_tiny(tmp_path, tiny_protocol, methane_setup, one_torch_thread):
    """MM -> ML correction on a tiny setting: runs both legs, writes the summary, resumes, and
    methane keeps its shape at every lambda (H-H 1.78 Å at equilibrium).

    The ML solute is the shipped organic potential, on the Reference platform and the CPU, with
    the protocol's seeds: the same trajectory on every run. It was a randomly initialised weak
    TensorNet, which flaked: at lambda = 1 the solute's internal energy is the ML potential's
    alone, and a random one has no H-C-H bending stiffness (the constraints hold only the C-H
    bonds, and 1-3 pairs have no MM nonbonded terms), so the hydrogens drifted over their
    sphere (H-H 1.0 Å within 30 steps) and on some random streams two met (0.017 Å apart)."""
    from atomml.fe.hydration import HydrationProtocol
    from atomml.fe.mlmm import EndStateProtocol, end_state_correction

    folder = with_setup(methane_setup, tmp_path / "methane")
    protocol = HydrationProtocol.from_yaml(tiny_protocol)
    # the states in turn: side by side (batched) on the Reference platform, whose random numbers
    # are one stream for all Contexts, the threads would draw them in a varying order
    stages = EndStateProtocol(lambdas=(0.0, 0.5, 1.0), samples=4, steps_per_sample=5, equilibration_steps=10,
                              batched=False)  # fmt: skip

    def run() -> dict:
        return end_state_correction("C", ML_POTENTIAL, folder, protocol, stages, progress=False, platform="Reference",
                                    device="cpu")  # fmt: skip

    summary = run()
    assert summary["lambdas"] == [0.0, 0.5, 1.0] and summary["ddG_mm_to_ml_error_kcal_per_mol"] > 0
    assert np.isfinite(summary["ddG_mm_to_ml_kcal_per_mol"])
    assert min(summary["ns_per_day_per_window"]["solvent"]) > 0
    assert json.loads((folder / "ml_correction.json").read_text())["ddG_mm_to_ml_kt"] == summary["ddG_mm_to_ml_kt"]
    for leg in ("ml_solvent", "ml_vacuum"):
        for k in range(3):
            assert min_hydrogen_distance(folder / leg / f"window_{k}.state.xml") > 1.4, (leg, k)
    again = run()
    assert again["ddG_mm_to_ml_kt"] == summary["ddG_mm_to_ml_kt"]
    with pytest.raises(ValueError, match="from 0"):
        EndStateProtocol(lambdas=(0.5, 1.0))


def test_cli_runs_legs_apart_within_a_budget_and_summarises_what_is_stored(tmp_path, tiny_protocol, methane_setup,
                                                                           capsys):  # fmt: skip
    """atomml fe hydration --leg with a spent wall-clock budget stops each leg after one
    replica-exchange iteration (its checkpoint); --summarise analyses the stored samples and
    flags the early stop and the few uncorrelated samples; atomml fe freesolv tabulates what the
    work folder holds; a leg run on without a budget completes the protocol."""
    from atomml.cli import main
    from atomml.fe.analysis import analyse_leg
    from atomml.fe.sampling import read_u_kn

    tiny_protocol.write_text(TINY + "sampler: replica_exchange\n")
    folder = with_setup(methane_setup, tmp_path / "work" / "methane")
    base = ["fe", "hydration", "C", "-o", str(folder), "--protocol", str(tiny_protocol), "--no-progress"]
    for expected in (1, 2):
        capsys.readouterr()
        assert main(base + ["--leg", "vacuum", "--leg", "solvent", "--max-minutes", "0"]) == 0
        assert json.loads(capsys.readouterr().out)["complete"] == {"vacuum": False, "solvent": False}
        for leg in ("vacuum", "solvent"):
            assert read_u_kn(folder / leg)[1].tolist() == [expected] * 4
    assert main(base + ["--summarise"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples_per_state"] == {"solvent": [2] * 4, "vacuum": [2] * 4}
    assert any("2 of the protocol's 12 samples per state (stopped early)" in f for f in summary["flags"])
    assert any("uncorrelated samples" in f for f in summary["flags"])
    assert json.loads((folder / "summary.json").read_text())["dG_hydration_kt"] == summary["dG_hydration_kt"]
    assert set(summary["replica_exchange"]) == {"solvent", "vacuum"}
    json.dumps(analyse_leg(folder / "vacuum", 298.15).to_dict())  # the dataclass gives plain JSON

    report = tmp_path / "freesolv.json"
    assert main(["fe", "freesolv", "--workdir", str(tmp_path / "work"), "--protocol", str(tiny_protocol),
                 "--output", str(report)]) == 0  # fmt: skip
    table = capsys.readouterr().out
    rows = json.loads(report.read_text())["molecules"]
    assert list(rows) == ["methane", "ethane", "methanol", "ethanol"]
    assert rows["methane"]["mm"]["dG_hydration_kt"] == summary["dG_hydration_kt"]
    assert rows["methane"]["experiment"] == 2.00 and "ml_missing" in rows["methane"]
    assert all("mm_missing" in rows[name] for name in ("ethane", "methanol", "ethanol"))
    assert f"| methane | 2.00 | 2.45 | {summary['dG_hydration_kcal_per_mol']:.2f} ± " in table

    assert main(base + ["--leg", "vacuum"]) == 0
    assert json.loads(capsys.readouterr().out)["complete"] == {"vacuum": True}
    assert read_u_kn(folder / "vacuum")[1].tolist() == [12] * 4


def test_cli_runs_an_ml_leg_with_the_protocols_mm_to_ml_settings(tmp_path, tiny_protocol, methane_setup,
                                                                 one_torch_thread, capsys):  # fmt: skip
    """--leg ml-vacuum samples the MM->ML path that the protocol file's mm_to_ml section sets."""
    from atomml.cli import main
    from atomml.fe.sampling import read_u_kn

    tiny_protocol.write_text(TINY + "mm_to_ml:\n  lambdas: [0.0, 1.0]\n  samples: 2\n  steps_per_sample: 5\n"
                             "  equilibration_steps: 10\n")  # fmt: skip
    folder = with_setup(methane_setup, tmp_path / "methane")
    assert main(["fe", "hydration", "C", "-o", str(folder), "--protocol", str(tiny_protocol), "--leg", "ml-vacuum",
                 "--ml-potential", ML_POTENTIAL, "--platform", "Reference", "--ml-device", "cpu", "--threads", "1",
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["complete"] == {"ml-vacuum": True}
    assert read_u_kn(folder / "ml_vacuum")[1].tolist() == [2, 2]


def test_cli_refuses_unclear_requests(tmp_path, tiny_protocol, capsys):
    """Requests that cannot be met are refused with what to do, before any work."""
    from atomml.cli import main
    from atomml.fe.hydration import run_leg

    base = ["fe", "hydration", "C", "-o", str(tmp_path / "m"), "--protocol", str(tiny_protocol)]
    for extra, message in ((["--leg", "gas"], "invalid choice"),
                           (["--leg", "ml-vacuum"], "need --ml-potential"),
                           (["--max-minutes", "5"], "give --leg"),
                           (["--leg", "vacuum", "--summarise"], "not allowed with"),
                           (["--samples", "0"], "--samples must be at least 1"),
                           (["--threads", "0"], "--threads must be at least 1")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(base + extra)
        assert message in capsys.readouterr().err
    assert main(base + ["--summarise"]) == 2
    assert "holds no samples of the solvent, vacuum leg(s): run atomml fe hydration C" in capsys.readouterr().err
    assert main(["fe", "hydration", "C", "--protocol", "no-such-protocol"]) == 2
    assert "one of the shipped protocols ['freesolv', 'hydration', 'quick']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="leg must be one of"):
        run_leg("C", tmp_path, "gas")


def test_protocol_defaults_are_the_shipped_yaml(tmp_path, tiny_protocol):
    """The defaults (the decoupling schedule among them) are written once, in
    md/protocols/hydration.yaml; a protocol file changes only what it names; shipped protocols
    load by name; the FreeSolv protocol carries its MM->ML settings."""
    import dataclasses

    import yaml

    from atomml.fe.hydration import HydrationProtocol, default_protocol, protocol_path
    from atomml.fe.mlmm import EndStateProtocol

    shipped = yaml.safe_load(protocol_path("hydration").read_text())
    default = default_protocol()
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(default).items()} == shipped
    assert [s.name for s in default.schedule.states][:2] == ["elec=1, vdw=1", "elec=0.75, vdw=1"]
    with pytest.raises(TypeError):
        HydrationProtocol()  # no second copy of the defaults in the code
    tiny = HydrationProtocol.from_yaml(tiny_protocol)
    assert tiny.electrostatics == (1.0, 0.0) and tiny.temperature == default.temperature
    assert EndStateProtocol.from_yaml(tiny_protocol) == EndStateProtocol()
    freesolv = HydrationProtocol.from_yaml("freesolv")
    assert freesolv.sampler == "replica_exchange" and freesolv.schedule == default.schedule
    assert EndStateProtocol.from_yaml("freesolv").lambdas == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    tiny_protocol.write_text(TINY + "mm_to_ml:\n  lambdaz: [0, 1]\n")
    with pytest.raises(ValueError, match="unknown keys"):
        EndStateProtocol.from_yaml(tiny_protocol)


def test_solvent_leg_barostat_is_seeded(tiny_protocol, methane_setup):
    """OpenMM's default barostat seed (0) draws a new one for every Context, so an NPT run could
    not be repeated; the solvent leg's barostat takes the protocol's seed."""
    import openmm

    from atomml.fe.hydration import HydrationProtocol, leg_setups, leg_system

    protocol = HydrationProtocol.from_yaml(tiny_protocol)
    solvated, _ = leg_setups("C", methane_setup.parent, protocol)
    system, _, _ = leg_system(solvated, protocol, solvent=True)
    barostat = next(f for f in system.getForces() if isinstance(f, openmm.MonteCarloBarostat))
    assert barostat.getRandomNumberSeed() != 0


def test_ml_legs_keep_the_solutes_hydrogen_constraints(tiny_protocol, methane_setup):
    """openmm-ml drops the ML atoms' constraints unless told not to; the ML/MM legs run at the
    MM legs' 2 fs with heavy hydrogens, which needs the X-H constraints (4 in methane)."""
    from atomml.fe.hydration import HydrationProtocol, leg_setups, leg_system
    from atomml.fe.mlmm import EndStateProtocol, mixed_system

    protocol = HydrationProtocol.from_yaml(tiny_protocol)
    _, vacuum = leg_setups("C", methane_setup.parent, protocol)
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


def test_bad_input_is_refused_in_seconds_before_any_set_up(tmp_path, tiny_protocol, capsys):
    """A mistyped --ml-potential, one without the molecule's elements, a SMILES that does not
    parse, more than one molecule, elements GAFF lacks: one line and exit 2 within seconds, and
    nothing written (a mistyped potential was found after the set-up and hours of MM legs)."""
    from atomml.cli import main

    out = tmp_path / "out"

    def argv(smiles, *extra):
        return ["fe", "hydration", smiles, "-o", str(out), "--protocol", str(tiny_protocol), "--no-progress", *extra]

    cases = [
        (argv("CCO", "--ml-potential", "tensornet-organic-gfn"), "did you mean 'tensornet-organic-gfn2'?"),
        (argv("CCO", "--leg", "ml-vacuum", "--ml-potential", "tensornet-organic-gfn"), "did you mean"),
        (argv("CCO", "--ml-potential", "schnet-cu-emt-demo"),
         "--ml-potential schnet-cu-emt-demo knows Cu, not C, H, O of CCO; use one that has them (tensornet-organic-gfn2)"),
        (argv("CC(O"), "RDKit cannot read the SMILES 'CC(O'"),
        (argv("CCO.O"), "holds 2 molecules"),
        (argv("C[Si](C)(C)C"), "contains Si, which GAFF/GAFF2 and AM1-BCC do not cover"),
    ]  # fmt: skip
    for args, message in cases:
        start = time.monotonic()
        assert main(args) == 2
        assert time.monotonic() - start < 20  # (a first torch import included) against minutes of set-up
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_charged_molecule_needs_a_potential_that_takes_the_charge(tmp_path, capsys):
    """A potential whose energy ignores the total charge would treat an ion as neutral: refused
    before any work; a charge-aware one (TensorNet's charge input) and a neutral molecule pass."""
    import atomml
    from atomml.cli import main
    from atomml.errors import InputError
    from atomml.fe.mlmm import check_potential
    from atomml.models import create, tiny_hyperparameters

    schnet = str(atomml.save_potential(create("schnet", elements=[1, 7], **tiny_hyperparameters("schnet", [1, 7])),
                                       tmp_path / "schnet-hn"))  # fmt: skip
    with pytest.raises(InputError, match=r"\[NH4\+\] has a net charge of \+1 but --ml-potential .* ignores the total"):
        check_potential(schnet, "[NH4+]")
    check_potential(schnet, "N")
    check_potential(ML_POTENTIAL, "[NH4+]")
    check_potential(ML_POTENTIAL, "CC(=O)[O-]")
    assert main(["fe", "hydration", "[NH4+]", "-o", str(tmp_path / "out"), "--ml-potential", schnet]) == 2
    assert "ignores the total charge" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_quick_protocol_is_small_and_says_it_is_not_converged():
    from atomml.fe.hydration import HydrationProtocol, default_protocol, protocol_path
    from atomml.fe.mlmm import EndStateProtocol

    quick, default = HydrationProtocol.from_yaml("quick"), default_protocol()

    def steps(p):
        return len(p.schedule) * (p.equilibration_steps + p.samples * p.steps_per_sample) + p.density_equilibration_ps

    assert steps(quick) < steps(default) / 20
    assert EndStateProtocol.from_yaml("quick").samples < EndStateProtocol().samples
    assert "not converged" in quick.warning and default.warning == ""
    assert "NOT a converged free energy" in protocol_path("quick").read_text()


def test_cli_samples_threads_and_a_protocols_warning(tmp_path, tiny_protocol, methane_setup, capsys):
    """--samples replaces the protocol's samples per state (the legs' identity does not change,
    so a later run extends them); --threads sets OpenMM's CPU threads (default: the CPUs this
    process may use); a protocol's warning is said first and flagged in the summary."""
    import openmm

    from atomml.cli import main
    from atomml.fe.sampling import read_u_kn
    from atomml.threads import available_cpus

    tiny_protocol.write_text(TINY + 'warning: "tiny: not converged"\n')
    folder = with_setup(methane_setup, tmp_path / "methane")
    base = ["fe", "hydration", "C", "-o", str(folder), "--protocol", str(tiny_protocol), "--no-progress"]
    cpu = openmm.Platform.getPlatformByName("CPU")
    before = cpu.getPropertyDefaultValue("Threads")
    try:
        assert main(base + ["--leg", "vacuum", "--leg", "solvent", "--samples", "3", "--threads", "1"]) == 0
        assert cpu.getPropertyDefaultValue("Threads") == "1"
        out = capsys.readouterr()
        assert main(base + ["--summarise", "--samples", "3"]) == 0
        assert cpu.getPropertyDefaultValue("Threads") == str(available_cpus())
    finally:
        cpu.setPropertyDefaultValue("Threads", before)
    assert json.loads(out.out)["complete"] == {"vacuum": True, "solvent": True}
    for leg in ("vacuum", "solvent"):
        assert read_u_kn(folder / leg)[1].tolist() == [3] * 4
    assert out.err.startswith("[atomml fe] NOTE: tiny: not converged\n")
    assert "timed on this machine with 1 CPU threads: vacuum 4 states x 3 samples" in out.err
    summary = json.loads(capsys.readouterr().out)
    assert summary["flags"][0] == "tiny: not converged" and summary["samples_per_state"]["vacuum"] == [3] * 4
    assert main(base + ["--leg", "vacuum", "--samples", "4"]) == 0  # extends
    assert read_u_kn(folder / "vacuum")[1].tolist() == [4] * 4


def test_ctrl_c_stops_a_leg_in_seconds_and_the_same_command_resumes(tmp_path, tiny_protocol, methane_setup):
    """SIGINT while a leg samples: exit 130 within seconds with one line that gives the command
    to resume (no traceback); that command resumes the leg where it stopped."""
    import shlex
    import signal
    import subprocess
    import sys

    from atomml.cli import build_parser, main
    from atomml.fe.sampling import read_u_kn

    folder = with_setup(methane_setup, tmp_path / "methane")
    argv = ["fe", "hydration", "C", "-o", str(folder), "--protocol", str(tiny_protocol), "--leg", "vacuum",
            "--samples", "1000000", "--platform", "Reference", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "atomml.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    rows = folder / "vacuum" / "window_0.u"
    try:
        deadline = time.monotonic() + 120
        while not (rows.exists() and rows.stat().st_size >= 3 * 4 * 8):  # three samples of 4 states
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the leg did not start sampling"
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and took < 5, (proc.returncode, took, err)
    assert "Traceback" not in err and "stopping at the next safe point" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"atomml fe hydration: interrupted; what was sampled is kept in {folder}. "), last
    command = shlex.split(last.split("To resume, run the same command: ")[1])
    assert command[:3] == ["atomml", "fe", "hydration"]

    def parsed(words):
        return {k: v for k, v in vars(build_parser().parse_args(words)).items() if k != "parser"}

    assert parsed(command[1:]) == parsed(argv)
    done = read_u_kn(folder / "vacuum")[1].tolist()
    assert done[0] >= 3 and done[1:] == [0, 0, 0]
    kept = rows.read_bytes()[: done[0] * 4 * 8]
    assert main(command[1:] + ["--max-minutes", "0"]) == 0  # resumes: one more sample, then the budget stops it
    assert read_u_kn(folder / "vacuum")[1].tolist() == [done[0] + 1, 0, 0, 0]
    assert rows.read_bytes()[: len(kept)] == kept


def test_freesolv_table_can_take_its_mm_rows_from_an_earlier_report_of_the_same_protocol(tmp_path):
    """New ML/MM legs need not rerun the MM legs: `atomml fe freesolv --mm-from` takes the MM
    rows of an earlier report whose legs ran under the same protocol, and refuses another's."""
    from atomml.fe.freesolv import earlier_mm_rows, report
    from atomml.fe.hydration import HydrationProtocol

    committed = Path(__file__).resolve().parents[2] / "data" / "benchmarks" / "freesolv_hydration.json"
    earlier = json.loads(committed.read_text())["molecules"]
    rows = earlier_mm_rows(committed, HydrationProtocol.from_yaml("freesolv"))
    assert set(rows) == {"methane", "ethane", "methanol", "ethanol"}
    assert rows["ethanol"]["mm"] == earlier["ethanol"]["mm"]
    with pytest.raises(ValueError, match="another protocol .*steps_per_sample"):
        earlier_mm_rows(committed, HydrationProtocol.from_yaml("quick"))
    result = report(tmp_path, protocol="freesolv", mm_from=committed)  # no legs of any kind here
    methane = result.rows["methane"]
    assert methane["mm"] == earlier["methane"]["mm"] and methane["mm_source"] == str(committed)
    assert "ml_missing" in methane and "mm_missing" not in methane
    assert f"| methane | 2.00 | 2.45 | {earlier['methane']['mm']['dG_hydration_kcal_per_mol']:.2f} ± " in result.table
