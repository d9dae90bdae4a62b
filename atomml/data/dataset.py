"""Labelled structures for training and testing: one flat, array-backed dataset.

A :class:`Dataset` holds B structures with N atoms in total as flat numpy arrays (the same
layout as :class:`~atomml.graph.AtomicGraph`, plus labels), so that a batch is a slice and a
gather, not a loop over ``Atoms`` objects:

===============  ==========  =======================================================
array            shape       meaning
===============  ==========  =======================================================
positions        (N, 3)      Å
numbers          (N,)        Z
offsets          (B + 1,)    atoms of structure b are ``offsets[b]:offsets[b + 1]``
cell             (B, 3, 3)   rows are lattice vectors (Å), as given (a slab keeps its c)
pbc              (B, 3)      periodic along a, b, c
charge           (B,)        total charge (e)
energy           (B,)        eV; NaN where not labelled
forces           (N, 3)      eV/Å; NaN where not labelled
stress           (B, 6)      eV/Å³, ASE sign and Voigt order; NaN where not labelled
===============  ==========  =======================================================

plus ``info``: one JSON-able dict per structure (molecule name, SMILES, composition,
configuration type, ...), used for splits and reports.

Files: extxyz (``.xyz``/``.extxyz``) and ASE databases (``.db``) are read and written through
ASE, the format every tool in the field reads; PyTorch Geometric's processed files (``.pt``,
an ``InMemoryDataset``) through :mod:`atomml.interfaces.pyg`, without running code from them. Parsing extxyz is slow for tens of thousands of
frames, so :func:`load_dataset` keeps a cache beside the file: a folder of ``.npy`` arrays,
memory-mapped on load, rebuilt when the source file's content hash changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..graph import AtomicGraph

ARRAYS = ("positions", "numbers", "offsets", "cell", "pbc", "charge", "energy", "forces", "stress")
# Where labels are read from (``data.energy_key`` ... of a training config): the name of an
# ``atoms.info`` entry (energy, stress, charge) or ``atoms.arrays`` entry (forces). With these
# default names the values ASE's readers put in a single-point calculator count as well.
LABEL_KEYS = {"energy_key": "energy", "forces_key": "forces", "stress_key": "stress", "charge_key": "charge"}
CACHE_VERSION = 1
CACHE_SUFFIX = ".atomml-cache"


class Dataset:
    """Labelled structures as flat arrays; see the module docstring for the layout."""

    def __init__(
        self, *, info: Sequence[dict[str, Any]], source_keys: dict[str, list[str]] | None = None, **arrays: np.ndarray
    ):
        # the info / arrays / calculator keys seen in the source file, for messages about labels
        self.source_keys = {k: list(v) for k, v in (source_keys or {}).items()}
        missing = sorted(set(ARRAYS) - set(arrays))
        if missing:
            raise ValueError(f"Dataset needs arrays {missing}")
        for name in ARRAYS:
            setattr(self, name, arrays[name])
        self.info = list(info)
        b = len(self.offsets) - 1
        n = int(self.offsets[-1])
        shapes = {
            "positions": (n, 3), "numbers": (n,), "cell": (b, 3, 3), "pbc": (b, 3), "charge": (b,),
            "energy": (b,), "forces": (n, 3), "stress": (b, 6),
        }
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Dataset array {name!r} has shape {getattr(self, name).shape}, expected {shape}")
        if len(self.info) != b:
            raise ValueError(f"Dataset has {b} structures but {len(self.info)} info entries")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_ase(
        cls,
        frames: Iterable[Any],
        *,
        energy_key: str = "energy",
        forces_key: str = "forces",
        stress_key: str = "stress",
        charge_key: str = "charge",
    ) -> Dataset:
        """From ASE ``Atoms`` (as ``ase.io.read`` gives them) and their labels.

        The energy is ``info[energy_key]``, the forces ``arrays[forces_key]``, the stress
        ``info[stress_key]`` (6 Voigt or 9 values) and the total charge ``info[charge_key]``
        (else 0). With the default names, the values of an attached single-point calculator
        count too (ASE's extxyz reader puts ``energy``, ``forces`` and ``stress`` there). A key
        other than the default that no structure has is an InputError listing the keys there
        are. Every other JSON-able ``info`` entry is kept.
        """
        keys = {"energy": energy_key, "forces": forces_key, "stress": stress_key, "charge": charge_key}
        positions, numbers, cells, pbcs, charges, energies, forces, stresses, info = [], [], [], [], [], [], [], [], []
        offsets = [0]
        seen: dict[str, set[str]] = {"info": set(), "arrays": set(), "calculator": set()}
        found = dict.fromkeys(keys, 0)
        # labels are labels now, not info (the total charge stays in info): written back, they
        # would be there twice (ASE's extxyz writer refuses an info key that a result also has)
        moved = {key for name, key in keys.items() if name in ("energy", "stress")}
        for k, atoms in enumerate(frames):
            n = len(atoms)
            if n == 0:
                raise InputError(f"structure {k} has no atoms: remove empty frames from the file")
            positions.append(np.asarray(atoms.get_positions(), dtype=np.float64))
            numbers.append(np.asarray(atoms.get_atomic_numbers(), dtype=np.int64))
            offsets.append(offsets[-1] + n)
            pbc = np.asarray(atoms.get_pbc(), dtype=bool)
            cells.append(np.asarray(atoms.get_cell(), dtype=np.float64))
            pbcs.append(pbc)
            results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
            seen["info"].update(str(key) for key in atoms.info)
            seen["arrays"].update(str(key) for key in atoms.arrays if key not in ("numbers", "positions"))
            seen["calculator"].update(str(key) for key in results)
            label = {name: _label(atoms, results, name, key) for name, key in keys.items()}
            for name, value in label.items():
                found[name] += value is not None
            charges.append(_number(label["charge"], k, "charge", charge_key) if label["charge"] is not None else 0.0)
            energies.append(_number(label["energy"], k, "energy", energy_key) if label["energy"] is not None else np.nan)
            forces.append(_forces(label["forces"], n, k, forces_key) if label["forces"] is not None else np.full((n, 3), np.nan))
            stresses.append(_voigt(label["stress"], k, stress_key) if label["stress"] is not None else np.full(6, np.nan))
            kept = {key: _jsonable(value) for key, value in atoms.info.items() if key not in moved}
            info.append({key: value for key, value in kept.items() if value is not None})
        if not info:
            raise InputError("no structures given: the file or list is empty")
        missing = [name for name, key in keys.items() if key != LABEL_KEYS[f"{name}_key"] and found[name] == 0]
        if missing:
            where = {"forces": "arrays"}
            asked = ", ".join(f"{where.get(m, 'info')}[{keys[m]!r}] (data.{m}_key)" for m in missing)
            raise InputError(
                f"no structure has {asked}; {describe_keys(seen)}; set data.{missing[0]}_key to the key that holds them"
            )
        return cls(
            positions=np.concatenate(positions), numbers=np.concatenate(numbers), offsets=np.array(offsets, dtype=np.int64),
            cell=np.stack(cells), pbc=np.stack(pbcs), charge=np.array(charges), energy=np.array(energies),
            forces=np.concatenate(forces), stress=np.stack(stresses), info=info,
            source_keys={k: sorted(v) for k, v in seen.items()},
        )

    @classmethod
    def from_pyg(
        cls,
        dataset: Iterable[Any],
        *,
        energy_key: str = "energy",
        forces_key: str = "forces",
        stress_key: str = "stress",
        charge_key: str = "charge",
        keys: dict[str, str] | None = None,
    ) -> Dataset:
        """From PyTorch Geometric ``Data`` objects, one per structure (an ``InMemoryDataset``,
        a list, ...), labels in eV, eV/Å, eV/Å³: :func:`atomml.interfaces.pyg.dataset_arrays`.

        The label keys name ``Data`` attributes (PyG's MD17: ``force``, in kcal/mol; QM9:
        ``y[7]``, U0 in eV); ``keys`` renames the structure's own attributes
        (:data:`atomml.interfaces.pyg.PYG_KEYS`)."""
        from ..interfaces.pyg import dataset_arrays

        return cls(**dataset_arrays(dataset, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                                    charge_key=charge_key, keys=keys))  # fmt: skip

    def to_ase(self) -> list[Any]:
        """The structures as ASE ``Atoms`` with a single-point calculator holding the labels."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        frames = []
        for b in range(len(self)):
            lo, hi = int(self.offsets[b]), int(self.offsets[b + 1])
            atoms = Atoms(numbers=self.numbers[lo:hi], positions=self.positions[lo:hi], cell=self.cell[b], pbc=self.pbc[b])
            atoms.info.update(self.info[b])
            if self.charge[b] != 0 or "charge" in self.info[b]:
                atoms.info["charge"] = float(self.charge[b])
            results: dict[str, Any] = {}
            if np.isfinite(self.energy[b]):
                results["energy"] = float(self.energy[b])
            if np.isfinite(self.forces[lo:hi]).all():
                results["forces"] = np.array(self.forces[lo:hi])
            if np.isfinite(self.stress[b]).all():
                results["stress"] = np.array(self.stress[b])
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
            frames.append(atoms)
        return frames

    # -- views --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_atoms(self) -> np.ndarray:
        """(B,) atoms per structure."""
        return np.diff(self.offsets)

    @property
    def elements(self) -> list[int]:
        return sorted(int(z) for z in np.unique(self.numbers))

    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """A new dataset with the structures ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        atoms = atom_indices(self.offsets, idx)
        counts = self.num_atoms[idx]
        return Dataset(
            positions=np.asarray(self.positions[atoms]), numbers=np.asarray(self.numbers[atoms]),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            cell=np.asarray(self.cell[idx]), pbc=np.asarray(self.pbc[idx]), charge=np.asarray(self.charge[idx]),
            energy=np.asarray(self.energy[idx]), forces=np.asarray(self.forces[atoms]), stress=np.asarray(self.stress[idx]),
            info=[self.info[int(i)] for i in idx], source_keys=self.source_keys,
        )

    def group_keys(self, key: str) -> list[str]:
        """One label per structure for splitting by group: ``info[key]``, or for ``key`` =
        ``"composition"`` without such an entry, the reduced chemical formula."""
        labels = []
        for b, entry in enumerate(self.info):
            if key in entry:
                labels.append(str(entry[key]))
            elif key == "composition":
                lo, hi = int(self.offsets[b]), int(self.offsets[b + 1])
                z, n = np.unique(self.numbers[lo:hi], return_counts=True)
                g = np.gcd.reduce(n)
                labels.append(" ".join(f"{int(a)}:{int(c // g)}" for a, c in zip(z, n)))
            else:
                raise InputError(f"structure {b} has no info[{key!r}] to split by; available keys: {sorted(entry)}")
        return labels

    def batch(
        self, indices: Sequence[int] | np.ndarray, dtype: torch.dtype = torch.float32
    ) -> tuple[AtomicGraph, dict[str, torch.Tensor]]:
        """Structures ``indices`` as one graph (without edges) and their labels as tensors."""
        idx = np.asarray(indices, dtype=np.int64)
        atoms = atom_indices(self.offsets, idx)
        counts = self.num_atoms[idx]
        graph = AtomicGraph(
            positions=torch.from_numpy(np.asarray(self.positions[atoms])).to(dtype),
            atomic_numbers=torch.from_numpy(np.asarray(self.numbers[atoms], dtype=np.int64)),
            batch=torch.repeat_interleave(torch.arange(len(idx)), torch.from_numpy(counts)),
            cell=torch.from_numpy(np.asarray(self.cell[idx])).to(dtype),
            pbc=torch.from_numpy(np.asarray(self.pbc[idx])),
            total_charge=torch.from_numpy(np.asarray(self.charge[idx])).to(dtype),
        )
        labels = {
            "energy": torch.from_numpy(np.asarray(self.energy[idx])).to(dtype),
            "forces": torch.from_numpy(np.asarray(self.forces[atoms])).to(dtype),
            "stress": torch.from_numpy(np.asarray(self.stress[idx])).to(dtype),
            "num_atoms": torch.from_numpy(counts),
        }
        return graph, labels

    # -- files --------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write to extxyz, an ASE database or a PyG processed file (``.pt``, read by
        ``InMemoryDataset.load``; :func:`atomml.interfaces.pyg.dataset_to_pyg`), by suffix; the
        file is replaced atomically."""
        from ase.io import write

        path = Path(path)
        kind = _file_kind(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        if kind == "pyg":
            from ..interfaces.pyg import _pyg, dataset_to_pyg

            _pyg().InMemoryDataset.save(dataset_to_pyg(self), str(tmp))
        elif kind == "db":
            from ase.db import connect

            with connect(str(tmp), type="db") as db:
                for atoms in self.to_ase():
                    db.write(atoms, data={"info": atoms.info})
        else:
            write(str(tmp), self.to_ase(), format="extxyz")
        os.replace(tmp, path)
        return path

    def save_cache(
        self, folder: str | os.PathLike[str], source_hash: str = "", label_keys: dict[str, str] | None = None
    ) -> Path:
        """Write the arrays as ``.npy`` files plus ``info.json`` (atomically, as one folder);
        ``label_keys`` (as :data:`LABEL_KEYS`) records where the labels were read from."""
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(self, name)))
        meta = {"version": CACHE_VERSION, "source_sha256": source_hash, "info": self.info, "source_keys": self.source_keys,
                "label_keys": label_keys if label_keys is not None else LABEL_KEYS}  # fmt: skip
        (tmp / "info.json").write_text(json.dumps(meta))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return folder

    @classmethod
    def load_cache(cls, folder: str | os.PathLike[str]) -> Dataset:
        """Read a cache folder; arrays are memory-mapped (read-only, loaded on demand)."""
        folder = Path(folder)
        meta = json.loads((folder / "info.json").read_text())
        if meta.get("version") != CACHE_VERSION:
            raise InputError(f"{folder}: cache version {meta.get('version')} is not {CACHE_VERSION}; delete the folder")
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in ARRAYS}
        return cls(info=meta["info"], source_keys=meta.get("source_keys"), **arrays)


