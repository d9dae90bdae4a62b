"""The physics test battery every atomml potential must pass.

Each ``check_*`` function takes a :class:`~atomml.potential.Potential` (and structures where
relevant), runs the check and raises ``AssertionError`` with a message saying what broke. None
needs pytest: a plugin's own test suite, or a plain script, can call them. Every registered
architecture gets the whole battery (``tests/unit/test_battery.py`` loops over the registry);
layers are checked on their own with :func:`atomml.testing.check_equivariant`.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from .. import keys
from ..errors import InputError, PotentialFileError
from ..graph import from_ase
from ..potential import Potential
from .structures import random_rotation

# (rtol, atol) for energies and forces, per dtype
TOLERANCES = {torch.float64: (1e-9, 1e-9), torch.float32: (1e-4, 2e-4)}


@contextlib.contextmanager
def _raises(kind: type[Exception], match: str) -> Iterator[None]:
    """Like ``pytest.raises``, without pytest."""
    try:
        yield
    except kind as exc:
        if not re.search(match, str(exc)):
            raise AssertionError(f"{kind.__name__} raised, but its message does not say {match!r}: {exc}") from exc
    else:
        raise AssertionError(f"no {kind.__name__} raised (expected one saying {match!r})")


def _evaluate(potential: Potential, atoms: Atoms | Sequence[Atoms], stress: bool = False) -> dict[str, np.ndarray]:
    graph = from_ase(atoms, dtype=potential.dtype)
    out = potential(graph, compute_forces=True, compute_stress=stress)
    return {k: v.detach().double().numpy() for k, v in out.items()}


def _close(a: np.ndarray, b: np.ndarray, dtype: torch.dtype, what: str, scale: float = 1.0) -> None:
    rtol, atol = TOLERANCES[dtype]
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale, err_msg=what)


def check_invariance(potential: Potential, atoms: Atoms, seed: int = 0) -> None:
    """Rotation (and reflection, O(3)), translation and permutation: energy invariant, forces
    equivariant."""
    rng = np.random.default_rng(seed)
    dtype = potential.dtype
    ref = _evaluate(potential, atoms)
    scale = max(1.0, float(np.abs(ref[keys.FORCES]).max()))
    for reflect in (False, True):
        rot = random_rotation(rng, reflect=reflect)
        moved = atoms.copy()
        moved.positions = atoms.positions @ rot.T + rng.normal(size=3) * 3.0
        moved.cell = np.asarray(atoms.cell) @ rot.T
        out = _evaluate(potential, moved)
        _close(out[keys.ENERGY], ref[keys.ENERGY], dtype, f"energy not invariant (reflect={reflect})", len(atoms))
        _close(out[keys.FORCES], ref[keys.FORCES] @ rot.T, dtype, f"forces not equivariant (reflect={reflect})", scale)
    perm = rng.permutation(len(atoms))
    out = _evaluate(potential, atoms[perm])
    _close(out[keys.ENERGY], ref[keys.ENERGY], dtype, "energy changes under permutation", len(atoms))
    _close(out[keys.FORCES], ref[keys.FORCES][perm], dtype, "forces not permuted with the atoms", scale)


def check_periodic_wrapping(potential: Potential, atoms: Atoms, seed: int = 0) -> None:
    """Moving atoms by lattice vectors along periodic axes changes nothing."""
    rng = np.random.default_rng(seed)
    moved = atoms.copy()
    shifts = rng.integers(-2, 3, size=(len(atoms), 3)) * atoms.pbc
    moved.positions = atoms.positions + shifts @ np.asarray(atoms.cell)
    ref, out = _evaluate(potential, atoms), _evaluate(potential, moved)
    scale = max(1.0, float(np.abs(ref[keys.FORCES]).max()))
    _close(out[keys.ENERGY], ref[keys.ENERGY], potential.dtype, "energy changes when atoms are wrapped", len(atoms))
    _close(out[keys.FORCES], ref[keys.FORCES], potential.dtype, "forces change when atoms are wrapped", scale)


def check_forces_finite_difference(potential: Potential, atoms: Atoms, n_checks: int = 6, seed: int = 0, h: float = 1e-5) -> None:
    """Forces equal -dE/dr by central differences (float64 potential required)."""
    assert potential.dtype == torch.float64, "finite differences need a float64 potential"
    rng = np.random.default_rng(seed)
    forces = _evaluate(potential, atoms)[keys.FORCES]
    for _ in range(n_checks):
        a, k = int(rng.integers(len(atoms))), int(rng.integers(3))
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[a, k] += sign * h
            energies.append(_evaluate(potential, displaced)[keys.ENERGY][0])
        numeric = -(energies[0] - energies[1]) / (2 * h)
        assert math.isclose(forces[a, k], numeric, rel_tol=1e-5, abs_tol=1e-6), (
            f"force on atom {a} along {'xyz'[k]}: autograd {forces[a, k]:.10g}, finite difference {numeric:.10g}"
        )


def check_stress_finite_difference(potential: Potential, atoms: Atoms, h: float = 1e-5) -> None:
    """Stress equals (1/V) dE/dε for each Voigt component by central differences (float64)."""
    assert potential.dtype == torch.float64, "finite differences need a float64 potential"
    stress = _evaluate(potential, atoms, stress=True)[keys.STRESS][0]
    volume = abs(np.linalg.det(np.asarray(atoms.cell)))
    voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for v, (a, b) in enumerate(voigt):
        energies = []
        for sign in (1, -1):
            # symmetric strain with d(energy)/dh = V * stress[v] (off-diagonal: half on each side)
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = sign * h if a == b else sign * h / 2
            strained = atoms.copy()
            strained.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)
            energies.append(_evaluate(potential, strained)[keys.ENERGY][0])
        numeric = (energies[0] - energies[1]) / (2 * h) / volume
        assert math.isclose(stress[v], numeric, rel_tol=1e-5, abs_tol=1e-8), (
            f"stress component {v} (Voigt): autograd {stress[v]:.10g}, finite difference {numeric:.10g}"
        )


def check_cutoff_smoothness(potential: Potential, element: int | None = None) -> None:
    """A dimer's energy and force go continuously to the isolated-atom values at the cutoff."""
    z = element or potential.elements[0]
    rc = potential.cutoff
    isolated = _evaluate(potential, Atoms(numbers=[z, z], positions=[[0, 0, 0], [0, 0, 3 * rc]]))
    near = _evaluate(potential, Atoms(numbers=[z, z], positions=[[0, 0, 0], [0, 0, rc - 1e-4]]))
    beyond = _evaluate(potential, Atoms(numbers=[z, z], positions=[[0, 0, 0], [0, 0, rc + 1e-4]]))
    _close(beyond[keys.ENERGY], isolated[keys.ENERGY], potential.dtype, "atoms beyond the cutoff interact")
    gap = abs(float(near[keys.ENERGY][0] - isolated[keys.ENERGY][0]))
    assert gap < 1e-5, f"energy jumps by {gap:.3g} eV at the cutoff"
    force = float(np.abs(near[keys.FORCES]).max())
    assert force < 1e-3, f"force {force:.3g} eV/Å just inside the cutoff: not smooth"


