"""Free energies: estimators with diagnostics (more to come: alchemical states, sampling)."""
