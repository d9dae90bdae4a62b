"""Independent-window sampling of a list of thermodynamic states, collecting u_kn, resumable.

For each state k (a window) the System is simulated at that state; every ``steps_per_sample``
steps the reduced potential of the current configuration is evaluated in *every* state
(u = U / kT; NVT) and appended as one row to the window's sample file. That gives MBAR's
u_kn. Storage per window, in ``folder``:

- ``window_K.u``: raw float64 rows of length K, appended and flushed sample by sample,
  readable while the run goes on (:func:`read_u_kn`),
- ``window_K.state.xml`` (positions, velocities, box) and ``window_K.json`` (samples done,
  bytes of the sample file), both replaced atomically after each checkpoint.

Running again resumes every window from its checkpoint: the sample file is cut back to the
recorded size (a sample half-written at a kill is dropped) and sampling continues; a larger
``samples`` extends a finished run. With the default ``checkpoint_every=1`` no completed
sample is lost; with a larger value, samples after the last checkpoint are drawn again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import units


def _kt_kj_per_mol(temperature: float) -> float:
    return units.BOLTZMANN_EV_PER_K * temperature * units.EV_TO_KJ_PER_MOL


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def sample_windows(
    system: Any,
    positions: Any,
    states: Sequence[Any],
    set_state: Callable[[Any, Any], None],
    folder: str | os.PathLike[str],
    temperature: float = 300.0,
    samples: int = 100,
    steps_per_sample: int = 250,
    equilibration_steps: int = 1000,
    timestep_fs: float = 2.0,
    friction_per_ps: float = 1.0,
    box: Any = None,
    platform: str | None = None,
    seed: int = 0,
    checkpoint_every: int = 1,
    progress: bool = True,
) -> Path:
    """Sample every state in turn (LangevinMiddle, NVT); returns ``folder``. Resumable."""
    import openmm
    from openmm import unit
    from tqdm import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kt = _kt_kj_per_mol(temperature)
    n_states = len(states)
    settings = {"n_states": n_states, "temperature": temperature, "steps_per_sample": steps_per_sample,
                "timestep_fs": timestep_fs, "friction_per_ps": friction_per_ps, "seed": seed}  # fmt: skip
    info = folder / "run.json"
    if info.exists() and json.loads(info.read_text()) != settings:
        raise ValueError(f"{folder} holds a run with other settings ({info.read_text()}); use another folder")
    _replace(info, json.dumps(settings))
    args = () if platform is None else (openmm.Platform.getPlatformByName(platform),)
    with tqdm(total=n_states * samples, unit="sample", disable=not progress, desc="windows") as bar:
        for k, state in enumerate(states):
            integrator = openmm.LangevinMiddleIntegrator(
                temperature * unit.kelvin, friction_per_ps / unit.picosecond, timestep_fs * unit.femtosecond
            )
            integrator.setRandomNumberSeed(seed + 1000 * k + 1)
            context = openmm.Context(system, integrator, *args)
            rows, meta_path, xml_path = folder / f"window_{k}.u", folder / f"window_{k}.json", folder / f"window_{k}.state.xml"
            done = 0
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                done = int(meta["samples"])
                with open(rows, "r+b") as f:
                    f.truncate(meta["bytes"])
                context.setState(openmm.XmlSerializer.deserialize(xml_path.read_text()))
                integrator.setRandomNumberSeed(seed + 1000 * k + 1 + done)  # a fresh stream after resume
            else:
                rows.unlink(missing_ok=True)
                if box is not None:
                    context.setPeriodicBoxVectors(*box)
                context.setPositions(positions)
                set_state(context, state)
                openmm.LocalEnergyMinimizer.minimize(context, 1.0, 200)
                context.setVelocitiesToTemperature(temperature * unit.kelvin, seed + k + 1)
                integrator.step(equilibration_steps)
            bar.update(min(done, samples))
            with open(rows, "ab") as out:
                for n in range(done, samples):
                    set_state(context, state)
                    integrator.step(steps_per_sample)
                    u = np.empty(n_states)
                    for m, other in enumerate(states):
                        set_state(context, other)
                        energy = context.getState(getEnergy=True).getPotentialEnergy()
                        u[m] = energy.value_in_unit(unit.kilojoule_per_mole) / kt
                    set_state(context, state)
                    out.write(u.tobytes())
                    out.flush()
                    bar.update(1)
                    if (n + 1) % checkpoint_every == 0 or n + 1 == samples:
                        _replace(xml_path, openmm.XmlSerializer.serialize(
                            context.getState(getPositions=True, getVelocities=True)))  # fmt: skip
                        _replace(meta_path, json.dumps({"samples": n + 1, "bytes": out.tell()}))
            del context, integrator
    return folder


def read_u_kn(folder: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(u_kn (K, N), N_k): every complete sample recorded so far, grouped by window."""
    folder = Path(folder)
    n_states = json.loads((folder / "run.json").read_text())["n_states"]
    blocks, n_k = [], []
    for k in range(n_states):
        path = folder / f"window_{k}.u"
        data = np.fromfile(path, dtype=np.float64) if path.exists() else np.empty(0)
        data = data[: data.size // n_states * n_states].reshape(-1, n_states)  # drop a half-written row
        blocks.append(data)
        n_k.append(len(data))
    return np.concatenate(blocks).T if blocks else np.empty((n_states, 0)), np.array(n_k)
