"""Where the shipped resource folders (``potentials/``, ``md/``) are at run time.

An installed wheel carries them inside the package as ``atomml._potentials`` and ``atomml._md``
(the build configuration maps the repository folders there). An editable install has no copy:
there the folders are found in the source tree that the installer recorded (PEP 610's
``direct_url.json``), never by a path relative to this file.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

FOLDERS = {"potentials": "atomml._potentials", "md": "atomml._md"}


@cache
def resource_folder(name: str) -> Path:
    """The shipped folder ``name`` ("potentials" or "md")."""
    package = FOLDERS[name]
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    # (a build's atomml.egg-info in the working directory can shadow the installed record)
    for dist in metadata.distributions(name="atomml"):
        direct_url = dist.read_text("direct_url.json")
        if not direct_url:
            continue
        info = json.loads(direct_url)
        if info.get("dir_info", {}).get("editable") and info.get("url", "").startswith("file:"):
            folder = Path(unquote(urlparse(info["url"]).path)) / name
            if folder.is_dir():
                return folder
    raise FileNotFoundError(
        f"atomml's shipped '{name}' folder is missing from this installation; reinstall atomml"
    )
