"""Converters between atomml potentials and other packages' models.

- :mod:`atomml.convert.torchmdnet`: a torchmd-net ``TorchMD_Net`` TensorNet (with its priors)
  into an atomml potential.
- :mod:`atomml.convert.schnetpack`: SchNet weights between schnetpack 2 and atomml.

Each module imports its peer package only inside the functions that need it.
"""
