#!/usr/bin/env bash
# Create the project virtualenv: scripts/ensure_venv.sh PYTHON VENV
# Debian's own python3 lacks venv/ensurepip until python3-venv is installed; as root we install it,
# otherwise we say which package is missing. Nothing is installed into PYTHON itself (PEP 668).
set -euo pipefail
python="${1:-python3}"; venv="${2:-.venv}"
if ! "$python" -c "import ensurepip, venv" 2>/dev/null; then
    version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "ensure_venv: installing python${version}-venv (apt)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "python${version}-venv"
    else
        echo "ensure_venv: $python cannot create a virtualenv; install python${version}-venv (apt) first" >&2
        exit 1
    fi
fi
"$python" -m venv "$venv"
