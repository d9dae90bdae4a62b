"""Boundary code: atomml potentials inside other programs.

- :mod:`atomml.interfaces.ase`: the ASE calculator (:class:`AtomMLCalculator`).
- :mod:`atomml.interfaces.openmm`: the OpenMM force through openmm-ml (needs the ``openmm`` extra).
- :mod:`atomml.interfaces.openmm_plugin`: openmm-ml's entry point for ``MLPotential("atomml")``.
- :mod:`atomml.interfaces.torch_sim`: a torch-sim model (needs the ``torch-sim`` extra).
- :mod:`atomml.interfaces.pyg`: PyTorch Geometric ``Data``/``Batch`` and datasets (``pyg`` extra).

Importing this package imports none of them, so OpenMM is loaded only when asked for.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULES = ("ase", "openmm", "openmm_plugin", "torch_sim", "pyg")


def __getattr__(name: str) -> ModuleType:
    """``atomml.interfaces.ase`` and its siblings are imported on first access (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
