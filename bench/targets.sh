#!/usr/bin/env bash
# Targets, probes and sinks, in one run: builds the release binaries (`rota`,
# `probe-bench`), starts a rota server, target servers (one process each, many
# loopback listeners) and an InfluxDB 1.x `influxd`, each in a temporary directory
# on free loopback ports, and measures side by side with a peer in the same run:
#
#   1. a probe fanned out to 1,000 local targets (`GET /v1/jobs/{name}/check`)
#      against a plain Python loop and curl doing the same 1,000 requests;
#   2. the check endpoint (a probe over 3 local replicas) under 10 concurrent
#      callers: checks/s and p50 / p99 / max;
#   3. points/s written to InfluxDB by `rota_sink::Sink` against telegraf-style
#      batching (sequential POSTs of 1,000 lines).
#
#   bash bench/targets.sh
#
# Writes bench/results/<date>-targets.md (and the raw lines as .jsonl). Every
# process it started is killed on exit. Environment: BENCH_DIR (where the temporary
# directory goes), BENCH_KEEP=1 keeps it (logs, data), TARGETS_COUNT (1000),
# CHECK_SECS (10), SINK_POINTS (200000), SINK_RUNS (3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
COUNT=${TARGETS_COUNT:-1000}
CHECK_SECS=${CHECK_SECS:-10}
SINK_POINTS=${SINK_POINTS:-200000}
SINK_RUNS=${SINK_RUNS:-3}

# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

