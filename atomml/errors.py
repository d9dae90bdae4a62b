"""Exceptions a user can act on. Each message says what was wrong and what to do."""


class InputError(ValueError):
    """A structure that atomml cannot evaluate (bad coordinates, cell, elements, ...)."""


class PotentialFileError(ValueError):
    """A potential file that cannot be loaded (damaged, foreign or from a newer atomml)."""
