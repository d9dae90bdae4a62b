"""Constant temperature and pressure (NPT) for both MD engines.

- ASE engine: the Martyna–Tobias–Klein equations with Nosé–Hoover chains on the particles and
  on the cell (ASE's :class:`~ase.md.nose_hoover_chain.IsotropicMTKNPT` for ``isotropic``,
  :class:`~ase.md.nose_hoover_chain.MTKNPT` for ``full``). Chosen over ASE's older
  ``ase.md.npt.NPT`` (Melchionna's equations, which do not generate the isothermal–isobaric
  distribution exactly, and need an upper-triangular cell) and ``NPTBerendsen`` (a weak-coupling scheme, wrong volume
  fluctuations): MTK samples the isothermal–isobaric ensemble, is time-reversible with a
  conserved energy to check, and is deterministic, so a resumed run equals the uninterrupted
  one when its state (thermostat and barostat variables, saved here) comes back bit for bit.
  Couplings: ``thermostat_time_fs`` (the chains' ``tdamp``) and ``barostat_time_fs``
  (``pdamp``; MTK's cell mass is (3N+3) kT pdamp², so the cell oscillates faster than pdamp,
  all the more in a stiff solid).
- OpenMM engine: Langevin dynamics (``LangevinMiddleIntegrator``, friction ``friction_per_fs``)
  with a Monte Carlo barostat every ``barostat_interval`` steps: ``MonteCarloBarostat``
  (isotropic) or ``MonteCarloFlexibleBarostat`` (full: all six cell degrees of freedom, as
  ASE's ``MTKNPT``).

Pressure is in bar (default 1 atm = 1.01325 bar) and includes the kinetic (ideal-gas) part in
both engines. A run's summary adds the mean volume, density and cell lengths and angles.
``full`` is for solids: a liquid has no shape to return to, and its cell drifts into slivers.

Resuming: ASE continues bit for bit (the record carries the MTK variables); OpenMM continues from
the saved positions, velocities and box with fresh random streams (Langevin and barostat), and
its Monte Carlo barostat adapts its move size again from the start.

Known limit: ASE's chains count 3N degrees of freedom, while the run removes the centre-of-mass
momentum (which MTK then conserves), so the other 3N - 3 run hotter by a factor 3N / (3N - 3)
(1 % for 108 atoms); the logged temperature, over 3N, is the target's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ase import Atoms

from .. import units

BAROSTATS = ("isotropic", "full")
DEFAULT_PRESSURE_BAR = 1.01325  # 1 atm
DEFAULT_BAROSTAT = "isotropic"
DEFAULT_THERMOSTAT_TIME_FS = 100.0
DEFAULT_BAROSTAT_TIME_FS = 1000.0
DEFAULT_BAROSTAT_INTERVAL = 25

# MDSettings fields that only NPT reads, with the option that sets each and the engine that reads it
FIELDS = {
    "pressure_bar": ("--pressure", None),
    "barostat": ("--barostat", None),
    "thermostat_time_fs": ("--thermostat-time", "ase"),
    "barostat_time_fs": ("--barostat-time", "ase"),
    "barostat_interval": ("--barostat-interval", "openmm"),
}


def check_settings(settings: Any) -> None:
    """Refuse NPT options on another ensemble, and NPT options out of range (ValueError)."""
    given = [option for name, (option, _) in FIELDS.items() if getattr(settings, name) is not None]
    if settings.ensemble != "npt":
        if given:
            verb, them = ("apply", "them") if len(given) > 1 else ("applies", "it")
            raise ValueError(f"{', '.join(given)} {verb} only to the npt ensemble; drop {them} or use --ensemble npt")
        return
    if not settings.temperature > 0:
        raise ValueError(
            f"NPT needs a temperature above 0 K (the barostat's mass and moves scale with kT), got {settings.temperature}"
        )
    if settings.barostat is not None and settings.barostat not in BAROSTATS:
        raise ValueError(f"barostat must be one of {', '.join(BAROSTATS)}, got {settings.barostat!r}")
    if settings.pressure_bar is not None and not math.isfinite(settings.pressure_bar):
        raise ValueError(f"pressure must be a finite number of bar, got {settings.pressure_bar}")
    for name in ("thermostat_time_fs", "barostat_time_fs"):
        value = getattr(settings, name)
        if value is not None and not value > 0:
            raise ValueError(f"{FIELDS[name][0]} must be a positive time in fs, got {value}")
    if settings.barostat_interval is not None and settings.barostat_interval < 1:
        raise ValueError(f"--barostat-interval must be at least 1 step, got {settings.barostat_interval}")


def _refuse_other_engine(settings: Any, engine: str) -> None:
    for name, (option, reader) in FIELDS.items():
        if reader is not None and reader != engine and getattr(settings, name) is not None:
            raise ValueError(f"{option} applies to the {reader} engine, not to {engine}; drop it or use --engine {reader}")


def pressure_bar(settings: Any) -> float:
    return DEFAULT_PRESSURE_BAR if settings.pressure_bar is None else float(settings.pressure_bar)


def barostat(settings: Any) -> str:
    return settings.barostat or DEFAULT_BAROSTAT


def check_structure(atoms: Atoms) -> None:
    """NPT needs a cell that is periodic in all three directions, with a volume."""
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise ValueError(
            f"NPT needs a structure periodic in all three directions with a 3D cell; this one has pbc={atoms.pbc.tolist()} "
            f"and cell lengths {np.round(atoms.cell.lengths(), 3).tolist()} Å; use --ensemble nvt, or give the structure a cell"
        )


# --- ASE ---------------------------------------------------------------------------------------

# The integrator attributes that carry its state from one step to the next besides positions,
# momenta and cell (ASE 3.25+; a test checks that a resumed run equals the uninterrupted one).
_CHAINS = ("_thermostat._eta", "_thermostat._p_eta", "_barostat._xi", "_barostat._p_xi")
_ASE_STATE = {
    "isotropic": ("_eps", "_p_eps", "_volume0", "_cell0", *_CHAINS),
    "full": ("_h", "_p_g", *_CHAINS),
}


def check_ase(atoms: Atoms, settings: Any) -> None:
    """Refuse what the ASE engine cannot run at constant pressure (ValueError), before any output."""
    _refuse_other_engine(settings, "ase")
    check_structure(atoms)
    if atoms.constraints:
        names = ", ".join(sorted({type(c).__name__ for c in atoms.constraints}))
        raise ValueError(f"NPT with the ASE engine does not support constraints (this structure has {names}); remove them")


def ase_integrator(atoms: Atoms, settings: Any) -> Any:
    """ASE's MTK integrator for ``settings`` (see the module docstring)."""
    from ase.md.nose_hoover_chain import IsotropicMTKNPT, MTKNPT

    check_ase(atoms, settings)
    cls = IsotropicMTKNPT if barostat(settings) == "isotropic" else MTKNPT
    tdamp = DEFAULT_THERMOSTAT_TIME_FS if settings.thermostat_time_fs is None else settings.thermostat_time_fs
    pdamp = DEFAULT_BAROSTAT_TIME_FS if settings.barostat_time_fs is None else settings.barostat_time_fs
    return cls(
        atoms,
        timestep=settings.timestep_fs * units.FS,
        temperature_K=settings.temperature,
        pressure_au=pressure_bar(settings) * units.BAR_TO_EV_PER_A3,
        tdamp=tdamp * units.FS,
        pdamp=pdamp * units.FS,
    )


