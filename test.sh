#!/usr/bin/env bash
# The test suite (CI runs exactly this). Extra arguments go to pytest, e.g. ./test.sh -m slow
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/dev/ensure-venv.sh"
cd "$root"
exec .venv/bin/python -m pytest -q "$@"
