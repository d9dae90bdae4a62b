#!/usr/bin/env bash
# Create or update .bench-venv/ (git-ignored): the environment for the peer benchmarks in
# scripts/ (bench_schnet.py, bench_md.py) and the schnetpack agreement check, with atomml,
# matscipy and schnetpack 2.1.1.
# Quick when nothing changed: a stamp records the hash of the files that define the install.
#
# schnetpack 2.1.1 pins sympy<=1.12, which conflicts with torch 2.13 (needs a newer sympy), and
# lists training/CLI tools (hydra, tensorboard, black, pre-commit, ...) as requirements. It is
# installed with --no-deps plus the packages that `import schnetpack` and its ASE interface
# actually import (found by importing until nothing was missing): dirsync, fasteners, h5py,
# omegaconf, pytorch-lightning (brings torchmetrics), torch-ema, pyyaml.
# atomml.convert.schnetpack.import_schnetpack defines torch.utils.data.dataloader.T_co before
# importing schnetpack (it imports a name torch removed). tests/integration/test_schnet_schnetpack.py runs
# its slow agreement check in this environment when it exists.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv=.bench-venv
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || { echo "[bench-env] $python not found (set PYTHON=...)" >&2; exit 1; }

# Versions of the extra packages (tested together with constraints.txt).
read -r -d '' extra_pins <<'EOF' || true
schnetpack==2.1.1
dirsync==2.2.6
fasteners==0.20
h5py==3.16.0
omegaconf==2.4.0
pytorch-lightning==2.6.6
torchmetrics==1.9.0
lightning-utilities==0.15.3
torch-ema==0.3
PyYAML==6.0.4
EOF

stamp_value="$( (cat pyproject.toml constraints.txt scripts/setup_bench_env.sh; echo "$extra_pins") | sha256sum | cut -d' ' -f1)"
stamp=$venv/.bench-install-stamp
if [ -x $venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_value" ]; then
    exit 0
fi
echo "[bench-env] setting up $venv (first run or changed requirements) ..." >&2
[ -x $venv/bin/python ] || "$python" -m venv $venv
log=$venv/install.log
: >"$log"
pins=$venv/bench-constraints.txt
echo "$extra_pins" >"$pins"
install() {
    if ! $venv/bin/python -m pip install --quiet "$@" >>"$log" 2>&1; then
        grep -v "^WARNING: Location" "$log" | tail -n 40 >&2
        echo "[bench-env] pip install $* failed; full log in $log" >&2
        exit 1
    fi
}
# torch first, pinned: the CPU build is on local disk (an unpinned torch pulls a CUDA build).
install -c constraints.txt torch==2.13.0
install -c constraints.txt -e . matscipy
install --no-deps -c constraints.txt -c "$pins" schnetpack
install -c constraints.txt -c "$pins" dirsync fasteners h5py omegaconf pytorch-lightning torchmetrics torch-ema PyYAML
# Fail here, not in a benchmark, if the import still needs something.
$venv/bin/python - <<'PY'
import typing
import torch, torch.utils.data.dataloader as dataloader
assert torch.__version__.startswith("2.13.0"), torch.__version__
if not hasattr(dataloader, "T_co"):
    dataloader.T_co = typing.TypeVar("T_co", covariant=True)
import schnetpack, schnetpack.interfaces.ase_interface, matscipy, atomml  # noqa: F401
print(f"[bench-env] torch {torch.__version__}, schnetpack {schnetpack.__version__}, atomml {atomml.__version__}")
PY
echo "$stamp_value" >"$stamp"
