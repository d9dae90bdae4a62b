"""Deprecated path of :mod:`atomml.interfaces.ase` (kept for one release)."""

from ._deprecation import warn_moved
from .interfaces.ase import AtomMLCalculator

__all__ = ["AtomMLCalculator"]

warn_moved("atomml.calculator", "atomml.interfaces.ase")
