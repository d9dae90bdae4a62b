"""Registries of architectures and energy terms, open to other packages through entry points.

atomml's own architectures and terms register in code. A package outside this repository adds
its own by declaring entry points, for example in its ``pyproject.toml``::

    [project.entry-points."atomml.architectures"]
    mynet = "mypackage.mynet:MyNet"

    [project.entry-points."atomml.energy_terms"]
    mytail = "mypackage.terms:MyTail"

An entry point names a class with a ``config_cls`` attribute (a dataclass of its
hyperparameters, see :mod:`atomml.models` and :mod:`atomml.terms` for what each kind needs),
constructed as ``cls(config)``. Entry points are read on the first lookup of a name that is not
registered in code, so ``load_potential`` rebuilds a plugin's model from its registered name
without the user importing the plugin first. Loading a potential file only looks names up here:
a file never names code to import.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> classes, filled in code by :meth:`register` and from an entry-point group."""

    def __init__(self, group: str, kind: str):
        self.group = group
        self.kind = kind
        self._items: dict[str, T] = {}
        self._entry_points_read = False

    def register(self, name: str, item: T) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        self._items[name] = item

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests that register throw-away plugins clean up with this)."""
        self._items.pop(name, None)

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for entry in metadata.entry_points(group=self.group):
            if entry.name in self._items:
                continue  # registered in code (atomml's own) or already loaded
            try:
                self._items[entry.name] = entry.load()
            except Exception as exc:  # noqa: BLE001 - any import error of a third-party package
                # keep the failure for the lookup that needs it, with the package that failed
                self._items.setdefault(entry.name, _Broken(entry, exc))  # type: ignore[arg-type]

    def get(self, name: str) -> T:
        if name not in self._items:
            self._entry_points_read = False  # a plugin installed since the last lookup
            self._read_entry_points()
        item = self._items.get(name)
        if item is None:
            raise ValueError(
                f"unknown {self.kind} {name!r}; available: {self.names()}. A {self.kind} from another "
                f"package is found through its '{self.group}' entry point: install that package"
            )
        if isinstance(item, _Broken):
            raise ImportError(
                f"the {self.kind} {name!r} is provided by {item.entry.value!r} (entry point group "
                f"'{self.group}'), which failed to import: {item.error}"
            ) from item.error
        return item

    def names(self) -> list[str]:
        self._entry_points_read = False  # a listing includes plugins installed since the last one
        self._read_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        try:
            self.get(str(name))
        except (ValueError, ImportError):
            return False
        return True


class _Broken:
    """An entry point whose import failed; reported when its name is looked up."""

    def __init__(self, entry: Any, error: Exception):
        self.entry, self.error = entry, error