def load_dataset(
    path: str | os.PathLike[str], cache: bool = True, energy_unit: str = "eV", **label_keys: str
) -> Dataset:
    """Read extxyz / ASE database / PyG processed file ``path`` (or a cache folder), using and
    refreshing the cache folder ``path + ".atomml-cache"`` when ``cache`` is true.

    ``label_keys`` (``energy_key``, ``forces_key``, ``stress_key``, ``charge_key``) say where
    the labels are, as in :meth:`Dataset.from_ase`; e.g. ``energy_key="REF_energy"`` for MACE's.
    ``energy_unit`` (:data:`~atomml.units.ENERGY_UNITS`) is the unit of the energy labels, the
    forces' being that per Å and the stress's that per Å³; they are converted to eV.

    A PyG dataset (``.pt``, what ``InMemoryDataset.save`` writes, or the dataset's root folder
    with its ``processed/`` folder) is read by :func:`atomml.interfaces.pyg.load_processed`,
    its label keys naming ``Data`` attributes (``force`` for PyG's MD17, ``y[7]`` for QM9's U0).
    """
    unknown = sorted(set(label_keys) - set(LABEL_KEYS))
    if unknown:
        raise TypeError(f"load_dataset: unknown argument(s) {unknown}; label keys are {sorted(LABEL_KEYS)}")
    scale = energy_scale(energy_unit)
    keys = {**LABEL_KEYS, **label_keys}
    path = Path(path)
    if path.is_dir() and (path / "processed").is_dir():
        from ..interfaces.pyg import processed_file

        path = processed_file(path)
    elif path.is_dir():
        return Dataset.load_cache(path)
    if not path.exists():
        raise InputError(
            f"dataset file {path} does not exist; check the path (an extxyz .xyz/.extxyz, ASE .db or PyG .pt file)"
        )
    kind = _file_kind(path)
    folder = path.with_name(path.name + CACHE_SUFFIX)
    digest = _sha256(path) if cache else ""
    described = {**keys, "energy_unit": energy_unit} if energy_unit != "eV" else keys  # what the cache holds
    if cache and (folder / "info.json").exists():
        try:
            meta = json.loads((folder / "info.json").read_text())
            if meta.get("source_sha256") == digest and meta.get("label_keys", LABEL_KEYS) == described:
                return Dataset.load_cache(folder)
        except (OSError, ValueError, InputError):
            pass  # a damaged or stale cache is rebuilt below
    dataset = _read(path, kind, keys)
    if scale != 1.0:
        dataset.energy, dataset.forces, dataset.stress = (scale * getattr(dataset, k) for k in ("energy", "forces", "stress"))
    if cache:
        dataset.save_cache(folder, digest, described)
    return dataset


