#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for tests and benchmarks, on a temp directory and a loopback port.
#   eval "$(bash scripts/pg_cluster.sh start)"   # exports CERTMGR_TEST_PG and CERTMGR_PG_DIR
#   bash scripts/pg_cluster.sh stop "$CERTMGR_PG_DIR"
# Installs Debian's postgresql package first if no server binaries are found (as root, or with sudo -n).
# The cluster runs as an unprivileged user: "postgres" when started by root, else the caller.
set -euo pipefail
. "$(dirname "$0")/debian_package.sh"

find_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
    if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; return; fi
    return 1
}

install_postgresql() {
    install_debian_package postgresql PostgreSQL "install Debian's postgresql package, or set CERTMGR_TEST_PG=skip"
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local bindir dir port
    bindir=$(find_bindir) || { install_postgresql; bindir=$(find_bindir); }
    dir=$(mktemp -d "${TMPDIR:-/tmp}/certmgr-pg.XXXXXX")
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c max_connections=200" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "export CERTMGR_TEST_PG=postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    echo "export CERTMGR_PG_DIR=$dir"
    echo "export CERTMGR_PG_BINDIR=$bindir"
}

stop() {
    local dir=$1 bindir
    bindir=$(find_bindir)
    [ -d "$dir/data" ] && as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:?usage: pg_cluster.sh stop DIR}" ;;
    *) echo "usage: pg_cluster.sh start | stop DIR" >&2; exit 2 ;;
esac
