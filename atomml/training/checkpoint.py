"""Training checkpoints that refuse to be resumed when damaged or foreign.

A checkpoint is one ``torch.save`` file of plain tensors, numbers and strings (loaded with
``weights_only=True``: loading never executes code). ``torch.load`` checks neither the zip's
CRCs nor anything else, so a flipped byte in a weight or an edited step count would be resumed
silently: the file therefore carries a SHA-256 over everything in it (every tensor's name,
dtype, shape and bytes, every number and string), checked before anything is used. A file
from another run is recognised by the run's fingerprint (:func:`run_fingerprint`): the
settings, the potential that was built and the data.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Dataset
from ..data.dataset import ARRAYS
from ..errors import CheckpointError, ResumeMismatchError
from ..files import replacing

NAME = "checkpoint.pt"
VERSION = 2  # 2: with the checksum "sha256" and the fingerprint's parts named
RESTART = "delete it to start afresh, or restore an intact copy"


def digest(value: Any) -> str:
    """SHA-256 of nested dicts, lists and tuples of tensors, numbers and strings."""
    sha = hashlib.sha256()
    _feed(sha, "", value)
    return sha.hexdigest()


def _feed(sha: Any, name: str, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        sha.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        sha.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        sha.update(f"{name}|dict|{len(value)}|".encode())
        for key in sorted(value, key=repr):
            _feed(sha, f"{name}/{key!r}", value[key])
    elif isinstance(value, (list, tuple)):
        sha.update(f"{name}|{type(value).__name__}|{len(value)}|".encode())
        for k, item in enumerate(value):
            _feed(sha, f"{name}[{k}]", item)
    else:
        sha.update(f"{name}|{type(value).__name__}|{value!r}|".encode())


def save(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` with its checksum; a kill mid-write leaves the previous file in place."""
    with replacing(path) as tmp:
        torch.save({**data, "version": VERSION, "sha256": digest(data)}, tmp)


def load(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint at ``path``, after checking that it is intact and of this version.

    Raises :class:`~atomml.errors.CheckpointError` for an unreadable, truncated, foreign,
    damaged or differently versioned file."""
    try:
        data = torch.load(path, weights_only=True, map_location=device)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is damaged or not an atomml checkpoint ({first_line}); {RESTART}") from None
    if not isinstance(data, dict) or "version" not in data:
        raise CheckpointError(f"{path} is not an atomml checkpoint; {RESTART}")
    if data["version"] != VERSION:
        raise CheckpointError(
            f"{path} is a version {data['version']} checkpoint and this atomml reads version {VERSION}; "
            "delete it to start afresh, or resume with the atomml that wrote it"
        )
    stored = data.pop("sha256", None)
    data.pop("version")
    if stored != digest(data):
        raise CheckpointError(f"{path} is damaged: its contents do not match its checksum; {RESTART}")
    return data


def stamp(path: Path) -> tuple[int, int, int] | None:
    """Identity of the file now at ``path`` (None if absent): each save replaces the file, so a
    changed stamp means another run wrote a checkpoint since this one was read."""
    try:
        s = os.stat(path)
    except FileNotFoundError:
        return None
    return s.st_ino, s.st_size, s.st_mtime_ns


def run_fingerprint(settings: str, potential: Any, dtype: str, data: list[Dataset]) -> dict[str, str]:
    """What defines a run, in named parts that a mismatch can name: ``settings`` (the config's
    own fingerprint), the ``potential`` that was built (architecture, hyperparameters, elements,
    energy terms, dtype) and the training and validation ``data`` (their arrays, so an edited
    file or another in-memory dataset counts, not only the path)."""
    from ..terms import spec

    model = {
        "architecture": potential.architecture, "hyperparameters": potential.hyperparameters,
        "elements": [int(z) for z in potential.elements], "terms": [spec(t) for t in potential.terms], "dtype": dtype,
    }  # fmt: skip
    sha = hashlib.sha256()
    for dataset in data:
        for name in ARRAYS:
            array = np.ascontiguousarray(getattr(dataset, name))
            sha.update(f"{name}|{array.dtype}|{array.shape}|".encode())
            sha.update(array.tobytes())
    return {
        "settings": settings,
        "potential": hashlib.sha256(json.dumps(model, sort_keys=True, default=str).encode()).hexdigest()[:16],
        "data": sha.hexdigest()[:16],
    }


PARTS = {
    "settings": "settings (model, data files, loss, optimiser, seed or dtype)",
    "potential": "potential (architecture, hyperparameters, elements, energy terms or dtype)",
    "data": "training or validation data",
}


def check_fingerprint(path: Path, saved: Any, current: dict[str, str]) -> None:
    """Refuse a checkpoint of another run, naming what differs and how to start over."""
    saved = saved if isinstance(saved, dict) else {}
    differ = [PARTS[k] for k in current if saved.get(k) != current[k]]
    if differ:
        raise ResumeMismatchError(
            f"{path} was written by a run with different {'; '.join(differ)}: use another output folder, "
            "or delete the checkpoint to start afresh"
        )
