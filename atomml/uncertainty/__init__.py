"""Uncertainty quantification for potentials.

- :mod:`atomml.uncertainty.sgmcmc`: stochastic-gradient MCMC samplers (:class:`PSGLD`,
  :class:`SGHMC`) that draw weights from the (tempered) posterior, and :class:`SampleCollector`
  (burn-in, thinning, several chains) whose kept samples form a committee.
- :mod:`atomml.uncertainty.calibration`: calibration of predicted uncertainties: metrics, a
  recalibration factor, and plots.
- :mod:`atomml.uncertainty.committees`: a committee's errors and spreads on labelled data, and
  its recalibration (``atomml committee calibrate``).
- :mod:`atomml.uncertainty.observables`: MD observables with the committee's interval, by
  reweighting the trajectory to each member.

Importing this package imports neither of them (PEP 562 lazy attributes).
"""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULES = ("sgmcmc", "calibration", "committees", "observables")


def __getattr__(name: str) -> ModuleType:
    """``atomml.uncertainty.sgmcmc`` and its siblings are imported on first access (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

