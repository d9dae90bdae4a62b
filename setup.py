"""Package list for setuptools: the one setting pyproject.toml cannot express.

Every package under ``atomml/`` (a folder with ``__init__.py``) is found, never listed by hand
(a hand-kept list once left ``atomml.data`` and ``atomml.training`` out of the wheel). The
resource folders ``potentials/`` and ``md/`` are added as ``atomml._potentials`` and
``atomml._md``; pyproject.toml maps them (``package-dir``) and names their files
(``package-data``). Everything else about the build is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["atomml", "atomml.*"]) + ["atomml._potentials", "atomml._md"])
