"""Fitting a potential to energies, forces and stress: :func:`train` and :class:`Trainer`.

What a run does:
- reads the data (cached arrays), splits it by structure or by group (molecule, composition),
  fits per-element reference energies by least squares on the training part and sets the
  energy scale to the RMS force, so the network starts from sensible magnitudes;
- minimises a weighted loss, per global batch G,
  ``w_E mean_b((ΔE_b/n_b)²) + w_F mean_i,α(ΔF_iα²) + w_σ mean_b,k(Δσ_bk²)``,
  with AdamW, linear warm-up, a plateau / cosine / constant schedule, gradient clipping and an
  exponential moving average (EMA) of the weights, which is what is validated and saved;
- validates every ``valid_every`` steps (or each epoch), stops early after
  ``early_stopping_patience`` validations without improvement, or at a step / epoch /
  wall-clock limit;
- checkpoints every ``checkpoint_every`` steps, at each validation and when it stops (also on
  SIGTERM / Ctrl-C, after finishing the step in progress). A checkpoint holds weights, EMA,
  optimiser, schedule, the position in the epoch and the RNG state, and the batch order of an
  epoch is a pure function of (seed, epoch), so a resumed run takes exactly the steps the
  uninterrupted run would have taken: none lost, none repeated;
- writes the best potential (``<output>/<name>.safetensors``), test errors
  (``metrics.json``), a per-validation log (``log.csv``, with the mean training loss since the
  validation before), the learning curve (``learning_curve.png``) and parity plots
  (``parity_*.png``);
- tells the user what it does (stderr, :mod:`atomml.training.console`): a start-up summary,
  each validation's errors, and a progress bar with a total and ETA.

Several processes (``torchrun --nproc-per-node K atomml train ...``) train one model with
:class:`torch.nn.parallel.DistributedDataParallel` (gloo on CPU, NCCL on GPUs). Each global
batch is cut into K strided shards; each rank's loss is normalised by the *global* batch's
counts (and multiplied by K, undoing DDP's gradient average), so K processes take the same
steps as one process with the same global batch.

Checkpoints are plain tensors and numbers loaded with ``torch.load(weights_only=True)``:
loading one never executes code. Each carries a checksum and the run's fingerprint, so a
damaged checkpoint, or one of another run, is refused instead of resumed
(:mod:`atomml.training.checkpoint`). A run locks its output folder (``<output>.lock``): a
second run on the same folder is refused while the first goes on.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import keys, units
from ..data import Dataset, group_split, load_dataset, random_split, reference_energies
from ..data.dataset import LABEL_KEYS, atom_indices, describe_keys
from ..errors import CheckpointError, InputError
from ..files import write_json
from ..locks import output_lock
from ..potential import Potential
from ..potential_file import save_potential
from ..threads import available_cpus, set_threads
from . import checkpoint, console
from .config import TrainConfig, check_model, portable_path
from .metrics import errors, learning_curve, parity_plot, predict, wants_stress


# config keys about this machine and console, not the potential: left out of its header
MACHINE_KEYS = ("progress", "verbose", "threads", "device")


class Trainer:
    """One training run as configured by ``config`` (see :mod:`atomml.training.config`).

    ``train_data``/``valid_data``/``test_data`` override the files named in the config (for
    the Python API and tests). ``on_step(trainer)`` is called after every optimiser step.
    """

    def __init__(
        self,
        config: TrainConfig,
        train_data: Dataset | None = None,
        valid_data: Dataset | None = None,
        test_data: dict[str, Dataset] | None = None,
        on_step: Callable[[Trainer], None] | None = None,
    ):
        self.config = config
        self.on_step = on_step
        self.dtype = getattr(torch, config.dtype)
        self.device = torch.device(config.device)
        self.output = Path(config.output)
        self.rank, self.world = _distributed_rank_world()
        if config.batch_size < self.world:
            raise ValueError(f"batch_size {config.batch_size} is smaller than the number of processes {self.world}")
        check_model(config)  # a misspelt hyperparameter fails before the data is read
        # default: the CPUs this process may use, shared among the processes on this node
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        set_threads(config.threads or (max(1, available_cpus() // local) if local > 1 else None))
        self.train_data, self.valid_data, self.test_data = self._data(train_data, valid_data, test_data)
        self.steps_per_epoch = len(self._epoch_batches(0, len(self.train_data)))
        self.potential = self._build()
        # a sampler's weights are the samples: no moving average of them
        self.sampling = config.sampler is not None
        averaged = config.ema_decay > 0 and not self.sampling
        self.ema = copy.deepcopy(self.potential) if averaged else self.potential
        for p in self.ema.parameters():
            p.requires_grad_(not averaged)
        self.model: torch.nn.Module = self.potential
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(self.potential)
        self.optimizer = self._optimizer()
        self.collector = None
        if self.sampling:
            from ..uncertainty.sgmcmc import SampleCollector

            self.collector = SampleCollector(burn_in=config.burn_in, thin=config.thin)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=config.plateau_factor, patience=config.plateau_patience, min_lr=config.min_lr
        )
        self.state: dict[str, Any] = {
            "step": 0, "epoch": 0, "position": 0, "best_valid": math.inf, "best_step": -1,
            "bad_validations": 0, "seconds": 0.0, "stopped": "", "history": [],
            "loss_sum": 0.0, "loss_steps": 0,  # training loss since the last validation
        }
        self.best_state: dict[str, Tensor] | None = None
        self._progress: console.Progress | None = None
        self._stop_requested = False
        # what a checkpoint must match to be resumed (hashed once: it covers the data)
        self.fingerprint = checkpoint.run_fingerprint(
            config.fingerprint(), self.potential, config.dtype, [self.train_data, self.valid_data]
        )
        with self._output_lock():  # fails at once if another run is writing the folder
            self._resumed = self._load_checkpoint()

    # -- set-up -------------------------------------------------------------------------------
    def _data(
        self, train: Dataset | None, valid: Dataset | None, tests: dict[str, Dataset] | None
    ) -> tuple[Dataset, Dataset, dict[str, Dataset]]:
        c = self.config
        if train is None:
            if not c.train:
                raise ValueError("no training data: set data.train in the config (docs/training-config.md)")
            train = self._load("data.train", c.train)
        self._check_labels(train)
        tests = dict(tests or {})
        if valid is None and c.valid:
            valid = self._load("data.valid", c.valid)
        if valid is None:
            fractions = [1.0 - c.valid_fraction - c.test_fraction, c.valid_fraction, c.test_fraction]
            if c.split_by == "structure":
                parts = random_split(len(train), fractions, c.split_seed)
            else:
                parts = group_split(train.group_keys(c.split_by), fractions, c.split_seed)
            train, valid, test = (train.subset(p) for p in parts)
            if len(test):
                tests.setdefault(f"test_split_by_{c.split_by}", test)
        for name, path in c.test_sets.items():
            tests.setdefault(name, self._load(f"data.test_sets.{name}", path))
        if len(train) == 0 or len(valid) == 0:
            raise ValueError(f"empty split: {len(train)} training and {len(valid)} validation structures")
        return train, valid, tests

    def _load(self, key: str, path: str) -> Dataset:
        """A data file named in the config, read with the config's label keys."""
        if not Path(path).exists():
            raise InputError(
                f"{key}: {path} does not exist; check the path (relative paths in a config are relative to the "
                "config file's folder)"
            )
        c = self.config
        return load_dataset(path, cache=c.cache, energy_unit=c.energy_unit, **{k: getattr(c, k) for k in LABEL_KEYS})

    def _check_labels(self, data: Dataset) -> None:
        """Each quantity the loss weighs must be labelled somewhere in the training data."""
        c = self.config
        for name, weight, place in (("energy", c.energy_weight, "info"), ("forces", c.forces_weight, "arrays"),
                                    ("stress", c.stress_weight, "info")):  # fmt: skip
            if weight > 0 and not np.isfinite(np.asarray(getattr(data, name))).any():
                key = getattr(c, f"{name}_key")
                found = f"; {describe_keys(data.source_keys)}" if data.source_keys else ""
                raise InputError(
                    f"the training data{f' ({c.train})' if c.train else ''} has no {name} labels ({place}[{key!r}], data.{name}_key) but loss.{name}_weight is "
                    f"{weight:g}{found}; set data.{name}_key to the key that holds them, or loss.{name}_weight: 0"
                )

    def _build(self) -> Potential:
        from ..models import create

        c = self.config
        torch.manual_seed(c.seed)
        hyper = dict(c.hyperparameters)
        elements = [int(z) for z in hyper.pop("elements", None) or self.train_data.elements]
        for name, data in [("validation", self.valid_data), *self.test_data.items()]:
            extra = sorted(set(data.elements) - set(elements))
            if extra:
                raise ValueError(f"{name} data has elements Z={extra} that the training data lacks")
        if c.init_from:
            return self._build_from(c.init_from, elements)
        forces = np.asarray(self.train_data.forces)
        scale = float(np.sqrt(np.nanmean(forces**2))) if np.isfinite(forces).any() else 1.0
        potential = create(
            c.architecture,
            elements=elements,
            atomic_energies=reference_energies(self.train_data, elements),
            energy_scale=scale,
            metadata={"name": c.name, "description": c.description},
            terms=c.terms,
            **hyper,
        )
        return potential.to(device=self.device, dtype=self.dtype)

    def _build_from(self, path: str, elements: list[int]) -> Potential:
        """The weights, reference energies and scale of an earlier potential (a second stage)."""
        from ..potential_file import load_potential

        c = self.config
        potential = load_potential(path)
        if potential.architecture != c.architecture or sorted(potential.elements) != sorted(elements):
            raise ValueError(
                f"init_from {path}: a {potential.architecture} for Z={potential.elements} cannot start a "
                f"{c.architecture} run for Z={elements}"
            )
        given = {k: v for k, v in c.hyperparameters.items() if k != "elements"}
        differ = sorted(k for k, v in given.items() if potential.hyperparameters.get(k) != v)
        if differ:
            raise ValueError(f"init_from {path}: hyperparameters {differ} differ from the config's; the weights fix them")
        for p in potential.parameters():
            p.requires_grad_(True)
        potential.metadata = {"name": c.name, "description": c.description, "initialised_from": portable_path(path)}
        return potential.to(device=self.device, dtype=self.dtype)

    def _optimizer(self) -> torch.optim.Optimizer:
        """AdamW, or an SG-MCMC sampler (``optimizer.sampler``): the loss, a mean over
        structures, times the number of training structures is taken as the negative
        log-likelihood (its weights are 1/(2σ²) of Gaussian label noise), ``weight_decay`` as the
        precision of a Gaussian prior on the weights, and ``lr`` as the step of RMSprop (psgld)
        or SGD with momentum (sghmc), i.e. the sampler's time step is ``lr`` / N. The sampler's
        noise is one stream seeded by ``run.seed``, the same on every process."""
        c = self.config
        if not self.sampling:
            return torch.optim.AdamW(self.potential.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        from ..uncertainty.sgmcmc import PSGLD, SGHMC

        n = len(self.train_data)
        common = {"lr": c.lr / n, "num_data": n, "temperature": c.temperature, "prior_precision": c.weight_decay,
                  "generator": torch.Generator().manual_seed(c.seed)}  # fmt: skip
        if c.sampler == "psgld":  # adapting, then frozen: a fixed preconditioner samples the posterior exactly
            return PSGLD(self.potential.parameters(), adapt_steps=max(c.burn_in, 1), **common)
        return SGHMC(self.potential.parameters(), friction=c.friction, **common)

    # -- the loop -----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until a stopping rule fires; returns the final report (also in metrics.json).

        The output folder is locked for the whole run (:func:`atomml.locks.output_lock`): a
        second run on it is refused with :class:`~atomml.errors.OutputInUseError`."""
        with self._output_lock():
            self._check_checkpoint_unchanged()
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        c = self.config
        if self.state["stopped"] in ("early_stopping", "max_epochs"):
            return self._finish()
        self._install_signal_handlers()
        n = len(self.train_data)
        started = time.perf_counter() - self.state["seconds"]
        if self.rank == 0 and c.verbose:
            print(console.summary(self), file=sys.stderr, flush=True)
        self._progress = bar = console.Progress(self, enabled=c.progress and self.rank == 0)
        try:
            while not self._limit_reached(started):
                batches = self._epoch_batches(self.state["epoch"], n)
                for position in range(self.state["position"], len(batches)):
                    loss = self._step(batches[position])
                    self.state["step"] += 1
                    self.state["position"] = position + 1
                    self.state["seconds"] = time.perf_counter() - started
                    self.state["loss_sum"] = self.state.get("loss_sum", 0.0) + loss
                    self.state["loss_steps"] = self.state.get("loss_steps", 0) + 1
                    bar.update(self.state, loss, self.optimizer.param_groups[0]["lr"])
                    if self.on_step is not None:
                        self.on_step(self)
                    if c.valid_every and self.state["step"] % c.valid_every == 0:
                        self._validate()
                    elif self.state["step"] % c.checkpoint_every == 0:
                        self._save_checkpoint()
                    if self._limit_reached(started):
                        break
                else:
                    self.state["epoch"] += 1
                    self.state["position"] = 0
                    if not c.valid_every:
                        self._validate()
        finally:
            bar.close()
            self._restore_signal_handlers()
        history = self.state["history"]
        if self.state["stopped"] != "interrupted" and (not history or history[-1]["step"] != self.state["step"]):
            self._validate()  # the last weights compete for "best" too
        self._save_checkpoint()
        return self._finish()

    def _limit_reached(self, started: float) -> bool:
        c, s = self.config, self.state
        reason = ""
        if self._stop_requested:
            reason = "interrupted"
        elif s["stopped"] == "early_stopping":
            reason = "early_stopping"
        elif c.max_steps is not None and s["step"] >= c.max_steps:
            reason = "max_steps"
        elif s["epoch"] >= c.max_epochs:
            reason = "max_epochs"
        elif c.max_minutes is not None and time.perf_counter() - started >= 60 * c.max_minutes:
            reason = "max_minutes"
        if self.world > 1 and reason in ("interrupted", "max_minutes"):
            # Every rank must stop after the same step; rank 0's clock decides.
            flag = torch.tensor([1 if reason else 0])
            torch.distributed.broadcast(flag, 0)
            reason = reason if bool(flag) else ""
        if reason:
            s["stopped"] = reason
        return bool(reason)

    def _epoch_batches(self, epoch: int, n: int) -> list[np.ndarray]:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator).numpy()
        b = self.config.batch_size
        batches = [order[k : k + b] for k in range(0, n, b)]
        return [x for x in batches if len(x) >= self.world]

    def _step(self, global_batch: np.ndarray) -> float:
        c = self.config
        self.potential.train()
        local = global_batch[self.rank :: self.world]
        counts = _global_counts(self.train_data, global_batch)
        # geometry and labels in float64 (the precision policy of atomml.potential): a -1e4 eV
        # label in float32 is rounded by 1e-3 eV; only the network runs in self.dtype
        graph, labels = self.train_data.batch(local, dtype=torch.float64)
        graph = graph.to(device=self.device)
        labels = {k: v.to(self.device) for k, v in labels.items()}
        compute_stress = c.stress_weight > 0 and wants_stress(graph.cell, labels["stress"])
        out = self.model(graph, compute_forces=c.forces_weight > 0, compute_stress=compute_stress, create_graph=True)
        loss = self.world * _loss(out, labels, counts, c, compute_stress)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.sampling:  # no clipping, no schedule: they would change the distribution sampled
            self.optimizer.step()
            assert self.collector is not None
            self.collector.collect(self.state["step"] + 1, self.potential.model)
        else:
            self._clip_and_schedule()
            self.optimizer.step()
            self._update_ema()
        value = loss.detach() / self.world
        if self.world > 1:
            torch.distributed.all_reduce(value)
        return float(value)

    def _clip_and_schedule(self) -> None:
        """Gradient clipping and this step's learning rate (warm-up, cosine; the plateau
        schedule acts at validations)."""
        c = self.config
        if c.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.potential.parameters(), c.clip_grad_norm)
        if c.warmup_steps and self.state["step"] < c.warmup_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = c.lr * (self.state["step"] + 1) / c.warmup_steps
        elif c.scheduler == "cosine":
            assert c.max_steps is not None
            t = (self.state["step"] - c.warmup_steps) / max(1, c.max_steps - c.warmup_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))
        elif c.warmup_steps and self.state["step"] == c.warmup_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = c.lr

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.config.ema_decay
        if d <= 0:
            return
        # Ramp the decay up at the start (as in TensorFlow's EMA), so early weights fade fast.
        decay = min(d, (1 + self.state["step"]) / (10 + self.state["step"]))
        for ema, p in zip(self.ema.parameters(), self.potential.parameters()):
            ema.lerp_(p.detach(), 1 - decay)

    def _validate(self) -> None:
        c, s = self.config, self.state
        metrics = self._sharded_errors(self.valid_data)
        score = c.energy_weight * (metrics["energy_rmse_meV_per_atom"] * units.EV_PER_MEV) ** 2
        if c.forces_weight > 0 and "force_rmse_meV_per_A" in metrics:
            score += c.forces_weight * (metrics["force_rmse_meV_per_A"] * units.EV_PER_MEV) ** 2
        if c.stress_weight > 0 and "stress_rmse_meV_per_A3" in metrics:
            score += c.stress_weight * (metrics["stress_rmse_meV_per_A3"] * units.EV_PER_MEV) ** 2
        if c.scheduler == "plateau" and s["step"] >= c.warmup_steps and not self.sampling:
            self.plateau.step(score)
        improved = score < s["best_valid"]
        if improved:
            s["best_valid"], s["best_step"], s["bad_validations"] = score, s["step"], 0
            self.best_state = {k: v.detach().clone() for k, v in self.ema.state_dict().items()}
        else:
            s["bad_validations"] += 1
            if c.early_stopping_patience is not None and s["bad_validations"] >= c.early_stopping_patience and not self.sampling:
                s["stopped"] = "early_stopping"
        steps = s.get("loss_steps", 0)
        row = {"step": s["step"], "epoch": s["epoch"], "seconds": round(s["seconds"], 1), "lr": self.optimizer.param_groups[0]["lr"],
               "train_loss": s.get("loss_sum", 0.0) / steps if steps else None, "valid_loss": score,
               **{k: v for k, v in metrics.items() if k.endswith(("_meV_per_atom", "_meV_per_A", "_meV_per_A3"))}}
        s["loss_sum"], s["loss_steps"] = 0.0, 0
        s["history"].append(row)
        if self.rank == 0 and c.verbose:
            line = console.validation_line(row, improved)
            if self._progress is not None:
                self._progress.write(line)  # above the bar
            else:
                print(line, file=sys.stderr, flush=True)
        if self.rank == 0:
            self._write_log()
        self._save_checkpoint()

    def _sharded_errors(self, data: Dataset) -> dict[str, float]:
        """Validation errors, each rank predicting a strided shard; sums are all-reduced."""
        self.ema.eval()
        idx = np.arange(self.rank, len(data), self.world)
        prediction = predict(self.ema, data, batch_size=max(self.config.batch_size, 16), indices=idx)
        ref = data.subset(idx)
        n = ref.num_atoms
        de = (prediction["energy"] - np.asarray(ref.energy)) / n
        df = prediction["forces"] - np.asarray(ref.forces)
        ds = prediction["stress"] - np.asarray(ref.stress)
        e_ok, f_ok, s_ok = np.isfinite(de), np.isfinite(df), np.isfinite(ds)
        sums = torch.tensor(
            [np.abs(de[e_ok]).sum(), (de[e_ok] ** 2).sum(), e_ok.sum(), np.abs(df[f_ok]).sum(), (df[f_ok] ** 2).sum(), f_ok.sum(),
             np.abs(ds[s_ok]).sum(), (ds[s_ok] ** 2).sum(), s_ok.sum()], dtype=torch.float64,
        )
        if self.world > 1:
            torch.distributed.all_reduce(sums)
        a = sums.tolist()
        out = {"energy_mae_meV_per_atom": 1000 * a[0] / max(a[2], 1), "energy_rmse_meV_per_atom": 1000 * math.sqrt(a[1] / max(a[2], 1))}
        if a[5]:
            out |= {"force_mae_meV_per_A": 1000 * a[3] / a[5], "force_rmse_meV_per_A": 1000 * math.sqrt(a[4] / a[5])}
        if a[8]:
            out |= {"stress_mae_meV_per_A3": 1000 * a[6] / a[8], "stress_rmse_meV_per_A3": 1000 * math.sqrt(a[7] / a[8])}
        return out

    # -- results ------------------------------------------------------------------------------
    def best_potential(self) -> Potential:
        """The EMA weights at the best validation (the last ones if never validated)."""
        potential = copy.deepcopy(self.ema)
        if self.best_state is not None:
            potential.load_state_dict(self.best_state)
        potential.eval()
        for p in potential.parameters():
            p.requires_grad_(False)
        return potential

    def finish(self) -> dict[str, Any]:
        """Save the best potential, test errors, plots; returns the report (rank 0 writes)."""
        with self._output_lock():
            return self._finish()

    def samples_committee(self) -> Potential | None:
        """The sampler's kept weights as one committee potential (None with fewer than 2)."""
        from ..models import committee_of

        assert self.collector is not None
        states = self.collector.committee()
        if len(states) < 2:
            return None
        members = []
        for state in states:
            member = copy.deepcopy(self.potential)
            member.model.load_state_dict(state)
            members.append(member)
        committee = committee_of(members, metadata={"samples": {"sampler": self.config.sampler, "kept": len(states),
                                                                "temperature": self.config.temperature}})  # fmt: skip
        for p in committee.parameters():
            p.requires_grad_(False)
        return committee

    def _finish(self) -> dict[str, Any]:
        c = self.config
        potential = self.samples_committee() if self.sampling else None
        if potential is None:
            if self.sampling:
                warnings.warn(f"{self.output}: the sampler kept fewer than 2 samples; the last weights are saved alone",
                              stacklevel=2)  # fmt: skip
            potential = self.best_potential()
        report: dict[str, Any] = {
            "name": c.name, "stopped": self.state["stopped"], "steps": self.state["step"], "epochs": self.state["epoch"],
            "best_step": self.state["best_step"], "train_seconds": round(self.state["seconds"], 1),
            "train_structures": len(self.train_data), "valid_structures": len(self.valid_data),
            "processes": self.world, "parameters": sum(p.numel() for p in potential.parameters()), "test": {},
        }
        if self.rank != 0:
            return report
        self.output.mkdir(parents=True, exist_ok=True)
        for name, data in [("valid", self.valid_data), *self.test_data.items()]:
            prediction = predict(potential, data, batch_size=max(c.batch_size, 16))
            report["test"][name] = errors(data, prediction)
            if c.report_by:
                groups = np.array([str(entry.get(c.report_by, "")) for entry in data.info])
                report["test"][name]["by_" + c.report_by] = {
                    g: errors(data, {k: v[_rows(data, groups == g, k)] for k, v in prediction.items()}, np.nonzero(groups == g)[0])
                    for g in sorted(set(groups))
                }
            references = dict(zip(potential.elements, potential.atomic_energies.tolist()))
            parity_plot(data, prediction, self.output / f"parity_{name}.png", title=f"{c.name}: {name}", atomic_energies=references)
        if self.state["history"]:
            learning_curve(self.state["history"], self.output / "learning_curve.png", title=f"{c.name}: learning curve")
        if potential.committee_size is not None:  # a committee: its spread calibrated on the validation set
            from ..uncertainty import committees

            predicted = committees.predictions(potential, self.valid_data, batch_size=max(c.batch_size, 16))
            calibration = committees.calibrate(predicted)
            potential.model.std_scale.fill_(calibration["scale"])
            committees.write_calibration(calibration, predicted, self.output / "calibration")
            report["calibration"] = {"scale": calibration["scale"], "fitted_on": calibration["fitted_on"],
                                     "set": "valid", "report": str(self.output / "calibration" / "calibration.json")}  # fmt: skip
        potential.metadata.update(
            {
                "training": {k: v for k, v in report.items() if k != "test"},
                "test_metrics": report["test"],
                "training_config": {k: v for k, v in c.portable_dict().items() if k not in MACHINE_KEYS},
            }
        )
        report["potential"] = str(save_potential(potential.to(device="cpu"), self.output / f"{c.name}.safetensors"))
        write_json(self.output / "metrics.json", report)
        return report

    # -- checkpoints --------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        path = self.output / checkpoint.NAME
        data = {
            "fingerprint": self.fingerprint,
            "model": self.potential.state_dict(),
            "ema": self.ema.state_dict(),
            "best": self.best_state or {},
            "optimizer": self.optimizer.state_dict(),
            "plateau": self.plateau.state_dict(),
            "state": json.dumps(self.state),
            "rng": torch.get_rng_state(),
        }
        if self.collector is not None:
            data["samples"] = self.collector.state_dict()
        checkpoint.save(path, data)
        self._checkpoint_stamp = checkpoint.stamp(path)

    def _load_checkpoint(self) -> bool:
        path = self.output / checkpoint.NAME
        self._checkpoint_stamp = checkpoint.stamp(path)
        if self._checkpoint_stamp is None:
            return False
        data = checkpoint.load(path, self.device)
        checkpoint.check_fingerprint(path, data.get("fingerprint"), self.fingerprint)
        self.potential.load_state_dict(data["model"])
        self.ema.load_state_dict(data["ema"])
        self.best_state = data["best"] or None
        self.optimizer.load_state_dict(data["optimizer"])
        self.plateau.load_state_dict(data["plateau"])
        self.plateau.min_lrs = [float(self.config.min_lr)] * len(self.optimizer.param_groups)  # the config's, as a number
        self.state = json.loads(data["state"])
        if self.state["stopped"] in ("interrupted", "max_steps", "max_minutes"):
            self.state["stopped"] = ""  # a limit of the previous invocation, not of this one
        torch.set_rng_state(data["rng"].cpu())
        if self.collector is not None:
            self.collector.load_state_dict(data["samples"])
        return True

    def _output_lock(self) -> contextlib.AbstractContextManager[Any]:
        """The output folder's lock (rank 0 alone writes, so only rank 0 takes it)."""
        return output_lock(self.output, "training folder") if self.rank == 0 else contextlib.nullcontext()

    def _check_checkpoint_unchanged(self) -> None:
        """Refuse to go on from a checkpoint that another run replaced since this one read it."""
        path = self.output / checkpoint.NAME
        if self.rank == 0 and checkpoint.stamp(path) != self._checkpoint_stamp:
            raise CheckpointError(
                f"{path} was written by another run after this Trainer read it; create a new Trainer "
                "(run the command again) to resume from it, or write to another output folder"
            )

    def _write_log(self) -> None:
        rows = self.state["history"]
        fields = sorted({k for row in rows for k in row}, key=lambda k: list(rows[-1]).index(k) if k in rows[-1] else 99)
        self.output.mkdir(parents=True, exist_ok=True)
        tmp = self.output / "log.csv.tmp"
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.output / "log.csv")

    # -- interruption and progress ------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        self._previous_handlers = {}
        if self.world > 1 or not _main_thread():
            return

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_requested:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            self._stop_requested = True
            print("\n[atomml train] stopping after this step; a checkpoint will be written (Ctrl-C again to abort)", flush=True)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[sig] = signal.signal(sig, request_stop)

    def _restore_signal_handlers(self) -> None:
        for sig, handler in getattr(self, "_previous_handlers", {}).items():
            signal.signal(sig, handler)


