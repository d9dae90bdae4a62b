"""The built wheel holds every package of the source tree and runs from an installed copy.

Defect 4 of issue 13: a hand-kept package list left ``atomml.data`` and ``atomml.training`` out
of the wheel, so ``pip install .`` gave an ``atomml train`` that could not import. The wheel is
built from a clean copy of the files git tracks or does not ignore (a stale ``build/`` folder
would hide missing packages) without build isolation (no network needed), installed into a
folder of its own, and run from there: never from the source tree or the editable install.
"""

from __future__ import annotations

import ast
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# what the build reads: the configuration, the readme (metadata) and the shipped folders
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "atomml/", "potentials/", "md/")


def _source_files() -> list[str]:
    """Files of the working tree that git tracks or does not ignore (uncommitted work included)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    return [f for f in listed if f.startswith(BUILD_INPUTS) and (REPO / f).is_file()]


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    run = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{' '.join(command)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the wheel, the folder it is installed in, the source copy it was built from)."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs the git checkout to know the source files")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    for name in _source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(root / "dist"), "."], source)
    (wheel,) = (root / "dist").glob("atomml-*.whl")
    _run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(root / "site"), str(wheel)], root)
    return wheel, root / "site", source


def test_wheel_holds_every_package_and_the_shipped_folders(built):
    wheel, _, source = built
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(p.parent.relative_to(source).as_posix() for p in (source / "atomml").rglob("__init__.py"))
    assert {"atomml", "atomml/data", "atomml/training", "atomml/interfaces", "atomml/dynamics"} <= set(packages)
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"packages of the source tree missing from {wheel.name}: {missing}"
    modules = [p.relative_to(source).as_posix() for p in (source / "atomml").rglob("*.py")]
    assert not [m for m in modules if m not in names], "modules missing from the wheel"
    for folder in ("potentials", "md"):
        shipped = [p.relative_to(source / folder).as_posix() for p in (source / folder).rglob("*")
                   if p.is_file() and p.suffix in (".safetensors", ".md", ".yaml", ".extxyz")]  # fmt: skip
        assert shipped and not [f for f in shipped if f"atomml/_{folder}/{f}" not in names], folder
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert b"atomml = atomml.interfaces.openmm_plugin:AtomMLPotentialImplFactory" in entry_points


def test_installed_copy_runs_the_command_line(built, tmp_path):
    _, site_dir, _ = built
    # -S: no .pth files, so neither an editable install's finder nor a path to the source tree
    # can supply a module the wheel lacks; the dependencies come from this interpreter's
    # site-packages, after the installed copy; the working directory is not the source tree.
    paths = [str(site_dir), *site.getsitepackages(), site.getusersitepackages()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    python = [sys.executable, "-S"]
    # one interpreter (each start imports torch): what atomml imported, then ``atomml info``
    script = (
        "import sys, atomml, atomml.cli, atomml.data, atomml.training, atomml.interfaces.ase, atomml.dynamics\n"
        "print(sorted({m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'atomml' and m.__file__}))\n"
        "sys.exit(atomml.cli.main(['info', 'tensornet-organic-gfn2']))"
    )
    files, info = _run([*python, "-c", script], tmp_path, env).split("\n", 1)
    outside = [f for f in ast.literal_eval(files) if not Path(f).is_relative_to(site_dir)]
    assert not outside, f"atomml modules imported from outside the installed copy: {outside}"
    assert "tensornet" in info.lower()
    assert "usage" in _run([*python, "-m", "atomml.cli", "train", "--help"], tmp_path, env).lower()


def test_installed_copy_loads_every_shipped_potential_and_preset(built, tmp_path):
    """The wheel carries the shipped potentials, their cards and the training presets, and they
    load by name from the installed copy."""
    import json

    import atomml

    _, site_dir, source = built
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site_dir), *site.getsitepackages()])}
    script = (
        "import json, atomml, atomml.resources as r\n"
        "names = sorted(atomml.shipped_potentials())\n"
        "for n in names: atomml.load_potential(n)\n"
        "print(json.dumps({'file': atomml.__file__, 'names': names, "
        "'cards': all(p.with_suffix('.md').exists() for p in atomml.shipped_potentials().values()), "
        "'presets': sorted(p.name for p in r.resource_folder('potentials').glob('*.yaml'))}))\n"
    )
    seen = json.loads(_run([sys.executable, "-S", "-c", script], tmp_path, env).strip().splitlines()[-1])
    assert Path(seen["file"]).is_relative_to(site_dir)
    assert seen["names"] == sorted(atomml.shipped_potentials()) and seen["cards"]
    assert seen["presets"] == sorted(p.name for p in (source / "potentials").glob("*.yaml"))
