"""Window sampling on a 3-D harmonic oscillator (exact answer), with resume after a kill."""

from __future__ import annotations

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
pytest.importorskip("pymbar")
from openmm import unit  # noqa: E402

from atomml.fe import estimators as est  # noqa: E402
from atomml.fe.sampling import read_u_kn, sample_windows  # noqa: E402

K0, K1 = 200.0, 800.0  # kJ/mol/nm^2
T = 300.0
STATES = [0.0, 0.25, 0.5, 0.75, 1.0]


def oscillator():
    system = openmm.System()
    system.addParticle(12.0)
    force = openmm.CustomExternalForce("0.5*(k0 + lambda*(k1 - k0))*(x^2 + y^2 + z^2)")
    force.addGlobalParameter("lambda", 0.0)
    force.addGlobalParameter("k0", K0)
    force.addGlobalParameter("k1", K1)
    force.addParticle(0, [])
    system.addForce(force)
    return system


def set_lambda(context, lam):
    context.setParameter("lambda", lam)


def run(folder, samples):
    return sample_windows(oscillator(), [[0.01, 0.0, 0.0]] * unit.nanometer, STATES, set_lambda, folder,
                          temperature=T, samples=samples, steps_per_sample=50, equilibration_steps=200,
                          timestep_fs=2.0, friction_per_ps=10.0, platform="Reference", checkpoint_every=5,
                          progress=False)  # fmt: skip


def test_windows_give_exact_free_energy_and_resume(tmp_path):
    run(tmp_path, 60)
    u_kn, n_k = read_u_kn(tmp_path)
    assert n_k.tolist() == [60] * 5
    # a kill in the middle of writing: half a row at the end of window 2; then extend the run
    with open(tmp_path / "window_2.u", "ab") as f:
        f.write(b"\x00" * 12)
    assert read_u_kn(tmp_path)[1].tolist() == [60] * 5, "half-written rows are not read"
    run(tmp_path, 150)
    u_kn2, n_k2 = read_u_kn(tmp_path)
    assert n_k2.tolist() == [150] * 5
    for k in range(5):  # the first 60 samples of every window are kept as they were
        start, start2 = 60 * k, 150 * k
        np.testing.assert_array_equal(u_kn2[:, start2 : start2 + 60], u_kn[:, start : start + 60])
    result = est.mbar(u_kn2, n_k2, T).result
    exact = 1.5 * np.log(K1 / K0)  # 3-D: ln(Z0/Z1) = (3/2) ln(k1/k0)
    assert abs(result.value_kt - exact) < 4 * result.error_kt, (result, exact)


def test_other_settings_are_refused(tmp_path):
    run(tmp_path, 5)
    with pytest.raises(ValueError, match="other settings"):
        sample_windows(oscillator(), [[0.01, 0.0, 0.0]] * unit.nanometer, STATES, set_lambda, tmp_path,
                       temperature=310.0, samples=5, platform="Reference", progress=False)  # fmt: skip
