"""Training configuration: one typed dataclass, read from a small YAML file.

A YAML config has sections that group the fields (``model``, ``data``, ``loss``,
``optimizer``, ``stop``, ``run``); every field lives in exactly one section and unknown
names are errors, so a typo never silently falls back to a default. Example
(``potentials/*.yaml`` holds the presets the shipped potentials were trained with)::

    model:
      architecture: tensornet
      hyperparameters: {hidden_channels: 64, num_layers: 2, cutoff: 5.0}
      terms: [{name: zbl, cutoff: 2.0}]   # optional energy terms (atomml.terms)
    data:
      train: ../data/generated/organic/organic_train_pool.extxyz
      split_by: molecule        # or "structure"
      valid_fraction: 0.05
      test_fraction: 0.05
      test_sets: {heldout_molecules: ../data/generated/organic/organic_heldout.extxyz}
    loss: {energy_weight: 1.0, forces_weight: 10.0}
    optimizer: {lr: 1.0e-3, batch_size: 16}
    stop: {max_minutes: 20}
    run: {seed: 0, output: runs/organic}

Relative paths in ``data`` (and ``model.init_from``) are relative to the config file's folder
(so a preset in ``potentials/`` names ``../data/generated/...``); ``run.output`` is relative to
the working directory. The copy of the config written into a trained potential's header holds
no absolute paths (:meth:`TrainConfig.portable_dict`): paths under the working directory are
stored relative to it, others by file name only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

PATH_KEYS = ("train", "valid", "init_from", "output")  # file paths besides test_sets
SECTIONS = {
    "model": ("architecture", "hyperparameters", "terms", "name", "description", "init_from"),
    "data": ("train", "valid", "test_sets", "split_by", "valid_fraction", "test_fraction", "split_seed", "cache", "report_by"),
    "loss": ("energy_weight", "forces_weight", "stress_weight"),
    "optimizer": (
        "lr", "weight_decay", "batch_size", "scheduler", "warmup_steps", "plateau_factor", "plateau_patience",
        "min_lr", "ema_decay", "clip_grad_norm",
    ),
    "stop": ("max_epochs", "max_steps", "max_minutes", "early_stopping_patience"),
    "run": ("seed", "dtype", "output", "checkpoint_every", "valid_every", "threads", "progress", "device"),
}


@dataclasses.dataclass
class TrainConfig:
    # model
    architecture: str = "tensornet"
    hyperparameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    # energy terms added to the architecture (atomml.terms), e.g. [{name: zbl, cutoff: 2.0}]
    terms: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    name: str = "potential"
    description: str = ""
    init_from: str | None = None  # start from this potential's weights (fine-tuning, a second stage)
    # data
    train: str = ""
    valid: str | None = None
    test_sets: dict[str, str] = dataclasses.field(default_factory=dict)
    split_by: str = "structure"
    valid_fraction: float = 0.05
    test_fraction: float = 0.0
    split_seed: int = 0
    cache: bool = True
    report_by: str | None = None  # also report test errors per value of this info key
    # loss
    energy_weight: float = 1.0
    forces_weight: float = 10.0
    stress_weight: float = 0.0
    # optimizer
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 16
    scheduler: str = "plateau"  # "plateau", "cosine" (needs max_steps) or "constant"
    warmup_steps: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 5  # validations without improvement before the rate drops
    min_lr: float = 1e-6
    ema_decay: float = 0.99  # 0 switches EMA off
    clip_grad_norm: float | None = 10.0
    # stop
    max_epochs: int = 1000
    max_steps: int | None = None
    max_minutes: float | None = None
    early_stopping_patience: int | None = 20  # validations without improvement
    # run
    seed: int = 0
    dtype: str = "float32"
    output: str = "runs/train"
    checkpoint_every: int = 200  # steps
    valid_every: int | None = None  # steps; None: once per epoch
    threads: int | None = None
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        # YAML 1.1 reads "1e-06" (no dot) as a string: numbers are converted here, by field type
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and f.type in ("float", "float | None", "int", "int | None"):
                try:
                    setattr(self, f.name, (float if f.type.startswith("float") else int)(value))
                except ValueError:
                    raise ValueError(f"config key {f.name!r} must be a number, got {value!r}") from None
        if self.scheduler not in ("plateau", "cosine", "constant"):
            raise ValueError(f"scheduler must be 'plateau', 'cosine' or 'constant', got {self.scheduler!r}")
        if self.scheduler == "cosine" and not self.max_steps:
            raise ValueError("the cosine schedule needs stop.max_steps (its length)")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("batch_size and checkpoint_every must be positive")

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: str | os.PathLike[str] | None = None) -> TrainConfig:
        """From a sectioned dict (as in YAML) or a flat one; paths resolved against ``base``."""
        flat: dict[str, Any] = {}
        for key, value in values.items():
            if key in SECTIONS:
                if not isinstance(value, dict):
                    raise ValueError(f"config section {key!r} must be a mapping")
                unknown = sorted(set(value) - set(SECTIONS[key]))
                if unknown:
                    raise ValueError(f"config section {key!r}: unknown key(s) {unknown}; valid: {list(SECTIONS[key])}")
                flat.update(value)
            else:
                flat[key] = value
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(flat) - names)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; sections and keys: {SECTIONS}")
        if base is not None:
            for key in ("train", "valid", "init_from"):
                if flat.get(key):
                    flat[key] = _resolve(flat[key], Path(base))
            if flat.get("test_sets"):
                flat["test_sets"] = {k: _resolve(v, Path(base)) for k, v in flat["test_sets"].items()}
        return cls(**flat)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> TrainConfig:
        import yaml

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"training config {path} does not exist")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a training config is a mapping of sections, got {type(values).__name__}")
        return cls.from_dict(values, base=path.parent)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def portable_dict(self, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """:meth:`to_dict` with the file paths made safe to write into a shared file (a
        potential's header): see :func:`portable_path`."""
        values = self.to_dict()
        for key in PATH_KEYS:
            if values.get(key):
                values[key] = portable_path(values[key], root)
        values["test_sets"] = {k: portable_path(v, root) for k, v in values["test_sets"].items()}
        return values

    def fingerprint(self) -> str:
        """Hash of the fields that define the optimisation (not the stopping or output)."""
        skip = {"max_epochs", "max_steps", "max_minutes", "early_stopping_patience", "output", "progress", "threads", "device"}
        values = {k: v for k, v in self.to_dict().items() if k not in skip}
        if self.scheduler == "cosine":
            values["max_steps"] = self.max_steps
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def portable_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """``path`` as it may be stored in a file read on other machines: an absolute path below
    ``root`` (default: the working directory) relative to it, any other absolute path by its
    file name only, a relative path unchanged. No absolute path of this machine survives."""
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    base = Path(root if root is not None else Path.cwd()).resolve()
    if base != Path(base.anchor):  # relative to a filesystem root would still spell out the path
        try:
            return str(path.resolve().relative_to(base))
        except ValueError:
            pass
    return path.name


def _resolve(value: str, base: Path) -> str:
    path = Path(value)
    return str(path if path.is_absolute() else (base / path).resolve())
