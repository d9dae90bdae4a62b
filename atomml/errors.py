"""Exceptions a user can act on. Each message says what was wrong and what to do.

Every class derives from :class:`AtomMLError`: the ``atomml`` command prints such an error as
one line and exits non-zero, and keeps tracebacks for everything else (bugs). The classes also
derive from the built-in type their callers caught before (``ValueError``, ``RuntimeError``), so
existing ``except`` clauses keep working.
"""


class AtomMLError(Exception):
    """An expected failure with a message that names the problem and the fix."""


class InputError(AtomMLError, ValueError):
    """A structure that atomml cannot evaluate (bad coordinates, cell, elements, charge, ...)."""


class PotentialFileError(AtomMLError, ValueError):
    """A potential file that cannot be loaded (damaged, foreign or from a newer atomml)."""


class CheckpointError(AtomMLError, RuntimeError):
    """A checkpoint or resume state that is damaged, foreign or from an incompatible version."""


class ResumeMismatchError(AtomMLError, ValueError):
    """Existing output belongs to another run (other potential, structure, settings, ...)."""


class OutputInUseError(AtomMLError, RuntimeError):
    """Another process is writing the same output (its lock file is held)."""