def _attribute(obj: Any, path: str) -> tuple[Any, str]:
    *parents, name = path.split(".")
    for parent in parents:
        obj = getattr(obj, parent)
    return obj, name


def ase_state(dyn: Any, settings: Any) -> dict[str, Any]:
    """The integrator's own state (chains, cell variables) as float64 bytes, for the resume record."""
    from .resume import encode

    out = {}
    for path in _ASE_STATE[barostat(settings)]:
        obj, name = _attribute(dyn, path)
        out[path] = encode(np.asarray(getattr(obj, name), dtype=np.float64))
    return out


def restore_ase_state(dyn: Any, settings: Any, state: dict[str, Any]) -> None:
    """Put the state saved by :func:`ase_state` back into a fresh integrator."""
    from .resume import decode

    for path in _ASE_STATE[barostat(settings)]:
        obj, name = _attribute(dyn, path)
        value = decode(state[path])  # (a scalar comes back with shape (1,): encode stores 1-d at least)
        current = getattr(obj, name)
        setattr(obj, name, float(value.item()) if np.ndim(current) == 0 else value.reshape(np.shape(current)))
    dyn._update_atoms()


# --- OpenMM ------------------------------------------------------------------------------------


def add_openmm_barostat(system: Any, settings: Any, seed: int) -> Any:
    """Add the settings' Monte Carlo barostat to an OpenMM ``system``; returns it."""
    import openmm
    from openmm import unit

    _refuse_other_engine(settings, "openmm")
    pressure = pressure_bar(settings) * unit.bar
    temperature = settings.temperature * unit.kelvin
    interval = DEFAULT_BAROSTAT_INTERVAL if settings.barostat_interval is None else settings.barostat_interval
    if barostat(settings) == "isotropic":
        force = openmm.MonteCarloBarostat(pressure, temperature, interval)
    else:
        force = openmm.MonteCarloFlexibleBarostat(pressure, temperature, interval)
    force.setRandomNumberSeed(seed)
    system.addForce(force)
    return force


# --- summary -----------------------------------------------------------------------------------


def cell_means(cells: list[np.ndarray], masses_amu: np.ndarray) -> dict[str, Any]:
    """Mean volume (Å³), density (g/cm³), cell lengths (Å) and angles (degrees) over the frames'
    cells (rows a, b, c in Å), for :class:`~atomml.dynamics.frames.MDResult`."""
    from ase.cell import Cell

    if not cells:
        return {}
    volumes = np.array([abs(np.linalg.det(c)) for c in cells])
    parameters = np.array([Cell(c).cellpar() for c in cells])
    return {
        "mean_volume_A3": float(volumes.mean()),
        "mean_density_g_per_cm3": float(np.mean(float(np.sum(masses_amu)) / volumes) * units.AMU_PER_A3_TO_G_PER_CM3),
        "mean_cell_lengths_A": [float(x) for x in parameters[:, :3].mean(axis=0)],
        "mean_cell_angles_deg": [float(x) for x in parameters[:, 3:].mean(axis=0)],
    }
