"""Train a shipped potential from its preset, side by side with torchmd-net's TensorNet.

    .venv/bin/python scripts/train_shipped_potentials.py organic --minutes 30
    .venv/bin/python scripts/train_shipped_potentials.py metals --minutes 20

For ``organic`` (preset ``potentials/tensornet-organic-gfn2.yaml``) or ``metals``
(``potentials/tensornet-metals-emt.yaml``):

1. splits the generated data (``scripts/generate_*_data.py``) exactly as the preset says and
   writes the parts as extxyz under ``runs/shipped/<name>/data/``, so both trainers see the same
   training, validation and test structures;
2. runs ``atomml train`` and ``scripts/train_torchmdnet_peer.py`` (torchmd-net's own trainer,
   same architecture sizes, batch size and learning rate) *at the same time*, each with one
   CPU thread and the same wall-clock budget for its training loop. Each keeps its own loss
   convention: atomml weighs the per-atom energy MSE (preset: 100) against the force MSE (10);
   torchmd-net weighs the total-energy MSE (1, which for ~12-atom molecules is ~144 on a
   per-atom scale) against the force MSE (10), the peer script's defaults;
3. writes both trainers' test errors to ``data/benchmarks/training_<which>_vs_torchmdnet.json``
   and copies the atomml potential to ``potentials/<name>.safetensors``.

The atomml side resumes from its checkpoint if the script is killed and run again; the peer
is restarted (it is the comparison, not a product). ``--skip-peer`` trains atomml alone.
``--stage N`` (N > 1) runs the preset ``potentials/<name>.stageN.yaml`` (the previous stage's
potential trained further on the same split, atomml alone) and ships its result instead; its
report goes to ``data/benchmarks/training_<which>_stageN.json``. ``--pool FILE`` (stage 1) runs
the side-by-side comparison from scratch on a larger pool (the version-2 data), split so that the
stage-1 structures keep their parts, and reports it as
``data/benchmarks/training_<which>_vs_torchmdnet_<pool stem>.json`` without shipping anything. ``--device`` overrides the
preset's torch device (a stage preset may name ``cuda``: it was trained on a GPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from atomml.data import group_split, load_dataset, random_split
from atomml.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

PRESETS = {"organic": "tensornet-organic-gfn2", "metals": "tensornet-metals-emt"}
MAX_FILE_BYTES = 10 * 1024 * 1024


def split_indices(config: TrainConfig, pool) -> list[np.ndarray]:
    """Train / valid / test indices of ``pool`` as the preset says."""
    fractions = [1.0 - config.valid_fraction - config.test_fraction, config.valid_fraction, config.test_fraction]
    if config.split_by == "structure":
        return random_split(len(pool), fractions, config.split_seed)
    return group_split(pool.group_keys(config.split_by), fractions, config.split_seed)


def structure_keys(pool) -> list[bytes]:
    """A key per structure: its atomic numbers and positions (as read), to find it in another file."""
    keys = []
    for b in range(len(pool)):
        atoms = slice(int(pool.offsets[b]), int(pool.offsets[b + 1]))
        keys.append(hashlib.sha256(pool.numbers[atoms].tobytes() + np.round(pool.positions[atoms], 6).tobytes()).digest())
    return keys


def inherit(config: TrainConfig, pool, old_pool, old_parts: list[np.ndarray]) -> list[np.ndarray]:
    """The parts of ``pool`` given the parts of the smaller ``old_pool`` it contains.

    A potential trained further on a larger pool must never be tested on structures it trained
    on before: the earlier pool's structures stay in their earlier part (found by their numbers
    and positions), and only the new ones are split, by the preset's fractions and seed.
    """
    part_of: dict[bytes, int] = {}
    for part, indices in enumerate(old_parts):
        for key in structure_keys(old_pool.subset(indices)):
            # a structure held twice whose copies were split apart was trained on: training wins
            part_of[key] = min(part_of.get(key, part), part)
    keys = structure_keys(pool)
    missing = len(part_of) - len(set(keys) & set(part_of))
    if missing:
        raise SystemExit(f"{missing} structures of an earlier pool are not in {config.train}")
    new = np.array([b for b, k in enumerate(keys) if k not in part_of], dtype=int)
    new_parts = split_indices(config, pool.subset(new))
    parts = [[b for b, k in enumerate(keys) if part_of.get(k) == part] for part in range(3)]
    return [np.array(sorted(parts[p] + new[new_parts[p]].tolist()), dtype=int) for p in range(3)]


def chain_split(chain: list[TrainConfig]):
    """The last preset's pool and parts, each pool of ``chain`` (oldest first, each containing the
    one before) keeping the parts of the one before."""
    pool = load_dataset(chain[0].train)
    parts = split_indices(chain[0], pool)
    for config in chain[1:]:
        grown = load_dataset(config.train)
        parts = inherit(config, grown, pool, parts)
        pool = grown
    return pool, parts


def without_training_copies(pool, parts: list[np.ndarray]) -> list[np.ndarray]:
    """Drop from validation and test every structure identical to one in training.

    A pool can hold the same structure twice (a relaxation that converges within the steps after
    which the organic generator keeps a frame gives that frame and the final one, identical); a
    random split may put one copy in training and the other in a test set."""
    keys = structure_keys(pool)
    seen = {keys[b] for b in parts[0]}
    out = [parts[0]]
    for part, name in zip(parts[1:], ("validation", "test")):
        kept = np.array([b for b in part if keys[b] not in seen], dtype=int)
        if len(kept) < len(part):
            print(f"  {len(part) - len(kept)} {name} structures dropped: identical to training structures", flush=True)
        out.append(kept)
    return out


def preset_path(name: str, stage: int) -> Path:
    """The preset of a shipped potential's training stage."""
    return ROOT / "potentials" / (f"{name}.stage{stage}.yaml" if stage > 1 else f"{name}.yaml")


