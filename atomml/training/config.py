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

Each field carries its section and meaning (``dataclasses.field`` metadata);
``docs/training-config.md``, the reference of every key, is generated from them
(:func:`reference_markdown`). Data written by other codes is read through ``data.energy_key``,
``forces_key``, ``stress_key`` and ``charge_key`` (MACE's ``REF_energy``, ``REF_forces``, ...; the
attributes of a PyTorch Geometric dataset's ``Data``), in the unit ``data.energy_unit``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

PATH_KEYS = ("train", "valid", "init_from", "output")  # file paths besides test_sets
# names other codes (MACE, NequIP, schnetpack) use, for "did you mean ...?"
SYNONYMS = {
    "learning_rate": "lr", "max_num_epochs": "max_epochs", "epochs": "max_epochs", "patience": "early_stopping_patience",
    "ema": "ema_decay", "clip_grad": "clip_grad_norm", "train_file": "train", "valid_file": "valid",
    "test_file": "test_sets", "energy_loss_weight": "energy_weight", "forces_loss_weight": "forces_weight",
    "stress_loss_weight": "stress_weight", "total_charge_key": "charge_key", "lr_scheduler": "scheduler",
    "num_threads": "threads", "default_dtype": "dtype",
}


def _key(section: str, default: Any = dataclasses.MISSING, doc: str = "", factory: Any = dataclasses.MISSING) -> Any:
    """A config field: its YAML section and its meaning travel with it (docs are generated)."""
    metadata = {"section": section, "doc": doc}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """Every key of a training config; ``metadata`` holds each key's section and meaning,
    from which ``docs/training-config.md`` is written (:func:`reference_markdown`)."""

    # model
    architecture: str = _key("model", "tensornet", "architecture: `tensornet`, `schnet` or a plugin's (`atomml.models.available()`)")
    hyperparameters: dict[str, Any] = _key(
        "model", factory=dict, doc="the architecture's hyperparameters (its config dataclass, e.g. "
        "`atomml.models.TensorNetConfig`); `elements` defaults to the training data's elements",
    )
    terms: list[dict[str, Any]] = _key(
        "model", factory=list, doc="energy terms added to the network (`atomml.terms`), e.g. `[{name: zbl, cutoff: 2.0}]`"
    )
    name: str = _key("model", "potential", "name of the potential; the output file is `<output>/<name>.safetensors`")
    description: str = _key("model", "", "free text stored in the potential file's header")
    init_from: str | None = _key(
        "model", None, "start from this potential file's weights (fine-tuning, a second stage); the architecture, "
        "elements and hyperparameters must match",
    )
    # data
    train: str = _key("data", "", "training data: extxyz (`.xyz`, `.extxyz`), ASE database (`.db`) or PyTorch "
                                  "Geometric dataset (its processed `.pt` file or root folder) (required)")
    valid: str | None = _key("data", None, "validation data file; if unset, `valid_fraction` of `train` is held out")
    test_sets: dict[str, str] = _key(
        "data", factory=dict, doc="named test files, e.g. `{heldout: test.extxyz}`; their errors go to `metrics.json`"
    )
    split_by: str = _key(
        "data", "structure", "how `train` is split: `structure` (at random), or an info key (e.g. `molecule`, "
        "`composition`) whose groups go whole into one part",
    )
    valid_fraction: float = _key("data", 0.05, "fraction of `train` (structures or groups) held out for validation")
    test_fraction: float = _key("data", 0.0, "fraction of `train` held out as the test set `test_split_by_<split_by>`")
    split_seed: int = _key("data", 0, "random seed of the split")
    cache: bool = _key("data", True, "keep parsed data as memory-mapped arrays beside each file (`<file>.atomml-cache`)")
    report_by: str | None = _key("data", None, "also report test errors per value of this info key (e.g. `config_type`)")
    energy_key: str = _key(
        "data", "energy", "where the energy label (eV) is: `atoms.info[energy_key]`, or for `energy` also the "
        "energy ASE's reader puts in a single-point calculator (MACE files: `REF_energy`)",
    )
    forces_key: str = _key("data", "forces", "per-atom array holding the forces (eV/Å), `atoms.arrays[forces_key]` "
                                             "(MACE files: `REF_forces`)")
    stress_key: str = _key("data", "stress", "info key of the stress (eV/Å³, ASE sign; 6 Voigt or 9 values) "
                                             "(MACE files: `REF_stress`)")
    charge_key: str = _key("data", "charge", "info key of the total charge (e); 0 where absent")
    energy_unit: str = _key("data", "eV", "unit of the energy labels (forces: per Å, stress: per Å³), converted to eV: "
                                          "`eV`, `meV`, `kcal/mol` (PyG's MD17), `kJ/mol` or `Hartree`")
    # loss
    energy_weight: float = _key("loss", 1.0, "weight of the squared energy-per-atom error (eV/atom)²")
    forces_weight: float = _key("loss", 10.0, "weight of the squared force-component error (eV/Å)²; 0 fits energies only")
    stress_weight: float = _key("loss", 0.0, "weight of the squared stress-component error (eV/Å³)²")
    # optimizer
    lr: float = _key("optimizer", 1e-3, "learning rate (AdamW)")
    weight_decay: float = _key("optimizer", 0.0, "AdamW weight decay")
    batch_size: int = _key("optimizer", 16, "structures per optimiser step (over all processes)")
    scheduler: str = _key("optimizer", "plateau", "learning-rate schedule: `plateau`, `cosine` (needs `stop.max_steps`) "
                                                  "or `constant`")
    warmup_steps: int = _key("optimizer", 0, "steps of linear warm-up from 0 to `lr`")
    plateau_factor: float = _key("optimizer", 0.5, "`plateau`: factor the rate is multiplied by")
    plateau_patience: int = _key("optimizer", 5, "`plateau`: validations without improvement before the rate drops")
    min_lr: float = _key("optimizer", 1e-6, "lowest learning rate of the `plateau` and `cosine` schedules")
    ema_decay: float = _key("optimizer", 0.99, "decay of the exponential moving average of the weights that is validated "
                                               "and saved; 0 switches it off")
    clip_grad_norm: float | None = _key("optimizer", 10.0, "clip the gradient norm to this; null: no clipping")
    sampler: str | None = _key(
        "optimizer", None, "sample the weights' posterior instead of minimising the loss: `psgld` (RMSprop-preconditioned "
        "SGLD) or `sghmc` (atomml.uncertainty.sgmcmc); the kept samples are saved as a committee. `lr` is the step "
        "as for RMSprop/SGD, the loss times the number of training structures the negative log-likelihood, "
        "`weight_decay` the Gaussian prior's precision; EMA, clipping and schedules are off. Start from trained "
        "weights (`model.init_from`)",
    )
    temperature: float = _key("optimizer", 1.0, "sampler: posterior temperature (below 1: a cold posterior)")
    burn_in: int = _key("optimizer", 0, "sampler: steps before samples are kept (psgld: its preconditioner is frozen then)")
    thin: int = _key("optimizer", 100, "sampler: keep the weights every this many steps after burn_in")
    friction: float = _key("optimizer", 0.05, "sampler `sghmc`: friction per step (1 - momentum)")
    # stop
    max_epochs: int = _key("stop", 1000, "stop after this many epochs")
    max_steps: int | None = _key("stop", None, "stop after this many optimiser steps (the progress bar's total)")
    max_minutes: float | None = _key("stop", None, "stop after this much training time (minutes)")
    early_stopping_patience: int | None = _key("stop", 20, "stop after this many validations without improvement; "
                                                          "null: never")
    # run
    seed: int = _key("run", 0, "random seed of the weights and the batch order")
    dtype: str = _key("run", "float32", "network precision: `float32` or `float64`")
    output: str = _key("run", "runs/train", "output folder (relative to the working directory); a run in it resumes")
    checkpoint_every: int = _key("run", 200, "steps between checkpoints")
    valid_every: int | None = _key("run", None, "steps between validations; null: once per epoch")
    threads: int | None = _key("run", None, "torch CPU threads; null: the CPUs this process may use (affinity, cgroup quota), "
                                            "shared among processes under torchrun")
    progress: bool = _key("run", True, "show a progress bar (with total and ETA when a step, epoch or time limit is set)")
    verbose: bool = _key("run", True, "print the start-up summary and each validation's errors (stderr)")
    device: str = _key("run", "cpu", "torch device, e.g. `cpu`, `cuda`, `cuda:1`")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))
        if self.scheduler not in ("plateau", "cosine", "constant"):
            raise ValueError(f"optimizer.scheduler must be 'plateau', 'cosine' or 'constant', got {self.scheduler!r}")
        if self.scheduler == "cosine" and not self.max_steps:
            raise ValueError("the cosine schedule needs stop.max_steps (its length)")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"run.dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("optimizer.batch_size and run.checkpoint_every must be positive")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"run.threads must be at least 1, got {self.threads}")
        if self.sampler not in (None, "psgld", "sghmc"):
            raise ValueError(f"optimizer.sampler must be null, 'psgld' or 'sghmc', got {self.sampler!r}")
        if self.sampler is not None:
            if self.burn_in < 0 or self.thin < 1 or self.temperature < 0:
                raise ValueError("optimizer.burn_in must be >= 0, thin >= 1 and temperature >= 0")
            if self.max_steps is not None and (self.max_steps - self.burn_in) // self.thin < 2:
                raise ValueError(
                    f"the sampler keeps {max(0, (self.max_steps - self.burn_in) // self.thin)} samples (stop.max_steps "
                    f"{self.max_steps}, burn_in {self.burn_in}, thin {self.thin}); a committee needs at least 2"
                )
        from ..units import ENERGY_UNITS

        if self.energy_unit not in ENERGY_UNITS:
            raise ValueError(f"data.energy_unit must be one of {', '.join(ENERGY_UNITS)}, got {self.energy_unit!r}")
        for key in ("energy_key", "forces_key", "stress_key", "charge_key"):
            if not getattr(self, key):
                raise ValueError(f"data.{key} must name an info or arrays key of the data files, got an empty string")

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: str | os.PathLike[str] | None = None) -> TrainConfig:
        """From a sectioned dict (as in YAML) or a flat one; paths resolved against ``base``.

        A misspelt or misplaced key is a one-line ValueError that says where it belongs or
        which key was probably meant."""
        flat: dict[str, Any] = {}
        problems: list[str] = []
        for key, value in values.items():
            key = str(key)
            if key in SECTIONS:
                if not isinstance(value, dict):
                    raise ValueError(f"config section {key!r} must be a mapping of keys to values, got {value!r}")
                for name in value:
                    if str(name) not in SECTIONS[key]:
                        problems.append(_unknown(str(name), key))
                flat.update({str(k): v for k, v in value.items()})
            elif key in SECTION_OF:
                flat[key] = value  # a flat config (sections are optional)
            else:
                problems.append(_unknown(key, None))
        if problems:
            raise ValueError("; ".join(problems) + " (every key: docs/training-config.md)")
        if base is not None:
            for key in ("train", "valid", "init_from"):
                if flat.get(key):
                    flat[key] = _resolve(flat[key], Path(base))
            if flat.get("test_sets") and isinstance(flat["test_sets"], dict):
                flat["test_sets"] = {k: _resolve(v, Path(base)) for k, v in flat["test_sets"].items()}
        return cls(**flat)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> TrainConfig:
        import yaml

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"training config {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            raise ValueError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
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
        # the label keys are left out: what they read is hashed with the data (run_fingerprint)
        skip = {"max_epochs", "max_steps", "max_minutes", "early_stopping_patience", "output", "progress", "threads", "device",
                "verbose", "energy_key", "forces_key", "stress_key", "charge_key", "energy_unit"}
        values = {k: v for k, v in self.to_dict().items() if k not in skip}
        if self.scheduler == "cosine":
            values["max_steps"] = self.max_steps
        return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


