"""openmm-ml's entry point for ``MLPotential("atomml")``: the factory alone, importing nothing.

openmm-ml loads its entry points while ``openmmml.mlpotential`` is still being imported. The
factory therefore cannot live in :mod:`atomml.openmm`, which imports openmm-ml at its top:
importing ``atomml.openmm`` before openmm-ml would have openmm-ml ask for the factory of a
module that is half-way through its own import. openmm-ml only calls ``createImpl`` on a
factory, so this one does not subclass ``MLPotentialImplFactory`` (which would import openmm-ml
from here and bring the cycle back); the implementation is imported when it is first needed.
"""

from __future__ import annotations

from typing import Any


class AtomMLPotentialImplFactory:
    """Creates :class:`atomml.openmm.AtomMLPotentialImpl` for ``MLPotential("atomml", ...)``."""

    def createImpl(self, name: str, **args: Any) -> Any:
        from .openmm import AtomMLPotentialImpl

        return AtomMLPotentialImpl(name, **args)
