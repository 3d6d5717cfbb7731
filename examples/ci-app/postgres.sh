#!/bin/sh
# A throwaway PostgreSQL for the tests: a fresh cluster in a temporary directory,
# listening on 127.0.0.1:$PGPORT, trusting $PGUSER. PostgreSQL refuses to run as
# root, so under root it runs as nobody (setpriv execs in place: the server stays in
# the service's process group and stops with it).
set -eu
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
run() { "$@"; }
if [ "$(id -u)" = 0 ]; then
    chown 65534:65534 "$data"
    chmod 700 "$data"
    run() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
fi
run "$PGBIN/initdb" -D "$data/db" -U "$PGUSER" --auth=trust --no-sync >/dev/null
run "$PGBIN/postgres" -D "$data/db" -h 127.0.0.1 -p "$PGPORT" -k "$data" -c fsync=off
