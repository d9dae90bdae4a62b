"""Deprecated path of :mod:`atomml.dynamics.openmm` (kept for one release)."""

from ._deprecation import warn_moved
from .dynamics.openmm import run_openmm_md, topology

__all__ = ["run_openmm_md", "topology"]

warn_moved("atomml.openmm_md", "atomml.dynamics.openmm")
