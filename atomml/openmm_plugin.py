"""Deprecated path of :mod:`atomml.interfaces.openmm_plugin` (kept for one release; an atomml
installed before the move names this module in its openmm-ml entry point)."""

from ._deprecation import warn_moved
from .interfaces.openmm_plugin import AtomMLPotentialImplFactory, ensure_registered

__all__ = ["AtomMLPotentialImplFactory", "ensure_registered"]

warn_moved("atomml.openmm_plugin", "atomml.interfaces.openmm_plugin")