SECTION_OF: dict[str, str] = {f.name: f.metadata["section"] for f in dataclasses.fields(TrainConfig)}
SECTIONS: dict[str, tuple[str, ...]] = {
    section: tuple(name for name, s in SECTION_OF.items() if s == section)
    for section in ("model", "data", "loss", "optimizer", "stop", "run")
}


def _unknown(key: str, section: str | None) -> str:
    """What to say about a key that is not valid where it stands."""
    where = f"in section {section!r}" if section else "at the top level"
    if section is None and key not in SECTION_OF:
        close = difflib.get_close_matches(key, list(SECTIONS), n=1, cutoff=0.6)
        if close:
            return f"unknown section {key!r}; did you mean {close[0]!r}?"
    if key in SECTION_OF:  # a valid key in the wrong section
        return f"key {key!r} belongs in section {SECTION_OF[key]!r}, not {section!r}"
    candidates = list(SECTION_OF) + list(SYNONYMS)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if close:
        meant = SYNONYMS.get(close[0], close[0])
        elsewhere = f" (in section {SECTION_OF[meant]!r})" if SECTION_OF[meant] != section else ""
        return f"unknown key {key!r} {where}; did you mean {meant!r}{elsewhere}?"
    keys = ", ".join(SECTIONS[section]) if section else ", ".join(SECTIONS)
    return f"unknown key {key!r} {where}; valid {'keys' if section else 'sections'}: {keys}"


