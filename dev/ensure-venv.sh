#!/usr/bin/env bash
# Create or update .venv at the repository root with the tested versions (constraints.txt).
# Quick when nothing changed: a stamp records the hash of the files that define the install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
extras="${ATOMML_EXTRAS:-test}"
stamp_value="$(cat pyproject.toml constraints.txt dev/ensure-venv.sh | sha256sum | cut -d' ' -f1)-$extras"
stamp=.venv/.atomml-install-stamp
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_value" ]; then
    exit 0
fi
echo "[atomml] setting up .venv (first run or changed requirements) ..." >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
log=.venv/install.log
install() {
    if ! .venv/bin/python -m pip install --quiet "$@" >>"$log" 2>&1; then
        grep -v "^WARNING: Location" "$log" | tail -n 40 >&2
        echo "[atomml] pip install $* failed; full log in $log" >&2
        exit 1
    fi
}
: >"$log"
install --upgrade pip
# torch first and on its own: the pinned CPU build is on local disk and keeps pip from
# resolving a multi-GB CUDA build for the packages that depend on torch.
install -c constraints.txt torch
install -c constraints.txt -e ".[$extras]"
echo "$stamp_value" > "$stamp"
