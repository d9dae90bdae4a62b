"""Property benchmark for fcc metals and their alloys: a potential against a reference (EMT).

Every property is computed twice by the same function, once with each calculator, so the
comparison is like for like: each method at its own lattice constant a0 and its own relaxed
geometries. The ASE tools do the physics (``ase.eos``, ``ase.filters``, ``ase.optimize``,
``ase.phonons``, ``ase.build``, band paths from ``ase.lattice``); this module chooses the
structures, the settings and the targets of issue 23 and returns rows in the shared format of
:mod:`atomml.validation` (energies per atom in meV/atom, eV, GPa, Å, J/m², THz).
"""

from __future__ import annotations

import itertools
import math
import pathlib
import tempfile
from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc100, fcc110, fcc111
from ase.calculators.calculator import Calculator
from ase.constraints import FixSymmetry
from ase.data import atomic_numbers, reference_states
from ase.eos import EquationOfState
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.phonons import Phonons
from ase.units import create_units

from ..units import ELEMENTARY_CHARGE_C, EV_PER_A3_TO_GPA, EV_PER_MEV, METRE_PER_ANGSTROM

ELEMENTS = ("Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al")
METHODS = ("reference", "potential")
MEV = 1.0 / EV_PER_MEV
J_PER_M2 = ELEMENTARY_CHARGE_C / METRE_PER_ANGSTROM**2  # 1 eV/Å² in J/m²
# 1 eV of phonon energy (h nu) in THz; Planck's constant from the CODATA 2018 set that atomml.units uses
THZ = ELEMENTARY_CHARGE_C / create_units("2018")["_hplanck"] / 1e12
FMAX = 1e-3  # eV/Å: energies then converge to ~1e-6 eV, far below every target
MAX_STEPS = 400
STRAINS = (-0.01, -0.005, 0.005, 0.01)  # symmetric, so the quadratic term drops out of the slope

STRUCTURE_TARGET = "same sign; |error| <= 10 meV/atom or 15 %"
TARGETS: dict[str, Callable[[float, float], bool]] = {
    STRUCTURE_TARGET: lambda ref, pot: bool(
        np.sign(pot) == np.sign(ref) and (abs(pot - ref) <= 10.0 or abs(pot - ref) <= 0.15 * abs(ref))
    ),
    "within 5 %": lambda ref, pot: abs(pot - ref) <= 0.05 * abs(ref),
    "within 10 %": lambda ref, pot: abs(pot - ref) <= 0.10 * abs(ref),
    "c/a within 5 % of the reference's": lambda ref, pot: abs(pot - ref) <= 0.05 * abs(ref),
}


def _row(group: str, prop: str, system: str, unit: str, values: dict, target: str | None = None, note: str = ""):
    """One result row; non-finite values become None (and fail a target)."""
    ref, pot = (float(values[m]) if values[m] is not None and math.isfinite(values[m]) else None for m in METHODS)
    error = None if ref is None or pot is None else pot - ref
    passed = None
    if target is not None:
        passed = error is not None and TARGETS[target](ref, pot)
    note = "; ".join(n for n in (note, *values.get("notes", ())) if n)
    return {"group": group, "property": prop, "system": system, "unit": unit, "reference": ref,
            "potential": pot, "error": error, "metric": "difference", "target": target,
            "passed": passed, "note": note}  # fmt: skip


def _energy(atoms: Atoms, calc: Calculator) -> float:
    atoms.calc = calc
    return float(atoms.get_potential_energy())


def _relax(atoms: Atoms, calc: Calculator, notes: list[str], *, cell: bool = False, symmetry: bool = False) -> float:
    """Relax positions (and the cell, keeping the space group if ``symmetry``); energy in eV."""
    atoms.calc = calc
    if symmetry:
        atoms.set_constraint(FixSymmetry(atoms))
    opt = BFGS(FrechetCellFilter(atoms) if cell else atoms, logfile=None)
    if not opt.run(fmax=FMAX, steps=MAX_STEPS):
        notes.append(f"{atoms.get_chemical_formula()} not relaxed to {FMAX} eV/Å in {MAX_STEPS} steps")
    energy = float(atoms.get_potential_energy())
    atoms.set_constraint()
    return energy


def _free_atom(element: str) -> Atoms:
    return Atoms(element, positions=[(0.0, 0.0, 0.0)], cell=(20.0, 20.0, 20.0), pbc=False)


# -- fcc basics: equation of state, bulk energy, free atom --------------------------------------


