"""Test helpers shipped with atomml: the physics battery, the layer equivariance check and
structure generators. Nothing here needs pytest."""

from .battery import (
    TOLERANCES,
    check_bad_inputs,
    check_batch_consistency,
    check_cutoff_smoothness,
    check_forces_finite_difference,
    check_fragment_additivity,
    check_invariance,
    check_isolated_atoms,
    check_no_gradient_leak,
    check_nve_conservation,
    check_periodic_wrapping,
    check_stress_finite_difference,
    check_supercell_additivity,
)
from .equivariance import axial, check_equivariant, custom, irreps, rank2, scalar, vector
from .structures import random_crystal, random_molecule, random_rotation

__all__ = [
    "TOLERANCES",
    "axial",
    "custom",
    "irreps",
    "rank2",
    "scalar",
    "vector",
    "check_bad_inputs",
    "check_batch_consistency",
    "check_cutoff_smoothness",
    "check_equivariant",
    "check_forces_finite_difference",
    "check_fragment_additivity",
    "check_invariance",
    "check_isolated_atoms",
    "check_no_gradient_leak",
    "check_nve_conservation",
    "check_periodic_wrapping",
    "check_stress_finite_difference",
    "check_supercell_additivity",
    "random_crystal",
    "random_molecule",
    "random_rotation",
]
