"""Potential files: weights in safetensors, with a JSON header describing the potential.

Layout: a safetensors file whose string metadata holds ``format`` ("atomml-potential"),
``format_version`` and ``header`` (JSON: architecture, hyperparameters, elements, cutoff,
units, atomic reference energies, energy scale/shift, energy terms, dtype, training-data
description, checksum). Loading reads the header, rebuilds the architecture and the energy
terms from their registries (:mod:`atomml.plugins`) by name and loads plain tensors: no code
from the file is ever executed (no pickle), and a name that no installed package registers is
an error.

One source of truth: the tensors hold the numbers the potential computes with, and the
hyperparameters and terms define its cutoff. The header repeats the element list, the
neighbour-list ``cutoff``, the reference energies and the energy scale and shift so that a
reader without torch can show them; loading refuses a file where a repeat differs from what it
repeats (the elements from ``hyperparameters.elements``, ``cutoff`` from the rebuilt
potential's, the energies from the stored tensors). Every field's type is checked, and a wrong
one is a :class:`~atomml.errors.PotentialFileError` that names it.

Format versions:

- 1: the architecture alone; ``weights_sha256`` covers the tensors only.
- 2: adds ``energy_terms``, a list of ``{"name", "config"}`` (:mod:`atomml.terms`) whose tensors
  are stored as ``terms.<k>.*``.
- 3 (written now): one ``sha256`` over the format name, the version, the canonical JSON of the
  header without ``sha256`` (sorted keys, no spaces, ASCII) and the tensors (name, dtype, shape
  and bytes of each, in name order). A changed digit anywhere in the file is refused as damage.

Versions 1 and 2 still load: their tensors are checked against ``weights_sha256``, their header
is type-checked and its repeats are checked as above, but an edit that keeps the header
consistent (a cutoff changed in both places) cannot be detected there; re-save such a file
(``save_potential(load_potential(path), path)``) to cover its header. The checksum detects
damage and edits; it is not a signature and does not prove who wrote a file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .errors import PotentialFileError
from .files import replacing
from .potential import MAX_Z, Potential
from .resources import resource_folder

FORMAT = "atomml-potential"
FORMAT_VERSION = 3  # the newest version this atomml reads, and the one it writes
SUFFIX = ".safetensors"
UNITS = {"energy": "eV", "length": "Angstrom"}


# -- checksums ---------------------------------------------------------------------------------
def _digest_tensors(digest: Any, tensors: dict[str, torch.Tensor]) -> None:
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def _weights_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """The ``weights_sha256`` of versions 1 and 2: the tensors only."""
    digest = hashlib.sha256()
    _digest_tensors(digest, tensors)
    return digest.hexdigest()


def _file_checksum(version: int, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """The ``sha256`` of version 3: format, version, header (without ``sha256``) and tensors."""
    covered = {"format": FORMAT, "format_version": version, "header": {k: v for k, v in header.items() if k != "sha256"}}
    digest = hashlib.sha256(json.dumps(covered, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode())
    _digest_tensors(digest, tensors)
    return digest.hexdigest()


# -- writing -----------------------------------------------------------------------------------
def save_potential(potential: Potential, path: str | os.PathLike[str]) -> Path:
    """Write ``potential`` to ``path`` (``.safetensors`` is appended if missing)."""
    from ase.data import chemical_symbols

    from . import __version__
    from .terms import spec

    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_name(path.name + SUFFIX)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in potential.state_dict().items()}
    header = {
        "architecture": potential.architecture,
        "hyperparameters": potential.hyperparameters,
        "elements": [chemical_symbols[z] for z in potential.elements],
        "cutoff": potential.cutoff,
        "units": UNITS,
        "atomic_energies": {
            chemical_symbols[z]: float(e) for z, e in zip(potential.elements, potential.atomic_energies.tolist())
        },
        "energy_scale": float(potential.energy_scale),
        "energy_shift": float(potential.energy_shift),
        "energy_terms": [spec(term) for term in potential.terms],
        "dtype": str(potential.dtype).replace("torch.", ""),
        "metadata": potential.metadata,
        "atomml_version": __version__,
    }
    return _write(path, header, tensors, f"cannot save {path}")


def _write(path: Path, header: dict[str, Any], tensors: dict[str, torch.Tensor], where: str) -> Path:
    """Write ``header`` (checked, with a fresh checksum) and ``tensors`` to ``path`` in the
    newest format version."""
    from safetensors.torch import save_file

    header = json.loads(json.dumps(header))  # checksum what a reader will parse (tuples -> lists, ...)
    check_header(header, where)  # never write a file that loading refuses
    header["sha256"] = _file_checksum(FORMAT_VERSION, header, tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "header": json.dumps(header)}
    with replacing(path) as tmp:  # never leave a half-written file under the real name
        save_file(tensors, str(tmp), metadata=metadata)
    os.chmod(path, 0o644)  # safetensors creates files readable by the owner only
    return path


def replace_metadata(path_or_name: str | os.PathLike[str], metadata: dict[str, Any]) -> Path:
    """Give a potential file new ``metadata``, keeping its tensors and its other header fields
    as they are (byte for byte) and writing a fresh checksum in the newest format version. The
    file is verified first: a damaged one is refused, not re-signed."""
    path = resolve(path_or_name)
    version, header = _version_and_header(path, _metadata(path))
    tensors = _tensors(path)
    _verify_checksum(path, version, header, tensors)
    header = {k: v for k, v in header.items() if k not in ("sha256", "weights_sha256")}
    return _write(path, {**header, "metadata": metadata}, tensors, f"cannot rewrite {path}")


# -- finding -----------------------------------------------------------------------------------
def shipped_potentials() -> dict[str, Path]:
    """Names and paths of the potentials shipped with atomml."""
    folder = resource_folder("potentials")
    return {entry.name[: -len(SUFFIX)]: entry for entry in sorted(folder.glob(f"*{SUFFIX}"))}


def resolve(path_or_name: str | os.PathLike[str]) -> Path:
    """A file path, or the name of a shipped potential; otherwise an error naming the closest
    shipped names (a typo) or the potential files inside (a directory)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = shipped_potentials()
    if str(path_or_name) in shipped:
        return shipped[str(path_or_name)]
    if path.is_dir():
        inside = sorted(entry.name for entry in path.glob(f"*{SUFFIX}"))
        what = f"it holds {', '.join(inside)}: pass one of them" if inside else f"it holds no {SUFFIX} file"
        raise PotentialFileError(f"{path} is a directory, not a potential file; {what}")
    stem = path.name.removesuffix(SUFFIX)
    close = difflib.get_close_matches(stem, list(shipped), n=3, cutoff=0.6)
    guess = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise FileNotFoundError(
        f"no potential file {str(path_or_name)!r} and no shipped potential of that name; "
        f"{guess}shipped potentials: {sorted(shipped)}"
    )