_TYPES = {"str": str, "bool": bool, "int": int, "float": float}


def _checked(f: dataclasses.Field, value: Any) -> Any:
    """``value`` of field ``f`` as its declared type, or a ValueError naming section.key."""
    where = f"{f.metadata['section']}.{f.name}"
    kinds = [k.strip() for k in str(f.type).split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ValueError(f"{where} needs a value (null is not allowed)")
    base = kinds[0]
    if base.startswith("dict"):
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping (key: value), got {value!r}")
        return value
    if base.startswith("list"):
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {value!r}")
        return value
    if base == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if base == "str":
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return str(value) if isinstance(value, str) else os.fspath(value)
    # numbers; YAML 1.1 reads "1e-06" (no dot) as a string, so numeric strings are converted
    kind = _TYPES[base]
    if isinstance(value, bool):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{where} must be a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if kind is int:
        if float(value) != int(value):
            raise ValueError(f"{where} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def reference_markdown() -> str:
    """The reference of every config key (section, default, meaning) as markdown: the text of
    ``docs/training-config.md``, written by ``atomml train --list-keys > docs/training-config.md``."""
    lines = [
        "# Training config reference",
        "",
        "<!-- Written by `atomml train --list-keys > docs/training-config.md` from the fields of",
        "`atomml.training.config.TrainConfig`; a test checks that it is current. Do not edit by hand. -->",
        "",
        "`atomml train CONFIG.yaml` reads a YAML file with the sections below; every key is optional",
        "except `data.train`. A key in the wrong section or a misspelt key is an error that names it.",
        "Relative paths in `data` and `model.init_from` are relative to the config file's folder;",
        "`run.output` is relative to the working directory. The presets of the shipped potentials",
        "(`potentials/*.yaml`) are examples. A minimal config:",
        "",
        "```yaml",
        "model: {architecture: tensornet, hyperparameters: {hidden_channels: 64, num_layers: 2, cutoff: 5.0}}",
        "data: {train: my_data.extxyz, energy_key: REF_energy, forces_key: REF_forces}",
        "stop: {max_minutes: 30}",
        "run: {output: runs/my_potential}",
        "```",
    ]
    for section, names in SECTIONS.items():
        lines += ["", f"## `{section}`", "", "| key | default | meaning |", "|---|---|---|"]
        for f in dataclasses.fields(TrainConfig):
            if f.name in names:
                lines.append(f"| `{f.name}` | {_default_text(f)} | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"


def _default_text(f: dataclasses.Field) -> str:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        value = f.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '`""`'
    return f"`{json.dumps(value)}`" if isinstance(value, (dict, list)) else f"`{value}`"


def check_model(config: TrainConfig) -> None:
    """Refuse an unknown architecture or hyperparameter before any data is read (ValueError
    with the likely meant name)."""
    import dataclasses as dc

    from ..models import available, lookup

    names = available()
    if config.architecture not in names:
        close = difflib.get_close_matches(config.architecture, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"model.architecture: unknown architecture {config.architecture!r}; {hint}available: {', '.join(names)}")
    config_cls, _ = lookup(config.architecture)
    valid = [f.name for f in dc.fields(config_cls)]
    problems = []
    for key in config.hyperparameters:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(valid)}"
            problems.append(f"unknown hyperparameter {key!r} in model.hyperparameters of {config.architecture}; {hint}")
    if problems:
        raise ValueError("; ".join(problems))


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


def _resolve(value: Any, base: Path) -> Any:
    if not isinstance(value, (str, os.PathLike)):
        return value  # not a path: the field's type check names it
    path = Path(value)
    return str(path if path.is_absolute() else (base / path).resolve())

