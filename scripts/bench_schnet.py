#!/usr/bin/env python
"""atomml SchNet against schnetpack 2.1.1 SchNet: same function, time and memory per call.

Run with the benchmark environment (``scripts/setup_bench_env.sh`` makes ``.bench-venv/``)::

    .bench-venv/bin/python scripts/bench_schnet.py --check          # agreement, float64, JSON
    .bench-venv/bin/python scripts/bench_schnet.py --systems molecules,water1500 --repeats 3
    .bench-venv/bin/python scripts/bench_schnet.py                  # all systems (12k atoms: ~13 GB)

Both peers run schnetpack's default SchNet hyperparameters (128 features and filters, 6
interactions, 20 Gaussians, cosine cutoff 5 Å) with the same weights: the atomml potential is
built with a fixed seed and copied into schnetpack (:func:`copy_atomml_to_schnetpack`).
schnetpack's ``Atomwise`` uses SiLU by default; it is built here with shifted softplus, which
is what atomml's readout uses (the two are otherwise the same 128 -> 64 -> 1 network).

Timing and memory: every (peer, system, mode) runs in a fresh subprocess, one at a time, with
``torch.set_num_threads(2)`` and float32. Modes: ``full`` = each peer's usual path from ASE
atoms (atomml: ``from_ase`` then the potential builds its vesin neighbour list; schnetpack:
``AtomsConverter`` with its ``MatScipyNeighborList`` transform, as ``SpkCalculator`` does);
``model`` = neighbours precomputed outside the timed region. Time per call is the median of
``--repeats`` energy+forces calls after ``--warmup`` calls. Peak extra memory is measured in a
separate fresh subprocess: after set-up and the warm-up calls, the kernel's peak-RSS counter
is reset (``/proc/self/clear_refs`` = 5, which also resets ``ru_maxrss``), the current RSS is
read, one call is made, and extra = peak RSS (VmHWM) - RSS before the call. That subprocess
runs with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_``), so that tensors freed by
the warm-up calls are returned to the kernel instead of being kept in the heap, where the
measured call would reuse them unseen.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import typing
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ELEMENTS = (1, 6, 7, 8)
HYPER = dict(cutoff=5.0, n_atom_basis=128, n_filters=128, n_interactions=6, n_rbf=20)
SYSTEMS = ("molecules", "water1500", "water12000")
PEERS = ("atomml", "schnetpack")
MODES = ("full", "model")
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "262144", "MALLOC_ARENA_MAX": "2"}
WATER_DENSITY = 1.0  # g/cm^3
AVOGADRO = 6.02214076e23


# --------------------------------------------------------------------------------------------
# schnetpack import and model
# --------------------------------------------------------------------------------------------


def import_schnetpack():
    """schnetpack 2.1.1 imports ``T_co`` from torch's dataloader, which torch removed."""
    import torch.utils.data.dataloader as dataloader

    if not hasattr(dataloader, "T_co"):
        dataloader.T_co = typing.TypeVar("T_co", covariant=True)
    try:
        import schnetpack
        import schnetpack.interfaces.ase_interface  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"schnetpack is not importable ({exc}); run scripts/setup_bench_env.sh and use "
            ".bench-venv/bin/python"
        ) from exc
    return schnetpack


def build_schnetpack_model(
    cutoff: float = 5.0,
    n_atom_basis: int = 128,
    n_filters: int = 128,
    n_interactions: int = 6,
    n_rbf: int = 20,
):
    """schnetpack ``NeuralNetworkPotential``: PairwiseDistances -> SchNet -> Atomwise -> Forces.

    ``Atomwise`` gets shifted softplus (schnetpack's default is SiLU) to match atomml's readout.
    """
    spk = import_schnetpack()
    from schnetpack.nn.activations import shifted_softplus

    representation = spk.representation.SchNet(
        n_atom_basis=n_atom_basis,
        n_interactions=n_interactions,
        radial_basis=spk.nn.GaussianRBF(n_rbf=n_rbf, cutoff=cutoff),
        cutoff_fn=spk.nn.CosineCutoff(cutoff),
        n_filters=n_filters,
    )
    model = spk.model.NeuralNetworkPotential(
        representation=representation,
        input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[
            spk.atomistic.Atomwise(n_in=n_atom_basis, output_key="energy", activation=shifted_softplus),
            spk.atomistic.Forces(energy_key="energy", force_key="forces"),
        ],
        do_postprocessing=False,
    )
    return model.eval()