def energy_scale(unit: str) -> float:
    """eV per ``unit`` (:data:`~atomml.units.ENERGY_UNITS`), else :class:`InputError`."""
    from ..units import ENERGY_UNITS

    if unit not in ENERGY_UNITS:
        raise InputError(f"unknown energy unit {unit!r}; use one of {', '.join(ENERGY_UNITS)}")
    return ENERGY_UNITS[unit]


def _read(path: Path, kind: str, keys: dict[str, str]) -> Dataset:
    """The labelled structures of one file (no cache, labels in the file's units)."""
    if kind == "pyg":
        from ..interfaces.pyg import load_processed

        try:
            return Dataset.from_pyg(load_processed(path), **keys)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    if kind == "db":
        from ase.db import connect

        frames = []
        with connect(str(path)) as db:
            for row in db.select():
                atoms = row.toatoms()
                atoms.info.update(row.key_value_pairs)  # labels stored as key-value pairs (data.energy_key)
                atoms.info.update(row.data.get("info", {}))
                frames.append(atoms)
    else:
        from ase.io import read

        frames = read(str(path), ":", format="extxyz")
    try:
        return Dataset.from_ase(frames, **keys)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def describe_keys(source_keys: dict[str, Any]) -> str:
    """``source_keys`` of a :class:`Dataset` as a phrase: which labels a file could offer."""
    parts = [f"{what} keys in the file: {', '.join(sorted(names)) or 'none'}" for what, names in source_keys.items()
             if what != "calculator" or names]  # fmt: skip
    return "; ".join(parts).replace("arrays keys", "per-atom arrays").replace("calculator keys", "calculator results")


