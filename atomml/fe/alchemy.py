"""Alchemical decoupling of a solute in an OpenMM System: electrostatics and soft-core sterics,
scheduled separately, with states named by what they mean.

Coupling strengths go from 1 (fully interacting) to 0 (decoupled), as the conventions say:

- electrostatics: the solute's charges are multiplied by ``lambda_electrostatics`` through
  NonbondedForce parameter offsets, so PME treats them exactly (solute-solvent and the
  solute's own electrostatics scale together: it is annihilated, identically in the solvent
  and vacuum legs, so the thermodynamic cycle closes). Solute exceptions (1-4 pairs) scale
  with its square, the global parameter ``lambda_electrostatics_squared``, kept in step by
  :func:`set_state`;
- sterics: solute-environment Lennard-Jones moves to a CustomNonbondedForce with Beutler's
  soft core, U = 4 eps lambda [1/(alpha (1 - lambda) + (r/sigma)^6)^2 - 1/(alpha (1 - lambda) +
  (r/sigma)^6)], finite at r = 0 for lambda < 1 (``alpha`` = 0.5); the solute's own LJ stays
  at full strength in a second CustomNonbondedForce.

At full coupling the System's energy equals the original's (tests/integration/test_fe_alchemy.py). The
environment's own long-range dispersion correction is kept unchanged; the solute's is off
unless ``dispersion_correction=True``. It is a function of the volume and ``lambda_sterics``
only, zero when decoupled, so a workflow can sample without it and add it to the fully coupled
state afterwards (:func:`atomml.fe.hydration.solute_dispersion_correction`), which changes the
decoupling free energy exactly as sampling with it would, without OpenMM integrating it anew
at every parameter change.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

SOFTCORE_ALPHA = 0.5
PARAMETERS = ("lambda_electrostatics", "lambda_electrostatics_squared", "lambda_sterics")


@dataclasses.dataclass(frozen=True)
class AlchemicalState:
    """Coupling of the solute to the rest: 1 fully interacting, 0 decoupled."""

    electrostatics: float
    sterics: float

    def __post_init__(self) -> None:
        for name in ("electrostatics", "sterics"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} coupling must be in [0, 1], got {value}")
        if self.electrostatics > 0 and self.sterics < 1:
            raise ValueError(
                "a charged solute with softened sterics collapses onto its neighbours: turn "
                f"electrostatics off before sterics (got {self})"
            )

    @property
    def name(self) -> str:
        return f"elec={self.electrostatics:g}, vdw={self.sterics:g}"


@dataclasses.dataclass(frozen=True)
class Schedule:
    """An ordered list of states from fully coupled to decoupled (or any order a user builds)."""

    states: tuple[AlchemicalState, ...]

    @classmethod
    def decoupling(cls, electrostatics: Sequence[float], sterics: Sequence[float]) -> Schedule:
        """Electrostatics off first (sterics on), then sterics, each through the given coupling
        strengths from 1 to 0. The shipped protocol's values are in
        ``md/protocols/hydration.yaml`` (:attr:`atomml.fe.hydration.HydrationProtocol.schedule`)."""
        elec, vdw = [float(v) for v in electrostatics], [float(v) for v in sterics]
        for values, what in ((elec, "electrostatics"), (vdw, "sterics")):
            if not values or values[0] != 1.0 or values[-1] != 0.0 or any(a <= b for a, b in zip(values, values[1:])):
                raise ValueError(f"{what} couplings must fall strictly from 1 to 0, got {values}")
        states = [AlchemicalState(e, 1.0) for e in elec] + [AlchemicalState(0.0, v) for v in vdw[1:]]
        return cls(tuple(states))

    def __len__(self) -> int:
        return len(self.states)


def alchemical_system(system: Any, solute: Iterable[int], alpha: float = SOFTCORE_ALPHA,
                      dispersion_correction: bool = False) -> Any:  # fmt: skip
    """A copy of ``system`` in which ``solute`` (atom indices) can be decoupled (see module doc).

    The System must have exactly one NonbondedForce (Amber/CHARMM-style force fields).
    ``dispersion_correction``: add the solute's long-range dispersion correction (periodic
    Systems whose NonbondedForce uses one; as openmmtools does by default), scaled like its
    soft-core LJ; then the fully coupled energy equals the original's to the last digits.
    """
    import openmm

    system = copy.deepcopy(system)
    solute = sorted(set(int(i) for i in solute))
    solute_set = set(solute)
    nonbonded = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    if len(nonbonded) != 1:
        raise ValueError(f"alchemical_system needs exactly one NonbondedForce, the System has {len(nonbonded)}")
    nb = nonbonded[0]
    n = system.getNumParticles()
    if not solute or solute[0] < 0 or solute[-1] >= n:
        raise ValueError(f"solute atoms must be indices in 0..{n - 1}, got {solute[:5]}...")

    nb.addGlobalParameter("lambda_electrostatics", 1.0)
    nb.addGlobalParameter("lambda_electrostatics_squared", 1.0)
    sigma_eps = {}
    for i in solute:
        q, sigma, eps = nb.getParticleParameters(i)
        sigma_eps[i] = (sigma, eps)
        nb.setParticleParameters(i, 0.0 * q, sigma, 0.0 * eps)  # LJ moves to the custom forces
        nb.addParticleParameterOffset("lambda_electrostatics", i, q, 0.0, 0.0)
    excluded = []
    for k in range(nb.getNumExceptions()):
        i, j, qq, sigma, eps = nb.getExceptionParameters(k)
        excluded.append((i, j))
        if i in solute_set and j in solute_set and qq._value != 0.0:
            nb.setExceptionParameters(k, i, j, 0.0 * qq, sigma, eps)
            nb.addExceptionParameterOffset("lambda_electrostatics_squared", k, qq, 0.0, 0.0)

    method = nb.getNonbondedMethod()
    cutoff = nb.getCutoffDistance()
    periodic = method not in (openmm.NonbondedForce.NoCutoff, openmm.NonbondedForce.CutoffNonPeriodic)
    custom_method = (
        openmm.CustomNonbondedForce.CutoffPeriodic if periodic
        else openmm.CustomNonbondedForce.NoCutoff if method == openmm.NonbondedForce.NoCutoff
        else openmm.CustomNonbondedForce.CutoffNonPeriodic
    )  # fmt: skip
    softcore = openmm.CustomNonbondedForce(
        "4*epsilon*lambda_sterics*(1/s^2 - 1/s); s = alpha*(1-lambda_sterics) + (r/sigma)^6;"
        "sigma = 0.5*(sigma1+sigma2); epsilon = sqrt(epsilon1*epsilon2)"
    )
    softcore.addGlobalParameter("lambda_sterics", 1.0)
    softcore.addGlobalParameter("alpha", float(alpha))
    plain = openmm.CustomNonbondedForce(
        "4*epsilon*((sigma/r)^12 - (sigma/r)^6); sigma = 0.5*(sigma1+sigma2); epsilon = sqrt(epsilon1*epsilon2)"
    )
    for force in (softcore, plain):
        force.addPerParticleParameter("sigma")
        force.addPerParticleParameter("epsilon")
        force.setNonbondedMethod(custom_method)
        force.setCutoffDistance(cutoff)
        force.setUseSwitchingFunction(nb.getUseSwitchingFunction())
        force.setSwitchingDistance(nb.getSwitchingDistance())
        force.setUseLongRangeCorrection(bool(dispersion_correction and periodic and nb.getUseDispersionCorrection()))
        for i in range(n):
            sigma, eps = sigma_eps[i] if i in solute_set else nb.getParticleParameters(i)[1:]
            force.addParticle([sigma, eps])
        for i, j in excluded:
            force.addExclusion(i, j)
    environment = sorted(set(range(n)) - solute_set)
    softcore.addInteractionGroup(solute, environment)
    plain.addInteractionGroup(solute, solute)
    system.addForce(softcore)
    if len(solute) > 1:
        system.addForce(plain)
    return system


def set_state(context: Any, state: AlchemicalState) -> None:
    """Set the global parameters of an :func:`alchemical_system` context to ``state``."""
    context.setParameter("lambda_electrostatics", state.electrostatics)
    context.setParameter("lambda_electrostatics_squared", state.electrostatics**2)
    context.setParameter("lambda_sterics", state.sterics)
