#!/usr/bin/env bash
# Build a Python 3.12 venv with torch-sim-atomistic 0.6.2 and run the torch-sim tests in it.
# torch-sim releases after 0.3.0 need Python >= 3.12, so .venv (Python 3.11, torch-sim 0.3.0)
# cannot test them; this checks atomml/interfaces/torch_sim.py (the model and its relax)
# against the newer API. Not run by CI or ./test.sh: torch for Python 3.12 comes from PyPI, a
# CUDA build of a few GB (the local CPU wheel is for Python 3.11 only).
#
#   dev/torchsim-py312.sh [pytest arguments]
#
# Environment: PYTHON312 (default: python3.12, else pyenv's newest 3.12), VENV (default:
# /tmp/atomml-torchsim-py312), TORCH_SIM_VERSION (default: 0.6.2). The venv is reused when it
# already has that torch-sim; delete it to start over.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON312:-python3.12}"
if ! "$python" --version >/dev/null 2>&1; then  # a pyenv shim may not run: pyenv's own 3.12 build
    python="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python 2>/dev/null | tail -n 1)"
fi
venv="${VENV:-/tmp/atomml-torchsim-py312}"
version="${TORCH_SIM_VERSION:-0.6.2}"
log="$venv/install.log"
install() {
    if ! "$venv/bin/python" -m pip install --quiet "$@" >>"$log" 2>&1; then
        grep -v "^WARNING: Location" "$log" | tail -n 40 >&2
        echo "[atomml] pip install $* failed; full log in $log" >&2
        exit 1
    fi
}

if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('torch-sim-atomistic') != '$version')" 2>/dev/null; then
    echo "[atomml] building $venv (Python 3.12, torch-sim $version; torch is a download of a few GB) ..." >&2
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    : >"$log"
    install --upgrade pip
    # The tested versions, but for torch-sim itself (constraints.txt pins 0.3.0, for Python 3.11)
    constraints="$venv/constraints.txt"
    grep -v '^torch-sim-atomistic==' constraints.txt >"$constraints"
    install -c "$constraints" torch
    install -c "$constraints" "torch-sim-atomistic==$version" pytest -e .
fi
"$venv/bin/python" -c "import sys, torch, torch_sim; print('[atomml] Python', sys.version.split()[0], '| torch', torch.__version__, '| torch-sim', torch_sim.__version__)"
exec "$venv/bin/python" -m pytest -q tests/unit/test_torch_sim.py "$@"
