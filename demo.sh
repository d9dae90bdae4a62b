#!/usr/bin/env bash
# The main job: a short MD run of a shipped structure with a shipped potential (see README).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/dev/ensure-venv.sh"
exec "$root/.venv/bin/atomml" demo "$@"