for tool in python3 curl influxd; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench/targets.sh needs $tool on the PATH (influxd: Debian's influxdb package)" >&2
        exit 1
    fi
done

# --- build -------------------------------------------------------------------
log "building release binaries"
cargo build --release -p rota -p probe-bench
PB=$BIN/probe-bench

# --- processes ---------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/rota-targets.XXXXXX")
RESULTS=$WORK/results.jsonl
NOTES=$WORK/notes.md
: >"$RESULTS"
: >"$NOTES"
STARTED_PIDS=()

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until $1 exists (a target server wrote its addresses), at most 60 s.
wait_file() {
    local i
    for i in $(seq 600); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    echo "$1 did not appear" >&2
    return 1
}

# Polls a command until it succeeds, at most $1 seconds.
eventually() {
    local secs=$1 i
    shift
    for i in $(seq $((secs * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "gave up after ${secs}s: $*" >&2
    return 1
}

# Starts a target server: $1 name, $2 count, then its extra flags.
start_targets() {
    local name=$1 count=$2
    shift 2
    "$PB" targets --count "$count" --addresses "$WORK/$name.txt" "$@" >>"$WORK/$name.log" 2>&1 &
    STARTED_PIDS+=("$!")
    TARGETS_PID=$!
    wait_file "$WORK/$name.txt"
}

ROTA_PORT=$(free_port)
ROTA_URL=http://127.0.0.1:$ROTA_PORT
log "starting rota, targets and influxd in $WORK"
"$BIN/rota" server --data-dir "$WORK/rota" --listen "127.0.0.1:$ROTA_PORT" >>"$WORK/rota.log" 2>&1 &
ROTA_PID=$!
STARTED_PIDS+=("$ROTA_PID")
start_targets keepalive "$COUNT"
KEEPALIVE_PID=$TARGETS_PID
start_targets close "$COUNT" --close
CLOSE_PID=$TARGETS_PID
start_targets replicas 3

is_leader() { curl -sf "$ROTA_URL/v1/health" | grep -q '"role":"leader"'; }
if ! eventually 60 is_leader; then
    echo "rota did not become leader; the end of its log:" >&2
    tail -n 20 "$WORK/rota.log" >&2
    exit 1
fi

# A static target set of the addresses in $2, named $1; then a probe job $1-probe.
put_set() {
    local set=$1 file=$2
    python3 -c 'import json, sys
addresses = [l.strip() for l in open(sys.argv[1]) if l.strip()]
print(json.dumps({"provider": "static", "groups": [{"targets": addresses}]}))' "$file" >"$WORK/$set.json"
    curl -sf -X PUT -H 'Content-Type: application/json' --data-binary "@$WORK/$set.json" \
        "$ROTA_URL/v1/targets/$set" >/dev/null
    curl -sf -X PUT -H 'Content-Type: application/json' \
        --data-binary "{\"schedule\": {\"manual\": true}, \"executor\": {\"type\": \"probe\", \"targets\": \"$set\", \"path\": \"/v1/synced\", \"deadline\": \"60s\"}}" \
        "$ROTA_URL/v1/jobs/$set-probe" >/dev/null
}
# Discovery committed $2 targets for set $1.
discovered() {
    curl -sf "$ROTA_URL/v1/targets/$1" |
        python3 -c 'import json, sys; sys.exit(0 if len(json.load(sys.stdin).get("targets") or []) == int(sys.argv[1]) else 1)' "$2"
}
for set in keepalive close replicas; do
    n=$(wc -l <"$WORK/$set.txt")
    put_set "$set" "$WORK/$set.txt"
    eventually 60 discovered "$set" "$n"
done

# influxd 1.x with a generated config: loopback ports, no reporting, no query log.
INFLUX_HTTP=$(free_port)
INFLUX_RPC=$(free_port)
INFLUX_URL=http://127.0.0.1:$INFLUX_HTTP
cat >"$WORK/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$INFLUX_RPC"
[meta]
  dir = "$WORK/influx/meta"
[data]
  dir = "$WORK/influx/data"
  wal-dir = "$WORK/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$INFLUX_HTTP"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
EOF
influxd run -config "$WORK/influxdb.conf" >>"$WORK/influxd.log" 2>&1 &
STARTED_PIDS+=("$!")
eventually 60 curl -sf "$INFLUX_URL/ping"

# --- machine -----------------------------------------------------------------
machine_facts "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Runs one measurement; its JSON line goes to the results file. A failing step is
# noted in the report and the run goes on.
step() {
    if ! "$@" >>"$RESULTS"; then
        echo "- step failed: \`$(basename "$1") ${*:2}\`" >>"$NOTES"
        echo "step failed: $*" >&2
    fi
}
load_mark() { LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg); }
load_record() {
    printf '{"kind": "load", "step": "%s", "before": "%s", "after": "%s"}\n' \
        "$1" "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS"
}

# The curl peers: $1 = per-url (one curl process per target) or one-process (one
# curl given every URL), $2 runs. Prints a fanout JSON line.
curl_peer() {
    local how=$1 runs=$2 rep t0 t1 ok=0 walls="" variant
    if [ "$how" = one-process ]; then
        sed 's|.*|url = "http://&/v1/synced"\noutput = "/dev/null"|' "$WORK/keepalive.txt" >"$WORK/curl.cfg"
        variant="one curl process given all URLs, sequential (a new connection per target)"
    else
        variant="one curl process per target, sequential"
    fi
    for rep in $(seq "$runs"); do
        t0=$(date +%s%N)
        if [ "$how" = one-process ]; then
            curl -s -K "$WORK/curl.cfg" -w '%{http_code}\n' >"$WORK/curl.codes"
        else
            while read -r address; do
                curl -s -o /dev/null -w '%{http_code}\n' "http://$address/v1/synced"
            done <"$WORK/keepalive.txt" >"$WORK/curl.codes"
        fi
        t1=$(date +%s%N)
        ok=$((ok + $(grep -c '^200$' "$WORK/curl.codes" || true)))
        walls="$walls${walls:+, }$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.3f", d / 1e6}')"
        echo "curl $how run $rep: $(((t1 - t0) / 1000000)) ms" >&2
    done
    printf '{"kind": "fanout", "system": "curl", "variant": "%s", "targets": %d, "walls_ms": [%s], "ok": %d, "asked": %d}\n' \
        "$variant" "$COUNT" "$walls" "$ok" $((COUNT * runs))
}

# --- 1. probe fan-out ----------------------------------------------------------
log "1. probe fan-out to $COUNT targets"
load_mark
step "$PB" fanout --url "$ROTA_URL" --job keepalive-probe --targets "$COUNT" --reps 1 \
    --pid "$ROTA_PID" --targets-pid "$KEEPALIVE_PID" \
    --variant "first check: opens $COUNT connections"
step "$PB" fanout --url "$ROTA_URL" --job keepalive-probe --targets "$COUNT" --reps 10 \
    --pid "$ROTA_PID" --targets-pid "$KEEPALIVE_PID" \
    --variant "keep-alive: connections of the previous check reused"
step "$PB" fanout --url "$ROTA_URL" --job close-probe --targets "$COUNT" --reps 10 \
    --pid "$ROTA_PID" --targets-pid "$CLOSE_PID" \
    --variant "targets answer Connection: close (a new connection per target)"
step python3 "$ROOT/bench/probe-bench/fanout_peer.py" "$WORK/keepalive.txt" 5
step curl_peer one-process 3
step curl_peer per-url 3
load_record fanout

# --- 2. check endpoint ---------------------------------------------------------
log "2. check endpoint: 10 callers, ${CHECK_SECS}s"
load_mark
step "$PB" check --url "$ROTA_URL" --job replicas-probe --callers 10 --secs "$CHECK_SECS" --pid "$ROTA_PID"
load_record check

# --- 3. InfluxDB sink ----------------------------------------------------------
log "3. InfluxDB sink: $SINK_POINTS points, $SINK_RUNS runs of each writer"
load_mark
for rep in $(seq "$SINK_RUNS"); do
    step "$PB" sink --influx "$INFLUX_URL" --writer telegraf --batch-size 1000 \
        --points "$SINK_POINTS" --database "r${rep}_telegraf_1000"
    step "$PB" sink --influx "$INFLUX_URL" --writer rota --batch-size 1000 \
        --points "$SINK_POINTS" --database "r${rep}_rota_1000"
    step "$PB" sink --influx "$INFLUX_URL" --writer rota --batch-size 1000 --send-chunk 1000 \
        --points "$SINK_POINTS" --database "r${rep}_rota_1000_chunked"
    step "$PB" sink --influx "$INFLUX_URL" --writer rota --batch-size 5000 \
        --points "$SINK_POINTS" --database "r${rep}_rota_5000"
done
load_record sink

# --- report ------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$ROOT/bench/results"
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT=$ROOT/bench/results/$STAMP-targets.md
{
    echo "# rota targets, probes and sinks ($STAMP UTC)"
    echo
    echo "## Machine"
    echo
    machine_lines "$LOAD_START" "$LOAD_END"
    echo "- rota $ROTA_COMMIT (release build), \`rota server\` with default settings; $(influxd version 2>/dev/null | sed -n 1p); $(python3 --version 2>&1); $(curl --version | sed -n 1p | cut -d' ' -f1-2)"
    echo "- rota, the target servers, influxd and the drivers share the same machine (loopback)"
    echo
    "$PB" report --input "$RESULTS"
    if [ -s "$NOTES" ]; then
        echo
        echo "## Steps that failed"
        echo
        cat "$NOTES"
    fi
} >"$OUT"
cp "$RESULTS" "$ROOT/bench/results/$STAMP-targets.jsonl"
cat "$OUT"
echo >&2
echo "written: $OUT" >&2
