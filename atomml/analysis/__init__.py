"""Analysis of simulations: what happened along a trajectory (bonds broken or formed, ...)."""

from .averages import block_mean_and_error
from .bonds import BondChangeError, BondEvent, BondMonitor

__all__ = ["BondChangeError", "BondEvent", "BondMonitor", "block_mean_and_error"]