# -- reading -----------------------------------------------------------------------------------
def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise PotentialFileError(
            f"{path}: not a readable safetensors file ({exc}); the file is damaged or truncated — "
            "copy it again or re-export the potential"
        ) from exc
    if meta.get("format") != FORMAT:
        raise PotentialFileError(
            f"{path}: a safetensors file, but not an atomml potential (no '{FORMAT}' header); "
            "convert the model with atomml's import functions first"
        )
    return meta


def _version_and_header(path: Path, meta: dict[str, str]) -> tuple[int, dict[str, Any]]:
    try:
        version = int(meta.get("format_version", ""))
        header = json.loads(meta["header"])
    except (ValueError, KeyError) as exc:
        raise PotentialFileError(f"{path}: the atomml header is damaged ({exc}); the file cannot be used") from exc
    if version > FORMAT_VERSION:
        written_by = header.get("atomml_version", "?") if isinstance(header, dict) else "?"
        raise PotentialFileError(
            f"{path}: written in potential format version {version} by atomml {written_by}; "
            f"this atomml reads versions up to {FORMAT_VERSION}. Upgrade atomml to load it."
        )
    if version < 1:
        raise PotentialFileError(f"{path}: format_version {version} does not exist (1 to {FORMAT_VERSION}); the file is damaged")
    if not isinstance(header, dict):
        raise PotentialFileError(
            f"{path}: the atomml header is a JSON {type(header).__name__}, not an object; the file is damaged"
        )
    return version, header


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise PotentialFileError(f"{path}: the weights cannot be read ({exc}); the file is damaged") from exc