def concatenate(datasets: Sequence[Dataset]) -> Dataset:
    """One dataset with the structures of all ``datasets`` in order."""
    if not datasets:
        raise ValueError("concatenate needs at least one dataset")
    counts = np.concatenate([d.num_atoms for d in datasets])
    return Dataset(
        positions=np.concatenate([d.positions for d in datasets]), numbers=np.concatenate([d.numbers for d in datasets]),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        cell=np.concatenate([d.cell for d in datasets]), pbc=np.concatenate([d.pbc for d in datasets]),
        charge=np.concatenate([d.charge for d in datasets]), energy=np.concatenate([d.energy for d in datasets]),
        forces=np.concatenate([d.forces for d in datasets]), stress=np.concatenate([d.stress for d in datasets]),
        info=[entry for d in datasets for entry in d.info],
        source_keys={k: sorted({v for d in datasets for v in d.source_keys.get(k, [])}) for d in datasets for k in d.source_keys},
    )


# -- splits and reference energies ----------------------------------------------------------
def random_split(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split structure indices 0..n-1 at random into parts of the given fractions (sum ≤ 1;
    the last part takes the rounding remainder when they sum to 1)."""
    order = np.random.default_rng(seed).permutation(n)
    return _cut(order, fractions)


def group_split(groups: Sequence[str], fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split by group (molecule, composition): every structure of a group lands in the same
    part, so a test part holds only groups never seen in training. Fractions count groups."""
    names = sorted(set(groups))
    parts = _cut(np.random.default_rng(seed).permutation(len(names)), fractions)
    where = {names[g]: p for p, part in enumerate(parts) for g in part}
    labels = np.array([where.get(g, -1) for g in groups])
    return [np.nonzero(labels == p)[0] for p in range(len(parts))]


def reference_energies(dataset: Dataset, elements: Sequence[int] | None = None) -> dict[int, float]:
    """Per-element energies (eV) by linear least squares, E_b ≈ Σ_Z n_bZ e_Z.

    Elements whose counts are collinear with others (e.g. only ever appearing in fixed
    ratios) get the minimum-norm solution, which is still exact for every composition seen.
    """
    elements = list(elements or dataset.elements)
    column = {z: k for k, z in enumerate(elements)}
    labelled = np.nonzero(np.isfinite(dataset.energy))[0]
    if len(labelled) == 0:
        raise InputError("no structure has an energy label: cannot fit reference energies")
    counts = np.zeros((len(labelled), len(elements)))
    for row, b in enumerate(labelled):
        for z in dataset.numbers[dataset.offsets[b] : dataset.offsets[b + 1]]:
            if int(z) not in column:
                raise InputError(f"structure {b} contains Z={int(z)}, which is not among the elements {elements}")
            counts[row, column[int(z)]] += 1
    solution, *_ = np.linalg.lstsq(counts, np.asarray(dataset.energy)[labelled], rcond=None)
    return {z: float(solution[k]) for z, k in column.items()}


def _cut(order: np.ndarray, fractions: Sequence[float]) -> list[np.ndarray]:
    fractions = [float(f) for f in fractions]
    if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"split fractions must be non-negative and sum to at most 1, got {fractions}")
    n = len(order)
    bounds = np.round(np.cumsum([0.0] + fractions) * n).astype(int)
    if abs(sum(fractions) - 1) < 1e-9:
        bounds[-1] = n
    return [np.sort(order[bounds[k] : bounds[k + 1]]) for k in range(len(fractions))]


