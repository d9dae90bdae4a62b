"""Committees (atomml.models.committee): the members batched in one call give each member's own
energies, forces and stress (checked against the members evaluated alone, float64); mean and
spread as the calculator reports them; one potential file; the MD stop on the force spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

import atomml
from atomml.dynamics import MDSettings, run_md
from atomml.dynamics.frames import UnstableRunError
from atomml.graph import from_ase
from atomml.models import committee_of, create, tiny_hyperparameters

ELEMENTS = [1, 6, 8, 29]


def members(architecture: str, k: int = 3, dtype: torch.dtype = torch.float64) -> list[atomml.Potential]:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(create(architecture, elements=ELEMENTS, **tiny_hyperparameters(architecture, ELEMENTS)).to(dtype))
    return out


def detached(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach() for key, value in out.items()}


def structures():
    water, ethanol = molecule("H2O"), molecule("CH3CH2OH")
    copper = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    copper.set_cell(copper.cell.array @ (np.eye(3) + [[0.02, 0.01, 0], [0, -0.01, 0.03], [0.01, 0, 0.02]]), scale_atoms=True)
    for k, atoms in enumerate((water, ethanol, copper)):
        atoms.rattle(0.05, seed=k)
    return water, ethanol, copper


@pytest.mark.parametrize("architecture", ["tensornet", "schnet"])
@pytest.mark.parametrize("batched", [True, False])
def test_members_in_one_call_are_the_members_alone(architecture, batched):
    """Energies, forces and stress of every member (float64: to round-off), the mean and the
    population spread; molecules and a strained periodic cell in one batch for forces, cells
    alone for stress."""
    alone = members(architecture)
    committee = committee_of(alone)
    committee.model.batched = batched
    assert committee.committee_size == 3 and committee.architecture == "committee"
    graph = from_ase(list(structures()), dtype=torch.float64)
    out = detached(committee(graph))
    energy = torch.stack([m(graph)["energy"].detach() for m in alone])
    forces = torch.stack([m(graph)["forces"] for m in alone])
    torch.testing.assert_close(out["energy_members"], energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["forces_members"], forces, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["energy"], energy.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["forces"], forces.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["energy_std"].numpy(), energy.numpy().std(axis=0), rtol=1e-9)
    spread = np.sqrt(forces.numpy().var(axis=0).sum(axis=-1))
    np.testing.assert_allclose(out["forces_std"].numpy(), spread, rtol=1e-9, atol=1e-14)
    cells = from_ase([structures()[2], bulk("Cu", "fcc", a=3.7, cubic=True)], dtype=torch.float64)
    stress = torch.stack([m(cells, compute_stress=True)["stress"].detach() for m in alone])
    torch.testing.assert_close(committee(cells, compute_stress=True)["stress_members"], stress, rtol=1e-10, atol=1e-14)
    energy_only = committee(graph, compute_forces=False)  # shared geometry, no copies per member
    torch.testing.assert_close(energy_only["energy_members"], energy, rtol=1e-12, atol=1e-12)


def test_a_committee_is_one_potential_file(tmp_path):
    """Saved and loaded (no code run: the registry rebuilds it), with its recalibration factor."""
    committee = committee_of(members("tensornet", dtype=torch.float32))
    committee.model.std_scale.fill_(1.7)
    path = atomml.save_potential(committee, tmp_path / "committee")
    loaded = atomml.load_potential(path)
    assert loaded.committee_size == 3 and float(loaded.model.std_scale) == 1.7 and loaded.dtype == torch.float32
    graph = from_ase(list(structures()))
    for key, value in detached(committee(graph)).items():
        assert torch.equal(value, loaded(graph)[key].detach()), key
    scaled = committee(graph)["energy_std"].detach()
    committee.model.std_scale.fill_(1.0)
    torch.testing.assert_close(scaled, 1.7 * committee(graph)["energy_std"].detach())


def test_the_calculator_reports_mean_and_spread():
    alone = members("tensornet", dtype=torch.float32)
    calc = atomml.AtomMLCalculator(committee_of(alone), device="cpu")
    ethanol = structures()[1]
    ethanol.calc = calc
    energy = ethanol.get_potential_energy()
    assert "energy_std" in calc.implemented_properties
    singles = [atomml.AtomMLCalculator(m, device="cpu", small_system=False) for m in alone]
    energies = np.array([c.get_potential_energy(ethanol) for c in singles])
    forces = np.array([c.get_forces(ethanol) for c in singles])
    assert energy == pytest.approx(energies.mean(), abs=1e-5)
    assert calc.get_property("energy_std", ethanol) == pytest.approx(energies.std(), rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(ethanol.get_forces(), forces.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(calc.results["forces_std"], np.sqrt(forces.var(axis=0).sum(axis=1)), rtol=1e-3, atol=1e-6)


def test_md_stops_where_the_members_disagree(tmp_path):
    """`atomml md --max-force-std`: the run stops at the first frame whose largest per-atom
    force spread exceeds the limit, keeping the frames before; the log has the spread."""
    alone = members("tensornet", dtype=torch.float32)
    calc = atomml.AtomMLCalculator(committee_of(alone), device="cpu")
    atoms = structures()[1]
    atoms.calc = calc
    calc.get_forces(atoms)
    start = float(np.max(calc.results["forces_std"]))
    settings = MDSettings(temperature=3000.0, steps=40, interval=5, timestep_fs=1.0, max_forces_std=1.02 * start)
    with pytest.raises(UnstableRunError, match="force spread reached"):
        run_md(atoms, calc, settings, trajectory=tmp_path / "md.extxyz", progress=False)
    log = (tmp_path / "md.log").read_text().splitlines()
    assert log[0].endswith("energy_std_eV  max_forces_std_eV_per_A") and len(log) >= 2
    rows = np.loadtxt(tmp_path / "md.log")
    assert rows.ndim == 2 and (rows[:, -1] <= settings.max_forces_std).all()  # the frames kept are below it
    from atomml.cli import build_parser

    assert build_parser().parse_args(["md", "x.xyz", "-p", "p", "--max-force-std", "0.3"]).max_force_std == 0.3


def test_committees_refuse_what_they_cannot_be():
    one = members("tensornet", k=2)
    other = create("tensornet", elements=[1, 6], **tiny_hyperparameters("tensornet", [1, 6])).double()
    with pytest.raises(ValueError, match="elements"):
        committee_of([one[0], other])
    shifted = create("tensornet", elements=ELEMENTS, energy_shift=0.1, **tiny_hyperparameters("tensornet", ELEMENTS)).double()
    with pytest.raises(ValueError, match="energy_shift"):
        committee_of([one[0], shifted])
    with pytest.raises(ValueError, match="at least 2"):
        create("committee", elements=ELEMENTS, architecture="tensornet", hyperparameters={}, size=1)
    assert create("committee", elements=[1, 8], **tiny_hyperparameters("committee", [1, 8])).committee_size == 3
    with pytest.raises(ValueError, match="no energy terms"):
        create("committee", elements=ELEMENTS, terms=[{"name": "zbl", "cutoff": 2.0}], **tiny_hyperparameters("committee", ELEMENTS))
    from atomml.export import PotentialModule

    with pytest.raises(ValueError, match="cannot be exported"):
        PotentialModule(committee_of(one))


def test_join_and_calibrate_from_the_command_line(tmp_path, capsys):
    """`atomml committee join` then `calibrate` on EMT-labelled copper: the stored factor is the
    one that maximises the Gaussian likelihood of the force errors (s^2 = mean(e^2 / sigma^2)),
    the calculator's spread is multiplied by it, and the report and plots are written."""
    import json

    from ase.calculators.emt import EMT

    from atomml.cli import main
    from atomml.data import Dataset, load_dataset
    from atomml.uncertainty.committees import predictions

    paths = []
    for k, member in enumerate(members("tensornet", dtype=torch.float32)):
        paths.append(str(atomml.save_potential(member, tmp_path / f"m{k}")))
    assert main(["committee", "join", *paths, "-o", str(tmp_path / "c.safetensors")]) == 0
    frames = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.info["energy"], atoms.arrays["forces"] = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    Dataset.from_ase(frames).write(tmp_path / "valid.extxyz")
    capsys.readouterr()
    assert main(["committee", "calibrate", str(tmp_path / "c.safetensors"), "--data", str(tmp_path / "valid.extxyz"),
                 "-o", str(tmp_path / "cal.safetensors"), "--report", str(tmp_path / "report")]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    raw = predictions(atomml.load_potential(tmp_path / "c.safetensors"), load_dataset(tmp_path / "valid.extxyz"))
    expected = np.sqrt(np.mean(raw.forces_error**2 / raw.forces_std**2))
    assert summary["scale"] == pytest.approx(expected, rel=1e-9) and summary["fitted_on"] == "forces"
    calibrated = atomml.load_potential(tmp_path / "cal.safetensors")
    assert float(calibrated.model.std_scale) == pytest.approx(expected, rel=1e-12)
    assert summary["forces"]["nll"] <= summary["forces"]["nll_raw"]  # the fitted factor is the likelihood's optimum
    report = json.loads((tmp_path / "report" / "calibration.json").read_text())
    assert report["forces"]["recalibrated"]["scale"] == pytest.approx(expected)
    for name in ("calibration_forces.png", "calibration_energy.png", "parity_forces.png", "parity_energy.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    plain, scaled = (atomml.AtomMLCalculator(p, device="cpu") for p in (atomml.load_potential(tmp_path / "c.safetensors"), calibrated))
    atoms = frames[0]
    np.testing.assert_allclose(scaled.get_property("forces_std", atoms), expected * plain.get_property("forces_std", atoms), rtol=1e-6)
