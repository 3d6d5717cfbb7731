#!/usr/bin/env bash
# rota's benchmark suite, in one run: builds the release binaries, starts a
# single-node etcd and a rota server side by side on loopback (each in its own
# temporary directory, fsync on, default settings), runs every benchmark against
# rota and its peer (etcd for durable writes, tokio-cron-scheduler for dispatch),
# and writes bench/results/<date>.md (plus the raw results as .jsonl).
#
#   bash bench/run.sh [quick|full]
#
# quick (default) skips the 1,000,000-job memory step; full includes it (it takes
# several minutes). Every process the script starts is killed when it exits.
#
# Environment: BENCH_DIR (where the temporary directory goes; default: the system's
# temporary directory), ROTA_BENCH_PORT (17700), ETCD_BENCH_PORT (12379),
# BENCH_KEEP=1 keeps the temporary directory (logs, data) for inspection.
# BENCH_KV_ROUNDS (3): rounds of each key/value case, the systems taking turns.
# BENCH_STEPS=memory runs only the memory and restart steps (default: all);
# BENCH_MEMORY_IDLE_SECS=N reads each server's RSS again after N s without
# requests (default 0: not); BENCH_MEMORY_PEERS=0 leaves etcd and
# tokio-cron-scheduler out of the memory step; BENCH_ROTA_BIN runs another rota
# binary than the one just built (to compare builds).
set -euo pipefail

MODE=${1:-quick}
case "$MODE" in
quick | full) ;;
*)
    echo "usage: bash bench/run.sh [quick|full]" >&2
    exit 2
    ;;
esac
STEPS=${BENCH_STEPS:-all}
case "$STEPS" in
all | memory) ;;
*)
    echo "BENCH_STEPS must be all or memory" >&2
    exit 2
    ;;
