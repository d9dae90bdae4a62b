"""Energy terms: physics a potential adds to its architecture (priors, long-range add-ons).

A :class:`~atomml.potential.Potential` holds an ordered list of terms. Each is a module with a
typed config (a frozen dataclass, saved in the potential file and rebuilt on load from the
term's registered name) that maps :class:`~atomml.contract.TermInputs` to per-atom energies in
eV. Forces and stress include the terms through the potential's one derivative wrapper.

Built in, defined as torchmd-net defines its priors (``torchmdnet.priors``; tests compare):

- ``zbl``: Ziegler-Biersack-Littmark screened nuclear repulsion (:mod:`.zbl`);
- ``coulomb``: Coulomb energy of fixed or predicted charges, switched off at short range
  (:mod:`.coulomb`; long-range);
- ``d2``: Grimme's D2 dispersion (:mod:`.dispersion`).

Build one with ``create_term("zbl", cutoff=3.0)``; other packages add terms through the
``atomml.energy_terms`` entry point (:mod:`atomml.plugins`).

A term class sets ``config_cls`` (a dataclass with a ``tiny(elements)`` classmethod giving a
small preset for tests), ``long_range`` (True if it sums beyond any cutoff, as Coulomb does),
is built as ``cls(config)``, may check the potential's elements in ``check_elements``, and has
a ``cutoff`` (Å) when it uses the potential's neighbour list (None when it makes its own pairs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from .base import TERMS, EnergyTerm, register
from .coulomb import Coulomb, CoulombConfig
from .dispersion import D2, D2Config
from .zbl import ZBL, ZBLConfig


def available() -> list[str]:
    """Names of the registered energy terms (atomml's and installed plugins')."""
    return TERMS.names()


def _config(term_cls: type[EnergyTerm], name: str, values: Mapping[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(term_cls.config_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise TypeError(f"energy term {name}: unknown setting(s) {unknown}; valid ones are {sorted(fields)}")
    # JSON brings tuples back as lists
    return term_cls.config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def create_term(name: str, **config: Any) -> EnergyTerm:
    """Build the energy term registered as ``name`` from its settings."""
    term_cls = TERMS.get(name)
    return term_cls(_config(term_cls, name, config))


def tiny_settings(name: str, elements: Sequence[int]) -> dict[str, Any]:
    """The settings of term ``name``'s ``tiny`` preset (small, fast: tests)."""
    return dataclasses.asdict(TERMS.get(name).config_cls.tiny(tuple(elements)))


def name_of(term: EnergyTerm) -> str:
    """The registered name of a term's class (what a potential file stores)."""
    for name in TERMS.names():
        if TERMS.get(name) is type(term):
            return name
    raise ValueError(
        f"{type(term).__name__} is not a registered energy term: register it "
        "(atomml.terms.register or the 'atomml.energy_terms' entry point) before saving"
    )


def spec(term: EnergyTerm) -> dict[str, Any]:
    """``{"name": ..., "config": {...}}``: what a potential file stores to rebuild the term."""
    return {"name": name_of(term), "config": dataclasses.asdict(term.config)}


def from_spec(entry: Mapping[str, Any]) -> EnergyTerm:
    return create_term(entry["name"], **entry.get("config", {}))


def is_long_range(name: str) -> bool:
    return bool(TERMS.get(name).long_range)


register("zbl", ZBL)
register("coulomb", Coulomb)
register("d2", D2)

__all__ = [
    "D2",
    "D2Config",
    "TERMS",
    "Coulomb",
    "CoulombConfig",
    "EnergyTerm",
    "ZBL",
    "ZBLConfig",
    "available",
    "create_term",
    "from_spec",
    "is_long_range",
    "name_of",
    "register",
    "spec",
    "tiny_settings",
]
