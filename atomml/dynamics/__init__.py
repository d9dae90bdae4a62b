"""MD engines that run an atomml potential, checkpointed so a killed run resumes exactly.

A run holds its trajectory's lock (:mod:`atomml.locks`) from start to end: one writer per output.

- :mod:`atomml.dynamics.frames`: what every engine shares: :class:`MDSettings`,
  :class:`MDResult`, the frame loop, the log format.
- :mod:`atomml.dynamics.resume`: the record written after each frame (the run's fingerprint,
  its exact state, the sizes of its files) and the checks that refuse another run's output.
- :mod:`atomml.dynamics.ase`: :func:`run_md`, ASE's velocity Verlet and Langevin integrators.
- :mod:`atomml.dynamics.npt`: constant pressure in both engines (ASE's MTK integrators, OpenMM's
  Monte Carlo barostats), its options, and the run summary's mean cell.
- :mod:`atomml.dynamics.openmm`: :func:`run_openmm_md`, the same run in OpenMM (DCD trajectory;
  imports OpenMM only when called).
- :mod:`atomml.dynamics.replicas`: :func:`run_replicas`, K independent replicas of one molecule
  (NVE or Langevin BAOAB) with one batched evaluation per step (:mod:`atomml.fast`).
"""

from __future__ import annotations

from .ase import run_md
from .frames import MDResult, MDSettings
from .openmm import run_openmm_md
from .replicas import run_replicas

__all__ = ["MDResult", "MDSettings", "run_md", "run_openmm_md", "run_replicas"]
