#!/usr/bin/env bash
# Debian packages the test suite needs: chromium (browser test) and postgresql (review-store tests).
# Installs only what is missing; needs root and apt.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install_system_deps: need ${missing[*]} but cannot install them (not root, or no apt-get)" >&2
    exit 1
fi
echo "install_system_deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
