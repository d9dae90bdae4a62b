"""Rewrite the headers of the shipped potentials so they hold no absolute paths (one-off).

    .venv/bin/python scripts/portable_potential_headers.py [--check]

Potentials trained before the trainer stored portable paths carry the training machine's
absolute paths in ``metadata`` (``training_config.train``, ``valid``, ``output``, ...). Each
such string becomes repository-relative (``atomml.training.config.portable_path`` with the
repository root), or the file name for a path outside it. The potential is loaded and saved
again with the new metadata: the tensors are written back unchanged, and the file gets a fresh
checksum over its header (format version 3). ``--check`` lists what would change and writes
nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from atomml.potential_file import load_potential, save_potential
from atomml.training.config import portable_path

ROOT = Path(__file__).resolve().parents[1]


def portable(value: Any, changes: list[tuple[str, str]]) -> Any:
    """``value`` with every absolute path string made portable; ``changes`` collects (old, new)."""
    if isinstance(value, dict):
        return {k: portable(v, changes) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, changes) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        new = portable_path(value, ROOT)
        changes.append((value, new))
        return new
    return value


def rewrite(path: Path, check: bool) -> list[tuple[str, str]]:
    potential = load_potential(path)
    changes: list[tuple[str, str]] = []
    potential.metadata = portable(potential.metadata, changes)
    if changes and not check:
        save_potential(potential, path)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="list the changes, write nothing")
    args = parser.parse_args()
    for path in sorted((ROOT / "potentials").glob("*.safetensors")):
        changes = rewrite(path, args.check)
        print(f"{path.relative_to(ROOT)}: {len(changes)} path(s) {'to rewrite' if args.check else 'rewritten'}")
        for old, new in changes:
            print(f"  {old} -> {new}")


if __name__ == "__main__":
    main()
