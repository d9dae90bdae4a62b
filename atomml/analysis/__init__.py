"""Analysis of simulations: what happened along a trajectory (bonds broken or formed, ...)."""

from .bonds import BondChangeError, BondEvent, BondMonitor

__all__ = ["BondChangeError", "BondEvent", "BondMonitor"]
