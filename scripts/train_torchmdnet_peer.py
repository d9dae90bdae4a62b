"""Train torchmd-net's TensorNet with torchmd-net's own trainer for a wall-clock budget, then
report its test errors as JSON: the peer side of the atomml-vs-torchmd-net comparison.

The run is what ``torchmd-train`` does (its ``LNNP`` LightningModule, its ``DataModule`` and a
lightning ``Trainer`` with the same callbacks as ``torchmdnet/scripts/train.py``), starting from
``torchmd-train``'s own defaults, with two changes that a wall-clock comparison needs:
``Trainer(max_time=...)`` (the CLI has no time limit) and a checkpoint every epoch so that the best
validation model of a short run is kept.

Data: extxyz files whose frames carry energy (eV) and forces (eV/Å) in a SinglePointCalculator,
optionally ``atoms.info["charge"]``. torchmd-net's file datasets (HDF5, Custom) carry neither a box
nor a total charge per structure, so the frames are converted into a small torch_geometric
``InMemoryDataset`` of ``Data(z, pos, y, neg_dy, q[, box])`` (the layout of torchmd-net's
``WaterBox`` dataset), saved under ``--workdir``. Periodic cells are rotated into the
lower-triangular form that torchmd-net's neighbour list requires (positions and forces rotated
alike); slabs (pbc T,T,F) keep their vacuum as a third box vector.

Errors are computed here, on CPU, with forces by autograd, in the original frame of each
structure, with the field names of ``atomml.training.metrics``.

Run (one CPU thread, 10 minutes)::

    .venv/bin/python scripts/train_torchmdnet_peer.py --train train.extxyz --val val.extxyz \\
        --test md=test.extxyz --minutes 10 --threads 1 --output runs/torchmdnet_peer/result.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import yaml
from ase import Atoms
from ase.data import chemical_symbols
from ase.io import read
from ase.neighborlist import neighbor_list
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.loggers import CSVLogger
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.loader import DataLoader
from torchmdnet.data import DataModule
from torchmdnet.models.model import load_model
from torchmdnet.module import LNNP
from torchmdnet.scripts.train import get_argparse

EV_TO_MEV = 1000.0


# ----------------------------------------------------------------------------- data


def read_frames(path: str) -> list[Atoms]:
    """All frames of an extxyz file; each must have an energy and forces."""
    frames = read(path, ":")
    for i, atoms in enumerate(frames):
        results = atoms.calc.results if atoms.calc is not None else {}
        if "energy" not in results or "forces" not in results:
            raise SystemExit(f"{path}: frame {i} lacks an energy or forces (expected in a SinglePointCalculator)")
    return frames


def fit_reference_energies(frames: list[Atoms]) -> dict[int, float]:
    """Per-element energies e_Z (eV) by least squares, E ≈ Σ_Z n_Z e_Z, on the training frames."""
    elements = sorted({int(z) for atoms in frames for z in atoms.numbers})
    counts = np.array([[np.count_nonzero(a.numbers == z) for z in elements] for a in frames], float)
    energy = np.array([a.get_potential_energy() for a in frames])
    solution, *_ = np.linalg.lstsq(counts, energy, rcond=None)
    return dict(zip(elements, solution.tolist()))


def reference_energy(atoms: Atoms, refs: dict[int, float]) -> float:
    missing = sorted({chemical_symbols[z] for z in atoms.numbers if int(z) not in refs})
    if missing:
        raise SystemExit(f"elements {missing} occur outside the training set; add them to --train")
    return float(sum(refs[int(z)] for z in atoms.numbers))


def box_and_rotation(atoms: Atoms, cutoff: float, periodic_dataset: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """torchmd-net box (3, 3) for a frame and the rotation Q with pos_box = pos @ Q.T.

    torchmd-net's neighbour list uses the minimum image with box vectors a, b, c (rows) that
    satisfy a_y = a_z = b_z = 0, a_x, b_y, c_z >= 2 cutoff, a_x >= 2|b_x|, a_x >= 2|c_x|,
    b_y >= 2|c_y| (the absolute values are stricter than its docstring and keep the minimum
    image exact). Non-periodic frames in a dataset that also holds periodic ones get a cubic box
    large enough that no image comes within the cutoff.
    """
    pbc = tuple(bool(p) for p in atoms.pbc)
    if not any(pbc):
        if not periodic_dataset:
            return None, np.eye(3)
        span = np.ptp(atoms.positions, axis=0).max()
        return np.eye(3) * 2.0 * (span + cutoff), np.eye(3)
    if pbc not in ((True, True, True), (True, True, False)):
        raise SystemExit(f"pbc {pbc} is not supported: use fully periodic cells or slabs with pbc (T, T, F)")
    if abs(atoms.cell.volume) < 1e-6:
        raise SystemExit("a periodic frame has a degenerate cell; slabs need a third (vacuum) cell vector")
    rcell, rotation = atoms.cell.standard_form()
    box = np.asarray(rcell)
    (ax, _, _), (bx, by, _), (cx, cy, cz) = box
    tol = 1e-6  # Å; hexagonal cells sit exactly on a_x = 2 b_x
    problems = []
    if min(ax, by, cz) < 2 * cutoff - tol:
        problems.append(f"diagonal ({ax:.3f}, {by:.3f}, {cz:.3f}) must be >= 2*cutoff = {2 * cutoff}")
    if ax < 2 * abs(bx) - tol or ax < 2 * abs(cx) - tol or by < 2 * abs(cy) - tol:
        problems.append("the box is not in reduced form (a_x >= 2|b_x|, a_x >= 2|c_x|, b_y >= 2|c_y|)")
    if not pbc[2]:
        z = atoms.positions @ rotation.T
        gap = cz - np.ptp(z[:, 2])
        if gap < cutoff:
            problems.append(f"slab vacuum along c is {gap:.2f} Å, less than the cutoff {cutoff} Å")
    if problems:
        raise SystemExit(
            f"cell {np.round(np.asarray(atoms.cell), 3).tolist()} (pbc {pbc}; lower-triangular form "
            f"{np.round(box, 3).tolist()}) cannot be used by torchmd-net with cutoff {cutoff} Å: "
            + "; ".join(problems) + ". Use a larger (supercell) or Minkowski-reduced cell."
        )
    return box, rotation


def to_data(atoms: Atoms, refs: dict[int, float], cutoff: float, periodic_dataset: bool) -> tuple[Data, np.ndarray]:
    """One frame as torchmd-net sample (Å, eV, eV/Å) and the rotation applied to it.

    The target ``y`` is the energy minus the per-element reference energies, subtracted here in
    float64: torchmd-net trains in float32, where total energies of thousands of eV would lose
    meV resolution. (torchmd-net's ``Atomref`` prior would add the same constants inside the
    float32 model; subtracting them from the data gives the network the same task.)
    """
    box, rotation = box_and_rotation(atoms, cutoff, periodic_dataset)
    data = Data(
        z=torch.as_tensor(atoms.numbers, dtype=torch.long),
        pos=torch.as_tensor(atoms.positions @ rotation.T, dtype=torch.float32),
        y=torch.tensor([[atoms.get_potential_energy() - reference_energy(atoms, refs)]], dtype=torch.float32),
        neg_dy=torch.as_tensor(atoms.get_forces() @ rotation.T, dtype=torch.float32),
        q=torch.tensor([int(atoms.info.get("charge", 0))], dtype=torch.long),
    )
    if box is not None:
        data.box = torch.as_tensor(box, dtype=torch.float32).unsqueeze(0)  # (1, 3, 3): batches to (B, 3, 3)
    return data, rotation


class FrameDataset(InMemoryDataset):
    """Converted frames stored by :meth:`InMemoryDataset.save`, read back for torchmd-net."""

    def __init__(self, path: Path):
        super().__init__()
        self.load(str(path))


def max_neighbours(frames: list[Atoms], cutoff: float) -> int:
    """Largest number of neighbours within ``cutoff`` of any atom, self included."""
    most = 0
    for atoms in frames:
        first = neighbor_list("i", atoms, cutoff)
        most = max(most, int(np.bincount(first, minlength=len(atoms)).max()) if len(first) else 0)
    return most + 1  # TensorNet's neighbour list includes the self pair


# ----------------------------------------------------------------------------- training


def build_hparams(args: argparse.Namespace, workdir: Path, max_num_neighbors: int, charge: bool, max_z: int) -> dict:
    """torchmd-train's defaults, with this comparison's settings on top."""
    hparams = vars(get_argparse().parse_args([]))
    hparams.update(
        model="tensornet",
        equivariance_invariance_group="O(3)",
        embedding_dimension=args.embedding_dimension,
        num_layers=args.num_layers,
        num_rbf=args.num_rbf,
        cutoff_upper=args.cutoff,
        max_num_neighbors=max_num_neighbors,
        max_z=max(hparams["max_z"], max_z + 1),
        derivative=True,
        charge=charge,
        batch_size=args.batch_size,
        inference_batch_size=args.batch_size,
        lr=args.lr,
        y_weight=args.energy_weight,
        neg_dy_weight=args.force_weight,
        seed=args.seed,
        log_dir=str(workdir / "logs"),
        splits=str(workdir / "splits.npz"),
        num_epochs=args.max_epochs,
        num_workers=0,  # the data is in memory; workers would only add processes and threads
        save_interval=1,  # a short run may see only a few epochs: keep the best of each
    )
    for item in args.hparam:
        key, _, value = item.partition("=")
        if key not in hparams:
            raise SystemExit(f"--hparam {item}: {key!r} is not a torchmd-train option")
        hparams[key] = yaml.safe_load(value)
    del hparams["conf"]
    return hparams


class EpochLog(Callback):
    """One line per validation (to stderr) and the loss history for the JSON report."""

    def __init__(self):
        self.history: list[dict] = []
        self.start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "elapsed_s": round(time.perf_counter() - self.start, 2),
            "lr": m.get("lr"),
            "train_total_mse_loss": m.get("train_total_mse_loss"),
            "val_total_mse_loss": m.get("val_total_mse_loss"),
            "val_energy_mae_eV": m.get("val_y_l1_loss"),
            "val_force_mae_eV_per_A": m.get("val_neg_dy_l1_loss"),
        }
        self.history.append(row)
        print(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)


def train(hparams: dict, dataset: FrameDataset, minutes: float) -> tuple[torch.nn.Module, dict]:
    """Fit with torchmd-net's LNNP + DataModule and a lightning Trainer limited to ``minutes``.

    Returns the model to evaluate (best validation checkpoint, else the last weights) and a summary.
    """
    pl.seed_everything(hparams["seed"], workers=True)
    data = DataModule(hparams, dataset)
    data.prepare_data()
    data.setup("fit")
    lnnp = LNNP(hparams, prior_model=None, mean=data.mean, std=data.std)

    monitor = hparams["checkpoint_monitor"]
    checkpoint = ModelCheckpoint(
        dirpath=hparams["log_dir"], monitor=monitor, save_top_k=1,
        every_n_epochs=hparams["save_interval"], filename="best-{epoch}", auto_insert_metric_name=False,
    )
    early_stopping = EarlyStopping(hparams["early_stopping_monitor"], patience=hparams["early_stopping_patience"])
    timer = Timer(duration=timedelta(minutes=minutes), interval="step")
    log = EpochLog()
    trainer = pl.Trainer(
        max_epochs=hparams["num_epochs"],
        accelerator="cpu",
        devices=1,
        default_root_dir=hparams["log_dir"],
        callbacks=[checkpoint, early_stopping, timer, log],
        logger=CSVLogger(hparams["log_dir"], name="", version=""),
        precision=hparams["precision"],
        gradient_clip_val=hparams["gradient_clipping"],
        inference_mode=False,
        enable_progress_bar=False,
    )
    start = time.perf_counter()
    trainer.fit(lnnp, data)
    fit_wall = time.perf_counter() - start

    if early_stopping.stopped_epoch > 0:
        stopped_by = "early_stopping"
    elif timer.time_remaining() <= 0:
        stopped_by = "max_time"
    else:
        stopped_by = "max_epochs"
    best = checkpoint.best_model_path
    if best:
        model = load_model(best, derivative=True)
    else:  # the budget ended before the first validation
        model = lnnp.model
    steps_per_epoch = math.ceil(len(data.idx_train) / hparams["batch_size"])
    summary = {
        "stopped_by": stopped_by,
        "steps": trainer.global_step,
        "epochs": round(trainer.global_step / steps_per_epoch, 3),
        "steps_per_epoch": steps_per_epoch,
        "train_time_s": round(timer.time_elapsed("train"), 2),
        "fit_wall_s": round(fit_wall, 2),
        "evaluated_checkpoint": best or "last weights (no validation finished)",
        "best_val_total_mse_loss": float(checkpoint.best_model_score) if best else None,
        "history": log.history,
    }
    return model.eval(), summary


# ----------------------------------------------------------------------------- evaluation


def evaluate(model: torch.nn.Module, frames: list[Atoms], dataset: FrameDataset, rotations: list[np.ndarray],
             refs: dict[int, float], batch_size: int, charge: bool) -> dict:
    """Energy (meV/atom) and force component (meV/Å) errors in each frame's original orientation."""
    e_err, f_err, f_ref = [], [], []
    k = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        energy, neg_dy = model(
            batch.z, batch.pos, batch=batch.batch, box=batch.box if "box" in batch else None,
            q=batch.q if charge else None,
        )
        energy = energy.detach().double().view(-1).numpy()
        forces = neg_dy.detach().double().numpy()
        counts = np.bincount(batch.batch.numpy(), minlength=batch.num_graphs)
        for e_pred, f_pred in zip(energy, np.split(forces, np.cumsum(counts)[:-1])):
            atoms = frames[k]
            e_total = e_pred + reference_energy(atoms, refs)
            e_err.append((e_total - atoms.get_potential_energy()) / len(atoms))
            f_err.append(f_pred @ rotations[k] - atoms.get_forces())
            f_ref.append(atoms.get_forces())
            k += 1
    e_err, f_err, f_ref = np.array(e_err), np.concatenate(f_err), np.concatenate(f_ref)
    return {
        "structures": len(frames),
        "atoms": int(sum(len(a) for a in frames)),
        "energy_mae_meV_per_atom": EV_TO_MEV * float(np.abs(e_err).mean()),
        "energy_rmse_meV_per_atom": EV_TO_MEV * float(np.sqrt((e_err**2).mean())),
        "force_mae_meV_per_A": EV_TO_MEV * float(np.abs(f_err).mean()),
        "force_rmse_meV_per_A": EV_TO_MEV * float(np.sqrt((f_err**2).mean())),
        "force_reference_mean_abs_meV_per_A": EV_TO_MEV * float(np.abs(f_ref).mean()),
    }


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training frames (extxyz)")
    p.add_argument("--val", required=True, help="validation frames (extxyz): checkpoint choice, LR schedule, early stopping")
    p.add_argument("--test", action="append", required=True, metavar="NAME=FILE", help="test set; repeatable")
    p.add_argument("--minutes", type=float, required=True, help="wall-clock budget of the training loop")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--embedding-dimension", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--num-rbf", type=int, default=32)
    p.add_argument("--cutoff", type=float, default=5.0, help="Å")
    p.add_argument("--max-num-neighbors", type=int, default=None, help="default: from the data (at least 64)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--energy-weight", type=float, default=1.0, help="torchmd-net y_weight (MSE of total energy, eV²)")
    p.add_argument("--force-weight", type=float, default=10.0, help="torchmd-net neg_dy_weight (MSE of force components, (eV/Å)²)")
    p.add_argument("--max-epochs", type=int, default=-1, help="-1: only the wall-clock budget (and early stopping) ends training")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                   help="any other torchmd-train option (YAML value), e.g. lr_warmup_steps=500; repeatable")
    p.add_argument("--workdir", default=None, help="default: runs/torchmdnet_peer/<name of --train>")
    p.add_argument("--output", default=None, help="JSON report (default: <workdir>/result.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir or Path("runs/torchmdnet_peer") / Path(args.train).stem)
    workdir.mkdir(parents=True, exist_ok=True)
    tests = {}
    for item in args.test:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--test {item!r}: expected NAME=FILE.extxyz")
        tests[name] = read_frames(path)
    train_frames, val_frames = read_frames(args.train), read_frames(args.val)
    everything = train_frames + val_frames + [a for frames in tests.values() for a in frames]

    refs = fit_reference_energies(train_frames)
    periodic = any(a.pbc.any() for a in everything)
    # TensorNet scales its interaction products by (1 + 0.1 q) when given the total charge q;
    # torchmd-net passes q only with charge=True, so switch it on when the training data has charges.
    charge = any(int(a.info.get("charge", 0)) != 0 for a in train_frames)
    observed = max_neighbours(everything, args.cutoff)
    max_nn = args.max_num_neighbors or max(64, 32 * math.ceil(1.25 * observed / 32))
    if max_nn < observed:
        raise SystemExit(f"--max-num-neighbors {max_nn} < {observed} neighbours found in the data")

    fit_data = [to_data(a, refs, args.cutoff, periodic)[0] for a in train_frames + val_frames]
    FrameDataset.save(fit_data, str(workdir / "fit.pt"))
    np.savez(workdir / "splits.npz", idx_train=np.arange(len(train_frames)),
             idx_val=np.arange(len(train_frames), len(fit_data)), idx_test=np.arange(0))
    test_sets = {}
    for name, frames in tests.items():
        converted = [to_data(a, refs, args.cutoff, periodic) for a in frames]
        FrameDataset.save([d for d, _ in converted], str(workdir / f"test_{name}.pt"))
        test_sets[name] = (frames, FrameDataset(workdir / f"test_{name}.pt"), [r for _, r in converted])
    max_z = int(max(a.numbers.max() for a in everything))
    hparams = build_hparams(args, workdir, max_nn, charge, max_z)
    (workdir / "logs").mkdir(exist_ok=True)
    with open(workdir / "input.yaml", "w") as f:  # what torchmd-train would have been given
        yaml.safe_dump(hparams, f)

    model, training = train(hparams, FrameDataset(workdir / "fit.pt"), args.minutes)
    results = {name: evaluate(model, frames, ds, rots, refs, args.batch_size, charge)
               for name, (frames, ds, rots) in test_sets.items()}

    report = {
        "peer": "torchmd-net",
        "torchmd_net_version": version("torchmd-net"),
        "model": "TensorNet",
        "settings": {
            "minutes": args.minutes, "threads": args.threads, "seed": args.seed,
            "embedding_dimension": args.embedding_dimension, "num_layers": args.num_layers,
            "num_rbf": args.num_rbf, "cutoff": args.cutoff, "max_num_neighbors": max_nn,
            "batch_size": args.batch_size, "lr": hparams["lr"], "y_weight": hparams["y_weight"],
            "neg_dy_weight": hparams["neg_dy_weight"], "loss": hparams["train_loss"],
            "lr_schedule": {k: hparams[k] for k in ("lr_factor", "lr_patience", "lr_min", "lr_warmup_steps")},
            "early_stopping_patience": hparams["early_stopping_patience"],
            "precision": hparams["precision"], "hparams_file": str(workdir / "input.yaml"),
        },
        "reference_energies_eV": {chemical_symbols[z]: e for z, e in refs.items()},
        "reference_energy_method": "least squares on --train, subtracted from the targets in float64",
        "periodic": periodic,
        "charge": {"used": charge, "note": "total charge passed as q (TensorNet's (1 + 0.1 q) interaction scaling)"
                   if charge else "no nonzero atoms.info['charge'] in --train: q not passed"},
        "data": {"train": len(train_frames), "val": len(val_frames), **{f"test_{n}": len(t) for n, t in tests.items()}},
        "training": training,
        "tests": results,
    }
    output = Path(args.output) if args.output else workdir / "result.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
