"""Deprecated path of :mod:`atomml.interfaces.openmm` (kept for one release)."""

from ._deprecation import warn_moved
from .interfaces.openmm import FORCE_PER_EV_PER_A, AtomMLComputation, AtomMLPotentialImpl
from .interfaces.openmm_plugin import AtomMLPotentialImplFactory, ensure_registered

__all__ = ["FORCE_PER_EV_PER_A", "AtomMLComputation", "AtomMLPotentialImpl", "AtomMLPotentialImplFactory",
           "ensure_registered"]  # fmt: skip

warn_moved("atomml.openmm", "atomml.interfaces.openmm")
