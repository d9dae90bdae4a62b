"""Attacks on potential files (issue 14, items 5 and 13): edited headers, two cutoffs,
duplicated energies, wrong field types, directories and mistyped shipped names.

Files are re-signed here with checksums written from the format's documentation (the module
docstring of :mod:`atomml.potential_file`), not by atomml's own functions, so that an attack
reaches the checks behind the checksum and the documented format is itself checked.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch
from ase.io import read
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import atomml
from atomml import PotentialFileError
from atomml.models import create, tiny_hyperparameters
from atomml.resources import resource_folder

CU_FCC = resource_folder("md") / "structures" / "cu_fcc_108.extxyz"


def _tensor_digest(digest, tensors: dict[str, torch.Tensor]):
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def signed(header: dict, tensors: dict[str, torch.Tensor], version: int) -> dict:
    """``header`` with the checksum its format version documents."""
    header = {k: v for k, v in header.items() if k not in ("sha256", "weights_sha256", "format_version")}
    if version < 3:  # versions 1 and 2: the tensors only
        return {**header, "weights_sha256": _tensor_digest(hashlib.sha256(), tensors)}
    covered = {"format": "atomml-potential", "format_version": version, "header": header}
    canonical = json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return {**header, "sha256": _tensor_digest(hashlib.sha256(canonical.encode()), tensors)}


def parts(path) -> tuple[dict[str, str], dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    return meta, json.loads(meta["header"]), load_file(str(path))


def write(path, header, tensors, version: int | str = 3, sign: bool = True):
    """A potential file with this header (signed for ``version`` unless ``sign`` is False)."""
    if sign:
        header = signed(header, tensors, int(version))
    text = header if isinstance(header, str) else json.dumps(header)
    save_file(tensors, str(path), metadata={"format": "atomml-potential", "format_version": str(version), "header": text})
    return path


def cu_energy(potential) -> float:
    atoms = read(CU_FCC)
    return float(potential(atomml.from_ase(atoms, dtype=potential.dtype))["energy"][0].detach())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Cu/Ag potential with reference energies, scale and shift, saved by atomml."""
    torch.manual_seed(0)
    potential = create("schnet", elements=[29, 47], atomic_energies={29: -0.25, 47: 0.5}, energy_scale=0.7,
                       energy_shift=0.01, **tiny_hyperparameters("schnet", [29, 47]))  # fmt: skip
    return potential, atomml.save_potential(potential, tmp_path_factory.mktemp("tiny") / "cuag")


# -- item 5: the header is inside the checksum (version 3) ------------------------------------
def test_shipped_cutoff_edit_is_refused(tmp_path):
    """One digit of hyperparameters.cutoff (4.5 -> 5.5) turned a 1 eV Cu cell into hundreds."""
    meta, header, tensors = parts(atomml.shipped_potentials()["schnet-cu-emt-demo"])
    assert meta["format_version"] == "3", "the shipped potentials are written in the checksummed format"
    header["hyperparameters"]["cutoff"] = 5.5
    edited = write(tmp_path / "cut.safetensors", header, tensors, sign=False)
    with pytest.raises(PotentialFileError, match="do not match their checksum"):
        atomml.load_potential(edited)


def test_shipped_elements_relabelled_are_refused(tmp_path):
    """Cu -> Ag everywhere in the header evaluated silver with copper's weights."""
    _, header, tensors = parts(atomml.shipped_potentials()["schnet-cu-emt-demo"])
    header["hyperparameters"]["elements"], header["elements"] = [47], ["Ag"]
    header["atomic_energies"] = {"Ag": header["atomic_energies"].pop("Cu")}
    edited = write(tmp_path / "ag.safetensors", header, tensors, sign=False)
    with pytest.raises(PotentialFileError, match="do not match their checksum"):
        atomml.load_potential(edited)


EDITS = {
    "architecture": lambda h: h.update(architecture="tensornet"),
    "metadata": lambda h: h.update(metadata={"name": "someone else's"}),
    "energy_scale": lambda h: h.update(energy_scale=h["energy_scale"] * 2),
    "dtype": lambda h: h.update(dtype="float64"),
    "energy_terms": lambda h: h.update(energy_terms=[{"name": "zbl", "config": {"cutoff": 2.0}}]),
    "atomml_version": lambda h: h.update(atomml_version="9.9.9"),
    "unknown field": lambda h: h.update(note="added"),
}


