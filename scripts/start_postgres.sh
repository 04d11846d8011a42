#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the review-store tests, on 127.0.0.1 and a free port.
#
#   eval "$(scripts/start_postgres.sh)"        # start; exports CLIPMEM_TEST_PG_URL and CLIPMEM_TEST_PG_DIR
#   scripts/start_postgres.sh stop              # stop the cluster in $CLIPMEM_TEST_PG_DIR and delete it
#
# Installs Debian's postgresql package if no server binaries are found (needs root and apt).
# The server cannot run as root, so as root it runs as the 'postgres' user. Authentication is
# 'trust' on loopback only: this is a test database, never a real one.
# stdout carries only the export lines; progress and errors go to stderr.
set -euo pipefail

log() { echo "start_postgres: $*" >&2; }

find_bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

as_server_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

stop_cluster() {
    local dir="${CLIPMEM_TEST_PG_DIR:?CLIPMEM_TEST_PG_DIR is not set}"
    local bindir
    bindir="$(find_bindir)"
    as_server_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

install_if_missing() {
    if [ -n "$(find_bindir)" ]; then
        return
    fi
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        log "no PostgreSQL server binaries under /usr/lib/postgresql and cannot install them"
        exit 1
    fi
    log "installing Debian's postgresql package"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_cluster() {
    install_if_missing
    local bindir dir port
    bindir="$(find_bindir)"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/clipmem-pg.XXXXXX")"
    chmod 755 "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
    fi
    port="$(free_port)"
    as_server_user "$bindir/initdb" -D "$dir/data" -U clipmem --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=100" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    as_server_user "$bindir/createdb" -h 127.0.0.1 -p "$port" -U clipmem clipmem >&2
    log "PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
    echo "export CLIPMEM_TEST_PG_URL='postgresql+psycopg://clipmem@127.0.0.1:$port/clipmem'"
    echo "export CLIPMEM_TEST_PG_DIR='$dir'"
}

case "${1:-start}" in
    start) start_cluster ;;
    stop) stop_cluster ;;
    *) log "usage: $0 [start|stop]"; exit 2 ;;
esac
