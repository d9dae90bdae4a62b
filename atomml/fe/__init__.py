"""Free energies: alchemical states, sampling (windows, replica exchange), estimators with
diagnostics, the analysis of sampled legs, hydration free energies (MM and ML/MM) and the
FreeSolv check."""
