"""Free energies: alchemical states, sampling (windows, replica exchange), estimators with diagnostics."""
