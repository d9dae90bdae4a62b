"""Boundary code: atomml potentials inside other programs.

- :mod:`atomml.interfaces.ase`: the ASE calculator (:class:`AtomMLCalculator`).
- :mod:`atomml.interfaces.openmm`: the OpenMM force through openmm-ml (needs the ``openmm`` extra).
- :mod:`atomml.interfaces.openmm_plugin`: openmm-ml's entry point for ``MLPotential("atomml")``.

Importing this package imports none of them, so OpenMM is loaded only when asked for.
"""