def same_pool(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def pool_chain(name: str, stage: int) -> list[TrainConfig]:
    """The presets of the stages up to ``stage`` where the pool grew, oldest first (stage 1's
    preset alone when no stage changed the pool)."""
    chain: list[TrainConfig] = []
    for n in range(1, stage + 1):
        preset = TrainConfig.from_yaml(preset_path(name, n))
        if not chain or not same_pool(preset.train, chain[-1].train):
            chain.append(preset)
    return chain


def write_splits(chain: list[TrainConfig], folder: Path) -> dict[str, Path]:
    """The last preset's train / valid / test split of its pool, as extxyz files (reused if
    present); with several presets in ``chain`` every earlier pool's structures keep their parts
    (see :func:`inherit`)."""
    files = {part: folder / f"{part}.extxyz" for part in ("train", "valid", "heldout_conformations")}
    if all(f.exists() for f in files.values()):
        return files
    pool, parts = chain_split(chain)
    parts = without_training_copies(pool, parts)
    for (part, path), indices in zip(files.items(), parts):
        pool.subset(indices).write(path)
        print(f"  {part}: {len(indices)} structures -> {path}", flush=True)
    return files


def device_name(device: str) -> str:
    """What trained: the GPU's name for a CUDA device, else the CPU's."""
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=sorted(PRESETS))
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget of each training loop")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for each trainer")
    parser.add_argument("--skip-peer", action="store_true", help="train atomml only")
    parser.add_argument("--collect", action="store_true", help="only gather the results of finished runs")
    parser.add_argument("--stage", type=int, default=1, help="training stage: N > 1 runs preset <name>.stageN.yaml")
    parser.add_argument("--stage2", action="store_const", const=2, dest="stage", help="the same as --stage 2")
    parser.add_argument("--device", help="torch device of the atomml trainer (default: the preset's)")
    parser.add_argument("--pool", type=Path, help="stage 1 only: train both from scratch on this larger pool (e.g. "
                        "the version-2 data), as a comparison: the result is reported, not shipped")
    args = parser.parse_args()
    if args.pool is not None and args.stage > 1:
        parser.error("--pool compares the two trainers from scratch: stage 1 only")

    name = PRESETS[args.which]
    preset = preset_path(name, args.stage)
    if args.stage > 1:
        args.skip_peer = True
    config = TrainConfig.from_yaml(preset)
    if args.pool is not None:
        config.train = str(args.pool.resolve())
    tag = f"-{args.pool.stem}" if args.pool is not None else ""  # the comparison's own folders and report
    run = ROOT / "runs" / "shipped" / name
    # a stage on a larger pool than stage 1's (version-2 data) splits into its own folder, the
    # structures of every earlier pool keeping their parts; a --pool comparison uses the split of
    # the stage that trained on that pool
    stage_of_pool = args.stage
    if args.pool is not None:
        stage_of_pool = max([n for n in range(2, 10) if preset_path(name, n).exists()
                             and same_pool(TrainConfig.from_yaml(preset_path(name, n)).train, args.pool)], default=1)
    chain = pool_chain(name, stage_of_pool)
    if not same_pool(chain[-1].train, config.train):  # a --pool no stage trained on
        chain.append(config)
    grown = len(chain) > 1
    data = run / ("data-" + Path(config.train).stem if grown else "data")
    data.mkdir(parents=True, exist_ok=True)
    print(f"[{name}] splitting {config.train}" + (" (earlier pools' structures keep their parts)" if grown else ""),
          flush=True)
    files = write_splits(chain, data)
    tests = {"heldout_conformations": str(files["heldout_conformations"]), **config.test_sets}

    values = config.to_dict()
    stage = f"atomml-stage{args.stage}" if args.stage > 1 else f"atomml{tag}"
    values.update(
        train=str(files["train"]), valid=str(files["valid"]), test_sets=tests, max_minutes=args.minutes,
        threads=args.threads, output=str(run / stage), progress=False, device=args.device or config.device,
    )
    (run / f"{stage}.yaml").write_text(json.dumps(values, indent=1))  # JSON is YAML
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    jobs = {} if args.collect else {
        "atomml": subprocess.Popen(
            [sys.executable, "-m", "atomml.cli", "train", str(run / f"{stage}.yaml"), "--no-progress"],
            cwd=ROOT, env=env, stdout=open(run / f"{stage}.log", "w"), stderr=subprocess.STDOUT,
        )
    }
    hp = config.hyperparameters
    if not args.skip_peer and not args.collect:
        peer_cmd = [
            sys.executable, str(ROOT / "scripts" / "train_torchmdnet_peer.py"),
            "--train", str(files["train"]), "--val", str(files["valid"]),
            *[a for k, v in tests.items() for a in ("--test", f"{k}={v}")],
            "--minutes", str(args.minutes), "--threads", str(args.threads), "--seed", str(config.seed),
            "--embedding-dimension", str(hp["hidden_channels"]), "--num-layers", str(hp["num_layers"]),
            "--num-rbf", str(hp["num_rbf"]), "--cutoff", str(hp["cutoff"]),
            "--batch-size", str(config.batch_size), "--lr", str(config.lr),
            "--workdir", str(run / f"torchmdnet{tag}"), "--output", str(run / f"torchmdnet{tag}.json"),
        ]
        (run / f"torchmdnet{tag}.json").unlink(missing_ok=True)
        jobs["torchmd-net"] = subprocess.Popen(peer_cmd, cwd=ROOT, env=env, stdout=open(run / f"torchmdnet{tag}.log", "w"),
                                               stderr=subprocess.STDOUT)
    started = time.time()
    while any(job.poll() is None for job in jobs.values()):
        time.sleep(30)
        running = [k for k, job in jobs.items() if job.poll() is None]
        print(f"[{name}] {time.time() - started:5.0f} s elapsed; running: {', '.join(running)} (logs in {run})", flush=True)
    failed = {k: job.returncode for k, job in jobs.items() if job.returncode}
    if failed:
        raise SystemExit(f"[{name}] failed: {failed}; see the logs in {run}")

    ours = json.loads((run / stage / "metrics.json").read_text())
    result = {"potential": name, "minutes_each": args.minutes, "threads_each": args.threads,
              "device": device_name(values["device"]), "atomml": ours}
    if not args.skip_peer:
        result["torchmd-net"] = json.loads((run / f"torchmdnet{tag}.json").read_text())
    if args.pool is not None:
        result["pool"] = str(args.pool)
    report_name = f"training_{args.which}_stage{args.stage}.json" if args.stage > 1 else \
        f"training_{args.which}_vs_torchmdnet{tag.replace('-', '_')}.json"
    out = ROOT / "data" / "benchmarks" / report_name
    # repo-relative paths: the report is committed and read on other machines
    out.write_text(json.dumps(result, indent=1).replace(str(ROOT) + os.sep, ""))
    if args.pool is not None:
        print(json.dumps({"comparison": str(out)}))
        return
    shipped = ROOT / "potentials" / f"{name}.safetensors"
    shutil.copyfile(ours["potential"], shipped)
    size = shipped.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SystemExit(f"{shipped} is {size / 2**20:.1f} MiB, over the 10 MB limit for shipped files")
    print(json.dumps({"shipped": str(shipped), "bytes": size, "comparison": str(out)}, indent=1))


if __name__ == "__main__":
    main()
