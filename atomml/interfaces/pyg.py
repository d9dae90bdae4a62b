"""PyTorch Geometric: atomml's atomic graphs and datasets as PyG ``Data``/``Batch``, and back.

``to_pyg(graph)`` gives a ``torch_geometric.data.Batch`` (one ``Data`` per structure, so
``batch[b]`` and ``batch.to_data_list()`` work as for any PyG batch); ``from_pyg(data)`` turns a
``Data``, a ``Batch`` or a list of ``Data`` into an :class:`~atomml.graph.AtomicGraph`. The two
are exact inverses: graph → Batch → graph gives the same tensors, bit for bit. Any atomml
potential takes a PyG ``Data`` or ``Batch`` as it takes an ``AtomicGraph``
(``potential(batch)``), and ``Dataset.from_pyg`` (:func:`dataset_arrays`) turns a PyG dataset
of structures with energies and forces (an ``InMemoryDataset``, or any sequence of ``Data``)
into an atomml :class:`~atomml.data.Dataset`, which is how ``atomml train`` reads PyG's
processed files.

The key mapping (:data:`PYG_KEYS`), atomml's field → the ``Data`` attribute, with the shapes of
one ``Data`` (a ``Batch`` concatenates them along the first axis):

==================  ===============  ============  ===============================================
AtomicGraph field   Data attribute   shape         notes
==================  ===============  ============  ===============================================
positions           ``pos``          (n, 3)        Å, as PyG's QM9, MD17 and its SchNet/DimeNet
atomic_numbers      ``z``            (n,) int64    read from ``atomic_numbers`` where ``z`` is absent
batch               ``batch``        (n,)          made by ``Batch``; absent on a single ``Data``
cell                ``cell``         (1, 3, 3)     rows are lattice vectors (Å); zeros if unused
pbc                 ``pbc``          (1, 3) bool   periodic along a, b, c
total_charge        ``charge``       (1,)          elementary charges
partial_charges     ``partial_charges`` (n,)       only where the graph has them
edge_index          ``edge_index``   (2, e)        PyG's order: row 0 the neighbour j (source),
                                                   row 1 the receiving atom i (target)
cell_shift          ``cell_shift``   (e, 3)        S with r_ij = pos[j] - pos[i] + S @ cell
==================  ===============  ============  ===============================================

Labels (:func:`to_pyg`'s ``energy``, ``forces``, ``stress``) are ``energy`` (1,) eV, ``forces``
(n, 3) eV/Å and ``stress`` (1, 6) eV/Å³ (ASE's sign, Voigt order xx, yy, zz, yz, xz, xy).

Edges: atomml's ``edge_index`` has the receiving atom in row 0; PyG's message passing
(``flow="source_to_target"``) aggregates at row 1, so the rows are swapped on the way out and
back on the way in, and a PyG ``MessagePassing`` layer run on the converted ``Data`` sends
messages from each neighbour j to its atom i. :func:`from_pyg` keeps edges only where the data
carries both ``edge_index`` and the shifts of periodic images (or is not periodic); a potential
given PyG data always builds its own neighbour list, since edges made for another model (PyG's
``radius_graph`` with another cutoff) could leave out pairs within its cutoff.

Data written by other codes: ``from_pyg(data, keys={"positions": "coords"})`` reads positions
from ``data.coords``; a periodic dataset that carries a cell and no ``pbc`` (OC20's layout) is
read as periodic along every non-zero lattice vector.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..graph import AtomicGraph

# atomml field -> PyG Data attribute (module docstring)
PYG_KEYS: dict[str, str] = {
    "positions": "pos",
    "atomic_numbers": "z",
    "cell": "cell",
    "pbc": "pbc",
    "total_charge": "charge",
    "partial_charges": "partial_charges",
    "edge_index": "edge_index",
    "cell_shift": "cell_shift",
}
_ATOMIC_NUMBERS_ELSEWHERE = "atomic_numbers"  # fairchem / OC20 datasets


def _pyg() -> Any:
    try:
        import torch_geometric.data as pyg_data
    except ImportError:
        raise ImportError(
            "PyTorch Geometric is not installed: pip install 'atomml[pyg]' (or torch-geometric)"
        ) from None
    return pyg_data


def is_pyg(obj: Any) -> bool:
    """Whether ``obj`` is a PyG ``Data`` or ``Batch`` (checked without importing PyG)."""
    return any(cls.__module__.startswith("torch_geometric.") and cls.__name__ in ("Data", "Batch")
               for cls in type(obj).__mro__)  # fmt: skip


def to_pyg(
    graph: AtomicGraph,
    energy: Tensor | None = None,
    forces: Tensor | None = None,
    stress: Tensor | None = None,
) -> Any:
    """``graph`` as a PyG ``Batch`` of one ``Data`` per structure, with the labels given
    (energy (B,) eV, forces (N, 3) eV/Å, stress (B, 6) eV/Å³); tensors are shared, not copied,
    where they need no reordering. Edges, where the graph has them, are grouped by structure
    (already so in every atomml neighbour list; a stable reordering otherwise)."""
    pyg = _pyg()
    counts = graph.atoms_per_graph().tolist()
    starts = np.cumsum([0] + counts[:-1]).tolist()
    per_atom = {"pos": graph.positions, "z": graph.atomic_numbers, "forces": forces, "partial_charges": graph.partial_charges}
    per_graph = {"cell": graph.cell, "pbc": graph.pbc, "charge": graph.total_charge, "energy": energy, "stress": stress}
    atom_parts = {k: torch.split(v, counts) for k, v in per_atom.items() if v is not None}
    edge_parts: list[tuple[Tensor, Tensor]] | None = None
    if graph.edge_index is not None and graph.cell_shift is not None:
        owner = graph.batch[graph.edge_index[0]]
        edge_parts = []
        for b in range(graph.num_graphs):
            keep = torch.nonzero(owner == b).squeeze(1)
            # swap rows: PyG's row 0 is the source j, atomml's row 0 the receiver i
            edge_parts.append((graph.edge_index[:, keep].flip(0) - starts[b], graph.cell_shift[keep]))
    data_list = []
    for b in range(graph.num_graphs):
        fields = {k: parts[b] for k, parts in atom_parts.items()}
        fields.update({k: v[b : b + 1] for k, v in per_graph.items() if v is not None})
        if edge_parts is not None:
            fields["edge_index"], fields["cell_shift"] = edge_parts[b]
        data_list.append(pyg.Data(**fields))
    return pyg.Batch.from_data_list(data_list)


def from_pyg(
    data: Any, *, keys: Mapping[str, str] | None = None, edges: bool = True
) -> AtomicGraph:
    """An :class:`~atomml.graph.AtomicGraph` from a PyG ``Data``, ``Batch`` or list of ``Data``.

    Args:
        data: the structures (PyG's attribute names: :data:`PYG_KEYS`).
        keys: attribute names that differ from :data:`PYG_KEYS`, as {atomml field: attribute},
            e.g. ``{"positions": "coords"}``.
        edges: keep ``edge_index`` and ``cell_shift`` where the data has them (see the module
            docstring); ``False`` leaves them out, so that a potential builds its own.

    Tensors are taken as they are (dtype and device included), so that
    ``from_pyg(to_pyg(graph))`` is ``graph``; atomic numbers become int64 and pbc bool.
    """
    if isinstance(data, Sequence) and not is_pyg(data):
        if not data:
            raise InputError("from_pyg got an empty list: pass at least one Data")
        data = _pyg().Batch.from_data_list(list(data))
    if not is_pyg(data):
        raise InputError(f"from_pyg takes a torch_geometric Data, Batch or list of Data, got {type(data).__name__}")
    names = {**PYG_KEYS, **(keys or {})}
    unknown = sorted(set(keys or {}) - set(PYG_KEYS))
    if unknown:
        raise InputError(f"from_pyg: unknown field(s) {unknown} in keys; the fields are {sorted(PYG_KEYS)}")
    positions = _get(data, names["positions"])
    z_name = names["atomic_numbers"]
    if z_name not in data and z_name == PYG_KEYS["atomic_numbers"] and _ATOMIC_NUMBERS_ELSEWHERE in data:
        z_name = _ATOMIC_NUMBERS_ELSEWHERE
    atomic_numbers = _get(data, z_name).reshape(-1)
    if positions is None or atomic_numbers is None:
        missing = names["positions"] if positions is None else z_name
        raise InputError(
            f"the PyG data has no {missing!r} attribute; it has {sorted(data.keys())}: "
            f"name the attribute, e.g. from_pyg(data, keys={{'positions': ...}})"
        )
    if atomic_numbers.is_floating_point() and not bool((atomic_numbers == atomic_numbers.round()).all()):
        raise InputError(f"data.{z_name} holds non-integer values: give the atomic numbers Z")
    n = positions.shape[0]
    num_graphs = int(data.num_graphs) if hasattr(data, "num_graphs") else 1
    batch = data.batch if getattr(data, "batch", None) is not None else torch.zeros(n, dtype=torch.long, device=positions.device)
    cell = _get(data, names["cell"])
    cell = positions.new_zeros((num_graphs, 3, 3)) if cell is None else cell.reshape(num_graphs, 3, 3)
    pbc = _get(data, names["pbc"])
    if pbc is None:  # OC20's layout: a cell, no flag; periodic along each lattice vector given
        pbc = cell.ne(0).any(dim=2)
    pbc = pbc.to(torch.bool).reshape(num_graphs, -1).expand(num_graphs, 3)
    charge = _get(data, names["total_charge"])
    charge = positions.new_zeros(num_graphs) if charge is None else charge.reshape(num_graphs)
    edge_index = cell_shift = None
    if edges and _get(data, names["edge_index"]) is not None:
        shift = _get(data, names["cell_shift"])
        if shift is not None or not bool(pbc.any()):
            edge_index = _get(data, names["edge_index"]).flip(0)  # PyG's (j, i) -> atomml's (i, j)
            cell_shift = shift if shift is not None else torch.zeros((edge_index.shape[1], 3), dtype=torch.long, device=edge_index.device)
    return AtomicGraph(
        positions=positions,
        atomic_numbers=atomic_numbers.to(torch.long),
        batch=batch,
        cell=cell,
        pbc=pbc.contiguous(),
        total_charge=charge,
        edge_index=edge_index,
        cell_shift=cell_shift,
        partial_charges=_get(data, names["partial_charges"]),
    )


def _get(data: Any, name: str) -> Tensor | None:
    value = data[name] if name in data else None
    return value if value is None or isinstance(value, Tensor) else torch.as_tensor(value)


# -- labels and datasets --------------------------------------------------------------------------
_DEFAULT_LABELS = {"energy": "energy", "forces": "forces", "stress": "stress", "charge": "charge"}
_COLUMN = re.compile(r"^(?P<name>\w+)\[(?P<column>-?\d+)\]$")


def label(data: Any, key: str) -> Tensor | None:
    """The attribute ``key`` of ``data`` (None if absent); ``"y[7]"`` is column 7 of ``data.y``
    (a per-structure target table, as QM9's, whose column 7 is U0 in eV)."""
    match = _COLUMN.match(key)
    name = match["name"] if match else key
    value = _get(data, name)
    if value is None or match is None:
        return value
    column = int(match["column"])
    table = value.reshape(value.shape[0], -1) if value.dim() else value.reshape(1, 1)
    if not -table.shape[1] <= column < table.shape[1]:
        raise InputError(f"{key}: data.{name} has {table.shape[1]} column(s); give a column from 0 to {table.shape[1] - 1}")
    return table[:, column]


def dataset_arrays(
    dataset: Iterable[Any],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    charge_key: str = "charge",
    keys: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The arguments of an atomml :class:`~atomml.data.Dataset` (what
    ``Dataset.from_pyg`` makes) from PyG ``Data`` objects (an ``InMemoryDataset``, a list,
    ...), each one structure, with labels in eV, eV/Å, eV/Å³.

    ``energy_key``, ``forces_key``, ``stress_key`` (6 Voigt or 9 values) and ``charge_key``
    name the attributes that hold the labels, as ``data.energy_key`` ... do for extxyz files:
    PyG's MD17 has ``energy`` and ``force`` (kcal/mol: set ``data.energy_unit`` in a training
    config, or scale the labels), QM9 ``y[7]`` (U0, eV). A key other than the default that no
    structure has is an :class:`InputError` listing the attributes there are. Strings and
    numbers among the other attributes (QM9's ``name``, ``idx``) are kept as ``info``.
    """
    label_keys = {"energy": energy_key, "forces": forces_key, "stress": stress_key, "charge": charge_key}
    used = {label_keys[k].split("[")[0] for k in label_keys} | set({**PYG_KEYS, **(keys or {})}.values())
    used |= {_ATOMIC_NUMBERS_ELSEWHERE, "batch", "ptr", "natoms"}
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in ("positions", "numbers", "cell", "pbc", "charge", "energy", "forces", "stress")}
    offsets, info, seen = [0], [], set()
    found = dict.fromkeys(label_keys, 0)
    for k, data in enumerate(dataset):
        if not is_pyg(data):
            raise InputError(f"item {k} of the dataset is a {type(data).__name__}, not a torch_geometric Data")
        graph = from_pyg(data, keys=keys, edges=False)
        if graph.num_graphs != 1:
            raise InputError(f"item {k} holds {graph.num_graphs} structures: give one Data per structure")
        n = graph.num_atoms
        if n == 0:
            raise InputError(f"item {k} has no atoms: remove empty structures from the dataset")
        seen.update(data.keys())
        values = {name: label(data, key) for name, key in label_keys.items()}
        for name, value in values.items():
            found[name] += value is not None
        arrays["positions"].append(graph.positions.detach().cpu().double().numpy())
        arrays["numbers"].append(graph.atomic_numbers.cpu().numpy())
        arrays["cell"].append(graph.cell[0].detach().cpu().double().numpy())
        arrays["pbc"].append(graph.pbc[0].cpu().numpy())
        arrays["charge"].append(_values(values["charge"], (), k, charge_key, default=0.0))
        arrays["energy"].append(_values(values["energy"], (), k, energy_key))
        arrays["forces"].append(_values(values["forces"], (n, 3), k, forces_key))
        arrays["stress"].append(_voigt(values["stress"], k, stress_key))
        offsets.append(offsets[-1] + n)
        info.append({key: _plain(data[key]) for key in data.keys() if key not in used and _plain(data[key]) is not None})
    if not info:
        raise InputError("the PyG dataset is empty")
    missing = [name for name, key in label_keys.items() if key != _DEFAULT_LABELS[name] and found[name] == 0]
    if missing:
        asked = ", ".join(f"{label_keys[m]!r} (data.{m}_key)" for m in missing)
        raise InputError(
            f"no structure of the PyG dataset has {asked}; its attributes: {', '.join(sorted(seen))}; "
            f"set data.{missing[0]}_key to the attribute that holds them"
        )
    return dict(
        positions=np.concatenate(arrays["positions"]), numbers=np.concatenate(arrays["numbers"]).astype(np.int64),
        offsets=np.array(offsets, dtype=np.int64), cell=np.stack(arrays["cell"]), pbc=np.stack(arrays["pbc"]),
        charge=np.array(arrays["charge"], dtype=np.float64), energy=np.array(arrays["energy"], dtype=np.float64),
        forces=np.concatenate(arrays["forces"]), stress=np.stack(arrays["stress"]), info=info,
        source_keys={"attributes": sorted(seen)},
    )  # fmt: skip


def dataset_to_pyg(dataset: Any) -> list[Any]:
    """An atomml :class:`~atomml.data.Dataset` as one PyG ``Data`` per structure (float64,
    :data:`PYG_KEYS`, labels ``energy``/``forces``/``stress`` with NaN where not labelled),
    with its ``info`` strings and numbers as attributes: what ``InMemoryDataset.save`` takes,
    and what ``Dataset.from_pyg`` reads back."""
    graph, labels = dataset.batch(np.arange(len(dataset)), dtype=torch.float64)
    data_list = to_pyg(graph, labels["energy"], labels["forces"], labels["stress"]).to_data_list()
    for data, entry in zip(data_list, dataset.info):
        for key, value in entry.items():
            if isinstance(value, (str, bool, int, float)) and key not in data:
                data[key] = value
    return data_list


def _values(value: Tensor | None, shape: tuple[int, ...], structure: int, key: str, default: float = np.nan) -> Any:
    if value is None:
        return np.full(shape, default) if shape else default
    array = value.detach().cpu().double().numpy()
    if array.size != int(np.prod(shape)):
        raise InputError(f"structure {structure}: data.{key} has shape {tuple(value.shape)}, expected {shape or 'one number'}")
    return array.reshape(shape) if shape else float(array.reshape(()))


def _voigt(value: Tensor | None, structure: int, key: str) -> np.ndarray:
    if value is None:
        return np.full(6, np.nan)
    s = value.detach().cpu().double().numpy().reshape(-1)
    if s.size == 9:
        s = s.reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    if s.size != 6:
        raise InputError(f"structure {structure}: data.{key} has {s.size} values; a stress has 6 (Voigt) or 9")
    return s


def _plain(value: Any) -> Any:
    """A string or number (a one-element tensor included) as JSON; None for anything else."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value.item())
    return None


def load_processed(path: str | os.PathLike[str]) -> Any:
    """The ``InMemoryDataset`` stored in a PyG processed file (what ``InMemoryDataset.save``
    writes: ``<root>/processed/data.pt``), read with ``torch.load(weights_only=True)``, so that
    reading it never runs code from the file (PyG's own loader falls back to a full unpickle
    when that fails; this one refuses instead)."""
    pyg = _pyg()
    import torch_geometric.data.in_memory_dataset  # noqa: F401  (registers PyG's classes as safe)

    path = Path(path)
    try:
        out = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unpickling error, a damaged zip, ...
        raise InputError(
            f"{path}: not a PyG processed dataset that loads without running code ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); write it with InMemoryDataset.save, "
            "or convert the dataset with atomml.data.Dataset.from_pyg(dataset, ...).write('data.extxyz')"
        ) from None
    if not isinstance(out, tuple) or len(out) not in (2, 3):
        raise InputError(f"{path}: not a PyG InMemoryDataset file (expected (data, slices[, class]), got {type(out).__name__})")
    stored, slices = out[0], out[1]
    data_cls = out[2] if len(out) == 3 else pyg.Data
    dataset = pyg.InMemoryDataset()
    dataset._data = data_cls.from_dict(stored) if isinstance(stored, dict) else stored
    dataset.slices = slices
    return dataset


def processed_file(path: Path) -> Path:
    """The processed file of a PyG dataset given as the file or its root folder."""
    if path.is_file():
        return path
    candidates = sorted(p for p in (path / "processed").glob("*.pt") if p.name not in ("pre_transform.pt", "pre_filter.pt"))
    if len(candidates) != 1:
        raise InputError(
            f"{path}: a PyG dataset folder needs exactly one processed file in processed/, found "
            f"{[p.name for p in candidates] or 'none'}; give the file itself"
        )
    return candidates[0]