def check_supercell_additivity(potential: Potential, atoms: Atoms, repeat: tuple[int, int, int] = (2, 1, 2)) -> None:
    """E(supercell) = n E(cell), and forces repeat (repeated along periodic axes only)."""
    repeat = tuple(r if periodic else 1 for r, periodic in zip(repeat, atoms.pbc))
    n = int(np.prod(repeat))
    ref, big = _evaluate(potential, atoms), _evaluate(potential, atoms.repeat(repeat))
    _close(big[keys.ENERGY], n * ref[keys.ENERGY], potential.dtype, "supercell energy is not additive", n * len(atoms))
    scale = max(1.0, float(np.abs(ref[keys.FORCES]).max()))
    _close(big[keys.FORCES], np.tile(ref[keys.FORCES], (n, 1)), potential.dtype, "supercell forces differ", scale)


def check_batch_consistency(potential: Potential, structures: Sequence[Atoms]) -> None:
    """A batch gives each structure the energy, forces and stress it has alone."""
    periodic = all(a.pbc.all() for a in structures)
    batched = _evaluate(potential, list(structures), stress=periodic)
    start = 0
    for b, atoms in enumerate(structures):
        alone = _evaluate(potential, atoms, stress=periodic)
        scale = max(1.0, float(np.abs(alone[keys.FORCES]).max()))
        _close(batched[keys.ENERGY][b], alone[keys.ENERGY][0], potential.dtype, f"structure {b}: batched energy differs", len(atoms))
        _close(batched[keys.FORCES][start : start + len(atoms)], alone[keys.FORCES], potential.dtype, f"structure {b}: batched forces differ", scale)
        if periodic:
            _close(batched[keys.STRESS][b], alone[keys.STRESS][0], potential.dtype, f"structure {b}: batched stress differs")
        start += len(atoms)