def train(config: TrainConfig | str | os.PathLike[str], **overrides: Any) -> dict[str, Any]:
    """Train from a config (object or YAML path), with field overrides; returns the report.

    Under ``torchrun`` the process group is set up here (gloo on CPU, NCCL on CUDA).
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_yaml(config)
    if overrides:
        config = TrainConfig(**{**config.to_dict(), **overrides})
    started_group = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if config.device.startswith("cuda") else "gloo")
        started_group = True
    try:
        return Trainer(config).fit()
    finally:
        if started_group:
            torch.distributed.destroy_process_group()


def _loss(out: dict[str, Tensor], labels: dict[str, Tensor], counts: dict[str, int], c: TrainConfig, stress: bool) -> Tensor:
    """The local part of the global batch's loss (sums divided by the global counts)."""
    loss = out[keys.ENERGY].new_zeros(())
    e_ok = torch.isfinite(labels["energy"])
    if c.energy_weight > 0 and counts["energy"]:
        d = (out[keys.ENERGY] - labels["energy"].nan_to_num()) / labels["num_atoms"].to(out[keys.ENERGY].dtype)
        loss = loss + c.energy_weight * (d[e_ok] ** 2).sum() / counts["energy"]
    if c.forces_weight > 0 and counts["forces"]:
        f_ok = torch.isfinite(labels["forces"])
        loss = loss + c.forces_weight * ((out[keys.FORCES] - labels["forces"].nan_to_num())[f_ok] ** 2).sum() / counts["forces"]
    if stress and counts["stress"]:
        s_ok = torch.isfinite(labels["stress"])
        loss = loss + c.stress_weight * ((out[keys.STRESS] - labels["stress"].nan_to_num())[s_ok] ** 2).sum() / counts["stress"]
    return loss


def _global_counts(data: Dataset, structures: np.ndarray) -> dict[str, int]:
    """Labelled entries in the whole global batch (the loss's denominators)."""
    atoms = atom_indices(data.offsets, structures)
    return {
        "energy": int(np.isfinite(np.asarray(data.energy)[structures]).sum()),
        "forces": int(np.isfinite(np.asarray(data.forces)[atoms]).sum()),
        "stress": int(np.isfinite(np.asarray(data.stress)[structures]).sum()),
    }


def _rows(data: Dataset, mask: np.ndarray, quantity: str) -> np.ndarray:
    """Row selector of a prediction array for the structures in ``mask``."""
    if quantity == "forces":
        return atom_indices(data.offsets, np.nonzero(mask)[0])
    return np.nonzero(mask)[0]


def _distributed_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