def _verify_checksum(path: Path, version: int, header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    if version >= 3:
        stored, expected, what = header.get("sha256"), _file_checksum(version, header, tensors), "header and weights"
    else:
        stored, expected, what = header.get("weights_sha256"), _weights_checksum(tensors), "weights"
    if stored != expected:
        raise PotentialFileError(
            f"{path}: the {what} do not match their checksum; the file is damaged or was edited — "
            "copy it again or re-export the potential"
        )


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The checked header (with ``format_version`` and ``energy_terms`` filled in) and tensors."""
    version, header = _version_and_header(path, _metadata(path))
    tensors = _tensors(path)
    _verify_checksum(path, version, header, tensors)
    check_header(header, str(path))
    return {**header, "energy_terms": header.get("energy_terms", []), "format_version": version}, tensors


def read_header(path_or_name: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a potential file: format, version, checksum and field types checked."""
    path = resolve(path_or_name)
    return _read(path)[0]


# -- the header's fields -----------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive(value: Any) -> bool:
    return _is_number(value) and value > 0


def _is_atomic_numbers(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(z, int) and not isinstance(z, bool) and 1 <= z <= MAX_Z for z in value)
        and len(set(value)) == len(value)
    )


def _is_symbols(value: Any) -> bool:
    from ase.data import chemical_symbols

    return (
        isinstance(value, list)
        and all(isinstance(s, str) and s in chemical_symbols[1:] for s in value)
        and len(set(value)) == len(value)
    )


def _is_float_dtype(value: Any) -> bool:
    dtype = getattr(torch, value, None) if isinstance(value, str) else None
    return isinstance(dtype, torch.dtype) and dtype.is_floating_point


def _is_terms(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("config", {}), dict) for t in value
    )


# field: (check, what it must be, required)
FIELDS: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
    "architecture": (lambda v: isinstance(v, str) and v != "", "an architecture name", True),
    "hyperparameters": (lambda v: isinstance(v, dict), "an object of the architecture's hyperparameters", True),
    "hyperparameters.elements": (_is_atomic_numbers, f"a list of distinct atomic numbers (1 to {MAX_Z})", True),
    "hyperparameters.cutoff": (_is_positive, "a positive number (Å)", True),
    "elements": (_is_symbols, "a list of distinct chemical symbols", True),
    "cutoff": (_is_positive, "a positive number (Å)", True),
    "units": (lambda v: v == UNITS, f"{UNITS}, the units atomml stores", True),
    "atomic_energies": (
        lambda v: isinstance(v, dict) and all(_is_number(e) for e in v.values()), "an object of finite energies (eV)", True,
    ),
    "energy_scale": (_is_number, "a finite number", True),
    "energy_shift": (_is_number, "a finite number (eV)", True),
    "energy_terms": (_is_terms, "a list of objects with a 'name' and a 'config' object", False),
    "dtype": (_is_float_dtype, "a floating-point torch dtype such as 'float32' or 'float64'", True),
    "metadata": (lambda v: isinstance(v, dict), "an object", False),
    # read by atomml md (its default time step) and by the calculators (a warning for radicals)
    "metadata.recommended_timestep_fs": (_is_positive, "a positive number (fs)", False),
    "metadata.closed_shell_only": (lambda v: isinstance(v, bool), "true or false", False),
    "atomml_version": (lambda v: isinstance(v, str), "a version string", False),
}


