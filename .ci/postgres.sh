#!/usr/bin/env bash
# A throwaway Postgres server for the tests: `start` installs Debian's packages when
# missing, creates a cluster in a temporary folder owned by the unprivileged `postgres`
# user (Postgres refuses to run as root), starts it on 127.0.0.1:$PGPORT and prints the
# admin URL; `stop` stops it and removes the folder; `pause` and `resume` stop and start
# it keeping its data (the fault test's outage).
set -euo pipefail
PGPORT="${PGPORT:-55432}"
PGROOT="${PGROOT:-/tmp/hoiclip-pg}"
DATA="$PGROOT/data"

bin_dir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "${1:-}" in
  start)
    if ! bin_dir >/dev/null; then
      echo "installing Debian's postgresql" >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
      # Debian's package starts its own cluster as a service; this script runs its own.
      (service postgresql stop || pg_ctlcluster --help) >/dev/null 2>&1 || true
    fi
    BIN=$(bin_dir)
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$PGROOT" postgres
    if [ -f "$DATA/postmaster.pid" ]; then
      as_pg "$BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PGROOT"
    mkdir -p "$PGROOT"
    [ "$(id -u)" = 0 ] && chown postgres "$PGROOT"
    as_pg "$BIN/initdb" -D "$DATA" -U hoiclip --auth=trust --no-sync -E UTF8 >"$PGROOT/initdb.log" 2>&1 \
      || { cat "$PGROOT/initdb.log" >&2; exit 1; }
    # Test settings: no fsync (a throwaway cluster), enough connections for parallel tests.
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$PGROOT/server.log" -w \
      -o "-p $PGPORT -k $PGROOT -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null || { cat "$PGROOT/server.log" >&2; exit 1; }
    echo "postgres://hoiclip@127.0.0.1:$PGPORT/postgres"
    ;;
  stop)
    BIN=$(bin_dir) || exit 0
    if [ -f "$DATA/postmaster.pid" ]; then
      as_pg "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PGROOT"
    ;;
  pause)
    # Stops the server but keeps its data (the fault test's outage).
    as_pg "$(bin_dir)/pg_ctl" -D "$DATA" -m fast stop >/dev/null
    ;;
  resume)
    as_pg "$(bin_dir)/pg_ctl" -D "$DATA" -l "$PGROOT/server.log" -w \
      -o "-p $PGPORT -k $PGROOT -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null
    ;;
  *)
    echo "usage: $0 start|stop|pause|resume" >&2
    exit 2
    ;;
esac
