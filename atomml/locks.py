"""One writer per output: an advisory lock file beside every output a long job writes.

Two processes started on one output (two ``atomml md`` with the same ``-o``, two trainings
into one folder) would interleave their writes and splice the results silently. A job
therefore holds ``<output>.lock`` for as long as it writes: the file records the owner
(process id, host, start time, command line) so that the refusal can name it, and the lock
itself is a kernel ``flock`` on that file, released by the operating system when the owner
exits or is killed. A lock file left behind by a dead process is therefore never in force: it
is *stale* by construction and is simply taken over, without guessing from process ids
(which are reused) or ages.

The lock file is removed when the job ends. The usual flock caveat applies: a second process
may open the file just before it is removed, so after taking the lock a process checks that
the path still names the file it locked, and tries again if not.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputInUseError

SUFFIX = ".lock"


def lock_path(output: str | os.PathLike[str]) -> Path:
    """The lock file of ``output`` (a file or a folder): ``<output>.lock`` beside it."""
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def owner(output: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who holds ``output``'s lock now (the record its owner wrote), or None if nobody does."""
    import fcntl

    path = lock_path(output)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_record(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # a stale file: its owner is gone
    finally:
        os.close(fd)


def _read_record(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(record: dict[str, Any]) -> str:
    if not record:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("started", 0)))
    command = " ".join(record.get("command", [])) or "?"
    return f"process {record.get('pid', '?')} on {record.get('host', '?')} (started {started}: {command})"


@contextlib.contextmanager
def output_lock(output: str | os.PathLike[str], what: str = "output") -> Iterator[Path]:
    """Hold the lock of ``output`` for the duration of the block.

    Raises :class:`~atomml.errors.OutputInUseError`, naming the owner, if another process (or
    another block of this one) holds it. ``what`` names the output in that message ("MD
    trajectory", "training folder", ...).
    """
    import fcntl

    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read_record(fd)
            os.close(fd)
            raise OutputInUseError(
                f"{what} {output} is being written by {_describe(record)}; wait for that run to finish, "
                f"or write to another output. (The lock is {path}; it is released when its owner exits.)"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was removed by its previous owner after we opened it: retry
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": sys.argv}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # removed while still held, so no one can lock the old file meanwhile
        os.close(fd)
