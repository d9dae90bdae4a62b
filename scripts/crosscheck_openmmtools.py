"""Cross-check atomml's alchemical decoupling (atomml.fe.alchemy) against openmmtools'
AbsoluteAlchemicalFactory on the systems the hydration workflow builds.

(a) Energies: the same GAFF2/TIP3P System (atomml.mm.solvated_molecule, atomml.fe.hydration.leg_system)
    decoupled both ways, evaluated on the Reference platform (double precision) at every state of
    the default protocol's schedule, on a few configurations (the tleap structure and snapshots of
    short MD in the coupled and in a soft-core state). openmmtools is built twice: with its
    defaults, and with ``disable_alchemical_dispersion_correction=True``; atomml twice: without
    and with the solute's dispersion correction. Methane (no 1-4 pairs) and ethanol (1-4 pairs
    inside the solute). The two scale the solute's 1-4 electrostatics along different paths
    between the same end states; that difference, E14 (lambda - lambda^2) with E14 computed from
    the exception list and coordinates alone, is subtracted before the comparison
    (``..._minus_14_path``).
(b) Free energy: the methane solvent leg sampled by the same sampler (atomml's Hamiltonian replica
    exchange) on the same short protocol with each alchemical System, MBAR on each.

Writes data/benchmarks/openmmtools_crosscheck.json. One CPU thread, about ten minutes
(``--energies-only``: part (a) alone, a minute):

    OPENMM_CPU_THREADS=1 python scripts/crosscheck_openmmtools.py [--quick] [--energies-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import openmm
from openmm import unit

from atomml.fe.alchemy import Schedule, alchemical_system, set_state
from atomml.fe.estimators import mbar
from atomml.fe.hydration import default_protocol, leg_system
from atomml.fe.sampling import read_u_kn, replica_exchange_statistics, sample_replica_exchange, sampling_speed
from atomml.mm import solvated_molecule
from atomml.units import KCAL_TO_KJ, NS_PER_FS, kt

ROOT = Path(__file__).resolve().parent.parent
KJ = unit.kilojoule_per_mole
COULOMB = 138.935457833  # kJ mol^-1 nm e^-2, 1/(4 pi eps0), OpenMM's ONE_4PI_EPS0


def openmmtools_system(system, solute, dispersion_correction: bool):
    from openmmtools.alchemy import AbsoluteAlchemicalFactory, AlchemicalRegion

    # the region's defaults: electrostatics annihilated (the solute's own scaled too, as atomml
    # does), sterics decoupled (its own LJ kept), soft core alpha 0.5, a = b = 1, c = 6
    region = AlchemicalRegion(alchemical_atoms=list(solute))
    factory = AbsoluteAlchemicalFactory(disable_alchemical_dispersion_correction=not dispersion_correction)
    return factory.create_alchemical_system(system, region)


def openmmtools_setter(alchemical):
    """A ``set_state(context, AlchemicalState)`` for an openmmtools System, through its AlchemicalState
    (with exact PME the charges are offsets that lambda_electrostatics alone does not set)."""
    from openmmtools.alchemy import AlchemicalState as ToolsState

    tools = ToolsState.from_system(alchemical)

    def apply(context, state) -> None:
        tools.lambda_electrostatics = state.electrostatics
        tools.lambda_sterics = state.sterics
        tools.apply_to_context(context)

    return apply


def energy_check(smiles: str, work: Path, protocol, md_steps: int) -> dict:
    setup, _ = solvated_molecule(smiles, work / "setup", padding=protocol.padding, seed=protocol.seed)
    system, positions, box = leg_system(setup, protocol, solvent=True)
    states = Schedule.decoupling(protocol.electrostatics, protocol.sterics).states
    variants = {
        "atomml": (alchemical_system(system, setup.molecule_atoms), set_state),
        "atomml_dispersion_correction": (alchemical_system(system, setup.molecule_atoms, dispersion_correction=True), set_state),
    }
    for name, lrc in (("openmmtools", True), ("openmmtools_no_alchemical_dispersion_correction", False)):
        tools = openmmtools_system(system, setup.molecule_atoms, lrc)
        variants[name] = (tools, openmmtools_setter(tools))

    # configurations: the tleap structure, then short MD (CPU) in the coupled state and in a soft-core
    # state, where water comes closer to the solute
    configurations = {"tleap": (np.array(positions.value_in_unit(unit.nanometer)), np.array(box.value_in_unit(unit.nanometer)))}
    integrator = openmm.LangevinMiddleIntegrator(protocol.temperature, 1.0, 2 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(variants["atomml"][0], integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 200)
    context.setVelocitiesToTemperature(protocol.temperature, 1)
    for state in (states[0], [s for s in states if s.sterics <= 0.3][0]):
        set_state(context, state)
        integrator.step(md_steps)
        snap = context.getState(getPositions=True)
        configurations[f"md {state.name}"] = (snap.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                                               snap.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    del context, integrator

    reference = openmm.Platform.getPlatformByName("Reference")
    contexts = {name: openmm.Context(s, openmm.VerletIntegrator(0.001), reference) for name, (s, _) in variants.items()}
    original = openmm.Context(system, openmm.VerletIntegrator(0.001), reference)
    energies = {name: [] for name in variants}  # [configuration][state], kJ/mol
    original_energies = []
    for xyz, cell in configurations.values():
        for _name, c in list(contexts.items()) + [("original", original)]:
            c.setPeriodicBoxVectors(*(openmm.Vec3(*v) for v in cell))
            c.setPositions(xyz)
        original_energies.append(original.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ))
        for name, c in contexts.items():
            row = []
            for state in states:
                variants[name][1](c, state)
                row.append(c.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ))
            energies[name].append(row)
    e = {name: np.array(v) for name, v in energies.items()}
    # the two scale the solute's 1-4 electrostatics differently along the way (atomml with the
    # square of the charge scaling, as its charges scale; openmmtools linearly): same end states,
    # another path, an energy difference of E14 (lambda - lambda^2) in the electrostatics states
    e14 = np.array([solute_14_electrostatics(system, setup.molecule_atoms, xyz) for xyz, _ in configurations.values()])
    lam = np.array([s.electrostatics for s in states])
    path = e14[:, None] * (lam - lam**2)[None, :]
    residual = e["openmmtools"] - e["atomml_dispersion_correction"] - path
    diff_default = e["openmmtools"] - e["atomml"]
    diff_nolrc = e["openmmtools_no_alchemical_dispersion_correction"] - e["atomml"]
    return {
        "smiles": smiles, "n_atoms": system.getNumParticles(), "solute_atoms": len(setup.molecule_atoms),
        "configurations": list(configurations), "states": [s.name for s in states],
        "platform": "Reference (double precision)",
        "original_minus_atomml_coupled_kj_per_mol": (np.array(original_energies) - e["atomml"][:, 0]).tolist(),
        "original_minus_openmmtools_coupled_kj_per_mol": (np.array(original_energies) - e["openmmtools"][:, 0]).tolist(),
        "openmmtools_minus_atomml_kj_per_mol": diff_default.tolist(),
        "openmmtools_no_dispersion_correction_minus_atomml_kj_per_mol": diff_nolrc.tolist(),
        "max_abs_openmmtools_no_dispersion_correction_minus_atomml_kj_per_mol": float(np.abs(diff_nolrc).max()),
        "max_abs_atomml_energy_kj_per_mol": float(np.abs(e["atomml"]).max()),
        "solute_14_electrostatics_kj_per_mol": e14.tolist(),
        "openmmtools_minus_atomml_dispersion_correction_minus_14_path_kj_per_mol": residual.tolist(),
        "max_abs_openmmtools_minus_atomml_dispersion_correction_minus_14_path_kj_per_mol": float(np.abs(residual).max()),
    }


def solute_14_electrostatics(system, solute, xyz_nm) -> float:
    """Coulomb energy (kJ/mol) of the solute's exceptions with a charge product: its scaled
    1-4 pairs, from the exception list and the coordinates alone."""
    nb = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    inside, total = set(solute), 0.0
    for k in range(nb.getNumExceptions()):
        i, j, qq, _, _ = nb.getExceptionParameters(k)
        qq = qq.value_in_unit(unit.elementary_charge**2)
        if i in inside and j in inside and qq != 0.0:
            total += COULOMB * qq / float(np.linalg.norm(np.asarray(xyz_nm[i]) - np.asarray(xyz_nm[j])))
    return total


def decorrelated_mbar(u_kn: np.ndarray, n_k: np.ndarray, temperature: float):
    """MBAR on each state's samples thinned by the statistical inefficiency of its energy
    differences to its neighbours (the quantities MBAR works with here), as pymbar advises."""
    from atomml.fe.estimators import statistical_inefficiency
    from pymbar import timeseries

    columns, sizes, g_k, start = [], [], [], 0
    for k, n in enumerate(n_k):
        own = u_kn[:, start : start + n]
        g = max(statistical_inefficiency(own[j] - own[k]) for j in (k - 1, k + 1) if 0 <= j < len(n_k))
        keep = np.asarray(timeseries.subsample_correlated_data(np.arange(n), g=g), dtype=int)
        columns.append(start + keep)
        sizes.append(len(keep))
        g_k.append(g)
        start += n
    return mbar(u_kn[:, np.concatenate(columns)], np.array(sizes), temperature), g_k


def free_energy_leg(work: Path, protocol, quick: bool) -> dict:
    setup, _ = solvated_molecule("C", work / "setup", padding=protocol.padding, seed=protocol.seed)
    system, positions, box = leg_system(setup, protocol, solvent=True)
    states = Schedule.decoupling(protocol.electrostatics, protocol.sterics).states
    # one start for both: the tleap box relaxed in NPT (fully coupled, the original System), so
    # that neither run spends its short sampling on the density settling
    integrator = openmm.LangevinMiddleIntegrator(protocol.temperature, 1.0, protocol.timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(7)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 200)
    context.setVelocitiesToTemperature(protocol.temperature, 7)
    prepare_steps = 500 if quick else 5000
    integrator.step(prepare_steps)
    start_state = context.getState(getPositions=True)
    positions, box = start_state.getPositions(asNumpy=True), start_state.getPeriodicBoxVectors()
    del context, integrator

    tools = openmmtools_system(system, setup.molecule_atoms, dispersion_correction=True)
    out = {"npt_preparation_ns": prepare_steps * protocol.timestep_fs * NS_PER_FS,
           "start_box_nm": [v[i] for i, v in enumerate(box.value_in_unit(unit.nanometer))]}  # fmt: skip
    # different seeds: the two estimates are independent, so their errors add in quadrature
    for seed, (name, alchemical, setter) in enumerate((("atomml", alchemical_system(system, setup.molecule_atoms), set_state),
                                                       ("openmmtools", tools, openmmtools_setter(tools)))):  # fmt: skip
        folder = work / f"solvent_{name}"
        start = time.perf_counter()
        sample_replica_exchange(alchemical, positions, states, setter, folder, temperature=protocol.temperature,
                                samples=protocol.samples, steps_per_sample=protocol.steps_per_sample,
                                equilibration_steps=protocol.equilibration_steps, timestep_fs=protocol.timestep_fs,
                                friction_per_ps=protocol.friction_per_ps, box=box, platform="CPU", seed=seed,
                                progress=not quick)  # fmt: skip
        u_kn, n_k = read_u_kn(folder)
        result = mbar(u_kn, n_k, protocol.temperature)
        thinned, g_k = decorrelated_mbar(u_kn, n_k, protocol.temperature)
        stats = replica_exchange_statistics(folder)
        out[name] = {
            "dF_decouple_kt": thinned.result.value_kt, "dF_decouple_error_kt": thinned.result.error_kt,
            "dF_decouple_kcal_per_mol": thinned.result.kcal_per_mol[0],
            "dF_decouple_error_kcal_per_mol": thinned.result.kcal_per_mol[1],
            "statistical_inefficiency_per_state": g_k,
            "all_samples_dF_decouple_kt": result.result.value_kt, "all_samples_error_kt": result.result.error_kt,
            "flags": list(thinned.result.flags), "min_neighbour_overlap": float(result.neighbour_overlaps.min()),
            "acceptance": stats["acceptance"].tolist(), "round_trips": stats["round_trips"],
            "ns_per_day_per_state": sampling_speed(folder).tolist(), "wall_seconds": time.perf_counter() - start,
            "seed": seed,
        }  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(ROOT / "runs" / "crosscheck_openmmtools"))
    parser.add_argument("--out", default=None, help="default: data/benchmarks/openmmtools_crosscheck.json "
                        "(--quick: quick.json in the work folder)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (a few samples), not a result")
    parser.add_argument("--energies-only", action="store_true",
                        help="redo (a) only and keep the free-energy part (b) of the existing report")
    args = parser.parse_args()
    import openmmtools

    start = time.perf_counter()
    work = Path(args.work) / ("quick" if args.quick else "full")
    base = default_protocol()
    # short: fewer states than the default schedule (methane's charges are small: two electrostatics
    # steps; sterics at 0.2 spacing only where the default schedule's swaps were accepted > 75%)
    protocol = dataclasses.replace(base, sampler="replica_exchange", samples=4 if args.quick else 24,
                                   steps_per_sample=250, equilibration_steps=100 if args.quick else 500,
                                   electrostatics=(1.0, 0.5, 0.0),
                                   sterics=(1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0))  # fmt: skip
    report = {
        "what": "atomml.fe.alchemy vs openmmtools AbsoluteAlchemicalFactory (defaults: exact PME treatment, "
                "soft core alpha 0.5, a = b = 1, c = 6, annihilated electrostatics, decoupled sterics)",
        "versions": {"openmmtools": openmmtools.__version__, "openmm": openmm.__version__, "numpy": np.__version__},
        "energies": {},
    }  # fmt: skip
    for smiles in ("C", "CCO"):
        report["energies"][smiles] = energy_check(smiles, work / f"energies_{smiles}", base, 100 if args.quick else 1000)
    out = Path(args.out or (work / "quick.json" if args.quick else ROOT / "data" / "benchmarks" / "openmmtools_crosscheck.json"))
    if args.energies_only:
        previous = json.loads(out.read_text())
        previous.update(energies=report["energies"], versions=report["versions"])
        out.write_text(json.dumps(previous, indent=1))
        print(json.dumps({s: {k: v for k, v in e.items() if k.startswith("max_abs")} for s, e in report["energies"].items()}, indent=1))
        return
    legs = free_energy_leg(work / "free_energy", protocol, args.quick)
    a, t = legs["atomml"], legs["openmmtools"]
    kt_kj = kt(protocol.temperature)
    shift = np.array(report["energies"]["C"]["openmmtools_minus_atomml_kj_per_mol"])  # [config][state]
    # u_tools = u_atomml + c(state, V): the difference of the shifts between the ends is what the two
    # decoupling free energies must differ by (c depends on the volume only, which barely moves)
    expected = float(np.mean(shift[:, -1] - shift[:, 0]) / kt_kj)
    difference = t["dF_decouple_kt"] - a["dF_decouple_kt"]
    error = float(np.hypot(t["dF_decouple_error_kt"], a["dF_decouple_error_kt"]))
    report["free_energy"] = {
        "molecule": "C (methane), solvent leg", "sampler": "atomml replica exchange, CPU platform",
        "protocol": dataclasses.asdict(protocol)
        | {"n_states": len(Schedule.decoupling(protocol.electrostatics, protocol.sterics))},
        "error_note": "dF errors are MBAR's on samples thinned by each state's statistical inefficiency "
                      "(all_samples_* take every sample as independent)",
        **legs,
        "openmmtools_minus_atomml_kt": difference, "difference_error_kt": error,
        "expected_difference_from_dispersion_correction_kt": expected,
        "z_vs_expected": (difference - expected) / error, "z_vs_zero": difference / error,
        "openmmtools_minus_atomml_kcal_per_mol": difference * kt_kj / KCAL_TO_KJ,
    }  # fmt: skip
    report["wall_seconds"] = time.perf_counter() - start
    report["quick"] = args.quick
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report["free_energy"].items() if not isinstance(v, dict)}, indent=1))


if __name__ == "__main__":
    main()