@pytest.mark.parametrize("field", EDITS)
def test_every_header_field_is_covered(tiny, tmp_path, field):
    _, header, tensors = parts(tiny[1])
    EDITS[field](header)
    with pytest.raises(PotentialFileError, match="do not match their checksum"):
        atomml.load_potential(write(tmp_path / "e.safetensors", header, tensors, sign=False))


def test_format_version_is_covered(tiny, tmp_path):
    """Calling a version-3 file version 2 must not skip the header's checksum."""
    _, header, tensors = parts(tiny[1])
    with pytest.raises(PotentialFileError, match="checksum"):
        atomml.load_potential(write(tmp_path / "v.safetensors", header, tensors, version=2, sign=False))


def test_signed_file_loads_with_the_same_energy(tiny, tmp_path):
    """The documented checksum is the one atomml writes: a file re-signed from it loads."""
    potential, path = tiny
    _, header, tensors = parts(path)
    assert signed(header, tensors, 3)["sha256"] == header["sha256"]
    assert cu_energy(atomml.load_potential(write(tmp_path / "s.safetensors", header, tensors))) == cu_energy(potential)


# -- item 5: one source of truth (checked in every version) -----------------------------------
REPEATS = {  # a header copy changed alone, and the words the refusal must contain
    "hyperparameters.cutoff": (lambda h: h["hyperparameters"].update(cutoff=h["cutoff"] + 1.0), "'cutoff'"),
    "cutoff": (lambda h: h.update(cutoff=h["cutoff"] + 1.0), "'cutoff'"),
    "energy_scale": (lambda h: h.update(energy_scale=100.0), "'energy_scale'"),
    "energy_shift": (lambda h: h.update(energy_shift=1.0), "'energy_shift'"),
    "atomic_energies": (lambda h: h["atomic_energies"].update(Cu=-3.0), "'atomic_energies'"),
    "elements": (lambda h: h.update(elements=["Cu", "Au"]), "'elements'"),
}


@pytest.mark.parametrize("version", [1, 3])
@pytest.mark.parametrize("field", REPEATS)
def test_header_copies_must_equal_what_loading_uses(tiny, tmp_path, field, version):
    """Version 1 files have no header checksum: a copy edited alone is still refused."""
    _, header, tensors = parts(tiny[1])
    change, words = REPEATS[field]
    change(header)
    with pytest.raises(PotentialFileError, match=words):
        atomml.load_potential(write(tmp_path / "r.safetensors", header, tensors, version=version))


def test_version_1_file_still_loads(tiny, tmp_path):
    """Files written before version 3 load as before (weights checksummed, header checked)."""
    potential, path = tiny
    _, header, tensors = parts(path)
    header.pop("energy_terms")
    old = write(tmp_path / "v1.safetensors", header, tensors, version=1)
    assert atomml.read_header(old)["format_version"] == 1
    assert cu_energy(atomml.load_potential(old)) == cu_energy(potential)
    tensors["energy_scale"] = torch.tensor(0.8)  # a damaged tensor is still refused
    with pytest.raises(PotentialFileError, match="weights do not match their checksum"):
        atomml.load_potential(write(tmp_path / "w.safetensors", header, tensors, version=1, sign=False))


