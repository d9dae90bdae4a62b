"""What a training run tells its user while it runs: the start-up summary, one line per
validation, and the progress bar (with a total, hence an ETA, whenever a limit gives one).

Everything goes to stderr (the ``atomml train`` command prints its JSON report on stdout), from
rank 0 only. The units are those of ``metrics.json`` and ``log.csv`` (meV/atom, meV/Å), stress in GPa.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from .checkpoint import NAME as CHECKPOINT
from .metrics import TITLES, metric_text  # the plots' titles: one wording and unit per metric

if TYPE_CHECKING:
    from .trainer import Trainer

def summary(trainer: Trainer) -> str:
    """The start-up summary: data per split, labels, elements, reference energies, model size,
    device and threads, and the budget."""
    import torch
    from ase.data import chemical_symbols

    from ..data.dataset import describe_keys

    c, t = trainer.config, trainer
    parameters = sum(p.numel() for p in t.potential.parameters())
    splits = [("train", t.train_data), ("valid", t.valid_data), *t.test_data.items()]
    data = ", ".join(f"{name} {len(d)} ({int(d.num_atoms.sum())} atoms)" for name, d in splits)
    labelled = []
    for name, key in (("energy", c.energy_key), ("forces", c.forces_key), ("stress", c.stress_key)):
        values = np.asarray(getattr(t.train_data, name))
        per_structure = np.isfinite(values).reshape(len(values), -1).all(axis=1)
        if name == "forces":  # labelled structures, not atoms
            per_structure = np.logical_and.reduceat(per_structure, np.asarray(t.train_data.offsets[:-1]))
        labelled.append(f"{name} {int(per_structure.sum())}/{len(t.train_data)} [{key}]")
    elements = [int(z) for z in t.potential.elements]
    references = t.potential.atomic_energies.tolist()
    origin = f"from {c.init_from}" if c.init_from else "least squares on the training set"
    lines = [
        f"atomml train: {c.name}: {c.architecture}, {parameters:,} parameters, {c.dtype}, device {t.device}, "
        f"{torch.get_num_threads()} CPU threads" + (f" per process, {t.world} processes" if t.world > 1 else ""),
        f"  structures:   {data}",
        f"  labels:       {', '.join(labelled)} (structures labelled [key read])",
        f"  elements:     {' '.join(chemical_symbols[z] for z in elements)}",
        f"  reference energies (eV, {origin}): "
        + ", ".join(f"{chemical_symbols[z]} {e:.4f}" for z, e in zip(elements, references)),
        f"  budget:       {budget(trainer)}",
        f"  validation:   {f'every {c.valid_every} steps' if c.valid_every else 'every epoch'}; "
        f"checkpoint every {c.checkpoint_every} steps; output {t.output}",
    ]
    if c.sampler is not None:
        extra = f", friction {c.friction:g}" if c.sampler == "sghmc" else ""
        lines.append(f"  sampler:      {c.sampler} at temperature {c.temperature:g}{extra}: weights kept every {c.thin} steps "
                     f"after {c.burn_in}, saved as a committee (EMA, clipping and learning-rate schedules off)")  # fmt: skip
    if t.state["step"]:
        lines.append(f"  resuming at step {t.state['step']} (epoch {t.state['epoch']}) from {t.output / CHECKPOINT}")
    if t.train_data.source_keys and len(t.train_data.source_keys.get("info", [])) < 40:
        lines.append(f"  found:        {describe_keys(t.train_data.source_keys)}")
    return "\n".join(lines)


def budget(trainer: Trainer) -> str:
    c = trainer.config
    parts = []
    if c.max_steps is not None:
        parts.append(f"{c.max_steps} steps")
    parts.append(f"{c.max_epochs} epochs of {trainer.steps_per_epoch} steps")
    if c.max_minutes is not None:
        parts.append(f"{c.max_minutes:g} minutes")
    text = "stop at the first of " + ", ".join(parts)
    if c.early_stopping_patience is not None:
        text += f", or after {c.early_stopping_patience} validations without improvement"
    return text


def validation_line(row: dict[str, Any], improved: bool) -> str:
    """One validation as a line, e.g. ``step 120 (epoch 3): valid energy MAE 1.2 meV/atom, ...``."""
    metrics = [metric_text(key, row[key]) for key in TITLES if key in row]
    train = f"train loss {row['train_loss']:.4g}, " if row.get("train_loss") is not None else ""
    mark = " (best so far)" if improved else ""
    return (
        f"step {row['step']} (epoch {row['epoch']}): valid {', '.join(metrics)}; {train}valid loss {row['valid_loss']:.4g}"
        f"{mark}, lr {row['lr']:.2g}"
    )


class Progress:
    """The progress bar: over steps when a step or epoch limit bounds the run, else over the
    time budget (``stop.max_minutes``); either way tqdm shows the total and an ETA."""

    def __init__(self, trainer: Trainer, enabled: bool):
        from tqdm import tqdm

        c, s = trainer.config, trainer.state
        self.bar = None
        self.by_time = c.max_steps is None and c.max_minutes is not None
        if not enabled:
            return
        if self.by_time:
            total, initial, unit = int(round(60 * c.max_minutes)), int(s["seconds"]), "s"
        else:
            total = c.max_epochs * trainer.steps_per_epoch
            if c.max_steps is not None:
                total = min(total, c.max_steps)
            initial, unit = s["step"], "step"
        self.bar = tqdm(total=total, initial=min(initial, total), desc=f"train {c.name}", unit=unit, dynamic_ncols=True,
                        file=sys.stderr)  # fmt: skip

    def update(self, state: dict[str, Any], loss: float, lr: float) -> None:
        if self.bar is None:
            return
        if self.by_time:
            self.bar.n = min(int(state["seconds"]), self.bar.total)
        else:
            self.bar.n = state["step"]
        self.bar.set_postfix(step=state["step"], loss=f"{loss:.4g}", lr=f"{lr:.2g}", epoch=state["epoch"])

    def write(self, message: str) -> None:
        """A line above the bar (or just a line when there is none)."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
