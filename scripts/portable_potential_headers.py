"""Rewrite the headers of the shipped potentials: no absolute paths, and how to run them.

    .venv/bin/python scripts/portable_potential_headers.py [--check]

Potentials trained before the trainer stored portable paths carry the training machine's
absolute paths in ``metadata`` (``training_config.train``, ``valid``, ``output``, ...). Each
such string becomes repository-relative (``atomml.training.config.portable_path`` with the
repository root), or the file name for a path outside it.

Each shipped potential also gets the run settings in :data:`RUN_METADATA` (the time step that
``atomml md`` uses unless told otherwise, and whether the potential knows closed shells only),
with the reason for each value beside it.

Only the header's ``metadata`` changes (``atomml.potential_file.replace_metadata``): the
tensors and every other header field stay byte for byte, and the file gets a fresh checksum
over its header (format version 3). Running it again changes nothing. ``--check`` lists what
would change and writes nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from atomml.potential_file import read_header, replace_metadata
from atomml.training.config import portable_path

ROOT = Path(__file__).resolve().parents[1]

# metadata keys per shipped potential, each value with the evidence for it
RUN_METADATA: dict[str, dict[str, Any]] = {
    "tensornet-organic-gfn2": {
        # its model card: "MD of small organic molecules ... (0.5 fs steps)"; its training frames
        # come from GFN2-xTB MD at 0.5 fs (scripts/generate_organic_data.py), and X-H vibrations
        # (~11 fs period) need about 0.5 fs without constraints
        "recommended_timestep_fs": 0.5,
        # scripts/generate_organic_data.py refuses any molecule with an odd electron count
        # (check_lists: "only closed shells are labelled"): it has never seen a radical
        "closed_shell_only": True,
    },
    # fcc metals, trained on EMT Langevin MD at 2 fs (scripts/generate_metals_data.py,
    # MD_TIMESTEP_FS); the card's speed is quoted at 2 fs
    "tensornet-metals-emt": {"recommended_timestep_fs": 2.0},
    # Cu, trained on EMT Langevin snapshots at 2 fs (scripts/train_demo_potential.py)
    "schnet-cu-emt-demo": {"recommended_timestep_fs": 2.0},
}


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
    changes: list[tuple[str, str]] = []
    metadata = portable(read_header(path).get("metadata", {}), changes)
    for key, value in RUN_METADATA.get(path.stem, {}).items():
        if metadata.get(key) != value:
            changes.append((f"{key}: {metadata.get(key)!r}", repr(value)))
            metadata[key] = value
    if changes and not check:
        replace_metadata(path, metadata)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="list the changes, write nothing")
    args = parser.parse_args()
    for path in sorted((ROOT / "potentials").glob("*.safetensors")):
        changes = rewrite(path, args.check)
        print(f"{path.relative_to(ROOT)}: {len(changes)} change(s) {'to make' if args.check else 'made'}")
        for old, new in changes:
            print(f"  {old} -> {new}")


if __name__ == "__main__":
    main()