esac
MEMORY_IDLE_SECS=${BENCH_MEMORY_IDLE_SECS:-0}
KV_ROUNDS=${BENCH_KV_ROUNDS:-3}
MEMORY_PEERS=${BENCH_MEMORY_PEERS:-1}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
ROTA_PORT=${ROTA_BENCH_PORT:-17700}
ETCD_PORT=${ETCD_BENCH_PORT:-12379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
ROTA_URL=http://127.0.0.1:$ROTA_PORT
ETCD_URL=http://127.0.0.1:$ETCD_PORT

# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

# --- build and tools ---------------------------------------------------------
log "building release binaries"
cargo build --release -p rota -p loadgen -p cron-peer
LG=$BIN/loadgen
PEER=$BIN/cron-peer
ROTA_BIN=${BENCH_ROTA_BIN:-$BIN/rota}
ensure_etcd

# --- processes ---------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/rota-bench.XXXXXX")
STAMPS=$WORK/stamps
mkdir -p "$STAMPS"
RESULTS=$WORK/results.jsonl
NOTES=$WORK/notes.md
: >"$RESULTS"
: >"$NOTES"
STARTED_PIDS=()
ROTA_PID=
ETCD_PID=

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

start_rota() {
    ROTA_STARTED_NS=$(date +%s%N)
    "$ROTA_BIN" server --data-dir "$WORK/rota" --listen "127.0.0.1:$ROTA_PORT" \
        --max-running 20000 >>"$WORK/rota.log" 2>&1 &
    ROTA_PID=$!
    STARTED_PIDS+=("$ROTA_PID")
}

start_etcd() {
    ETCD_STARTED_NS=$(date +%s%N)
    etcd --name bench --data-dir "$WORK/etcd" \
        --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER_PORT" \
        >>"$WORK/etcd.log" 2>&1 &
    ETCD_PID=$!
    STARTED_PIDS+=("$ETCD_PID")
}

# Stops a server with a signal and sets STOP_MS to how long it took to exit. Not
# run in a subshell: only this shell can `wait` for its children.
stop_server() {
    local pid=$1 signal=$2 t0 t1
    t0=$(date +%s%N)
    kill "-$signal" "$pid"
    wait "$pid" 2>/dev/null || true
    t1=$(date +%s%N)
    STOP_MS=$(((t1 - t0) / 1000000))
}

# Runs one benchmark step; its result lines go to the results file. A failing step
# is noted in the report and the suite goes on. BENCH_PIDS tells the harness which
# processes are part of the step, so that only other work counts as disturbance.
step() {
    log "$*"
    if ! BENCH_PIDS="$ROTA_PID,$ETCD_PID" "$@" >>"$RESULTS"; then
        echo "- step failed: \`$(basename "$1") ${*:2}\`" >>"$NOTES"
        echo "step failed: $*" >&2
    fi
}

log "starting etcd and rota in $WORK"
start_etcd
start_rota
for target in etcd rota; do
    if [ "$target" = etcd ]; then url=$ETCD_URL started=$ETCD_STARTED_NS; else url=$ROTA_URL started=$ROTA_STARTED_NS; fi
    if ! "$LG" wait-ready --target "$target" --url "$url" --started-ns "$started" \
        --timeout-secs 60 >/dev/null 2>>"$WORK/loadgen.log"; then
        echo "$target did not start; the end of its log:" >&2
        tail -n 20 "$WORK/$target.log" >&2
        exit 1
    fi
done

# --- machine -----------------------------------------------------------------
machine_facts "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
tcs_version=$(awk '/name = "tokio-cron-scheduler"/ {getline; print $3}' Cargo.lock | tr -d '"' || true)

# --- benchmarks --------------------------------------------------------------
if [ "$MODE" = full ]; then
    KV_CLIENTS="1 16 64"
    KV_SECS=10
    FIRES_RECORD="100 1000 5000"
    WATCH_EVENTS=20000
else
    KV_CLIENTS="1 16"
    KV_SECS=5
    FIRES_RECORD="100 1000"
    WATCH_EVENTS=5000
fi

if [ "$STEPS" = all ]; then
    # Each case in rounds, the systems taking turns (which one goes first
    # alternates), so that a noisy spell on the machine falls on both.
    for c in $KV_CLIENTS; do
        for r in $(seq 1 "$KV_ROUNDS"); do
            for target in $(round_order "$r"); do
                if [ "$target" = etcd ]; then url=$ETCD_URL; else url=$ROTA_URL; fi
                step "$LG" kv --target "$target" --url "$url" --clients "$c" --secs "$KV_SECS" \
                    --key-prefix "bench-c$c-r$r" --round "$r"
            done
        done
    done

    # Watch delivery with 1 and 100 watchers on one prefix (a fresh prefix per run).
    for w in 1 100; do
        for target in rota etcd; do
            if [ "$target" = etcd ]; then url=$ETCD_URL; else url=$ROTA_URL; fi
            step "$LG" watch --target "$target" --url "$url" --watchers "$w" --writers 16 \
                --events "$WATCH_EVENTS" --key-prefix "watch-w$w"
        done
    done

    step "$LG" jobs --url "$ROTA_URL" --count 10000 --clients 16 --dir "$STAMPS" --delete

    step "$LG" lag --url "$ROTA_URL" --jobs 1,1000,10000 --executor record --dir "$STAMPS"
    step "$PEER" lag --jobs 1,1000,10000 --exec record
    step "$LG" lag --url "$ROTA_URL" --jobs 1,100 --executor shell --dir "$STAMPS"
    step "$PEER" lag --jobs 1,100 --exec shell

    for k in $FIRES_RECORD; do
        step "$LG" fires --url "$ROTA_URL" --jobs "$k" --executor record --dir "$STAMPS"
        step "$PEER" fires --jobs "$k"
    done
    step "$LG" fires --url "$ROTA_URL" --jobs 100 --executor shell --dir "$STAMPS"
fi

# Memory last: it leaves the servers full of jobs.
memory_round() {
    local jobs=$1 from=$2
    step "$LG" memory --target rota --url "$ROTA_URL" --pid "$ROTA_PID" --jobs "$jobs" \
        --from "$from" --dir "$STAMPS" --data-dir "$WORK/rota" --idle-secs "$MEMORY_IDLE_SECS"
    for signal in TERM KILL; do
        stop_server "$ROTA_PID" "$signal"
        start_rota
        step "$LG" wait-ready --target rota --url "$ROTA_URL" --jobs "$jobs" \
            --started-ns "$ROTA_STARTED_NS" --stop-ms "$STOP_MS" --signal "SIG$signal" --pid "$ROTA_PID"
    done
    if [ "$MEMORY_PEERS" = 0 ]; then
        return
    fi
    step "$LG" memory --target etcd --url "$ETCD_URL" --pid "$ETCD_PID" --jobs "$jobs" \
        --from "$from" --dir "$STAMPS" --data-dir "$WORK/etcd" --idle-secs "$MEMORY_IDLE_SECS"
    stop_server "$ETCD_PID" KILL
    start_etcd
    step "$LG" wait-ready --target etcd --url "$ETCD_URL" --jobs "$jobs" \
        --started-ns "$ETCD_STARTED_NS" --stop-ms "$STOP_MS" --signal SIGKILL --pid "$ETCD_PID"
    step "$PEER" memory --jobs "$jobs"
}
memory_round 100000 0
if [ "$MODE" = full ]; then
    memory_round 1000000 100000
fi

# --- report ------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$ROOT/bench/results"
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT=$ROOT/bench/results/$STAMP.md
{
    echo "# rota benchmark results ($STAMP UTC, $MODE)"
    echo
    echo "## Machine"
    echo
    machine_lines "$LOAD_START" "$LOAD_END"
    echo "- rota $ROTA_COMMIT (release build); $ETCD_VERSION; tokio-cron-scheduler $tcs_version"
    echo "- rota: \`rota server --max-running 20000\`, default settings otherwise; etcd: single member, default settings"
    if [ "$STEPS" != all ]; then
        echo "- steps: $STEPS only (BENCH_STEPS)"
    fi
    if [ -n "${BENCH_ROTA_BIN:-}" ]; then
        echo "- rota binary: $(basename "$ROTA_BIN") (BENCH_ROTA_BIN)"
    fi
    echo "- load generator and servers share the same machine (loopback)"
    echo
    "$LG" report --input "$RESULTS" --cores "$(nproc)"
    if [ -s "$NOTES" ]; then
        echo
        echo "## Steps that failed"
        echo
        cat "$NOTES"
    fi
} >"$OUT"
cp "$RESULTS" "$ROOT/bench/results/$STAMP.jsonl"
cat "$OUT"
echo >&2
echo "written: $OUT" >&2
