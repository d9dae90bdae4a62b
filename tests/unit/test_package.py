"""The package's surface: subpackages reachable from ``import atomml`` without loading optional
dependencies, and the moved modules' old paths (a deprecation warning, the same objects)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import atomml

HEAVY = ("openmm", "openmmml", "pymbar", "rdkit", "matplotlib", "yaml")


def run_python(script: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter (this process has imported much more than atomml)."""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_import_atomml_reaches_subpackages_without_optional_dependencies():
    """Defect 3 of issue 13: ``atomml.models.create`` after a plain ``import atomml`` (as the
    README writes it) raised AttributeError."""
    run = run_python(
        "import sys, atomml\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "p = atomml.models.create('tensornet', elements=[1, 6, 8], cutoff=4.0, hidden_channels=8, num_layers=1, num_rbf=8)\n"
        "print(type(p).__name__, atomml.dynamics.MDSettings().ensemble, atomml.testing.__name__,\n"
        "      atomml.interfaces.ase.AtomMLCalculator is atomml.AtomMLCalculator)\n"
    )
    heavy, summary = run.stdout.strip().splitlines()[-2:]
    assert heavy == "[]", f"import atomml loaded optional dependencies: {heavy}"
    assert summary == "Potential nvt atomml.testing True"


def test_lazy_subpackages_are_listed_and_unknown_names_fail(monkeypatch):
    assert {"models", "interfaces", "dynamics", "fe", "training", "data", "testing"} <= set(dir(atomml))
    assert atomml.interfaces is importlib.import_module("atomml.interfaces")
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        atomml.no_such_thing  # noqa: B018
    # a documented name whose module this installation lacks is no attribute either
    monkeypatch.setattr(atomml, "SUBMODULES", (*atomml.SUBMODULES, "not_yet_written"))
    with pytest.raises(AttributeError):
        atomml.not_yet_written  # noqa: B018
    assert "not_yet_written" not in dir(atomml)


MOVED = [  # old path, new path, names
    ("atomml.calculator", "atomml.interfaces.ase", ["AtomMLCalculator"]),
    ("atomml.openmm_md", "atomml.dynamics.openmm", ["run_openmm_md", "topology"]),
    ("atomml.openmm_plugin", "atomml.interfaces.openmm_plugin", ["AtomMLPotentialImplFactory", "ensure_registered"]),
    ("atomml.openmm", "atomml.interfaces.openmm", ["AtomMLPotentialImpl", "AtomMLComputation"]),
]


@pytest.mark.parametrize(("old", "new", "names"), MOVED, ids=[m[0] for m in MOVED])
def test_old_import_paths_warn_and_give_the_same_objects(old, new, names):
    if "openmm" in new and new != "atomml.dynamics.openmm":
        pytest.importorskip("openmmml")
    new_module = importlib.import_module(new)
    sys.modules.pop(old, None)  # imported earlier in this process: import it afresh
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}") as caught:
        old_module = importlib.import_module(old)
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), name
    # attributed to the importer (here importlib.import_module), not to atomml's shim
    assert Path(atomml.__file__).parent not in Path(caught[0].filename).parents, caught[0].filename


def test_deprecation_is_shown_to_scripts_and_the_new_paths_are_quiet():
    """Python shows a DeprecationWarning by default only when it is attributed to ``__main__``:
    the shims name the importing line, so a script sees it; the public paths warn nothing."""
    run = run_python(
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import atomml\n"
        "    atomml.AtomMLCalculator, atomml.interfaces.ase, atomml.dynamics.run_md\n"
        "    from atomml.dynamics import MDSettings, run_md\n"
        "print([str(w.message) for w in caught if 'moved to' in str(w.message)])\n"
        "import atomml.calculator\n"
    )
    assert run.stdout.strip().splitlines()[-1] == "[]"
    assert "<string>:8: DeprecationWarning: atomml.calculator moved to atomml.interfaces.ase" in run.stderr, run.stderr


def test_dynamics_does_not_import_openmm():
    run = run_python("import sys, atomml.dynamics, atomml.interfaces\nprint([m for m in ('openmm', 'openmmml') if m in sys.modules])")
    assert run.stdout.strip().splitlines()[-1] == "[]"
