"""The molecular property benchmark (atomml.validation.molecules) against GFN2-xTB."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("tblite")

from rdkit import Chem  # noqa: E402
from tblite.ase import TBLite  # noqa: E402

from atomml import units  # noqa: E402
from atomml.validation import molecules  # noqa: E402

ROW_KEYS = {"group", "property", "system", "unit", "reference", "potential", "error", "metric", "target",
            "passed", "note"}
METRICS = {"difference", "rmse", "mae", "spearman", "count"}
FIGURE_KINDS = ("torsion", "conformers", "dimer", "frequencies", "bond")
ROOT = Path(__file__).resolve().parents[2]


def xtb():
    return TBLite(method="GFN2-xTB", verbosity=0)


@pytest.fixture(scope="module")
def xtb_against_itself(tmp_path_factory):
    """The quick benchmark with GFN2-xTB on both sides: the same code path run twice."""
    plot_dir = tmp_path_factory.mktemp("plots")
    messages = []
    rows = molecules.run(xtb, xtb, quick=True, plot_dir=plot_dir, progress=messages.append)
    return rows, plot_dir, messages


def check_format(rows):
    assert rows
    for r in rows:
        assert set(r) == ROW_KEYS, r
        assert r["metric"] in METRICS
        assert isinstance(r["group"], str) and r["group"] == r["group"].lower() and " " not in r["group"]
        for key in ("reference", "potential", "error"):
            assert r[key] is None or (isinstance(r[key], float) and math.isfinite(r[key])), (key, r)
        # A row with a target says whether it passed; a row without one does not.
        assert (r["target"] is None) == (r["passed"] is None), r
        assert r["passed"] is None or isinstance(r["passed"], bool)
    json.dumps(rows)  # plain, JSON-serialisable values only


def test_rows_follow_the_shared_format_and_cover_every_property(xtb_against_itself):
    rows, _, messages = xtb_against_itself
    check_format(rows)
    assert {r["group"] for r in rows} == {"torsion", "conformers", "intermolecular", "frequencies", "bond_stretch"}
    assert len(messages) == 5 and all(isinstance(m, str) and m for m in messages)


def test_xtb_against_itself_has_zero_errors_and_meets_every_target(xtb_against_itself):
    rows, _, _ = xtb_against_itself
    targeted = [r for r in rows if r["target"] is not None]
    assert {r["metric"] for r in targeted} == {"rmse", "spearman", "mae", "count"}
    assert all(r["passed"] for r in targeted), [r for r in targeted if not r["passed"]]
    for r in rows:
        if r["metric"] == "spearman":
            assert r["error"] == pytest.approx(1.0)
        else:  # tblite restarts its SCF from the last guess: agreement to its convergence, not bitwise
            assert abs(r["error"]) < 1e-5, r
        if r["reference"] is not None and r["metric"] == "difference":
            assert r["potential"] == pytest.approx(r["reference"], abs=1e-5)


def test_a_png_is_written_for_every_figure_kind(xtb_against_itself):
    _, plot_dir, _ = xtb_against_itself
    for kind in FIGURE_KINDS:
        pngs = list(plot_dir.glob(f"{kind}_*.png"))
        assert len(pngs) == 1, kind
        assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spurious_minimum_counter_on_a_hand_made_curve():
    x = np.linspace(0.8, 2.0, 25)
    reference = (x - 1.0) ** 2  # one minimum, at x = 1.0 (index 4)
    assert molecules.local_minima(reference) == [4]
    assert molecules.spurious_minima(reference, reference) == []
    dented = reference.copy()
    dented[15] -= 0.1  # a dip on the rising branch: a local minimum the reference lacks
    assert molecules.local_minima(dented) == [4, 15]
    assert molecules.spurious_minima(reference, dented) == [15]
    shifted = (x - 1.05) ** 2  # the same well one grid point over is not spurious
    assert molecules.spurious_minima(reference, shifted) == []
    assert molecules.local_minima(np.exp(-x)) == []  # monotonic: no minimum at all


def test_centred_rmse_ignores_each_curves_offset():
    curve = np.array([0.0, 1.0, 3.0, 1.0])
    assert molecules.centred_rmse(curve, curve + 7.0) == pytest.approx(0.0, abs=1e-12)
    assert molecules.centred_rmse(curve, 2.0 * curve) == pytest.approx(np.std(curve))


@pytest.mark.parametrize("dimer", molecules.DIMERS, ids=[d[0] for d in molecules.DIMERS])
def test_far_separated_monomers_do_not_interact_for_xtb(dimer):
    _, a, b, (start, stop) = dimer
    first, second = molecules.oriented(a, 1.0), molecules.oriented(b, -1.0)

    def interaction(distance):
        moved = second.copy()
        moved.translate((distance, 0.0, 0.0))
        return molecules.interaction_energy(first + moved, len(first), xtb()) * units.EV_TO_KCAL_PER_MOL

    assert abs(interaction(40.0)) < 0.01  # kcal/mol; dipole-dipole at 40 Å is ~1e-3
    # The benchmark's range runs from the repulsive side through the well: the reference
    # minimum lies strictly inside it.
    curve = [interaction(d) for d in np.linspace(start, stop, 14)]
    assert 0 < int(np.argmin(curve)) < len(curve) - 1, curve


def test_hydrogen_bonded_pair_binds_with_xtb():
    """The donor's O-H points at the acceptor: a water dimer near 2.9 Å binds (by ~5 kcal/mol
    at the reference minimum in the literature), where a wrong orientation would not."""
    name, a, b, _ = molecules.DIMERS[0]
    assert name == "water_dimer"
    first, second = molecules.oriented(a, 1.0), molecules.oriented(b, -1.0)
    second.translate((2.9, 0.0, 0.0))
    e = molecules.interaction_energy(first + second, len(first), xtb()) * units.EV_TO_KCAL_PER_MOL
    assert e < -2.0


def training_smiles() -> set[str]:
    """Canonical SMILES of the organic training list, read as data (the script is not imported)."""
    tree = ast.parse((ROOT / "scripts" / "generate_organic_data.py").read_text())
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "TRAINING":
            return {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for _, s in ast.literal_eval(node.value)}
    raise AssertionError("TRAINING list not found in scripts/generate_organic_data.py")


def benchmark_smiles() -> set[str]:
    smiles = [s for _, s, _ in molecules.TORSIONS] + [s for _, s in molecules.CONFORMER_MOLECULES]
    smiles += [s for _, s in molecules.FREQUENCY_MOLECULES] + [s for _, s, _ in molecules.BOND_SCANS]
    return {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in smiles}


def test_benchmark_molecules_are_outside_the_training_list():
    assert not benchmark_smiles() & training_smiles()


def test_scanned_atoms_are_bonded_and_not_in_a_ring():
    for name, smiles, (i, j, k, l) in molecules.TORSIONS:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        for p, q in ((i, j), (j, k), (k, l)):
            assert mol.GetBondBetweenAtoms(p, q) is not None, (name, p, q)
        assert not mol.GetBondBetweenAtoms(j, k).IsInRing(), name
    for name, smiles, (i, j) in molecules.BOND_SCANS:
        bond = Chem.AddHs(Chem.MolFromSmiles(smiles)).GetBondBetweenAtoms(i, j)
        assert bond is not None and not bond.IsInRing(), name


def test_unparsable_smiles_is_refused():
    with pytest.raises(ValueError, match="cannot parse SMILES"):
        molecules.embed("C1CC")
