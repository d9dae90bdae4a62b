"""Potential files: weights in safetensors, with a JSON header describing the potential.

Layout: a safetensors file whose string metadata holds ``format`` ("atomml-potential"),
``format_version`` and ``header`` (JSON: architecture, hyperparameters, elements, cutoff,
units, atomic reference energies, energy scale/shift, energy terms, training-data description,
checksum of the weights). Loading reads the header, rebuilds the architecture and the energy
terms from their registries (:mod:`atomml.plugins`) by name and loads plain tensors: no code
from the file is ever executed (no pickle), and a name that no installed package registers is
an error.

Format versions: 1, the architecture alone; 2 adds ``energy_terms``, a list of
``{"name", "config"}`` (:mod:`atomml.terms`) whose tensors are stored as ``terms.<k>.*``. A
potential without terms is written as version 1, which every atomml release reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .errors import PotentialFileError
from .files import replacing
from .potential import Potential
from .resources import resource_folder

FORMAT = "atomml-potential"
FORMAT_VERSION = 2  # the newest version this atomml reads and writes
SUFFIX = ".safetensors"


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def save_potential(potential: Potential, path: str | os.PathLike[str]) -> Path:
    """Write ``potential`` to ``path`` (``.safetensors`` is appended if missing)."""
    from ase.data import chemical_symbols
    from safetensors.torch import save_file

    from . import __version__

    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
    from .terms import spec

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in potential.state_dict().items()}
    terms = [spec(term) for term in potential.terms]
    header = {
        "architecture": potential.architecture,
        "hyperparameters": potential.hyperparameters,
        "elements": [chemical_symbols[z] for z in potential.elements],
        "cutoff": potential.cutoff,
        "units": {"energy": "eV", "length": "Angstrom"},
        "atomic_energies": {
            chemical_symbols[z]: float(e) for z, e in zip(potential.elements, potential.atomic_energies.tolist())
        },
        "energy_scale": float(potential.energy_scale),
        "energy_shift": float(potential.energy_shift),
        "energy_terms": terms,
        "dtype": str(potential.dtype).replace("torch.", ""),
        "metadata": potential.metadata,
        "atomml_version": __version__,
        "weights_sha256": _checksum(tensors),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:  # never leave a half-written file under the real name
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION if terms else 1), "header": json.dumps(header)})
    os.chmod(path, 0o644)  # safetensors creates files readable by the owner only
    return path


def shipped_potentials() -> dict[str, Path]:
    """Names and paths of the potentials shipped with atomml."""
    folder = resource_folder("potentials")
    return {entry.name[: -len(SUFFIX)]: entry for entry in sorted(folder.glob(f"*{SUFFIX}"))}


def resolve(path_or_name: str | os.PathLike[str]) -> Path:
    """A file path, or the name of a shipped potential."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = shipped_potentials()
    if str(path_or_name) in shipped:
        return shipped[str(path_or_name)]
    raise FileNotFoundError(
        f"no potential file {str(path_or_name)!r} and no shipped potential of that name; "
        f"shipped potentials: {sorted(shipped)}"
    )


def read_header(path_or_name: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a potential file, checked for format and version."""
    from safetensors import safe_open

    path = resolve(path_or_name)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for bad files
        raise PotentialFileError(
            f"{path}: not a readable safetensors file ({exc}); the file is damaged or truncated — "
            "copy it again or re-export the potential"
        ) from exc
    if meta.get("format") != FORMAT:
        raise PotentialFileError(
            f"{path}: a safetensors file, but not an atomml potential (no '{FORMAT}' header); "
            "convert the model with atomml's import functions first"
        )
    try:
        version = int(meta.get("format_version", ""))
        header = json.loads(meta["header"])
    except (ValueError, KeyError) as exc:
        raise PotentialFileError(f"{path}: the atomml header is damaged ({exc}); the file cannot be used") from exc
    if version > FORMAT_VERSION:
        raise PotentialFileError(
            f"{path}: written in potential format version {version} by atomml {header.get('atomml_version', '?')}; "
            f"this atomml reads versions up to {FORMAT_VERSION}. Upgrade atomml to load it."
        )
    header["format_version"] = version
    header.setdefault("energy_terms", [])
    return header


def is_long_range(header: dict[str, Any]) -> bool:
    """Whether the potential a header describes has a long-range energy term (e.g. Coulomb)."""
    from .terms import is_long_range as term_is_long_range

    return any(term_is_long_range(entry["name"]) for entry in header.get("energy_terms", []))


def load_potential(
    path_or_name: str | os.PathLike[str],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Potential:
    """Load a potential from a file or by shipped name, without executing code from it."""
    from ase.data import atomic_numbers
    from safetensors.torch import load_file

    from .models import create
    from .terms import from_spec

    path = resolve(path_or_name)
    header = read_header(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise PotentialFileError(f"{path}: the weights cannot be read ({exc}); the file is damaged") from exc
    if _checksum(tensors) != header.get("weights_sha256"):
        raise PotentialFileError(f"{path}: the weights do not match their checksum; the file is damaged — copy it again")
    try:
        potential = create(
            header["architecture"],
            atomic_energies={atomic_numbers[s]: e for s, e in header["atomic_energies"].items()},
            energy_scale=header["energy_scale"],
            energy_shift=header["energy_shift"],
            metadata=header.get("metadata"),
            terms=[from_spec(entry) for entry in header["energy_terms"]],
            **header["hyperparameters"],
        )
        # in the stored dtype before loading: float64 weights loaded into float32 would be rounded
        potential.to(getattr(torch, header.get("dtype", "float32")))
        potential.load_state_dict(tensors, strict=True)
    except ImportError as exc:  # a plugin package that names this architecture or term is broken
        raise PotentialFileError(f"{path}: {exc}") from exc
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise PotentialFileError(f"{path}: the header and weights do not describe a valid potential ({exc})") from exc
    stored = getattr(torch, header.get("dtype", "float32"))
    return potential.to(device=device, dtype=dtype or stored).eval()
