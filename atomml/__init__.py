"""atomml: atomistic machine-learning potentials and molecular simulation.

The public API is what this module exports; everything else may change. The subpackages named
in :data:`SUBMODULES` are imported on first access (``atomml.models.create(...)`` after a plain
``import atomml``), so that ``import atomml`` stays fast and loads no optional dependency
(OpenMM, pymbar, RDKit, matplotlib, YAML).
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
import importlib.util
from typing import Any

from .errors import InputError, PotentialFileError
from .graph import AtomicGraph, batch_graphs, from_ase, from_pymatgen
from .interfaces.ase import AtomMLCalculator
from .neighbors import neighbor_list
from .potential import Potential
from .potential_file import load_potential, read_header, save_potential, shipped_potentials

# Documented subpackages and modules, reachable as attributes of ``atomml``. A name whose module
# is not (yet) part of this installation is simply not an attribute.
SUBMODULES = (
    "analysis", "convert", "data", "dynamics", "export", "fe", "files", "graph", "interfaces", "models",
    "neighbors", "plugins", "terms", "testing", "training", "units",
)  # fmt: skip

__all__ = [
    "AtomMLCalculator",
    "AtomicGraph",
    "InputError",
    "Potential",
    "PotentialFileError",
    "batch_graphs",
    "from_ase",
    "from_pymatgen",
    "load_potential",
    "neighbor_list",
    "read_header",
    "save_potential",
    "shipped_potentials",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import a documented subpackage on first access (PEP 562)."""
    if name in SUBMODULES:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the module exists but one of its own imports is missing: say which
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    present = [name for name in SUBMODULES if importlib.util.find_spec(f"{__name__}.{name}") is not None]
    return sorted(set(globals()) | set(present))
