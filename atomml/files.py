"""Files that are either whole or absent.

Every write goes to a temporary name beside the target and replaces it in one ``os.replace``,
so a job killed mid-write leaves the previous version (or nothing) under the real name: the
resume logic of MD, training, free energies and data generation relies on it. The temporary
name carries the process id, so workers writing side by side never share one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; it replaces ``path`` when the
    block ends without an error and is removed when it raises."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any, indent: int = 1) -> Path:
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def concatenate(paths: Iterable[str | os.PathLike[str]], target: str | os.PathLike[str]) -> Path:
    """``target`` becomes the files of ``paths`` one after another (extxyz frames simply follow
    each other)."""
    with replacing(target) as tmp, open(tmp, "wb") as out:
        for path in paths:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, out)
    return Path(target)