def _field(header: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """(present, value) of a field, ``a.b`` reaching into the object ``a``."""
    value: Any = header
    for key in dotted.split("."):
        if key not in value:
            return False, None
        value = value[key]
    return True, value


def check_header(header: dict[str, Any], where: str) -> None:
    """Refuse a header whose fields have the wrong type or whose repeats contradict each other
    (``where`` starts the message: the file, or what is being done)."""
    from ase.data import chemical_symbols

    for dotted, (check, expected, required) in FIELDS.items():
        present, value = _field(header, dotted)
        if not present and required:
            raise PotentialFileError(f"{where}: the header has no '{dotted}'; the file is damaged or not written by atomml")
        if present and not check(value):
            raise PotentialFileError(
                f"{where}: header field '{dotted}' is {value!r}, not {expected}; the file is damaged "
                "or not written by atomml — re-export the potential"
            )
    implied = [chemical_symbols[z] for z in header["hyperparameters"]["elements"]]
    if header["elements"] != implied:
        raise PotentialFileError(
            f"{where}: header 'elements' {header['elements']} disagree with 'hyperparameters.elements' "
            f"{header['hyperparameters']['elements']} ({implied}); the file was edited — re-export the potential"
        )
    unknown = sorted(set(header["atomic_energies"]) - set(implied))
    if unknown:
        raise PotentialFileError(
            f"{where}: atomic energies given for {unknown}, which are not among the elements {implied}; "
            "the file was edited — re-export the potential"
        )


def _check_repeats(potential: Potential, header: dict[str, Any], path: Path) -> None:
    """The header's copies of the cutoff and the energies must equal what loading computes with."""
    from ase.data import chemical_symbols

    energies = {chemical_symbols[z]: e for z, e in zip(potential.elements, potential.atomic_energies.tolist())}
    actual = {  # field: (what loading uses, where that comes from)
        "cutoff": (potential.cutoff, "its hyperparameters and energy terms give"),
        "energy_scale": (float(potential.energy_scale), "the stored tensors hold"),
        "energy_shift": (float(potential.energy_shift), "the stored tensors hold"),
        "atomic_energies": (energies, "the stored tensors hold"),
    }
    claimed = {**header, "atomic_energies": {s: header["atomic_energies"].get(s, 0.0) for s in energies}}
    for field, (value, source) in actual.items():
        if claimed[field] != value:
            raise PotentialFileError(
                f"{path}: the header's '{field}' is {claimed[field]}, but {source} {value}; the header "
                "was edited — copy the file again or re-export the potential"
            )


# -- loading -----------------------------------------------------------------------------------
def is_long_range(header: dict[str, Any]) -> bool:
    """Whether the potential a header describes has a long-range energy term (e.g. Coulomb)."""
    from .terms import is_long_range as term_is_long_range

    return any(term_is_long_range(entry["name"]) for entry in header.get("energy_terms", []))


def _build(header: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> Potential:
    """The potential a checked header describes, in its stored dtype, with the stored tensors."""
    from ase.data import atomic_numbers

    from .models import create
    from .terms import from_spec

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
        potential.to(getattr(torch, header["dtype"]))
        potential.load_state_dict(tensors, strict=True)
    except ImportError as exc:  # a plugin package that names this architecture or term is broken
        raise PotentialFileError(f"{path}: {exc}") from exc
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise PotentialFileError(f"{path}: the header and weights do not describe a valid potential ({exc})") from exc
    return potential


def load_potential(
    path_or_name: str | os.PathLike[str],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Potential:
    """Load a potential from a file or by shipped name, without executing code from it."""
    path = resolve(path_or_name)
    header, tensors = _read(path)
    potential = _build(header, tensors, path)
    _check_repeats(potential, header, path)
    return potential.to(device=device, dtype=dtype or potential.dtype).eval()
