"""Physical constants and unit conversions: the one module where they are written.

Source: CODATA 2018 exact and recommended values (the set that ASE's ``create_units("2018")``
and OpenMM use). Internal units are eV, Å, amu, and ASE's time unit Å·sqrt(amu/eV).
No other module writes a conversion factor as a literal.
"""

from __future__ import annotations

import math

# CODATA 2018
ELEMENTARY_CHARGE_C = 1.602176634e-19  # exact
AVOGADRO = 6.02214076e23  # exact, 1/mol
BOLTZMANN_J_PER_K = 1.380649e-23  # exact
ATOMIC_MASS_UNIT_KG = 1.66053906660e-27

# Energy
EV_TO_KJ_PER_MOL = ELEMENTARY_CHARGE_C * AVOGADRO / 1000.0  # 96.485332...
KJ_PER_MOL_TO_EV = 1.0 / EV_TO_KJ_PER_MOL
KCAL_TO_KJ = 4.184  # thermochemical calorie, exact
EV_TO_KCAL_PER_MOL = EV_TO_KJ_PER_MOL / KCAL_TO_KJ
BOLTZMANN_EV_PER_K = BOLTZMANN_J_PER_K / ELEMENTARY_CHARGE_C
HARTREE_EV = 27.211386245988  # CODATA 2018
# eV per unit, for labels written by other codes (a dataset's data.energy_unit)
ENERGY_UNITS = {"eV": 1.0, "meV": 1e-3, "kcal/mol": 1.0 / EV_TO_KCAL_PER_MOL, "kJ/mol": KJ_PER_MOL_TO_EV,
                "Hartree": HARTREE_EV}  # fmt: skip

# Length
NM_TO_ANGSTROM = 10.0
METRE_PER_ANGSTROM = 1e-10
METRE_PER_NM = 1e-9
ANGSTROM_TO_NM = 0.1

# Time: ASE's unit of time is Å * sqrt(amu / eV).
ASE_TIME_UNIT_S = 1e-10 * (ATOMIC_MASS_UNIT_KG / ELEMENTARY_CHARGE_C) ** 0.5
FS = 1e-15 / ASE_TIME_UNIT_S  # one femtosecond in ASE time units
PS = 1000.0 * FS

# Pressure: 1 eV/Å^3 in GPa
EV_PER_A3_TO_GPA = ELEMENTARY_CHARGE_C / 1e-30 / 1e9
PASCAL_PER_BAR = 1e5  # exact
BAR_TO_EV_PER_A3 = PASCAL_PER_BAR * 1e-30 / ELEMENTARY_CHARGE_C
# Density: amu/Å^3 in g/cm^3 (1 Å^3 = 1e-24 cm^3)
AMU_PER_A3_TO_G_PER_CM3 = ATOMIC_MASS_UNIT_KG * 1e3 / 1e-24

SECONDS_PER_DAY = 86400.0
PS_PER_FS = 1e-3
FS_PER_PS = 1000.0
KJ_PER_J = 1e-3
EV_PER_MEV = 1e-3
NS_PER_FS = 1e-6

# Electrostatics (CODATA 2018): e^2 / (4 pi epsilon_0) in eV·Å, and the Bohr radius in Å
VACUUM_PERMITTIVITY_F_PER_M = 8.8541878128e-12
COULOMB_EV_ANGSTROM = ELEMENTARY_CHARGE_C / (4.0 * math.pi * VACUUM_PERMITTIVITY_F_PER_M) * 1e10  # 14.3996...
BOHR_RADIUS_ANGSTROM = 0.529177210903

# Thermal energy: one function for every kT the package uses (samplers, estimators, reports)
KT_UNITS = {"eV": 1.0, "kJ/mol": EV_TO_KJ_PER_MOL, "kcal/mol": EV_TO_KCAL_PER_MOL}


def kt(temperature: float, unit: str = "kJ/mol") -> float:
    """k_B T at ``temperature`` (K) in ``unit``: "kJ/mol" (OpenMM's energies), "kcal/mol" or "eV"."""
    try:
        factor = KT_UNITS[unit]
    except KeyError:
        raise ValueError(f"kT unit must be one of {sorted(KT_UNITS)}, got {unit!r}") from None
    return BOLTZMANN_EV_PER_K * float(temperature) * factor