def check_no_gradient_leak(potential: Potential, structures: Sequence[Atoms]) -> None:
    """The energy of one structure of a batch does not depend on atoms of another."""
    graph = from_ase(list(structures), dtype=potential.dtype)
    positions = graph.positions.clone().requires_grad_(True)
    energy = potential(graph.replace(positions=positions), compute_forces=False)[keys.ENERGY]
    for b in range(len(structures)):
        (grad,) = torch.autograd.grad(energy[b], positions, retain_graph=True)
        others = graph.batch != b
        leak = float(grad[others].abs().max()) if bool(others.any()) else 0.0
        assert leak == 0.0, f"energy of structure {b} has gradient {leak:.3g} w.r.t. atoms of other structures"


def check_nve_conservation(potential: Potential, atoms: Atoms, steps: int = 200, timestep_fs: float = 0.5, temperature: float = 300.0) -> None:
    """Velocity Verlet conserves total energy: drift and fluctuation small next to kT."""
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from .. import units
    from ..interfaces.ase import AtomMLCalculator

    atoms = atoms.copy()
    atoms.calc = AtomMLCalculator(potential, dtype=potential.dtype, skin=0.5)
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(0))
    Stationary(atoms)
    energies = []
    dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.FS)
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=5)
    dyn.run(steps)
    energies = np.array(energies)
    spread = float(energies.max() - energies.min()) / len(atoms)
    kt = units.kt(temperature, "eV")
    assert spread < 0.01 * kt, f"total energy varies by {spread:.3g} eV/atom over {steps} NVE steps (> 1% of kT)"


