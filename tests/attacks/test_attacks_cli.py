"""Attacks on the ``atomml`` command (issue 14, item 11, and item 5's ``atomml info``): every
expected failure is one line on stderr and a non-zero exit, bugs keep their traceback, and
``--debug`` shows the traceback of expected failures too."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import atomml
from atomml.cli import commands, main
from atomml.models import create, tiny_hyperparameters
from atomml.resources import resource_folder

CU_FCC = resource_folder("md") / "structures" / "cu_fcc_108.extxyz"


def one_line(capsys) -> str:
    """The single line a failed command printed on stderr (no traceback), after the banner that
    ``atomml md`` prints once its inputs are read (issue 15)."""
    err = "\n".join(line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("atomml md: potential "))
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@contextlib.contextmanager
def read_only(folder):
    """``folder`` made unwritable: by its mode, and for root (whom modes do not stop) by the
    immutable attribute; skipped where neither works."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    immutable = False
    try:
        if os.access(folder, os.W_OK):
            immutable = subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode == 0
        probe = folder / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("cannot make a folder read-only here (root without chattr)")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.fixture(scope="module")
def potential_file(tmp_path_factory):
    torch.manual_seed(0)
    potential = create("schnet", elements=[29], **tiny_hyperparameters("schnet", [29]))
    potential.energy_scale.fill_(0.05)  # a weak random potential keeps a short MD well-behaved
    return atomml.save_potential(potential, tmp_path_factory.mktemp("pot") / "cu")


def test_md_into_read_only_folder(potential_file, tmp_path, capsys):
    """Before: a PermissionError traceback."""
    with read_only(tmp_path / "locked") as folder:
        code = main(["md", str(CU_FCC), "-p", str(potential_file), "--steps", "2", "-o", str(folder / "md.extxyz"),
                     "--no-progress"])  # fmt: skip
    assert code == 2
    line = one_line(capsys)
    assert line.startswith("atomml md: error: cannot write to ") and str(tmp_path / "locked") in line
    assert "permission denied; choose a writable output folder" in line


def test_md_with_missing_structure(potential_file, tmp_path, capsys):
    missing = tmp_path / "nothere.xyz"
    assert main(["md", str(missing), "-p", str(potential_file), "-o", str(tmp_path / "o.extxyz"), "--no-progress"]) == 2
    assert one_line(capsys) == f"atomml md: error: {missing}: no such file or directory; check the path"


def test_mistyped_potential_name(capsys):
    assert main(["info", "tensornet-metal-emt"]) == 2
    assert "did you mean 'tensornet-metals-emt'?" in one_line(capsys)


def _training_config(tmp_path):
    frames = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    write(tmp_path / "cu.extxyz", frames)
    hyper = json.dumps(tiny_hyperparameters("schnet", [29]))
    config = tmp_path / "train.yaml"
    config.write_text(
        f"model: {{architecture: schnet, hyperparameters: {hyper}}}\n"
        "data: {train: cu.extxyz, valid_fraction: 0.25}\n"
        "optimizer: {batch_size: 2}\n"
        "stop: {max_steps: 2}\n"
        f"run: {{output: {tmp_path / 'run'}, progress: false}}\n"
    )
    return config


def test_train_with_damaged_checkpoint(tmp_path, capsys):
    """Before: a RuntimeError traceback from torch.load."""
    config = _training_config(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"\x00 not a checkpoint " * 64)
    assert main(["train", str(config)]) == 2
    line = one_line(capsys)
    assert line.startswith("atomml train: error: ") and "checkpoint.pt" in line


def _damaged_copy(tmp_path):
    """The shipped Cu potential cut in half, as an interrupted copy leaves it."""
    source = atomml.shipped_potentials()["schnet-cu-emt-demo"].read_bytes()
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(source[: len(source) // 2])
    return damaged


def test_info_of_damaged_potential(tmp_path, capsys):
    damaged = _damaged_copy(tmp_path)
    assert main(["info", str(damaged)]) == 2
    line = one_line(capsys)
    assert line.startswith(f"atomml info: error: {damaged}: ") and "damaged" in line


def test_debug_shows_the_traceback(tmp_path, capsys):
    damaged = _damaged_copy(tmp_path)
    assert main(["--debug", "info", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "PotentialFileError" in err
    assert err.strip().splitlines()[-1].startswith("atomml info: error: ")


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(args):
        return 1 / 0

    monkeypatch.setattr(commands, "info", broken)
    with pytest.raises(ZeroDivisionError):
        main(["info", "schnet-cu-emt-demo"])


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "info", interrupted)
    assert main(["info", "schnet-cu-emt-demo"]) == 130
    assert one_line(capsys) == "atomml info: interrupted"


def test_subprocess_exit_code_and_single_line(tmp_path):
    """The installed entry point behaves as main() does: exit 2 and one line, no traceback."""
    damaged = _damaged_copy(tmp_path)
    run = subprocess.run([sys.executable, "-m", "atomml.cli", "info", str(damaged)], check=False, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "damaged" in run.stderr


def _weights_sha256(tensors) -> str:
    """The tensors-only checksum of format versions 1 and 2 (as documented)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# -- item 5: `atomml info` shows the cutoff that loading uses ---------------------------------
def test_info_refuses_a_header_whose_cutoff_loading_ignores(tmp_path, capsys):
    """Before: a version-1 file with hyperparameters.cutoff edited 4.5 -> 5.5 showed 'cutoff: 4.5 Å'
    and loaded with 5.5 Å."""
    shipped = atomml.shipped_potentials()["schnet-cu-emt-demo"]
    with safe_open(str(shipped), framework="pt") as f:
        header = json.loads(f.metadata()["header"])
    tensors = load_file(str(shipped))
    header["hyperparameters"]["cutoff"] = 5.5
    del header["sha256"]
    header["weights_sha256"] = _weights_sha256(tensors)
    edited = tmp_path / "v1.safetensors"
    save_file(tensors, str(edited), metadata={"format": "atomml-potential", "format_version": "1", "header": json.dumps(header)})
    assert main(["info", str(edited)]) == 2
    assert "'cutoff' is 4.5, but its hyperparameters and energy terms give 5.5" in one_line(capsys)


def test_info_shows_the_cutoff_of_the_loaded_potential(tmp_path, capsys):
    """With a term reaching beyond the architecture, the neighbour-list cutoff is shown, and
    the architecture's beside it."""
    potential = create("schnet", elements=[1, 6], terms=[{"name": "d2"}], **tiny_hyperparameters("schnet", [1, 6]))
    assert potential.cutoff > potential.architecture_cutoff
    path = atomml.save_potential(potential, tmp_path / "d2")
    assert main(["info", str(path)]) == 0
    loaded = atomml.load_potential(path)
    assert f"cutoff:        {loaded.cutoff} Å (architecture {loaded.architecture_cutoff} Å" in capsys.readouterr().out
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cutoff"] == loaded.cutoff


def test_output_into_a_closed_pipe_ends_quietly():
    """``atomml info NAME | head -1``: the reader stops before the command writes. The write
    fails with EPIPE; the command ends with exit 0 and nothing on stderr (before: a one-line
    'Broken pipe' error, or Python's 'Exception ignored ... BrokenPipeError' at exit)."""
    proc = subprocess.Popen([sys.executable, "-m", "atomml.cli", "info", "schnet-cu-emt-demo"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    proc.stdout.close()  # long before the command has loaded torch and the potential
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, stderr
    assert stderr == ""
