"""The record that lets an MD run resume, and refuses to resume another run's output.

After each frame an engine replaces ``<trajectory>.state.json`` (atomically, one file) with:

- ``fingerprint``: everything that defines the trajectory except its length: engine, potential
  (a hash of its weights and architecture, or of a foreign calculator's class and parameters),
  precision, structure (atomic numbers, periodicity, starting cell and positions, per-atom
  charges), total charge and the MD settings other than ``steps`` and the stopping rules;
- ``state``: the engine's dynamical state at full precision (float64 arrays as base64 bytes,
  or OpenMM's XML, which writes 17 digits), and the Langevin random stream where the engine
  can save it, so that a resumed run continues where the uninterrupted one would have gone;
- the step reached and the byte sizes of trajectory and log at that frame;
- ``sha256`` over all of the above, so a damaged record is refused instead of trusted.

Resuming checks the record and the fingerprint before touching the trajectory: another
potential, structure, charge or precision is refused with :class:`ResumeMismatchError` naming
what differs; a damaged, foreign or pre-fingerprint record with :class:`CheckpointError`. An
engine holds the output's lock (:mod:`atomml.locks`) for the whole run, so no other process
writes between a frame and its record.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from ..errors import CheckpointError, ResumeMismatchError
from ..files import write_json
from ..potential import Potential

if TYPE_CHECKING:  # frames imports npt, which imports this module
    from .frames import MDSettings

FORMAT = "atomml-md-state"
VERSION = 2  # 1: settings, step and sizes only (resumed from the 8-digit trajectory text)
START_OVER = "start over with --overwrite (restart=False), or write to another output name"
# settings that do not change the trajectory: its length and the rules that stop a blown-up run
NOT_FINGERPRINTED = ("steps", "max_temperature", "max_forces_std")


def state_path(trajectory: Path) -> Path:
    return trajectory.with_name(trajectory.name + ".state.json")


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def _array_sha256(array: Any, dtype: Any = np.float64) -> str:
    array = np.ascontiguousarray(array, dtype=dtype)
    return _sha256(str(array.shape).encode(), array.tobytes())


def potential_identity(potential: Potential) -> str:
    """A hash of what makes ``potential`` compute what it computes: architecture,
    hyperparameters, elements, cutoff, energy terms and every tensor (in float64, so the
    same weights hash alike in any dtype; ``torch.compile``'s wrapper is looked through)."""
    from ..terms import spec

    def describe(term: Any) -> Any:
        try:
            return spec(term)
        except ValueError:  # an unregistered term used in memory: its class stands for it
            return type(term).__qualname__

    header = {
        "architecture": potential.architecture,
        "hyperparameters": potential.hyperparameters,
        "elements": potential.elements,
        "cutoff": potential.architecture_cutoff,
        "terms": [describe(term) for term in potential.terms],
    }
    parts = [json.dumps(header, sort_keys=True, default=str).encode()]
    for name, tensor in sorted(potential.state_dict().items()):
        t = tensor.detach().cpu()
        t = t.double() if t.is_floating_point() else t
        parts += [name.replace("_orig_mod.", "").encode(), _array_sha256(t.numpy(), t.numpy().dtype).encode()]
    return _sha256(*parts)


def calculator_identity(calculator: Any) -> tuple[str, str]:
    """(potential hash, precision) of an ASE calculator: an atomml calculator by its potential
    and dtype; any other by its class and, as far as it can say, its parameters."""
    potential = getattr(calculator, "potential", None)
    if isinstance(potential, Potential):
        return potential_identity(potential), str(calculator.dtype).replace("torch.", "")
    cls = type(calculator)
    try:
        parameters = calculator.todict()
    except Exception:  # noqa: BLE001 - best effort: a calculator that cannot describe itself
        parameters = {}
    described = json.dumps({"class": f"{cls.__module__}.{cls.__qualname__}", "parameters": parameters}, sort_keys=True, default=str)
    return _sha256(described.encode()), "n/a"


def total_charge(atoms: Atoms) -> str:
    """The total charge as the calculators read it (``info["charge"]``, else the sum of the
    initial charges, else 0), as text so that any value, valid or not, compares exactly."""
    if "charge" in atoms.info:
        value = atoms.info["charge"]
    elif atoms.has("initial_charges"):
        value = atoms.get_initial_charges().sum()
    else:
        value = 0.0
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return repr(value)


def fingerprint(engine: str, atoms: Atoms, potential: str, dtype: str, settings: MDSettings) -> dict[str, Any]:
    """Everything that defines a run but its length (see the module docstring)."""
    return {
        "engine": engine,
        "potential": potential,
        "dtype": dtype,
        "atoms": len(atoms),
        "elements": _array_sha256(atoms.numbers, np.int64),
        "pbc": [bool(p) for p in atoms.pbc],
        "cell": _array_sha256(atoms.cell.array),
        "positions": _array_sha256(atoms.positions),
        "initial_charges": _array_sha256(atoms.get_initial_charges()) if atoms.has("initial_charges") else None,
        "charge": total_charge(atoms),
        # (unset options, None, are left out: a record from before an option existed still matches)
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k not in NOT_FINGERPRINTED and v is not None},
    }