# -- item 5: field types ------------------------------------------------------------------------
TYPES = {  # the change, and the field the refusal must name
    "dtype float17": (lambda h: h.update(dtype="float17"), "dtype"),
    "dtype int64": (lambda h: h.update(dtype="int64"), "dtype"),
    "dtype a number": (lambda h: h.update(dtype=32), "dtype"),
    "hyperparameters a list": (lambda h: h.update(hyperparameters=[1, 2]), "hyperparameters"),
    "hyperparameters without cutoff": (lambda h: h["hyperparameters"].pop("cutoff"), "hyperparameters.cutoff"),
    "cutoff a string": (lambda h: h.update(cutoff="4.5"), "cutoff"),
    "cutoff negative": (lambda h: h.update(cutoff=-1.0), "cutoff"),
    "cutoff a bool": (lambda h: h.update(cutoff=True), "cutoff"),
    "elements not symbols": (lambda h: h.update(elements=["Cu", "Xx"]), "elements"),
    "elements a string": (lambda h: h.update(elements="CuAg"), "elements"),
    "elements nested": (lambda h: h.update(elements=[["Cu"], ["Ag"]]), "elements"),
    "atomic numbers repeated": (lambda h: h["hyperparameters"].update(elements=[29, 29]), "hyperparameters.elements"),
    "atomic numbers out of range": (lambda h: h["hyperparameters"].update(elements=[29, 500]), "hyperparameters.elements"),
    "energy_scale NaN": (lambda h: h.update(energy_scale=float("nan")), "energy_scale"),
    "energy_shift a string": (lambda h: h.update(energy_shift="0"), "energy_shift"),
    "atomic energies a list": (lambda h: h.update(atomic_energies=[1.0, 2.0]), "atomic_energies"),
    "atomic energies infinite": (lambda h: h["atomic_energies"].update(Cu=float("inf")), "atomic_energies"),
    "energy terms an object": (lambda h: h.update(energy_terms={"name": "zbl"}), "energy_terms"),
    "units kcal/mol": (lambda h: h.update(units={"energy": "kcal/mol", "length": "Angstrom"}), "units"),
    "metadata a list": (lambda h: h.update(metadata=["x"]), "metadata"),
    "no architecture": (lambda h: h.pop("architecture"), "architecture"),
}


@pytest.mark.parametrize("case", TYPES)
def test_wrong_field_types_are_named(tiny, tmp_path, case):
    """Before: AttributeError for dtype 'float17', TypeError for a list, silent loads for others."""
    _, header, tensors = parts(tiny[1])
    change, field = TYPES[case]
    change(header)
    with pytest.raises(PotentialFileError, match=f"'{field}'"):
        atomml.load_potential(write(tmp_path / "t.safetensors", header, tensors))


@pytest.mark.parametrize("text", ["[1, 2]", '"a string"', "3"])
def test_header_that_is_not_an_object_is_refused(tiny, tmp_path, text):
    _, _, tensors = parts(tiny[1])
    with pytest.raises(PotentialFileError, match="not an object"):
        atomml.load_potential(write(tmp_path / "l.safetensors", text, tensors, sign=False))


@pytest.mark.parametrize("version", ["-5", "0"])
def test_impossible_format_versions_are_refused(tiny, tmp_path, version):
    _, header, tensors = parts(tiny[1])
    with pytest.raises(PotentialFileError, match=f"format_version {version} does not exist"):
        atomml.load_potential(write(tmp_path / "n.safetensors", header, tensors, version=version, sign=False))


def test_writer_refuses_what_the_reader_would(tiny, tmp_path):
    """A potential with a NaN energy scale is not written, so no file that loading refuses exists."""
    potential = create("schnet", elements=[29], **tiny_hyperparameters("schnet", [29]))
    potential.energy_scale.fill_(float("nan"))
    with pytest.raises(PotentialFileError, match="'energy_scale'"):
        atomml.save_potential(potential, tmp_path / "nan")
    assert not (tmp_path / "nan.safetensors").exists()


# -- item 13: directories and mistyped names --------------------------------------------------
@pytest.mark.parametrize(("typed", "meant"), [("tensornet-organic-gfn", "tensornet-organic-gfn2"),
                                               ("tensornet-metal-emt", "tensornet-metals-emt"),
                                               ("schnet-cu-emt-demo.safetensor", "schnet-cu-emt-demo")])  # fmt: skip
def test_mistyped_shipped_name_suggests_the_closest(typed, meant):
    with pytest.raises(FileNotFoundError, match=f"did you mean '{meant}'"):
        atomml.load_potential(typed)


def test_unrelated_name_suggests_nothing():
    with pytest.raises(FileNotFoundError, match="shipped potentials") as info:
        atomml.load_potential("qwertyuiop")
    assert "did you mean" not in str(info.value)


def test_directory_lists_its_potential_files(tiny, tmp_path):
    shutil.copy(tiny[1], tmp_path / "a.safetensors")
    shutil.copy(tiny[1], tmp_path / "b.safetensors")
    (tmp_path / "notes.txt").write_text("not a potential")
    with pytest.raises(PotentialFileError, match=r"is a directory.*a\.safetensors, b\.safetensors: pass one of them"):
        atomml.load_potential(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PotentialFileError, match=r"is a directory.*no \.safetensors file"):
        atomml.load_potential(tmp_path / "empty")
