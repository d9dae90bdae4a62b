"""Saving and loading potentials: round trip, refusals, no code execution."""

from __future__ import annotations

import json

import pytest
import torch
from ase.build import molecule
from safetensors.torch import load_file, save_file

import atomml
from atomml.models import create
from atomml.potential_file import FORMAT, FORMAT_VERSION, _file_checksum, read_header


@pytest.fixture
def potential():
    torch.manual_seed(0)
    return create(
        "schnet", elements=["H", "C", "O"], cutoff=4.0, n_atom_basis=8, n_filters=8, n_interactions=2, n_rbf=6,
        atomic_energies={1: -13.6, 8: -2041.0}, energy_scale=0.5, energy_shift=0.1, metadata={"training_data": "none"},
    )


def test_round_trip_same_energies(tmp_path, potential):
    path = atomml.save_potential(potential, tmp_path / "model")
    assert path.name == "model.safetensors"
    loaded = atomml.load_potential(path)
    graph = atomml.from_ase(molecule("CH3CH2OH"), dtype=torch.float32)
    a, b = potential(graph), loaded(graph)
    torch.testing.assert_close(a["energy"], b["energy"], rtol=0, atol=0)
    torch.testing.assert_close(a["forces"], b["forces"], rtol=0, atol=0)
    assert loaded.elements == [1, 6, 8] and loaded.cutoff == 4.0
    assert loaded.metadata["training_data"] == "none"


def test_header_contents(tmp_path, potential):
    header = read_header(atomml.save_potential(potential, tmp_path / "m.safetensors"))
    assert header["architecture"] == "schnet"
    assert header["elements"] == ["H", "C", "O"]
    assert header["atomic_energies"] == {"H": pytest.approx(-13.6), "C": 0.0, "O": pytest.approx(-2041.0)}
    assert header["hyperparameters"]["n_interactions"] == 2
    assert header["units"] == {"energy": "eV", "length": "Angstrom"}
    # version 3: one checksum over the header and the weights
    assert header["format_version"] == FORMAT_VERSION == 3 and header["energy_terms"] == []
    assert len(header["sha256"]) == 64 and "weights_sha256" not in header


def test_load_in_float64(tmp_path, potential):
    loaded = atomml.load_potential(atomml.save_potential(potential, tmp_path / "m"), dtype=torch.float64)
    assert loaded.dtype == torch.float64
    assert next(loaded.parameters()).dtype == torch.float64


def _rewrite_metadata(path, out, **changes):
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    meta.update(changes)
    save_file(load_file(str(path)), str(out), metadata=meta)


def test_newer_format_is_refused(tmp_path, potential):
    path = atomml.save_potential(potential, tmp_path / "m")
    _rewrite_metadata(path, tmp_path / "newer.safetensors", format_version=str(FORMAT_VERSION + 1))
    with pytest.raises(atomml.PotentialFileError, match="Upgrade atomml"):
        atomml.load_potential(tmp_path / "newer.safetensors")


def test_foreign_safetensors_is_refused(tmp_path):
    save_file({"w": torch.zeros(3)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(atomml.PotentialFileError, match="not an atomml potential"):
        atomml.load_potential(tmp_path / "foreign.safetensors")


def test_pickle_file_is_refused_without_unpickling(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code from the file ran')",))

    torch.save({"x": Boom()}, tmp_path / "evil.pt")
    with pytest.raises(atomml.PotentialFileError, match="not a readable safetensors"):
        atomml.load_potential(tmp_path / "evil.pt")


def test_damaged_header_is_refused(tmp_path, potential):
    path = atomml.save_potential(potential, tmp_path / "m")
    _rewrite_metadata(path, tmp_path / "bad.safetensors", header="{not json")
    with pytest.raises(atomml.PotentialFileError, match="header is damaged"):
        atomml.load_potential(tmp_path / "bad.safetensors")


def test_unknown_architecture_is_refused(tmp_path, potential):
    path = atomml.save_potential(potential, tmp_path / "m")
    header = read_header(path)
    del header["format_version"]
    header["architecture"] = "no-such-model"
    # a valid checksum over the changed header, so that the architecture lookup is reached
    header["sha256"] = _file_checksum(FORMAT_VERSION, header, load_file(str(path)))
    _rewrite_metadata(path, tmp_path / "arch.safetensors", header=json.dumps(header), format=FORMAT)
    with pytest.raises(atomml.PotentialFileError, match="unknown architecture"):
        atomml.load_potential(tmp_path / "arch.safetensors")


def test_missing_file_names_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="shipped potentials"):
        atomml.load_potential("no-such-potential")


def test_shipped_potential_loads_by_name():
    shipped = atomml.shipped_potentials()
    assert "schnet-cu-emt-demo" in shipped
    potential = atomml.load_potential("schnet-cu-emt-demo")
    assert potential.elements == [29]
    assert shipped["schnet-cu-emt-demo"].with_suffix(".md").exists(), "every shipped potential has a model card"
