"""atomml: atomistic machine-learning potentials and molecular simulation.

The public API is what this module exports; everything else may change. The subpackages named
in :data:`SUBMODULES` are imported on first access (``atomml.models.create(...)`` after a plain
``import atomml``), and so are the public names, so that ``import atomml`` stays fast and loads
neither torch nor any optional dependency (OpenMM, pymbar, RDKit, matplotlib, YAML).
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
import importlib.util
from typing import Any

from .errors import InputError, PotentialFileError

# The public names below load torch; they are imported on first access, so that ``import atomml``
# (and the ``atomml`` command, which must configure OpenMP before torch loads) stays light.
_PUBLIC = {
    "AtomMLCalculator": "interfaces.ase", "AtomicGraph": "graph", "batch_graphs": "graph", "from_ase": "graph",
    "from_pymatgen": "graph", "neighbor_list": "neighbors", "Potential": "potential",
    "load_potential": "potential_file", "read_header": "potential_file", "save_potential": "potential_file",
    "shipped_potentials": "potential_file", "evaluate": "evaluation", "relax": "relaxation",
}  # fmt: skip
# (a public function never shares its name with its module: importing ``atomml.relax`` as a module
# would replace the function ``atomml.relax`` with it)

# Documented subpackages and modules, reachable as attributes of ``atomml``. A name whose module
# is not (yet) part of this installation is simply not an attribute.
SUBMODULES = (
    "analysis", "convert", "data", "dynamics", "export", "fe", "files", "graph", "interfaces", "models",
    "neighbors", "plugins", "terms", "testing", "training", "units", "validation",
)  # fmt: skip

__all__ = [
    "AtomMLCalculator",
    "AtomicGraph",
    "InputError",
    "Potential",
    "PotentialFileError",
    "batch_graphs",
    "evaluate",
    "from_ase",
    "from_pymatgen",
    "load_potential",
    "neighbor_list",
    "read_header",
    "relax",
    "save_potential",
    "shipped_potentials",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import a public name or a documented subpackage on first access (PEP 562)."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
        globals()[name] = value
        return value
    if name in SUBMODULES:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the module exists but one of its own imports is missing: say which
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    present = [name for name in SUBMODULES if importlib.util.find_spec(f"{__name__}.{name}") is not None]
    return sorted(set(globals()) | set(_PUBLIC) | set(present))