def check_bad_inputs(potential: Potential, atoms: Atoms) -> None:
    """Clear errors for unknown elements, overlapping atoms, NaN coordinates, singular cells,
    empty structures and damaged potential files."""
    from ..potential_file import load_potential, save_potential

    unknown = next(z for z in range(1, 119) if z not in potential.elements)
    bad = atoms.copy()
    bad.numbers[0] = unknown
    with _raises(InputError, match="does not know element"):
        _evaluate(potential, bad)
    bad = atoms.copy()
    bad.positions[1] = bad.positions[0]
    with _raises(InputError, match="overlapping"):
        _evaluate(potential, bad)
    bad = atoms.copy()
    bad.positions[0, 1] = np.nan
    with _raises(InputError, match="non-finite"):
        _evaluate(potential, bad)
    bad = atoms.copy()
    bad.pbc = True
    bad.cell = [[4.0, 0, 0], [8.0, 0, 0], [0, 0, 4.0]]
    with _raises(InputError, match="singular"):
        _evaluate(potential, bad)
    with _raises(InputError, match="no atoms"):
        _evaluate(potential, Atoms())
    with tempfile.TemporaryDirectory() as tmp:
        path = save_potential(potential, Path(tmp) / "p.safetensors")
        data = bytearray(path.read_bytes())
        (Path(tmp) / "truncated.safetensors").write_bytes(bytes(data[: len(data) // 2]))
        with _raises(PotentialFileError, match="damaged"):
            load_potential(Path(tmp) / "truncated.safetensors")
        data[-5] ^= 0xFF  # flip bits inside the weights
        (Path(tmp) / "flipped.safetensors").write_bytes(bytes(data))
        with _raises(PotentialFileError, match="damaged"):
            load_potential(Path(tmp) / "flipped.safetensors")


def _neutral(atoms: Atoms) -> Atoms:
    """A copy with zero partial charges, for potentials whose terms need charges."""
    atoms = atoms.copy()
    atoms.set_initial_charges(np.zeros(len(atoms)))
    return atoms


def check_isolated_atoms(potential: Potential) -> None:
    """A lone atom of each element: no force, the same energy wherever it is, alone or inside
    a large periodic cell (no image within the cutoff), and lone atoms far apart add up."""
    far = potential.cutoff + 1.0
    singles = []
    for z in potential.elements:
        alone = _evaluate(potential, _neutral(Atoms(numbers=[z], positions=[[0.3, -1.1, 2.0]])))
        energy = float(alone[keys.ENERGY][0])
        assert math.isfinite(energy), f"element Z={z}: isolated-atom energy is {energy}"
        assert float(np.abs(alone[keys.FORCES]).max()) == 0.0, f"element Z={z}: a lone atom feels a force"
        moved = _evaluate(potential, _neutral(Atoms(numbers=[z], positions=[[-7.0, 3.5, 11.0]])))
        _close(moved[keys.ENERGY], alone[keys.ENERGY], potential.dtype, f"element Z={z}: isolated-atom energy depends on position")
        if not potential.long_range:
            boxed = Atoms(numbers=[z], positions=[[1.0, 2.0, 3.0]], cell=np.eye(3) * far, pbc=True)
            periodic = _evaluate(potential, _neutral(boxed))
            _close(periodic[keys.ENERGY], alone[keys.ENERGY], potential.dtype,
                   f"element Z={z}: a lone atom in a periodic cell of {far:.1f} Å (no image within the cutoff) "
                   "has another energy than in vacuum")  # fmt: skip
        singles.append(energy)
    n = len(potential.elements)
    spread = Atoms(numbers=potential.elements, positions=np.arange(n)[:, None] * np.array([[far * 10, 0.0, 0.0]]))
    together = _evaluate(potential, _neutral(spread))
    _close(together[keys.ENERGY], np.array([sum(singles)]), potential.dtype, "lone atoms far apart do not add up", n)


def check_fragment_additivity(potential: Potential, first: Atoms, second: Atoms, separation: float | None = None) -> None:
    """Two non-periodic fragments far apart: E(A + B) = E(A) + E(B) and each keeps its forces.

    ``separation`` (Å) is the smallest distance between the fragments: by default 1 Å beyond the
    cutoff, or 10⁴ Å for a long-range potential (give neutral fragments then: charges interact
    at any distance; a dipole pair at 10⁴ Å is below 1e-9 eV).
    """
    if first.pbc.any() or second.pbc.any():
        raise ValueError("check_fragment_additivity takes non-periodic fragments")
    if separation is None:
        separation = 1e4 if potential.long_range else potential.cutoff + 1.0
    a, b = first.copy(), second.copy()
    b.positions += (a.positions[:, 0].max() - b.positions[:, 0].min() + separation) * np.array([1.0, 0.0, 0.0])
    combined = a + b
    combined.info["charge"] = float(a.info.get("charge", 0.0)) + float(b.info.get("charge", 0.0))
    together, alone_a, alone_b = _evaluate(potential, combined), _evaluate(potential, a), _evaluate(potential, b)
    n = len(combined)
    scale = max(1.0, float(np.abs(together[keys.FORCES]).max()))
    _close(together[keys.ENERGY], alone_a[keys.ENERGY] + alone_b[keys.ENERGY], potential.dtype,
           f"fragments {separation:g} Å apart do not add up", n)  # fmt: skip
    forces = np.concatenate([alone_a[keys.FORCES], alone_b[keys.FORCES]])
    _close(together[keys.FORCES], forces, potential.dtype, f"fragments {separation:g} Å apart change each other's forces", scale)
