"""High-throughput screening: thousands of structures, batched on one machine, scaled out on Dask.

``atomml.screen.run(inputs, potential, task=..., output=...)`` reads SMILES, SDF, extxyz, ASE
databases and CIF/POSCAR files (:mod:`.inputs`), evaluates, relaxes (positions, or positions
and cell) or runs short MD of every structure, many to a forward pass (:mod:`.engine`), in
chunks on Dask workers that write their results as they finish, so a killed run resumes
(:mod:`.runner`), and returns one row per structure. ``atomml.screen.report(output, sort=...)``
ranks a finished screening. The command line is ``atomml screen``.
"""

from .runner import COLUMNS, TASKS, Settings, report, run

__all__ = ["COLUMNS", "TASKS", "Settings", "report", "run"]
