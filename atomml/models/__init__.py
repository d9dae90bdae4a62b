"""Architectures and the one public way to build them: ``create(name, **hyperparameters)``.

Each architecture is a module class with a ``config_cls``: a frozen dataclass whose fields are
its hyperparameters (``elements`` and ``cutoff`` among them) and whose ``tiny(elements)``
classmethod gives a small preset for tests. It is built as ``cls(config)`` and maps a graph to an
:class:`~atomml.contract.ArchitectureOutput`. atomml's own register here; other packages add
theirs through the ``atomml.architectures`` entry point (:mod:`atomml.plugins`), and
``load_potential`` rebuilds them by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ..plugins import Registry
from ..potential import Potential
from .committee import Committee, CommitteeConfig, committee_of
from .schnet import SchNet, SchNetConfig
from .tensornet import TensorNet, TensorNetConfig

ARCHITECTURES: Registry[Any] = Registry("atomml.architectures", "architecture")


def register(name: str, config_cls: type, model_cls: type[nn.Module]) -> None:
    """Add an architecture: ``config_cls`` is a dataclass with ``elements`` and ``cutoff``."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"architecture {name!r}: the config class {config_cls.__name__} must be a dataclass")
    ARCHITECTURES.register(name, (config_cls, model_cls))


def lookup(name: str) -> tuple[type, type[nn.Module]]:
    """(config class, module class) of a registered architecture (entry points included)."""
    item = ARCHITECTURES.get(name)
    if isinstance(item, tuple):
        return item
    # an entry point names the module class, which carries its config class
    config_cls = getattr(item, "config_cls", None)
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"architecture {name!r}: {item!r} has no dataclass 'config_cls' attribute")
    return config_cls, item


def available() -> list[str]:
    """Names of the registered architectures (atomml's and installed plugins')."""
    return ARCHITECTURES.names()


def build_config(name: str, hyperparameters: Mapping[str, Any]) -> Any:
    """The typed config of architecture ``name``; unknown or missing names are errors."""
    config_cls, _ = lookup(name)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(hyperparameters) - set(fields))
    if unknown:
        raise TypeError(f"{name}: unknown hyperparameter(s) {unknown}; valid ones are {sorted(fields)}")
    values = dict(hyperparameters)
    if "elements" not in values:
        raise TypeError(f"{name}: 'elements' (the atomic numbers the model will know) is required")
    from ase.data import atomic_numbers

    values["elements"] = tuple(int(atomic_numbers[z]) if isinstance(z, str) else int(z) for z in values["elements"])
    return config_cls(**values)


def tiny_hyperparameters(name: str, elements: Sequence[int | str]) -> dict[str, Any]:
    """The hyperparameters of architecture ``name``'s ``tiny`` preset (small, fast: tests)."""
    config_cls, _ = lookup(name)
    config = config_cls.tiny(tuple(elements))
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "elements"}


def _terms(terms: Sequence[Any]) -> list[nn.Module]:
    from ..terms import create_term

    built = []
    for term in terms:
        if isinstance(term, nn.Module):
            built.append(term)
        elif isinstance(term, Mapping):
            settings = dict(term)
            built.append(create_term(settings.pop("name"), **settings.pop("config", {}), **settings))
        else:
            raise TypeError(f"an energy term is a module or a mapping with a 'name', got {term!r}")
    return built


def create(
    name: str,
    *,
    atomic_energies: Mapping[int, float] | None = None,
    energy_scale: float = 1.0,
    energy_shift: float = 0.0,
    metadata: Mapping[str, Any] | None = None,
    terms: Sequence[Any] = (),
    **hyperparameters: Any,
) -> Potential:
    """Build a potential with freshly initialised weights.

    Example: ``create("schnet", elements=["H", "C", "O"], cutoff=5.0, n_interactions=3,
    terms=[{"name": "zbl", "cutoff": 2.0}])``. ``terms`` are energy terms (:mod:`atomml.terms`):
    modules, or mappings with the registered ``name`` and the term's settings.
    """
    config = build_config(name, hyperparameters)
    _, model_cls = lookup(name)
    hp = dataclasses.asdict(config)
    hp["elements"] = list(config.elements)
    return Potential(
        model_cls(config),
        architecture=name,
        hyperparameters=hp,
        elements=config.elements,
        cutoff=config.cutoff,
        atomic_energies=atomic_energies,
        energy_scale=energy_scale,
        energy_shift=energy_shift,
        metadata=metadata,
        terms=_terms(terms),
    )


register("schnet", SchNetConfig, SchNet)
register("tensornet", TensorNetConfig, TensorNet)
register("committee", CommitteeConfig, Committee)

__all__ = [
    "ARCHITECTURES",
    "Committee",
    "CommitteeConfig",
    "SchNet",
    "SchNetConfig",
    "TensorNet",
    "TensorNetConfig",
    "available",
    "build_config",
    "committee_of",
    "create",
    "lookup",
    "register",
    "tiny_hyperparameters",
]
