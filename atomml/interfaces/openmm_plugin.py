"""openmm-ml's entry point for ``MLPotential("atomml")``: the factory, importing nothing at the top.

openmm-ml loads its entry points while ``openmmml.mlpotential`` is still being imported, so this
module must not import openmm-ml, nor :mod:`atomml.interfaces.openmm` (which imports openmm-ml),
when it is loaded. openmm-ml only calls ``createImpl`` on a factory, so this one does not
subclass ``MLPotentialImplFactory`` (that would import openmm-ml from here). The dependency is
one-way: this module imports :mod:`atomml.interfaces.openmm` inside functions, and that module
imports nothing from here.
"""

from __future__ import annotations

from typing import Any


class AtomMLPotentialImplFactory:
    """Creates :class:`atomml.interfaces.openmm.AtomMLPotentialImpl` for ``MLPotential("atomml", ...)``."""

    def createImpl(self, name: str, **args: Any) -> Any:
        from .openmm import AtomMLPotentialImpl

        return AtomMLPotentialImpl(name, **args)


def ensure_registered() -> None:
    """Register ``MLPotential("atomml")`` with openmm-ml when its entry point is not installed
    (atomml used from a source tree on ``PYTHONPATH`` rather than pip-installed)."""
    from openmmml import MLPotential

    if "atomml" not in getattr(MLPotential, "_implFactories", {}):
        MLPotential.registerImplFactory("atomml", AtomMLPotentialImplFactory())
