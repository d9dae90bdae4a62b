"""Hydration free energies of methane, ethane, methanol and ethanol against FreeSolv, MM and ML/MM.

    .venv/bin/python scripts/freesolv_hydration.py prepare
    .venv/bin/python scripts/freesolv_hydration.py run --molecule methane --leg solvent --max-minutes 60
    .venv/bin/python scripts/freesolv_hydration.py report

``prepare`` makes each molecule's GAFF2/AM1-BCC set-up and TIP3P box (RDKit + AmberTools) in
``runs/freesolv/<molecule>/setup``. ``run`` samples one leg of one molecule, resumably, within a
wall-clock budget: ``solvent`` and ``vacuum`` are the MM decoupling legs
(``md/protocols/freesolv.yaml``: Hamiltonian replica exchange over 17 states), ``ml_solvent`` and
``ml_vacuum`` the MM→ML end-state legs with the shipped organic potential (the same sampler over
``ML_LAMBDAS``). The legs are independent, so they can run side by side or on another machine
(only OpenMM, openmm-ml and atomml are needed there; the set-up files travel with the folder).
Every leg stores its samples as it goes; running it again continues it. ``report`` analyses
whatever has been sampled (MBAR on equilibrated, uncorrelated samples; the solute's long-range
dispersion correction added to the coupled state, as in FreeSolv's own GROMACS runs) and writes
``data/benchmarks/freesolv_hydration.json`` with the sampling length of every leg next to
FreeSolv's experimental and GAFF-calculated values, and prints the table. ``--force-field gaff``
runs the same legs with GAFF 1.x parameters (FreeSolv's force field; the same conformer and
AM1-BCC charges) in ``runs/freesolv/<molecule>_gaff``; ``report`` adds them where both legs exist,
which separates the force field's share of a difference to FreeSolv's GAFF values from ours.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# FreeSolv 0.52 (Mobley & Guthrie 2014): experimental and GAFF-calculated ΔG_hyd, kcal/mol
MOLECULES = {
    "methane": {"smiles": "C", "experiment": 2.00, "freesolv_gaff": 2.45},
    "ethane": {"smiles": "CC", "experiment": 1.83, "freesolv_gaff": 2.46},
    "methanol": {"smiles": "CO", "experiment": -5.10, "freesolv_gaff": -3.49},
    "ethanol": {"smiles": "CCO", "experiment": -5.00, "freesolv_gaff": -3.39},
}
ML_POTENTIAL = "tensornet-organic-gfn2"
ML_LAMBDAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
ML_SAMPLES = 5000  # iterations of 0.2 ps, an upper bound like the protocol's
LEGS = ("solvent", "vacuum", "ml_solvent", "ml_vacuum")


def protocols():
    from atomml.fe.hydration import HydrationProtocol
    from atomml.fe.mlmm import EndStateProtocol

    mm = HydrationProtocol.from_yaml(ROOT / "md" / "protocols" / "freesolv.yaml")
    # 0.2 ps between samples: the MM->ML energy difference of a small solute decorrelates fast
    # compiled: up to a minute of compilation per leg, then less per-operation overhead for a 5-9 atom solute
    ml = EndStateProtocol(lambdas=ML_LAMBDAS, samples=ML_SAMPLES, steps_per_sample=100, equilibration_steps=1000,
                          compile=True)  # fmt: skip
    return mm, ml


def potential_sha256(name: str) -> str:
    from atomml.potential_file import resolve

    return hashlib.sha256(Path(resolve(name)).read_bytes()).hexdigest()


def run_folder(workdir: Path, molecule: str, force_field: str) -> Path:
    """The runs of the default GAFF2 set-up are in ``workdir/<molecule>``, others beside them."""
    return workdir / (molecule if force_field == "gaff2" else f"{molecule}_{force_field}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("prepare", "run", "report"))
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "freesolv")
    parser.add_argument("--molecule", choices=sorted(MOLECULES))
    parser.add_argument("--leg", choices=LEGS)
    parser.add_argument("--platform", help="OpenMM platform (default: the fastest there is)")
    parser.add_argument("--ml-device", help="torch device of the ML solute (default: CUDA if there is one)")
    parser.add_argument("--max-minutes", type=float, help="wall-clock budget of the leg's sampling")
    parser.add_argument("--potential", default=ML_POTENTIAL)
    parser.add_argument("--force-field", choices=("gaff2", "gaff"), default="gaff2",
                        help="MM parameters of the solute; 'gaff' (FreeSolv's own) runs in <molecule>_gaff")
    parser.add_argument("--output", type=Path, default=ROOT / "data" / "benchmarks" / "freesolv_hydration.json")
    args = parser.parse_args()
    mm, ml = protocols()
    mm = dataclasses.replace(mm, force_field=args.force_field)

    if args.action == "prepare":
        from atomml.mm import solvated_molecule

        for name, molecule in MOLECULES.items():
            setup = run_folder(args.workdir, name, mm.force_field) / "setup"
            solvated_molecule(molecule["smiles"], setup, padding=mm.padding, seed=mm.seed, force_field=mm.force_field)
            print(f"{name}: set up in {setup}", flush=True)
        return

    if args.action == "run":
        if not (args.molecule and args.leg):
            parser.error("run needs --molecule and --leg")
        smiles, folder = MOLECULES[args.molecule]["smiles"], run_folder(args.workdir, args.molecule, mm.force_field)
        if args.leg.startswith("ml_"):
            from atomml.fe.mlmm import run_ml_leg

            done = run_ml_leg(smiles, args.potential, folder, args.leg[3:], mm, ml, platform=args.platform,
                              max_minutes=args.max_minutes, progress=False, device=args.ml_device)  # fmt: skip
        else:
            from atomml.fe.hydration import run_leg

            done = run_leg(smiles, folder, args.leg, mm, platform=args.platform, max_minutes=args.max_minutes, progress=False)
        print(json.dumps({"molecule": args.molecule, "leg": args.leg, "complete": done}), flush=True)
        return

    from atomml.fe.hydration import summarise
    from atomml.fe.mlmm import summarise_ml

    rows, table, gaff_table = {}, [], []
    for name, molecule in MOLECULES.items():
        folder = args.workdir / name
        row = {**molecule}
        try:
            row["mm"] = summarise(molecule["smiles"], folder, mm)
        except (OSError, ValueError, RuntimeError) as exc:
            row["mm_missing"] = str(exc)
        gaff_folder = run_folder(args.workdir, name, "gaff")
        if "mm" in row and (gaff_folder / "solvent").exists() and (gaff_folder / "vacuum").exists():
            row["mm_gaff"] = summarise(molecule["smiles"], gaff_folder, dataclasses.replace(mm, force_field="gaff"))
            g = row["mm_gaff"]
            gaff_table.append(f"| {name} | {molecule['freesolv_gaff']:.2f} | {g['dG_hydration_kcal_per_mol']:.2f} ± "
                              f"{g['dG_hydration_error_kcal_per_mol']:.2f} | {row['mm']['dG_hydration_kcal_per_mol']:.2f} ± "
                              f"{row['mm']['dG_hydration_error_kcal_per_mol']:.2f} | "
                              f"{min(g['samples_per_state']['solvent']) * mm.steps_per_sample * mm.timestep_fs / 1000:.0f} ps/state |")  # fmt: skip
        try:
            row["ml_correction"] = summarise_ml(molecule["smiles"], args.potential, folder, mm, ml)
            row["ml_correction"]["potential_sha256"] = potential_sha256(args.potential)
        except (OSError, ValueError, RuntimeError) as exc:
            row["ml_missing"] = str(exc)
        rows[name] = row
        mm_value = row.get("mm", {}).get("dG_hydration_kcal_per_mol")
        mm_error = row.get("mm", {}).get("dG_hydration_error_kcal_per_mol")
        cor = row.get("ml_correction", {})
        cells = [name, f"{molecule['experiment']:.2f}", f"{molecule['freesolv_gaff']:.2f}"]
        cells.append("—" if mm_value is None else f"{mm_value:.2f} ± {mm_error:.2f}")
        if mm_value is not None:
            ns = row["mm"]["simulated_ns_per_leg"]
            n = min(row["mm"]["samples_per_state"]["solvent"])
            cells.append(f"{n * mm.steps_per_sample * mm.timestep_fs / 1000:.0f} ps/state; "
                         f"{ns['solvent']:.1f} ns water, {ns['vacuum']:.1f} ns vacuum")
        else:
            cells.append("—")
        if cor:
            c, ce = cor["ddG_mm_to_ml_kcal_per_mol"], cor["ddG_mm_to_ml_error_kcal_per_mol"]
            cells.append(f"{c:+.2f} ± {ce:.2f}")
            n = min(cor["samples_per_state"]["solvent"])
            cells.append(f"{n * ml.steps_per_sample * ml.timestep_fs / 1000:.0f} ps/state; "
                         f"{cor['simulated_ns_per_leg']['solvent']:.2f} ns water")
            cells.append("—" if mm_value is None else f"{mm_value + c:.2f} ± {(mm_error**2 + ce**2) ** 0.5:.2f}")
        else:
            cells += ["—", "—", "—"]
        flags = row.get("mm", {}).get("flags", []) + cor.get("flags", [])
        cells.append(str(len(flags)))
        table.append("| " + " | ".join(cells) + " |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"molecules": rows, "ml_potential": args.potential,
                                       "workdir": str(args.workdir.relative_to(ROOT) if args.workdir.is_relative_to(ROOT) else args.workdir)},
                                      indent=1, default=str))  # fmt: skip
    header = ("| molecule | exp. | FreeSolv GAFF | atomml MM (GAFF2) | MM sampling | MM→ML ΔΔG | ML sampling | "
              "ML/MM ΔG | flags |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    print("kcal/mol, 298.15 K\n" + header + "\n" + "\n".join(table))
    if gaff_table:
        print("\nGAFF 1.x (FreeSolv's force field), same charges and protocol\n"
              "| molecule | FreeSolv GAFF | atomml MM (GAFF) | atomml MM (GAFF2) | water sampling |\n|---|---|---|---|---|\n"
              + "\n".join(gaff_table))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
