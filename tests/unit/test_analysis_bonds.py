"""Bond-break monitor (atomml.analysis.bonds): the hysteresis rule on tiny synthetic trajectories."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.data import covalent_radii

from atomml.analysis import BondChangeError, BondMonitor
from atomml.dynamics import MDSettings, run_md

R_C, R_CL, R_H = covalent_radii[6], covalent_radii[17], covalent_radii[1]  # 0.76, 1.02, 0.31 Å


def chloroethane_like(cl_distance: float) -> Atoms:
    """C0-C1 (1.54 Å) and Cl2 bonded to C1 (1.78 Å), placed so that the 1-3 contact C0···Cl2 is
    ``cl_distance`` Å (the C-C-Cl angle changes, no bond length does)."""
    cc, ccl = 1.54, 1.78
    cos = (cc**2 + ccl**2 - cl_distance**2) / (2 * cc * ccl)
    angle = np.arccos(cos)
    c1 = np.array([cc, 0.0, 0.0])
    cl = c1 + ccl * np.array([-np.cos(angle), np.sin(angle), 0.0])
    return Atoms("C2Cl", positions=[[0.0, 0.0, 0.0], c1, cl])


def test_bonds_at_the_start_exclude_1_3_contacts():
    start = chloroethane_like(2.7)
    monitor = BondMonitor(start)
    assert monitor.bonds.tolist() == [[0, 1], [1, 2]]
    assert monitor.check(start) is None


def test_a_1_3_contact_moving_is_no_change_until_it_comes_closer_than_the_radii_sum():
    monitor = BondMonitor(chloroethane_like(2.7), timestep_fs=0.5)
    limit = R_C + R_CL  # 1.78 Å: below it a C-Cl bond has formed
    # beyond 1.5x the sum (2.67 Å) and between 1.0x and 1.2x: neither counts (it never was a bond)
    for step, distance in [(10, 2.9), (20, 1.2 * limit - 0.05), (30, limit + 0.02)]:
        monitor(chloroethane_like(distance), step)
        assert monitor.event is None, distance
    monitor(chloroethane_like(limit - 0.05), 40)
    event = monitor.event
    assert event is not None and event.kind == "formed" and (event.i, event.j) == (0, 2)
    assert event.step == 40 and event.time_ps == pytest.approx(0.02)
    assert event.start_distance == pytest.approx(2.7)
    assert str(event) == f"bond C0-Cl2 formed ({limit - 0.05:.2f} Å)"


def test_a_stretched_bond_breaks_beyond_1_5_times_the_radii_sum():
    start = molecule("CH3CH2OH")
    monitor = BondMonitor(start, timestep_fs=2.0)
    h = int(np.nonzero(start.numbers == 1)[0][0])
    partner = int(np.argmin(np.where(np.arange(len(start)) == h, np.inf, start.get_distances(h, range(len(start))))))
    direction = start.positions[h] - start.positions[partner]
    direction /= np.linalg.norm(direction)
    limit = covalent_radii[start.numbers[partner]] + R_H
    trajectory = []
    for factor in (1.0, 1.3, 1.45, 1.55, 1.4):  # the last frame is after the break: the first event stays
        frame = start.copy()
        frame.positions[h] = frame.positions[partner] + factor * limit * direction
        trajectory.append(frame)
    for step, frame in enumerate(trajectory):
        monitor(frame, 10 * step)
    event = monitor.event
    assert event is not None and event.kind == "broken" and {event.i, event.j} == {h, partner}
    assert event.distance == pytest.approx(1.55 * limit)
    assert event.step == 30 and event.time_ps == pytest.approx(30 * 2.0 / 1000)
    assert monitor.failed


def test_periodic_bond_across_the_cell_edge():
    h2 = Atoms("H2", positions=[[0.2, 1.0, 1.0], [4.46, 1.0, 1.0]], cell=[5.0, 5.0, 5.0], pbc=True)  # 0.74 Å apart
    monitor = BondMonitor(h2)
    assert monitor.bonds.tolist() == [[0, 1]]
    assert monitor.check(h2) is None
    h2.positions[1, 0] = 4.0  # 1.2 Å through the boundary: broken (1.5 x 0.62 = 0.93 Å)
    assert monitor.check(h2).kind == "broken"


def test_given_bonds_break_relative_to_their_starting_length():
    start = chloroethane_like(2.7)
    monitor = BondMonitor.from_bonds(start, [(2, 1)], stretch=2.0)
    assert monitor.bonds.tolist() == [[1, 2]]
    assert monitor.check(chloroethane_like(1.0)) is None  # formation is not watched
    stretched = start.copy()
    stretched.positions[2] = start.positions[1] + 2.1 * (start.positions[2] - start.positions[1])
    event = monitor.check(stretched)
    assert event.kind == "broken" and event.distance / event.start_distance == pytest.approx(2.1)
    nan = start.copy()
    nan.positions[0, 0] = np.nan
    assert monitor.check(nan).kind == "non-finite"
    with pytest.raises(ValueError, match="two different atom indices"):
        BondMonitor.from_bonds(start, [(0, 3)])
    with pytest.raises(ValueError, match="other atoms"):
        monitor.check(molecule("H2O"))


class FreeParticles(Calculator):
    """No forces at all: a molecule at a high temperature flies apart."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}


def test_monitor_as_md_frame_callback(tmp_path):
    start = molecule("CH4")
    settings = MDSettings(ensemble="nve", temperature=3000.0, timestep_fs=1.0, steps=200, interval=5)
    monitor = BondMonitor(start, timestep_fs=settings.timestep_fs)
    run_md(start, FreeParticles(), settings, tmp_path / "md.extxyz", progress=False, on_frame=monitor)
    event = monitor.event
    assert event is not None and event.kind == "broken"
    assert event.step % settings.interval == 0 and event.time_ps == pytest.approx(event.step / 1000)

    stopping = BondMonitor(start, raise_on_change=True)
    with pytest.raises(BondChangeError, match="broken") as info:
        run_md(start, FreeParticles(), settings, tmp_path / "md2.extxyz", progress=False, on_frame=stopping)
    assert info.value.event == stopping.event and stopping.event.time_ps is None