def fcc_eos(calc: Calculator, element: str, points: int = 7) -> dict:
    """a0 (Å), B (GPa), E per atom at a0 (eV) of the fcc primitive cell, and the E(V) points.

    Two Birch-Murnaghan fits over ±2 % in a: the first around the tabulated lattice constant, the
    second around the first fit's a0, so a poor guess does not bias the result.
    """
    a0 = reference_states[atomic_numbers[element]]["a"]
    for _ in range(2):
        scales = np.linspace(0.98, 1.02, points)
        cells = [bulk(element, "fcc", a=a0 * s) for s in scales]
        volumes = [c.get_volume() for c in cells]
        energies = [_energy(c, calc) for c in cells]
        v0, _, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
        a0 = (4.0 * v0) ** (1.0 / 3.0)
    return {"a0": a0, "B": b * EV_PER_A3_TO_GPA, "E": _energy(bulk(element, "fcc", a=a0), calc),
            "E_atom": _energy(_free_atom(element), calc), "V": volumes, "E_V": energies}  # fmt: skip


def elastic_constants(calc: Calculator, element: str, a0: float) -> dict:
    """C11, C12, C44 and C' (GPa): stress-strain slopes of the cubic cell at a0.

    Every atom of fcc is a centre of inversion, so a homogeneous strain leaves no force on any
    atom and there is no internal relaxation to do (it would be needed for B2/L1_2 cells).
    """
    base = bulk(element, "fcc", a=a0, cubic=True)
    slopes = {}
    for mode in ("uniaxial", "shear"):
        stresses = []
        for e in STRAINS:
            eps = np.zeros((3, 3))
            if mode == "uniaxial":
                eps[0, 0] = e
            else:
                eps[1, 2] = eps[2, 1] = e / 2.0  # engineering shear strain gamma_yz = e
            atoms = base.copy()
            atoms.set_cell(base.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
            atoms.calc = calc
            stresses.append(atoms.get_stress(voigt=True) * EV_PER_A3_TO_GPA)
        stresses = np.array(stresses)
        slopes[mode] = np.polyfit(STRAINS, stresses, 1)[0]
    c11, c12 = slopes["uniaxial"][0], 0.5 * (slopes["uniaxial"][1] + slopes["uniaxial"][2])
    c44 = slopes["shear"][3]
    return {"C11": c11, "C12": c12, "C44": c44, "C'": 0.5 * (c11 - c12)}


# -- structure types and ordered alloys ---------------------------------------------------------


def structure_energies(calc: Calculator, element: str, fcc: dict, kinds: tuple[str, ...]) -> dict:
    """E(kind) - E(fcc) in meV/atom, each lattice relaxed with its space group kept."""
    v = fcc["a0"] ** 3 / 4.0  # start every structure at the fcc volume per atom
    start = {"bcc": lambda: bulk(element, "bcc", a=(2 * v) ** (1 / 3)),
             "sc": lambda: bulk(element, "sc", a=v ** (1 / 3)),
             "hcp": lambda: bulk(element, "hcp", a=(v * 2 / math.sqrt(2)) ** (1 / 3))}  # fmt: skip
    out, notes = {}, []
    for kind in kinds:
        atoms = start[kind]()
        e = _relax(atoms, calc, notes, cell=True, symmetry=True)
        out[kind] = (e / len(atoms) - fcc["E"]) * MEV
        if kind == "hcp":
            out["hcp c/a"] = atoms.cell.cellpar()[2] / atoms.cell.cellpar()[0]
    out["notes"] = notes
    return out


def ordered_alloy(kind: str, a: str, b: str, a0_a: float, a0_b: float) -> Atoms:
    """B2 AB, L1_0 AB (2-atom tetragonal cell, c/a = 1 in the fcc setting), L1_2 A3B."""
    if kind == "B2":
        v = (a0_a**3 + a0_b**3) / 8.0  # Vegard: mean fcc volume per atom
        return bulk(a + b, "cesiumchloride", a=(2 * v) ** (1 / 3))
    if kind == "L1_0":
        ac = ((a0_a**3 + a0_b**3) / 2.0) ** (1 / 3)
        s = ac / math.sqrt(2)
        return Atoms(a + b, scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5)], cell=(s, s, ac), pbc=True)
    ac = ((3 * a0_a**3 + a0_b**3) / 4.0) ** (1 / 3)
    faces = [(0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    return Atoms(a * 3 + b, scaled_positions=[*faces, (0, 0, 0)], cell=(ac, ac, ac), pbc=True)


def formation_energy(calc: Calculator, atoms: Atoms, fcc: dict[str, dict]) -> dict:
    """Formation energy (meV/atom) of the relaxed ordered alloy against the pure fcc elements."""
    notes: list[str] = []
    e = _relax(atoms, calc, notes, cell=True, symmetry=True)
    pure = sum(fcc[s]["E"] for s in atoms.get_chemical_symbols())
    return {"E_f": (e - pure) / len(atoms) * MEV, "notes": notes}


def tetragonal_ratio(atoms: Atoms, primitive: bool) -> float:
    """c/a of a tetragonal cell with c along the third vector; ``primitive``: the 2-atom cell of
    L1_0, whose in-plane vectors are the fcc face diagonals (c/a then in the fcc setting)."""
    lengths = atoms.cell.lengths()
    in_plane = 0.5 * (lengths[0] + lengths[1])
    return lengths[2] / (in_plane * math.sqrt(2) if primitive else in_plane)


def shape_under_relaxation(calc: Calculator, atoms: Atoms, primitive: bool) -> dict:
    """c/a after an unconstrained cell relaxation (what a user's FrechetCellFilter run gives)."""
    notes: list[str] = []
    _relax(atoms, calc, notes, cell=True)
    return {"c/a": tetragonal_ratio(atoms, primitive), "notes": notes}


# -- free atom, dimer, clusters -----------------------------------------------------------------


def dimer(calc: Calculator, element: str, e_atom: float, step: float) -> dict:
    """Binding curve E(d) - 2 E(atom) over 1.6-5 Å, and its minimum from a bounded 1D search."""
    from scipy.optimize import minimize_scalar

    def binding(d: float) -> float:
        atoms = Atoms(element * 2, positions=[(0, 0, 0), (0, 0, d)], cell=(20, 20, 25), pbc=False)
        return _energy(atoms, calc) - 2 * e_atom

    d = np.arange(1.6, 5.0 + 1e-9, step)
    curve = np.array([binding(x) for x in d])
    i = int(np.argmin(curve))
    notes = ["minimum at the edge of the 1.6-5 Å scan"] if i in (0, len(d) - 1) else []
    res = minimize_scalar(binding, bounds=(d[max(i - 1, 0)], d[min(i + 1, len(d) - 1)]),
                          method="bounded", options={"xatol": 1e-4})  # fmt: skip
    return {"E_b": float(res.fun), "r_e": float(res.x), "d": d, "curve": curve, "notes": notes}


def cluster_binding(calc: Calculator, element: str, e_atom: float, n: int, bond: float) -> dict:
    """Binding energy per atom (eV) of the relaxed equilateral trimer (n=3) or tetrahedron (n=4)."""
    tetra = np.array([(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)]) * bond / math.sqrt(8)
    tri = np.array([(0, 0, 0), (bond, 0, 0), (bond / 2, bond * math.sqrt(3) / 2, 0)])
    atoms = Atoms(element * n, positions=tri if n == 3 else tetra, cell=(20, 20, 20), pbc=False)
    notes: list[str] = []
    e = _relax(atoms, calc, notes)
    if (longest := atoms.get_all_distances().max()) > 1.5 * bond:
        notes.append(f"fell apart: atoms {longest:.1f} Å apart")
    return {"E_b": (e - n * e_atom) / n, "notes": notes}


# -- point defects and surfaces -----------------------------------------------------------------


def point_defects(calc: Calculator, element: str, fcc: dict, reps: int, kinds: tuple[str, ...]) -> dict:
    """Relaxed formation energies (eV) in a reps^3 conventional supercell at a0 (fixed cell)."""
    a0 = fcc["a0"]
    perfect = bulk(element, "fcc", a=a0, cubic=True).repeat(reps)
    n = len(perfect)
    e_perfect = _energy(perfect.copy(), calc)
    out, notes = {}, []
    for kind in kinds:
        atoms = perfect.copy()
        if kind == "vacancy":
            del atoms[0]
        elif kind == "octahedral":
            atoms.append(element)
            atoms.positions[-1] = (0.5 * a0, 0.5 * a0, 0.5 * a0)
        else:  # <100> dumbbell: two atoms share the site of atom 0, 0.6 a0 apart along x
            atoms.positions[0] = (0.3 * a0, 0.0, 0.0)
            atoms.append(element)
            atoms.positions[-1] = (-0.3 * a0, 0.0, 0.0)
        e = _relax(atoms, calc, notes)
        out[kind] = e - len(atoms) / n * e_perfect
    out["notes"] = notes
    return out


SURFACES = {"111": (fcc111, 9), "100": (fcc100, 9), "110": (fcc110, 13)}  # builder, layers (>= 11 Å)


def surface_energy(calc: Calculator, element: str, fcc: dict, facet: str, layers: int) -> dict:
    """Relaxed surface energy (J/m²) of a 1x1 slab at a0, periodic in-plane, 10 Å vacuum."""
    slab = SURFACES[facet][0](element, size=(1, 1, layers), a=fcc["a0"], vacuum=10.0)
    notes: list[str] = []
    e = _relax(slab, calc, notes)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    return {"gamma": (e - len(slab) * fcc["E"]) / (2 * area) * J_PER_M2, "notes": notes}


# -- phonons ------------------------------------------------------------------------------------


def phonons(calc: Calculator, element: str, a0: float, supercell: int, dos: bool) -> dict:
    """Frequencies (THz) at X and L, sorted (two TA, then LA), a dispersion and a DOS.

    ``supercell`` must be even: X and L are then commensurate with it, so their frequencies are
    exact for the force constants within it.
    """
    prim = bulk(element, "fcc", a=a0)
    path = prim.cell.bandpath("GXWKGL", npoints=120)
    with tempfile.TemporaryDirectory() as tmp:
        ph = Phonons(prim, calc, supercell=(supercell,) * 3, delta=0.01, name=str(pathlib.Path(tmp) / "ph"))
        ph.run()
        ph.read(acoustic=True)
    special = path.special_points
    at = ph.band_structure([special["X"], special["L"]], verbose=False) * THZ
    out = {f"{branch} at {q}": at[k, j] for k, q in enumerate("XL") for j, branch in ((0, "TA"), (2, "LA"))}
    if dos:
        out["bands"] = ph.band_structure(path.kpts, verbose=False) * THZ
        out["path"] = path
        grid = ph.get_dos(kpts=(supercell * 4,) * 3, verbose=False).sample_grid(npts=300, width=1e-3)
        out["dos"] = (grid.get_energies() * THZ, grid.get_weights() / THZ)
    return out


# -- figures ------------------------------------------------------------------------------------

STYLE = {"reference": {"color": "k", "ls": "-"}, "potential": {"color": "tab:red", "ls": "--"}}


def _figure(ncols: int = 1):
    from matplotlib.figure import Figure  # no pyplot: no global backend or state is touched

    fig = Figure(figsize=(5.0 * ncols, 4.0), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def _plot_curves(path: pathlib.Path, title: str, xlabel: str, ylabel: str, curves: dict) -> None:
    fig, (ax,) = _figure()
    for m in curves:
        ax.plot(*curves[m], label=m, marker="o" if m == "potential" else None, ms=3, **STYLE[m])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    fig.savefig(path, dpi=110)


def _plot_phonons(path: pathlib.Path, element: str, ph: dict) -> None:
    fig, (ax, ax_dos) = _figure(2)
    x, ticks, names = ph["reference"]["path"].get_linear_kpoint_axis()
    for m in (m for m in METHODS if "bands" in ph[m]):
        ax.plot(x, ph[m]["bands"], **STYLE[m], label=[m, None, None])
        ax_dos.plot(ph[m]["dos"][1], ph[m]["dos"][0], label=m, **STYLE[m])
    ax.set_xticks(ticks, [r"$\Gamma$" if n == "G" else n for n in names])
    ax.set(title=f"{element} fcc phonons", ylabel="frequency (THz)", xlim=(x[0], x[-1]))
    ax.legend()
    ax_dos.set(title=f"{element} phonon DOS", xlabel="DOS (states/THz/atom)", ylabel="frequency (THz)")
    fig.savefig(path, dpi=110)


# -- the benchmark ------------------------------------------------------------------------------


def run(
    potential_calc: Callable[[], Calculator],
    reference_calc: Callable[[], Calculator],
    *,
    quick: bool = False,
    plot_dir: pathlib.Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Every metals property for the potential and the reference; rows in the shared format.

    ``quick``: Cu (and CuAu) only, the cheapest form of each property (CI). Otherwise the seven
    metals, all 21 pairs, larger supercells and finer scans. PNGs go to ``plot_dir`` if given.
    """
    calcs = {"reference": reference_calc(), "potential": potential_calc()}
    say = progress or (lambda msg: None)
    if plot_dir is not None:
        plot_dir = pathlib.Path(plot_dir)
        plot_dir.mkdir(parents=True, exist_ok=True)
    elements = ("Cu",) if quick else ELEMENTS
    rows: list[dict] = []
    fcc: dict[str, dict] = {}

    def both(fn: Callable[[Calculator, str], dict]) -> dict:
        out = {"reference": fn(calcs["reference"], "reference")}
        try:
            out["potential"] = fn(calcs["potential"], "potential")
        except Exception as exc:  # noqa: BLE001 - whatever the potential does wrong is a row, not a crash
            out["potential"] = {"failed": f"{type(exc).__name__}: {exc}"}
        return out

    def pick(results: dict, key: str) -> dict:
        notes = [f"{m}: {n}" for m in METHODS for n in results[m].get("notes", ())]
        notes += [f"{m} failed: {results[m]['failed']}" for m in METHODS if "failed" in results[m]]
        return {**{m: results[m].get(key) for m in METHODS}, "notes": notes}

    for el in elements:
        say(f"metals: equation of state of fcc {el}")
        eos = both(lambda c, m: fcc_eos(c, el, points=5 if quick else 7))
        fcc[el] = eos
        rows += [_row("eos", "a0 (fcc)", el, "Å", pick(eos, "a0")), _row("eos", "B (fcc)", el, "GPa", pick(eos, "B"))]
        if plot_dir is not None:
            curves = {m: (eos[m]["V"], np.array(eos[m]["E_V"]) - eos[m]["E"]) for m in METHODS if "V" in eos[m]}
            _plot_curves(plot_dir / f"eos_{el}.png", f"{el} fcc equation of state", "volume per atom (Å³)",
                         "E - E(a0) (eV/atom)", curves)  # fmt: skip

        say(f"metals: elastic constants of {el}")
        el_c = both(lambda c, m: elastic_constants(c, el, eos[m]["a0"]))
        rows += [_row("elastic", k, el, "GPa", pick(el_c, k), "within 10 %") for k in ("C11", "C12", "C44", "C'")]

        say(f"metals: structure-type energies of {el}")
        kinds = ("bcc",) if quick else ("bcc", "hcp", "sc")
        st = both(lambda c, m: structure_energies(c, el, eos[m], kinds))
        rows += [_row("structure_energy", f"E({k}) - E(fcc)", el, "meV/atom", pick(st, k), STRUCTURE_TARGET)
                 for k in kinds]  # fmt: skip
        if "hcp" in kinds:
            rows.append(_row("structure_energy", "hcp c/a (relaxed)", el, "", pick(st, "hcp c/a")))

        say(f"metals: cohesive energy of {el}")
        coh = {m: eos[m]["E_atom"] - eos[m]["E"] if "E" in eos[m] else None for m in METHODS}
        rows.append(_row("cohesive", "E(atom) - E(fcc)", el, "eV/atom", coh, "within 5 %"))

        say(f"metals: dimer and clusters of {el}")
        dim = both(lambda c, m: dimer(c, el, eos[m]["E_atom"], 0.2 if quick else 0.05))
        rows += [_row("dimer", "dimer binding E(d_e) - 2 E(atom)", el, "eV", pick(dim, "E_b"), "within 10 %"),
                 _row("dimer", "dimer bond length d_e", el, "Å", pick(dim, "r_e"))]  # fmt: skip
        if plot_dir is not None:
            curves = {m: (dim[m]["d"], dim[m]["curve"]) for m in METHODS if "d" in dim[m]}
            _plot_curves(plot_dir / f"dimer_{el}.png", f"{el}$_2$ binding curve", "distance (Å)",
                         "E(d) - 2 E(atom) (eV)", curves)  # fmt: skip
        for n, name in ((3, "trimer (triangle)"), (4, "tetrahedron"))[: 1 if quick else 2]:
            cl = both(lambda c, m: cluster_binding(c, el, eos[m]["E_atom"], n, eos[m]["a0"] / math.sqrt(2)))
            rows.append(_row("cluster", f"{name} binding per atom", el, "eV/atom", pick(cl, "E_b")))

        say(f"metals: point defects in {el}")
        kinds = ("vacancy", "octahedral") if quick else ("vacancy", "octahedral", "dumbbell_100")
        reps = 2 if quick else 3
        pd = both(lambda c, m: point_defects(c, el, eos[m], reps, kinds))
        labels = {"vacancy": "vacancy", "octahedral": "octahedral interstitial",
                  "dumbbell_100": "<100> dumbbell interstitial"}  # fmt: skip
        for k in kinds:
            target = "within 10 %" if k == "vacancy" else None
            label = labels[k]
            rows.append(_row("defect", f"{label} formation energy", el, "eV", pick(pd, k), target,
                             f"relaxed, {reps}x{reps}x{reps} conventional supercell at a0"))  # fmt: skip

        say(f"metals: surface energies of {el}")
        facets = {"111": 5} if quick else {f: layers for f, (_, layers) in SURFACES.items()}
        for facet, layers in facets.items():
            s = both(lambda c, m: surface_energy(c, el, eos[m], facet, layers))
            rows.append(_row("surface", f"surface energy ({facet})", el, "J/m²", pick(s, "gamma"), "within 5 %",
                             f"relaxed {layers}-layer slab"))  # fmt: skip

        say(f"metals: phonons of {el}")
        sc = 2 if quick else 6
        ph = both(lambda c, m: phonons(c, el, eos[m]["a0"], sc, dos=plot_dir is not None))
        rows += [_row("phonon", f"{k} (fcc)", el, "THz", pick(ph, k), None, f"{sc}x{sc}x{sc} primitive supercell")
                 for k in ("TA at X", "LA at X", "TA at L", "LA at L")]  # fmt: skip
        if plot_dir is not None:
            _plot_phonons(plot_dir / f"phonons_{el}.png", el, ph)

        say(f"metals: {el} compressed 10 % along c, cell relaxed")

        def squeezed(c: Calculator, m: str) -> dict:
            atoms = bulk(el, "fcc", a=eos[m]["a0"], cubic=True)
            atoms.set_cell(atoms.cell[:] @ np.diag([1.0, 1.0, 0.9]), scale_atoms=True)
            return shape_under_relaxation(c, atoms, primitive=False)

        rows.append(_row("shape", "c/a after cell relaxation from c/a = 0.9", el, "", pick(both(squeezed), "c/a"),
                         "c/a within 5 % of the reference's", "1 = back to fcc; 0.707 = bcc (Bain path)"))  # fmt: skip

    pairs = [("Cu", "Au")] if quick else list(itertools.combinations(ELEMENTS, 2))
    alloys = {"L1_0": "{a}{b}"} if quick else {"B2": "{a}{b}", "L1_0": "{a}{b}", "A3B": "{a}3{b}", "AB3": "{a}{b}3"}
    for a, b in pairs:
        for el in (a, b):
            if el not in fcc:  # quick mode: the partner element needs its fcc energy and a0 too
                fcc[el] = both(lambda c, m: fcc_eos(c, el, points=5))
        say(f"metals: ordered alloys of {a}-{b}")
        for kind, name in alloys.items():
            x, y = (b, a) if kind == "AB3" else (a, b)
            struct = "L1_2" if kind in ("A3B", "AB3") else kind

            def relaxed(c: Calculator, m: str) -> dict:
                atoms = ordered_alloy(struct, x, y, fcc[x][m]["a0"], fcc[y][m]["a0"])
                out = formation_energy(c, atoms, {el: fcc[el][m] for el in (a, b)})
                if struct == "L1_0":  # a relaxed L1_0 cell can slide into B2 (c/a 0.707) without losing symmetry
                    out["notes"].append(f"c/a {tetragonal_ratio(atoms, primitive=True):.3f}")
                return out

            e_f = pick(both(relaxed), "E_f")
            rows.append(_row("alloy_formation", f"E_f({struct})", name.format(a=a, b=b), "meV/atom", e_f,
                             STRUCTURE_TARGET, "against the pure fcc elements"))  # fmt: skip
        if (a, b) == ("Cu", "Au"):
            say("metals: L1_0 CuAu, cell relaxed without constraints")

            def l10(c: Calculator, m: str) -> dict:
                atoms = ordered_alloy("L1_0", a, b, fcc[a][m]["a0"], fcc[b][m]["a0"])
                return shape_under_relaxation(c, atoms, primitive=True)

            rows.append(_row("shape", "L1_0 c/a after cell relaxation from c/a = 1", "CuAu", "", pick(both(l10), "c/a"),
                             "c/a within 5 % of the reference's", "fcc setting; 0.707 = B2"))  # fmt: skip
    return rows
