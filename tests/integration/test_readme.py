"""The README's examples run as written.

Each fenced ``python`` block runs on its own in a fresh interpreter, in a temporary folder that
sees the repository's resource folders (``md/``, ``potentials/``), so a block must be complete
(its own imports, no names from other blocks). In the shell blocks, every ``atomml`` command
line must parse with the real argument parser and name files, potentials, protocols and SMILES
that exist; the short ones (``atomml md``, capped at a few steps, and ``atomml info``) also run.
Lines that take hours (``atomml fe``, ``atomml train``) are only checked, and so are the
maintainer scripts a line names (they must exist).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from atomml.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RESOURCES = ("md", "potentials")  # linked into the temporary folder: README paths are relative to the root
RUN = ("md", "info")  # subcommands short enough to run here
MD_STEPS = 20  # atomml md runs at most this many steps here
SHELL = ("", "bash", "sh", "shell", "console")
TIMEOUT = 120  # s per block or command (each takes a few seconds)


def fenced_blocks() -> list[tuple[int, str, str]]:
    """(line number, language, code) of each fenced block in the README."""
    blocks, current = [], None
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        fence = re.match(r"^\s*```(\S*)\s*$", line)
        if fence and current is None:
            current = (number, fence.group(1).lower(), [])
        elif fence and not fence.group(1):
            blocks.append((current[0], current[1], "\n".join(current[2]) + "\n"))
            current = None
        elif current is not None:
            current[2].append(line)
    assert current is None, f"README.md line {current[0]}: a fenced block is never closed"
    return blocks


def python_blocks() -> list:
    return [pytest.param(code, id=f"line{number}") for number, language, code in fenced_blocks() if language == "python"]


def command_lines() -> list:
    """Every ``atomml ...`` line (comments removed) of the shell blocks, as argv lists."""
    lines = []
    for number, language, code in fenced_blocks():
        if language not in SHELL:
            continue
        for offset, line in enumerate(code.splitlines(), start=1):
            words = shlex.split(line.strip().removeprefix("$ "), comments=True)
            if words and words[0] == "atomml":
                lines.append(pytest.param(words[1:], id=f"line{number + offset}-{'-'.join(words[1:3])}"))
    return lines


def script_paths() -> list:
    """The repository scripts that shell lines run (``... scripts/x.py ...``)."""
    found = set()
    for _, language, code in fenced_blocks():
        if language in SHELL:
            found.update(re.findall(r"(?:^|\s)(scripts/\S+\.py)", code))
    return sorted(found)


@pytest.fixture
def workdir(tmp_path):
    for name in RESOURCES:
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    return tmp_path


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_readme_has_examples():
    assert python_blocks() and command_lines()


@pytest.mark.parametrize("code", python_blocks())
def test_python_block_runs(code, workdir):
    (workdir / "example.py").write_text(code)
    proc = run([sys.executable, "example.py"], workdir)  # exits 0 (asserted in run)
    if "print(" in code:  # what the example shows the reader is there, and is numbers, not nan
        assert proc.stdout.strip(), "the example prints nothing"
        assert not re.search(r"\bnan\b", proc.stdout, re.IGNORECASE), proc.stdout


def written_by_the_readme() -> set[str]:
    """Files that a README command line writes (``-o``/``--output``), which a later line may read."""
    outputs = set()
    for param in command_lines():
        words = param.values[0]
        outputs.update(words[k + 1] for k, word in enumerate(words[:-1]) if word in ("-o", "--output"))
    return outputs


def check_names_exist(args) -> None:
    """The files, potentials, protocols and molecules that a parsed command names exist (or
    are written by an earlier README line: a committee that ``atomml committee join`` makes)."""
    from atomml.potential_file import resolve

    for key in ("structure", "config"):
        if getattr(args, key, None) is not None:
            assert (ROOT / getattr(args, key)).is_file(), f"{key} {getattr(args, key)} does not exist"
    for key in ("potential", "ml_potential"):
        if isinstance(getattr(args, key, None), str) and getattr(args, key) not in written_by_the_readme():
            resolve(getattr(args, key))
    if getattr(args, "protocol", None) is not None:
        from atomml.fe.hydration import HydrationProtocol

        path = ROOT / args.protocol
        HydrationProtocol.from_yaml(path if path.suffix else args.protocol)
    if getattr(args, "smiles", None) is not None:
        from rdkit import Chem

        assert Chem.MolFromSmiles(args.smiles) is not None, f"RDKit cannot read {args.smiles!r}"


@pytest.mark.parametrize("argv", command_lines())
def test_command_line(argv, workdir):
    args = build_parser().parse_args(argv)
    check_names_exist(args)
    if args.command not in RUN:
        return  # hours of work: checked above, not run
    if args.command == "md" and args.steps > MD_STEPS:  # the same command, shorter
        argv = _without_option(argv, "--steps") + ["--steps", str(MD_STEPS)]
    run([sys.executable, "-m", "atomml.cli", *argv], workdir)


def _without_option(argv: list[str], option: str) -> list[str]:
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == option:
            skip = True
        elif not word.startswith(option + "="):
            out.append(word)
    return out


@pytest.mark.parametrize("script", script_paths())
def test_named_scripts_exist(script):
    assert (ROOT / script).is_file()
