"""Architectures and the one public way to build them: ``create(name, **hyperparameters)``.

Each architecture registers a typed config (a frozen dataclass whose fields are its
hyperparameters, ``elements`` and ``cutoff`` among them) and a module class built from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..potential import Potential
from .schnet import SchNet, SchNetConfig
from .tensornet import TensorNet, TensorNetConfig

ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "schnet": (SchNetConfig, SchNet),
    "tensornet": (TensorNetConfig, TensorNet),
}


def register(name: str, config_cls: type, model_cls: type[nn.Module]) -> None:
    """Add an architecture: ``config_cls`` is a dataclass with ``elements`` and ``cutoff``."""
    ARCHITECTURES[name] = (config_cls, model_cls)


def build_config(name: str, hyperparameters: Mapping[str, Any]) -> Any:
    """The typed config of architecture ``name``; unknown or missing names are errors."""
    try:
        config_cls, _ = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; available: {sorted(ARCHITECTURES)}") from None
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


def create(
    name: str,
    *,
    atomic_energies: Mapping[int, float] | None = None,
    energy_scale: float = 1.0,
    energy_shift: float = 0.0,
    metadata: Mapping[str, Any] | None = None,
    **hyperparameters: Any,
) -> Potential:
    """Build a potential with freshly initialised weights.

    Example: ``create("schnet", elements=["H", "C", "O"], cutoff=5.0, n_interactions=3)``.
    """
    config = build_config(name, hyperparameters)
    _, model_cls = ARCHITECTURES[name]
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
    )


__all__ = ["ARCHITECTURES", "create", "register", "build_config", "SchNet", "SchNetConfig", "TensorNet", "TensorNetConfig"]