def build_atomml_potential(seed: int = 0, **overrides):
    from atomml.models import create

    torch.manual_seed(seed)
    return create("schnet", elements=list(ELEMENTS), **{**HYPER, **overrides}).eval()


def _linear_pairs(pot, spk_model) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    ours, theirs = pot.model, spk_model.representation
    if len(ours.interactions) != len(theirs.interactions):
        raise ValueError(f"{len(ours.interactions)} vs {len(theirs.interactions)} interaction blocks")
    pairs = []
    for a, b in zip(ours.interactions, theirs.interactions):
        pairs += [
            (a.in2f, b.in2f),
            (a.filter_network[0], b.filter_network[0]),
            (a.filter_network[2], b.filter_network[1]),
            (a.f2out[0], b.f2out[0]),
            (a.f2out[2], b.f2out[1]),
        ]
    outnet = spk_model.output_modules[0].outnet
    pairs += [(ours.readout[0], outnet[0]), (ours.readout[2], outnet[1])]
    return pairs


def _check_same_function(pot, spk_model) -> None:
    """Raise if the two models differ in anything the weight copy does not carry."""
    ours, theirs = pot.model, spk_model.representation
    if float(pot.energy_scale) != 1.0 or float(pot.energy_shift) != 0.0 or bool(pot.atomic_energies.any()):
        raise ValueError("energy scale/shift/atomic energies are not represented in the schnetpack model")
    if abs(ours.cutoff_fn.cutoff - float(theirs.cutoff_fn.cutoff)) > 1e-6:
        raise ValueError("cutoffs differ")
    o1, o2 = ours.radial_basis.offsets.double(), theirs.radial_basis.offsets.double()
    if o1.shape != o2.shape or float((o1 - o2).abs().max()) > 1e-6:
        raise ValueError("Gaussian centres differ")
    if max(ELEMENTS) >= theirs.embedding.num_embeddings:
        raise ValueError("schnetpack's embedding is too small for the element list")


def copy_atomml_to_schnetpack(pot, spk_model) -> None:
    """Load atomml's SchNet weights into a schnetpack ``NeuralNetworkPotential`` (in place).

    atomml embeds over its element list, schnetpack over Z (100 rows): row k of atomml goes to
    row ``pot.elements[k]`` of schnetpack; other rows are left as they are (never used).
    Linear layers map one to one (weight and bias). Radial basis and cutoff are fixed
    (non-learned) buffers that both build the same way from (n_rbf, cutoff); they are checked,
    not copied.
    """
    _check_same_function(pot, spk_model)
    with torch.no_grad():
        emb_ours = pot.model.embedding.weight
        emb_theirs = spk_model.representation.embedding.weight
        for k, z in enumerate(pot.elements):
            emb_theirs[z].copy_(emb_ours[k].to(emb_theirs.dtype))
        for a, b in _linear_pairs(pot, spk_model):
            if a.weight.shape != b.weight.shape or (a.bias is None) != (b.bias is None):
                raise ValueError(f"layer shapes differ: {a} vs {b}")
            b.weight.copy_(a.weight.to(b.weight.dtype))
            if a.bias is not None:
                b.bias.copy_(a.bias.to(b.bias.dtype))


def copy_schnetpack_to_atomml(spk_model, pot) -> None:
    """The reverse of :func:`copy_atomml_to_schnetpack` (rows of schnetpack's embedding at our Z)."""
    _check_same_function(pot, spk_model)
    with torch.no_grad():
        emb_theirs = spk_model.representation.embedding.weight
        for k, z in enumerate(pot.elements):
            pot.model.embedding.weight[k].copy_(emb_theirs[z].to(pot.model.embedding.weight.dtype))
        for a, b in _linear_pairs(pot, spk_model):
            a.weight.copy_(b.weight.to(a.weight.dtype))
            if a.bias is not None:
                a.bias.copy_(b.bias.to(a.bias.dtype))


def paired_models(seed: int = 0):
    """(atomml potential, schnetpack model) with the same weights, float32, eval mode."""
    pot = build_atomml_potential(seed)
    spk_model = build_schnetpack_model(**HYPER)
    copy_atomml_to_schnetpack(pot, spk_model)
    return pot, spk_model


