#!/usr/bin/env bash
# A throwaway PostgreSQL server for palaestra's tests: installs Debian's postgresql when it is missing,
# initialises a cluster in a scratch directory, and serves it on 127.0.0.1 only, with trust auth.
#
#   scripts/postgres.sh [start]   start (or find running) and print the database URL on stdout
#   scripts/postgres.sh env       same, printed as: export PALAESTRA_TEST_PG_URL=...
#                                 use: eval "$(scripts/postgres.sh env)"
#   scripts/postgres.sh url       print the URL only (starts nothing)
#   scripts/postgres.sh status    exit 0 when the server is running
#   scripts/postgres.sh stop      stop the server (the data directory is kept)
#   scripts/postgres.sh purge     stop the server and delete its data directory
#
# Settings (environment): PALAESTRA_PG_PORT (55432), PALAESTRA_PGDATA (/tmp/palaestra-pg-<port>),
# PALAESTRA_PG_DB (palaestra_test). Progress goes to stderr so stdout stays machine-readable.
# Never use this cluster for data you want to keep: it trusts every local connection and runs fsync=off.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

PORT="${PALAESTRA_PG_PORT:-55432}"
PGDATA="${PALAESTRA_PGDATA:-/tmp/palaestra-pg-${PORT}}"
DB="${PALAESTRA_PG_DB:-palaestra_test}"
URL="postgresql+psycopg://postgres@127.0.0.1:${PORT}/${DB}"
PGDATA="$(realpath -m "$PGDATA")"
# The server runs as another user when we are root; it may not be allowed into the caller's directory.
cd /

say() { echo "postgres.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The server's binaries: on PATH, else Debian's versioned directory (newest version wins).
find_bindir() {
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    local dir
    dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    if [[ -n "$dir" && -x "$dir/pg_ctl" && -x "$dir/initdb" ]]; then
        echo "$dir"
        return 0
    fi
    return 1
}

install_postgres() {
    apt_install postgresql "PostgreSQL 13 or newer"
}

BINDIR="$(find_bindir || true)"
if [[ -z "$BINDIR" && ( "${1:-start}" == start || "${1:-start}" == env ) ]]; then
    install_postgres
    BINDIR="$(find_bindir)" || die "postgresql was installed but pg_ctl/initdb were not found"
fi

# initdb and the server refuse to run as root; as root, run them as the postgres user instead.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

is_running() { [[ -n "$BINDIR" && -f "$PGDATA/PG_VERSION" ]] && as_owner "$BINDIR/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

start() {
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        say "initialising a cluster in $PGDATA"
        mkdir -p "$PGDATA"
        if [[ "$(id -u)" == 0 ]]; then chown postgres: "$PGDATA"; fi
        chmod 700 "$PGDATA"
        # trust: no passwords for this throwaway cluster; it listens on 127.0.0.1 only (below).
        # --no-locale: the C locale exists everywhere, so initdb never fails on a missing locale.
        as_owner "$BINDIR/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --no-locale >&2 \
            || die "initdb failed; if $PGDATA is half-made, run: $0 purge"
        cat >>"$PGDATA/postgresql.conf" <<EOF
# palaestra test cluster (scripts/postgres.sh)
listen_addresses = '127.0.0.1'
port = ${PORT}
unix_socket_directories = '${PGDATA}'
max_connections = 200
fsync = off
full_page_writes = off
EOF
    fi
    if is_running; then
        say "already running ($PGDATA)"
    else
        say "starting on 127.0.0.1:${PORT} (log: $PGDATA/server.log)"
        if ! as_owner "$BINDIR/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start >&2; then
            tail -n 20 "$PGDATA/server.log" >&2 || true
            die "the server did not start (is port ${PORT} taken? set PALAESTRA_PG_PORT to use another)"
        fi
    fi
    local psql=("$BINDIR/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
    if [[ -z "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB}'")" ]]; then
        say "creating database ${DB}"
        "${psql[@]}" -c "CREATE DATABASE \"${DB}\"" >&2
    fi
}

case "${1:-start}" in
    start) start; echo "$URL" ;;
    env) start; echo "export PALAESTRA_TEST_PG_URL=$URL" ;;
    url) echo "$URL" ;;
    status)
        if is_running; then say "running on 127.0.0.1:${PORT} ($PGDATA)"; echo "$URL"; else say "not running"; exit 1; fi ;;
    stop)
        if is_running; then as_owner "$BINDIR/pg_ctl" -D "$PGDATA" -m fast -w stop >&2; else say "not running"; fi ;;
    purge)
        if is_running; then as_owner "$BINDIR/pg_ctl" -D "$PGDATA" -m fast -w stop >&2; fi
        rm -rf "$PGDATA"; say "removed $PGDATA" ;;
    *) die "unknown command '$1'; use start, env, url, status, stop or purge" ;;
esac