_DIFFERENCES = {
    "engine": lambda old, new: f"it was run with the {old} engine, this run uses {new}",
    "potential": lambda old, new: "the potential differs",
    "dtype": lambda old, new: f"the precision differs ({old} then, {new} now)",
    "atoms": lambda old, new: f"it was run on a structure of {old} atoms, this one has {new}",
    "elements": lambda old, new: "the elements differ",
    "pbc": lambda old, new: f"the periodicity differs ({old} then, {new} now)",
    "cell": lambda old, new: "the starting cell differs",
    "positions": lambda old, new: "the starting positions differ",
    "initial_charges": lambda old, new: "the per-atom (initial) charges differ",
    "charge": lambda old, new: f"the total charge differs ({old} then, {new} now)",
    "settings": lambda old, new: "the MD settings differ ("
    + ", ".join(f"{k}: {old.get(k)} then, {new.get(k)} now" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
    + ")",
}
_STRUCTURE_DETAILS = ("elements", "pbc", "cell", "positions", "initial_charges")  # moot once the atom count differs


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words."""
    found = []
    for key, say in _DIFFERENCES.items():
        if old.get(key) != new.get(key) and not (key in _STRUCTURE_DETAILS and old.get("atoms") != new.get("atoms")):
            found.append(say(old.get(key), new.get(key)))
    return found


def encode(array: np.ndarray) -> dict[str, Any]:
    """A float64 array as JSON: shape and raw bytes (base64), so it comes back bit for bit."""
    array = np.ascontiguousarray(array, dtype="<f8")
    return {"shape": list(array.shape), "float64": base64.b64encode(array.tobytes()).decode()}


def decode(entry: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(entry["float64"], validate=True), dtype="<f8").reshape(entry["shape"]).copy()


def _checksum(body: dict[str, Any]) -> str:
    return _sha256(json.dumps(body, sort_keys=True).encode())


def write_run_state(
    path: Path, fingerprint: dict[str, Any], step: int, trajectory: Path, log: Path, state: dict[str, Any], **extra: Any
) -> None:
    """Replace the record at ``path`` (atomically) after the frame of ``step``."""
    body = {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": fingerprint,
        "step": step,
        "trajectory_bytes": trajectory.stat().st_size,
        "log_bytes": log.stat().st_size,
        "state": state,
        **extra,
    }
    write_json(path, {**body, "sha256": _checksum(body)})


def read_run_state(path: Path, fingerprint: dict[str, Any], trajectory: Path) -> dict[str, Any]:
    """The record of an earlier run on ``trajectory``, checked whole and refused if that run
    was another one (see the module docstring)."""
    record = _read_record(path)
    found = differences(record["fingerprint"], fingerprint)
    if found:
        raise ResumeMismatchError(f"{trajectory} belongs to another run: {'; '.join(found)}. To run this one, {START_OVER}.")
    return record


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the resume state cannot be read ({exc}); {START_OVER}.") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        if isinstance(record, dict) and {"settings", "step"} <= set(record):
            raise CheckpointError(
                f"{path} was written by an older atomml, which recorded neither the run's identity nor its exact "
                f"state, so resuming could continue another run; {START_OVER}."
            )
        raise CheckpointError(f"{path} is not an atomml MD resume state; {START_OVER}.")
    if not isinstance(record.get("version"), int) or record["version"] > VERSION:
        raise CheckpointError(f"{path} was written by a newer atomml (state version {record.get('version')}); upgrade atomml, or {START_OVER}.")
    body = {k: v for k, v in record.items() if k != "sha256"}
    if record.get("sha256") != _checksum(body):
        raise CheckpointError(f"{path}: the resume state does not match its checksum, it is damaged; {START_OVER}.")
    return record


def cut_back(path: Path, size: int, what: str) -> None:
    """Cut ``path`` back to the ``size`` bytes recorded at the last frame (dropping anything
    written after it), refusing a file that is missing or shorter than that."""
    actual = path.stat().st_size if path.exists() else None
    if actual is None or actual < size:
        found = "is missing" if actual is None else f"holds {actual} bytes"
        raise CheckpointError(
            f"the {what} {path} {found}, but the resume state records {size} bytes: it was moved, cut or replaced "
            f"(or this run names another {what}); restore it, or {START_OVER}."
        )
    with open(path, "r+b") as f:
        f.truncate(size)
