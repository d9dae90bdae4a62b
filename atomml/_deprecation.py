"""Old import paths that keep working, with a warning, for one release after a module moved."""

from __future__ import annotations

import warnings


def warn_moved(old: str, new: str) -> None:
    """Warn, from the module-level code of the shim ``old``, that it moved to ``new``.

    The warning names the line that imported ``old`` (stacklevel 3: past this function and the
    shim; ``warnings`` skips importlib's own frames), so Python's default filter shows it when
    that line is in the user's script.
    """
    warnings.warn(
        f"{old} moved to {new} and will be removed in the next release: import from {new}",
        DeprecationWarning,
        stacklevel=3,
    )