def spk_converter(dtype: torch.dtype, neighbor_list: str = "matscipy"):
    spk = import_schnetpack()
    from schnetpack.interfaces.ase_interface import AtomsConverter

    nl = {"matscipy": spk.transform.MatScipyNeighborList, "ase": spk.transform.ASENeighborList}[neighbor_list]
    return AtomsConverter(neighbor_list=nl(cutoff=HYPER["cutoff"]), dtype=dtype)


# --------------------------------------------------------------------------------------------
# structures
# --------------------------------------------------------------------------------------------


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) uniformly random rotation matrices (from random unit quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def water_box(n_per_side: int, seed: int = 0):
    """Periodic cubic box of n^3 randomly oriented waters on a grid at ~1 g/cm^3."""
    from ase import Atoms
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    water = molecule("H2O")
    mass = float(water.get_masses().sum())  # g/mol
    spacing = (mass / AVOGADRO / WATER_DENSITY * 1e24) ** (1.0 / 3.0)  # Å
    local = water.positions - water.get_center_of_mass()
    grid = np.stack(np.meshgrid(*[np.arange(n_per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = (grid + 0.5) * spacing
    rotations = _random_rotations(len(centres), rng)
    positions = centres[:, None, :] + np.einsum("mab,kb->mka", rotations, local)
    numbers = np.tile(water.numbers, len(centres))
    length = n_per_side * spacing
    return Atoms(numbers=numbers, positions=positions.reshape(-1, 3), cell=np.eye(3) * length, pbc=True)


def organic_molecules(count: int = 64, seed: int = 0, min_atoms: int = 10, max_atoms: int = 25):
    """``count`` g2 molecules with 10-25 atoms of H, C, N, O (cycled, randomly rotated)."""
    from ase.build import molecule
    from ase.collections import g2

    names = sorted(
        n for n in g2.names if min_atoms <= len(g2[n]) <= max_atoms and set(g2[n].numbers) <= set(ELEMENTS)
    )
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        atoms = molecule(names[k % len(names)])
        rotation = _random_rotations(1, rng)[0]
        atoms.positions = (atoms.positions - atoms.positions.mean(0)) @ rotation.T
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        out.append(atoms)
    return out


def build_system(name: str):
    """List of ASE Atoms for a named benchmark system."""
    if name == "molecules":
        return organic_molecules(64)
    if name == "water1500":
        return [water_box(8)]  # 1,536 atoms
    if name == "water12000":
        return [water_box(16)]  # 12,288 atoms
    raise SystemExit(f"unknown system {name!r}; choose from {SYSTEMS}")


# --------------------------------------------------------------------------------------------
# agreement check (float64)
# --------------------------------------------------------------------------------------------


def _randomise(pot, seed: int = 1) -> None:
    """Give every parameter non-trivial values (biases start at zero), so a wrong bias mapping
    cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pot.named_parameters():
            scale = 0.1 if name.endswith("bias") else 0.02
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def agreement_structures():
    from ase.build import molecule

    structures = {name: molecule(name) for name in ("CH3CH2OH", "C6H6", "CH3CONH2", "C5H5N")}
    structures["water_box_81"] = water_box(3, seed=1)  # 9.3 Å cube
    sheared = water_box(2, seed=2)  # 6.2 Å: smaller than 2x cutoff, many periodic images
    cell = np.array(sheared.cell)
    cell[1] += 0.25 * cell[0]
    cell[2] += 0.15 * cell[0] - 0.1 * cell[1]
    sheared.set_cell(cell, scale_atoms=True)
    structures["sheared_water_box_24"] = sheared
    return structures


def sync_radial_buffers(pot, spk_model) -> None:
    """Give schnetpack exactly atomml's Gaussian centres and widths in the models' current dtype.

    Both codes build these fixed buffers in float32 but round differently (schnetpack:
    float32 linspace and width; atomml: float64 linspace and -0.5/width^2, then rounded), so
    the models differ at ~1e-7 relative even in float64. With the buffers synchronised, any
    remaining difference is round-off of the architecture itself.
    """
    ours, theirs = pot.model.radial_basis, spk_model.representation.radial_basis
    with torch.no_grad():
        theirs.offsets.copy_(ours.offsets.to(theirs.offsets.dtype))
        theirs.widths.copy_(torch.sqrt(-0.5 / ours.coefficient.to(theirs.widths.dtype)))


def _compare(pot, spk_model, converter, structures) -> dict:
    import atomml

    results = {}
    for name, atoms in structures.items():
        out = pot(atomml.from_ase(atoms, dtype=torch.float64), compute_forces=True)
        e1, f1 = out["energy"].detach(), out["forces"].detach()
        ref = spk_model(converter(atoms))
        e2, f2 = ref["energy"].detach(), ref["forces"].detach()
        results[name] = {
            "n_atoms": len(atoms),
            "periodic": bool(atoms.pbc.any()),
            "energy_atomml": float(e1.sum()),
            "energy_schnetpack": float(e2.sum()),
            "energy_rel_diff": float((e1 - e2).abs().max() / e2.abs().max()),
            "forces_max_abs_diff": float((f1 - f2).abs().max()),
            "forces_max_abs": float(f2.abs().max()),
            # relative to the largest force component of the structure
            "forces_rel_diff": float((f1 - f2).abs().max() / f2.abs().max()),
        }
    return results


def check_agreement(seed: int = 0) -> dict:
    """Energies and forces of atomml vs schnetpack in float64, same weights, per structure.

    Twice: with each code's own radial-basis buffers (as built), and with schnetpack given
    atomml's buffers (:func:`sync_radial_buffers`), which isolates the architecture.
    """
    pot, spk_model = paired_models(seed)
    _randomise(pot)
    copy_atomml_to_schnetpack(pot, spk_model)
    pot = pot.to(torch.float64)
    spk_model = spk_model.to(torch.float64)
    converter = spk_converter(torch.float64)
    structures = agreement_structures()
    results = _compare(pot, spk_model, converter, structures)
    # Fixed radial-basis buffers (built independently by each code, both stored in float32).
    rb_ours, rb_theirs = pot.model.radial_basis, spk_model.representation.radial_basis
    coeff_theirs = -0.5 / rb_theirs.widths.double() ** 2
    return {
        "dtype": "float64",
        "structures": results,
        "max_energy_rel_diff": max(r["energy_rel_diff"] for r in results.values()),
        "max_forces_rel_diff": max(r["forces_rel_diff"] for r in results.values()),
        "rbf_offsets_max_abs_diff": float((rb_ours.offsets.double() - rb_theirs.offsets.double()).abs().max()),
        "rbf_coefficient_max_rel_diff": float(
            ((rb_ours.coefficient.double() - coeff_theirs) / coeff_theirs).abs().max()
        ),
        "synced_radial_buffers": synced_summary(pot, spk_model, converter, structures),
        "torch": torch.__version__,
        "schnetpack": import_schnetpack().__version__,
    }


def synced_summary(pot, spk_model, converter, structures) -> dict:
    sync_radial_buffers(pot, spk_model)
    results = _compare(pot, spk_model, converter, structures)
    return {
        "max_energy_rel_diff": max(r["energy_rel_diff"] for r in results.values()),
        "max_forces_rel_diff": max(r["forces_rel_diff"] for r in results.values()),
        "structures": {k: {"energy_rel_diff": r["energy_rel_diff"], "forces_rel_diff": r["forces_rel_diff"]}
                       for k, r in results.items()},
    }


# --------------------------------------------------------------------------------------------
# benchmark worker (one peer, one system, one mode, in a fresh process)
# --------------------------------------------------------------------------------------------


def _proc_status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024  # bytes
    return values


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _make_call(peer: str, mode: str, atoms_list, neighbor_list: str):
    """Set up the peer and return (call, n_atoms, n_edges); call() returns (energy, forces)."""
    import atomml

    pot, spk_model = paired_models()
    cutoff = HYPER["cutoff"]
    if peer == "atomml":
        model = pot.to(torch.float32)
        if mode == "full":

            def call():
                out = model(atomml.from_ase(atoms_list, dtype=torch.float32), compute_forces=True)
                return out["energy"].detach(), out["forces"].detach()

            graph = atomml.from_ase(atoms_list, dtype=torch.float32).with_neighbors(cutoff)
        else:
            graph = atomml.from_ase(atoms_list, dtype=torch.float32).with_neighbors(cutoff)

            def call():
                out = model(graph, compute_forces=True)
                return out["energy"].detach(), out["forces"].detach()

        return call, graph.num_atoms, graph.num_edges
    del pot
    model = spk_model.to(torch.float32)
    converter = spk_converter(torch.float32, neighbor_list)
    if mode == "full":

        def call():
            out = model(converter(atoms_list))
            return out["energy"].detach(), out["forces"].detach()

        inputs = converter(atoms_list)
    else:
        inputs = converter(atoms_list)

        def call():
            out = model(dict(inputs))
            return out["energy"].detach(), out["forces"].detach()

    return call, int(inputs["_n_atoms"].sum()), int(inputs["_idx_i"].numel())


def measure_call(call, args) -> dict:
    """Warm-up calls, then the median time of ``args.repeats`` calls, or (``args.measure ==
    "memory"``) the peak extra RSS of one call; with the last call's energy sum and largest
    force (a check that the peers computed the same thing). Shared with bench_tensornet.py."""
    result: dict = {}
    for _ in range(args.warmup):
        energy, forces = call()
    gc.collect()
    if args.measure == "memory":
        reset = _reset_peak_rss()
        before = _proc_status()["VmRSS"]
        energy, forces = call()
        peak = _proc_status()["VmHWM"]
        result.update(peak_reset=reset, rss_before_mib=before / 2**20, peak_rss_mib=peak / 2**20,
                      extra_mib=(peak - before) / 2**20)
    else:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            energy, forces = call()
            times.append(time.perf_counter() - t0)
        result.update(seconds_median=statistics.median(times), seconds_min=min(times), seconds_all=times)
    result["energy_sum"] = float(energy.sum())
    result["forces_abs_max"] = float(forces.abs().max())
    return result


def worker(args) -> dict:
    torch.set_num_threads(args.threads)
    atoms_list = build_system(args.system)
    call, n_atoms, n_edges = _make_call(args.peer, args.mode, atoms_list, args.neighbor_list)
    result = {"peer": args.peer, "system": args.system, "mode": args.mode, "n_atoms": n_atoms,
              "n_structures": len(atoms_list), "n_edges_directed": n_edges, "threads": torch.get_num_threads()}
    result.update(measure_call(call, args))
    return result


def spawn_worker(script: str | Path, worker_args: list[str], measure: str, args, label: dict) -> dict:
    """Run ``script --worker ...`` in a fresh process (glibc returning freed memory for memory
    runs) and return its JSON; ``label`` names the run in the progress line and in an error."""
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", *worker_args, "--measure", measure,
           "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    env = dict(os.environ)
    if measure == "memory":
        env.update(MALLOC_ENV)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        return {"error": f"worker exited with {proc.returncode}", **label}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[bench] {' '.join(f'{v:10s}' for v in label.values())} {measure:6s} "
          + (f"{out['seconds_median']:.3f} s" if measure == "time" else f"{out['extra_mib']:.0f} MiB")
          + f"  (subprocess {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return out


def run_worker(peer: str, system: str, mode: str, measure: str, args) -> dict:
    worker_args = ["--peer", peer, "--system", system, "--mode", mode, "--neighbor-list", args.neighbor_list]
    return spawn_worker(__file__, worker_args, measure, args, {"peer": peer, "system": system, "mode": mode})


def atomml_source_state() -> dict:
    """Which atomml source the runs used (it is installed editable from this work tree)."""
    import hashlib

    def git(*cmd: str) -> str:
        proc = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else ""

    diff = git("diff", "HEAD", "--", "atomml")
    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "atomml_uncommitted_changes": bool(diff),
        "atomml_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
    }


def _pool(previous: dict | None, new: dict) -> dict:
    if previous is None or "error" in previous:
        return new
    if "error" in new:
        return previous
    times = previous["seconds_all"] + new["seconds_all"]
    return {**previous, "seconds_all": times, "seconds_median": statistics.median(times), "seconds_min": min(times)}


# Peak extra memory seen for schnetpack (the larger of the two), MiB per atom, with margin.
MIB_PER_ATOM_ESTIMATE = 1.1


def _available_mib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def wait_for_memory(system: str, args) -> bool:
    """Before a large run, wait (up to --memory-wait s) until MemAvailable covers the estimate,
    so that the benchmark never pushes the machine (shared with other work) into the OOM killer."""
    n_atoms = {"molecules": 800, "molecules20": 1400, "water1500": 1536, "water12000": 12288}.get(system, 0)
    need = n_atoms * MIB_PER_ATOM_ESTIMATE + 1024
    deadline = time.monotonic() + args.memory_wait
    while True:
        free = _available_mib()
        if free >= need:
            return True
        if time.monotonic() >= deadline:
            print(f"[bench] {system}: {free:.0f} MiB available, ~{need:.0f} MiB needed: skipped",
                  file=sys.stderr, flush=True)
            return False
        print(f"[bench] {system}: waiting for memory ({free:.0f} of ~{need:.0f} MiB available)",
              file=sys.stderr, flush=True)
        time.sleep(30)


def benchmark(args) -> dict:
    systems = [s for s in args.systems.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    report: dict = {
        "hyperparameters": HYPER, "dtype": "float32", "threads": args.threads, "repeats": args.repeats,
        "warmup": args.warmup, "rounds": args.rounds, "torch": torch.__version__, "schnetpack": import_schnetpack().__version__,
        "neighbor_lists": {"atomml": "vesin (atomml default)", "schnetpack": f"{args.neighbor_list} (transform)"},
        "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "atomml_source": atomml_source_state(), "systems": {},
    }
    for system in systems:
        entry: dict = {}
        for mode in modes:
            runs: dict = {peer: {} for peer in PEERS}
            # Timing in alternating rounds (atomml, schnetpack, atomml, ...) so that a change of
            # background load does not favour one peer; repeats of all rounds are pooled.
            for _ in range(args.rounds):
                for peer in PEERS:
                    if not wait_for_memory(system, args):
                        out = {"error": "skipped: not enough free memory", "peer": peer}
                    else:
                        out = run_worker(peer, system, mode, "time", args)
                    runs[peer]["time"] = _pool(runs[peer].get("time"), out)
            if not args.no_memory:
                for peer in PEERS:
                    if not wait_for_memory(system, args):
                        runs[peer]["memory"] = {"error": "skipped: not enough free memory", "peer": peer}
                    else:
                        runs[peer]["memory"] = run_worker(peer, system, mode, "memory", args)
            a, s = runs["atomml"], runs["schnetpack"]
            if "error" in a["time"] or "error" in s["time"]:
                entry[mode] = {"error": {"atomml": a, "schnetpack": s}}
                continue
            n = a["time"]["n_atoms"]
            m = {
                "n_atoms": n,
                "n_structures": a["time"]["n_structures"],
                "n_edges_directed": s["time"]["n_edges_directed"],
                "atomml_seconds": a["time"]["seconds_median"],
                "schnetpack_seconds": s["time"]["seconds_median"],
                "atomml_seconds_all": a["time"]["seconds_all"],
                "schnetpack_seconds_all": s["time"]["seconds_all"],
                "throughput_ratio": s["time"]["seconds_median"] / a["time"]["seconds_median"],
                # fastest calls: closer to the uncontended speed when other work shares the CPU
                "atomml_seconds_min": a["time"]["seconds_min"],
                "schnetpack_seconds_min": s["time"]["seconds_min"],
                "throughput_ratio_min": s["time"]["seconds_min"] / a["time"]["seconds_min"],
                "energy_rel_diff_float32": abs(a["time"]["energy_sum"] - s["time"]["energy_sum"])
                / max(abs(s["time"]["energy_sum"]), 1e-30),
            }
            if not args.no_memory and "error" not in a["memory"] and "error" not in s["memory"]:
                am, sm = a["memory"]["extra_mib"], s["memory"]["extra_mib"]
                m.update(
                    atomml_extra_mib=am, schnetpack_extra_mib=sm,
                    atomml_mib_per_atom=am / n, schnetpack_mib_per_atom=sm / n,
                    memory_ratio=sm / am if am > 0 else None,
                    peak_reset_ok=bool(a["memory"]["peak_reset"] and s["memory"]["peak_reset"]),
                )
            entry[mode] = m
        report["systems"][system] = entry
    report["load_average_at_end"] = os.getloadavg()
    if atomml_source_state() != report["atomml_source"]:
        report["warning"] = "atomml source changed during the run: the systems may have used different code"
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="float64 agreement check only; prints JSON")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {SYSTEMS}")
    p.add_argument("--modes", default=",".join(MODES), help="full (with neighbour list), model (precomputed)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="alternating timing rounds per peer (pooled)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory-wait", type=float, default=600.0,
                   help="seconds to wait for enough free memory before a run is skipped")
    p.add_argument("--neighbor-list", default="matscipy", choices=["matscipy", "ase"],
                   help="schnetpack's neighbour-list transform")
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--output", help="also write the JSON here")
    # worker-only
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--peer", choices=PEERS, help=argparse.SUPPRESS)
    p.add_argument("--system", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.check:
        torch.set_num_threads(args.threads)
        result = check_agreement()
    elif args.worker:
        result = worker(args)
    else:
        result = benchmark(args)
    text = json.dumps(result, indent=None if args.worker else 2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
