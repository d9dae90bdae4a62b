"""Test helpers shipped with atomml: the physics battery and structure generators."""

from .battery import (
    TOLERANCES,
    check_bad_inputs,
    check_batch_consistency,
    check_cutoff_smoothness,
    check_forces_finite_difference,
    check_invariance,
    check_no_gradient_leak,
    check_nve_conservation,
    check_periodic_wrapping,
    check_stress_finite_difference,
    check_supercell_additivity,
)
from .structures import random_crystal, random_molecule, random_rotation

__all__ = [
    "TOLERANCES",
    "check_bad_inputs",
    "check_batch_consistency",
    "check_cutoff_smoothness",
    "check_forces_finite_difference",
    "check_invariance",
    "check_no_gradient_leak",
    "check_nve_conservation",
    "check_periodic_wrapping",
    "check_stress_finite_difference",
    "check_supercell_additivity",
    "random_crystal",
    "random_molecule",
    "random_rotation",
]
