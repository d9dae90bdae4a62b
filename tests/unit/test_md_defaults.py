"""`atomml md` defaults (issue 15, items 1 and 2): threads, the time step the potential file
recommends, the banner, every default in --help; and the header rewrite that stores them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from ase.build import bulk
from ase.io import write
from safetensors import safe_open

import atomml
from atomml.cli import build_parser, main
from atomml.errors import PotentialFileError
from atomml.models import create
from atomml.potential_file import load_potential, read_header, replace_metadata, save_potential
from atomml.resources import resource_folder
from atomml.threads import available_cpus


def _tiny(tmp_path: Path, metadata: dict | None = None) -> Path:
    torch.manual_seed(0)
    potential = create("schnet", elements=[29], cutoff=4.0, n_atom_basis=8, n_filters=8, n_interactions=1, n_rbf=6)
    potential.energy_scale.fill_(0.05)
    potential.metadata = dict(metadata or {})
    return save_potential(potential, tmp_path / "cu.safetensors")


def _raw(path: Path) -> tuple[dict, dict[str, bytes]]:
    """The header and each tensor's dtype, shape and bytes, as stored."""
    with safe_open(str(path), "pt") as f:
        header = json.loads(f.metadata()["header"])
        tensors = {k: (str(t.dtype), tuple(t.shape), t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
                   for k in f.keys() for t in [f.get_tensor(k)]}  # fmt: skip
    return header, tensors


# --- the potential file carries its run settings ------------------------------------------------


def test_replace_metadata_keeps_tensors_and_header_and_writes_a_valid_checksum(tmp_path):
    path = _tiny(tmp_path, {"name": "cu"})
    header, tensors = _raw(path)
    replace_metadata(path, {"name": "cu", "recommended_timestep_fs": 2.0})
    new_header, new_tensors = _raw(path)
    assert new_tensors == tensors
    assert {k: v for k, v in new_header.items() if k not in ("metadata", "sha256")} == {
        k: v for k, v in header.items() if k not in ("metadata", "sha256")
    }
    assert load_potential(path).metadata == {"name": "cu", "recommended_timestep_fs": 2.0}  # checksum verified


def test_replace_metadata_refuses_a_damaged_file(tmp_path):
    path = _tiny(tmp_path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # a bit of the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(PotentialFileError, match="checksum"):
        replace_metadata(path, {"recommended_timestep_fs": 1.0})


@pytest.mark.parametrize(
    "metadata, field",
    [({"recommended_timestep_fs": -0.5}, "recommended_timestep_fs"), ({"recommended_timestep_fs": "0.5"}, "recommended_timestep_fs"),
     ({"closed_shell_only": "yes"}, "closed_shell_only")],
)  # fmt: skip
def test_header_refuses_run_settings_of_the_wrong_type(tmp_path, metadata, field):
    path = _tiny(tmp_path)
    with pytest.raises(PotentialFileError, match=f"'metadata.{field}'"):
        replace_metadata(path, metadata)
    assert "metadata" in read_header(path)  # the file is left as it was, and still loads


def test_shipped_potentials_recommend_their_time_step():
    """The organic card says 0.5 fs steps; the metals potentials were trained on 2 fs EMT MD."""
    card = (resource_folder("potentials") / "tensornet-organic-gfn2.md").read_text()
    organic = read_header("tensornet-organic-gfn2")["metadata"]
    assert f"({organic['recommended_timestep_fs']:g} fs steps)" in card
    assert organic["closed_shell_only"] is True
    for name in sorted(atomml.shipped_potentials()):
        assert read_header(name)["metadata"]["recommended_timestep_fs"] > 0, name


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def cu(tmp_path):
    path = tmp_path / "cu.xyz"
    write(path, bulk("Cu", cubic=True))
    return path


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _md(tmp_path, structure, potential, *extra):
    out = tmp_path / "md.extxyz"
    argv = ["md", str(structure), "-p", str(potential), "--steps", "0", "-o", str(out), "--no-progress", "--overwrite", *extra]
    code = main(argv)
    fingerprint = json.loads(out.with_name(out.name + ".state.json").read_text())["fingerprint"] if code == 0 else None
    return code, fingerprint


@pytest.mark.parametrize(
    "metadata, extra, used, says",
    [({"recommended_timestep_fs": 0.25}, [], 0.25, "timestep 0.25 fs (recommended by "),
     ({}, [], 1.0, "timestep 1 fs (default; "),
     ({"recommended_timestep_fs": 0.25}, ["--timestep", "0.2"], 0.2, "timestep 0.2 fs (--timestep)"),
     ({"recommended_timestep_fs": 0.25}, ["--timestep", "2"], 2.0, "timestep 2 fs (--timestep; ")],
)  # fmt: skip
def test_md_time_step_comes_from_the_potential_unless_given(tmp_path, cu, capsys, restore_threads, metadata, extra, used, says):
    code, fingerprint = _md(tmp_path, cu, _tiny(tmp_path, metadata), *extra)
    assert code == 0
    assert fingerprint["settings"]["timestep_fs"] == used  # what the run used, not only what it said
    banner = capsys.readouterr().err.strip().splitlines()
    assert len(banner) == 1 and says in banner[0]
    if extra == ["--timestep", "2"]:
        assert "recommends 0.25 fs" in banner[0]  # a longer step than recommended is pointed out


def test_md_banner_names_what_the_run_uses(tmp_path, cu, capsys, restore_threads):
    assert _md(tmp_path, cu, _tiny(tmp_path), "--charge", "1", "--dtype", "float64", "--threads", "1")[0] == 0
    banner = capsys.readouterr().err
    for part in ("potential ", "(Cu)", "engine ase", "device cpu", "float64", "1 thread,", "charge 1.0", "NVT 300 K",
                 "output " + str(tmp_path / "md.extxyz")):  # fmt: skip
        assert part in banner, part


def test_md_threads_default_to_the_available_cpus_and_can_be_set(tmp_path, cu, capsys, restore_threads):
    potential = _tiny(tmp_path)
    assert _md(tmp_path, cu, potential, "--threads", "1")[0] == 0
    assert torch.get_num_threads() == 1
    assert _md(tmp_path, cu, potential)[0] == 0
    assert torch.get_num_threads() == available_cpus()
    assert f"{available_cpus()} thread" in capsys.readouterr().err
    assert _md(tmp_path, cu, potential, "--threads", "0")[0] == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--threads must be at least 1" in error


def test_md_help_shows_every_default():
    md = build_parser()._subparsers._group_actions[0].choices["md"]
    text = " ".join(md.format_help().split())
    for action in md._actions:
        if not action.option_strings or action.nargs == 0 or action.required:  # positionals, flags, --help
            continue
        help_text = " ".join((action.help % {"default": action.default}).split())
        assert re.search(r"\(default[: ]", help_text), f"{action.option_strings[0]}: {help_text}"
        assert help_text in text
    assert f"the CPUs this process may use, {available_cpus()} here" in text


def test_md_missing_structure_names_itself_in_one_line(tmp_path, capsys, restore_threads):
    missing = tmp_path / "caffeine.xyz"
    assert main(["md", str(missing), "-p", "schnet-cu-emt-demo", "--steps", "1", "-o", str(tmp_path / "o.extxyz")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error == f"atomml md: error: {missing}: no such file or directory; check the path"
    assert not (tmp_path / "o.extxyz").exists()


def test_md_unreadable_structure_names_itself_in_one_line(tmp_path, capsys, restore_threads):
    garbage = tmp_path / "caffeine.xyz"
    garbage.write_text("caffeine, 24 atoms\n")
    assert main(["md", str(garbage), "-p", "schnet-cu-emt-demo", "--steps", "1", "-o", str(tmp_path / "o.extxyz")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith(f"atomml md: error: cannot read the structure file {garbage} (")
