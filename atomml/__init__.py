"""atomml: atomistic machine-learning potentials and molecular simulation.

The public API is what this module exports; everything else may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .calculator import AtomMLCalculator
from .errors import InputError, PotentialFileError
from .graph import AtomicGraph, batch_graphs, from_ase, from_pymatgen
from .neighbors import neighbor_list
from .potential import Potential
from .potential_file import load_potential, read_header, save_potential, shipped_potentials

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