def atom_indices(offsets: np.ndarray, structures: np.ndarray) -> np.ndarray:
    starts = np.asarray(offsets)[structures]
    counts = np.asarray(offsets)[structures + 1] - starts
    if len(counts) == 0:
        return np.zeros(0, dtype=np.int64)
    base = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return base + np.arange(int(counts.sum()))


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".db":
        return "db"
    if suffix in (".xyz", ".extxyz"):
        return "extxyz"
    if suffix == ".pt":
        return "pyg"
    raise InputError(
        f"{path}: unknown dataset format {suffix!r}; use .extxyz/.xyz (extended XYZ), .db (ASE database) "
        "or .pt (a PyTorch Geometric InMemoryDataset's processed file)"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _label(atoms: Any, results: dict[str, Any], name: str, key: str) -> Any:
    """The label ``name`` of ``atoms`` under ``key`` (None if absent): forces in ``arrays``,
    the rest in ``info``; with the default key also the calculator's result."""
    if key == LABEL_KEYS[f"{name}_key"] and name in results:
        return results[name]
    return (atoms.arrays if name == "forces" else atoms.info).get(key)


def _number(value: Any, structure: int, name: str, key: str) -> float:
    try:
        return float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        raise InputError(f"structure {structure}: the {name} label info[{key!r}] is not one number: {value!r}") from None


def _forces(value: Any, n: int, structure: int, key: str) -> np.ndarray:
    f = np.asarray(value, dtype=np.float64)
    if f.shape != (n, 3):
        raise InputError(f"structure {structure}: forces arrays[{key!r}] have shape {f.shape}, expected ({n}, 3)")
    return f


def _voigt(value: Any, structure: int, key: str) -> np.ndarray:
    """A stress label (6 Voigt values xx yy zz yz xz xy, or a 3×3 / 9-value matrix) in Voigt order."""
    s = np.asarray(value, dtype=np.float64)
    if s.size == 9:
        s = s.reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    if s.shape != (6,):
        raise InputError(f"structure {structure}: stress info[{key!r}] has shape {s.shape}; expected 6 (Voigt) or 9 values")
    return s


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.size <= 16:
        return value.tolist()
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return list(value)
    return None
