"""Names of the quantities that flow through atomml, defined once.

Input fields are the attributes of :class:`atomml.graph.AtomicGraph` (see that class for shapes
and units). Output keys name the entries of the dictionary a :class:`~atomml.potential.Potential`
returns; every consumer (calculator, engines, trainer) uses these names.
"""

ENERGY = "energy"  # (B,) eV, total energy of each structure
ENERGIES = "energies"  # (N,) eV, per-atom energy contributions
FORCES = "forces"  # (N, 3) eV/Å, -dE/dr
STRESS = "stress"  # (B, 6) eV/Å^3, (1/V) dE/dε in Voigt order xx, yy, zz, yz, xz, xy

# a committee (atomml.models.committee): the spread of its members, and their own results (K, ...)
ENERGY_STD = "energy_std"  # (B,) eV, standard deviation of the members' energies
FORCES_STD = "forces_std"  # (N,) eV/Å, sqrt of the summed variances of each atom's force components
MEMBERS = {ENERGY: "energy_members", ENERGIES: "energies_members", FORCES: "forces_members", STRESS: "stress_members"}
