#!/usr/bin/env bash
# Build the openclipart image-caption dataset (see build_openclipart.py).
# Usage: scripts/build_openclipart.sh [OUT] [extra flags: --size 64 --limit N --seed 0 --jobs J]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-data/openclipart64}"
shift || true
# The project's virtualenv (make install) has Pillow; the system python3 usually does not.
exec "${PYTHON:-$HERE/../.venv/bin/python}" "$HERE/build_openclipart.py" --out "$OUT" "$@"
