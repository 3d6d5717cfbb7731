#!/usr/bin/env bash
# rota's 3-node benchmarks, in one run: builds the release binaries, starts a
# 3-node rota cluster and a 3-member etcd cluster side by side on loopback (each
# node in its own temporary data directory, fsync on, default timing: etcd's
# heartbeat 100 ms and election timeout 1000 ms), and measures
#   - key/value PUT latency and throughput (1, 64, 256 clients) at the leader,
#   - linearizable GET latency and throughput (1, 64, 256 clients) at the leader,
#   - rota's scheduling lag (1 and 1,000 jobs due at the same second) on 3 nodes,
#   - the failover gap: a writer keeps writing while the leader is `kill -9`ed,
#     restarted on its data once writes resume, and caught up (N kills per system),
#   - a write sent to a follower while the leader is frozen (`SIGSTOP`): when the
#     follower answers and when a new leader exists (N repetitions per system),
# then writes bench/results/<date>-cluster.md (plus the raw results as .jsonl).
#
#   bash bench/cluster.sh [quick|full]
#
# quick (default): 5 s windows, 20 kills and 10 frozen leaders per system; full:
# 20 s windows, 50 kills, 20 frozen leaders.
# Every process the script starts is killed when it exits.
#
# Environment: BENCH_DIR (where the temporary directory goes), ROTA_CLUSTER_PORT
# (17710: the nodes listen on it and the next two ports), ETCD_CLUSTER_PORT (12410:
# client ports 12410, 12412, 12414, each member's peer port one above),
# CLUSTER_KV_SECS, CLUSTER_KV_CLIENTS ("1 64 256"), CLUSTER_KV_ROUNDS (3: rounds of
# each key/value case, the systems taking turns), CLUSTER_KILLS and
# CLUSTER_LAG_JOBS ("1,1000"), CLUSTER_FROZEN_REPS override the mode's settings
# (for a smoke run), CLUSTER_STEPS ("kv get lag failover frozen") runs only the
# steps listed,
# BENCH_KEEP=1 keeps the temporary directory (logs, data, acknowledgement logs).
set -euo pipefail

MODE=${1:-quick}
case "$MODE" in
quick)
    KV_SECS=5
    KILLS=20
    FROZEN_REPS=10
    ;;
full)
    KV_SECS=20
    KILLS=50
    FROZEN_REPS=20
    ;;
*)
    echo "usage: bash bench/cluster.sh [quick|full]" >&2
    exit 2
    ;;
esac
KV_SECS=${CLUSTER_KV_SECS:-$KV_SECS}
KILLS=${CLUSTER_KILLS:-$KILLS}
KV_CLIENTS=${CLUSTER_KV_CLIENTS:-1 64 256}
KV_ROUNDS=${CLUSTER_KV_ROUNDS:-3}
LAG_JOBS=${CLUSTER_LAG_JOBS:-1,1000}
FROZEN_REPS=${CLUSTER_FROZEN_REPS:-$FROZEN_REPS}
STEPS=" ${CLUSTER_STEPS:-kv get lag failover frozen} "
NODES=3

# Whether step $1 is among CLUSTER_STEPS.
has_step() { [[ "$STEPS" == *" $1 "* ]]; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
ROTA_PORT=${ROTA_CLUSTER_PORT:-17710}
ETCD_PORT=${ETCD_CLUSTER_PORT:-12410}

# Node i (1-based) of each system.
rota_url() { echo "http://127.0.0.1:$((ROTA_PORT + $1 - 1))"; }
etcd_url() { echo "http://127.0.0.1:$((ETCD_PORT + 2 * ($1 - 1)))"; }
etcd_peer_url() { echo "http://127.0.0.1:$((ETCD_PORT + 2 * ($1 - 1) + 1))"; }
ROTA_URLS=
ROTA_PEERS=
ETCD_URLS=
ETCD_CLUSTER=
for i in $(seq 1 $NODES); do
    ROTA_URLS+="${ROTA_URLS:+,}$(rota_url "$i")"
    ROTA_PEERS+="${ROTA_PEERS:+,}$i=$(rota_url "$i")"
    ETCD_URLS+="${ETCD_URLS:+,}$(etcd_url "$i")"
    ETCD_CLUSTER+="${ETCD_CLUSTER:+,}e$i=$(etcd_peer_url "$i")"
done

# --- build and tools ---------------------------------------------------------
log "building release binaries"
cargo build --release -p rota -p loadgen
LG=$BIN/loadgen
ensure_etcd

# --- processes ---------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/rota-cluster-bench.XXXXXX")
STAMPS=$WORK/stamps
mkdir -p "$STAMPS"
RESULTS=$WORK/results.jsonl
NOTES=$WORK/notes.md
: >"$RESULTS"
: >"$NOTES"
STARTED_PIDS=()
declare -A PID # PID[rota1] .. PID[etcd3]: the running process of each node

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

# Starts (or restarts on its data) node $2 of system $1.
start_node() {
    local system=$1 i=$2
    case "$system" in
    rota)
        "$BIN/rota" server --node-id "$i" --listen "127.0.0.1:$((ROTA_PORT + i - 1))" \
            --data-dir "$WORK/rota$i" --peers "$ROTA_PEERS" --max-running 20000 \
            >>"$WORK/rota$i.log" 2>&1 &
        ;;
    etcd)
        # On a restart etcd finds its data directory and ignores the --initial-* flags.
        etcd --name "e$i" --data-dir "$WORK/etcd$i" \
            --listen-client-urls "$(etcd_url "$i")" --advertise-client-urls "$(etcd_url "$i")" \
            --listen-peer-urls "$(etcd_peer_url "$i")" \
            --initial-advertise-peer-urls "$(etcd_peer_url "$i")" \
            --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new \
            --initial-cluster-token rota-bench >>"$WORK/etcd$i.log" 2>&1 &
        ;;
    esac
    PID[$system$i]=$!
    STARTED_PIDS+=("$!")
}

# Not run in a subshell: only this shell can `wait` for its children.
kill_node() {
    local pid=${PID[$1$2]}
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

urls_of() { if [ "$1" = rota ]; then echo "$ROTA_URLS"; else echo "$ETCD_URLS"; fi; }
url_of() { if [ "$1" = rota ]; then rota_url "$2"; else etcd_url "$2"; fi; }
server_pids() {
    local IFS=,
    echo "${PID[*]}"
}

# The leader's 1-based node number once the cluster agrees on one; with `all`, once
# every node answers and caught up with it.
leader_of() {
    local system=$1 all=${2:-}
    "$LG" cluster-wait --target "$system" --urls "$(urls_of "$system")" \
        ${all:+--all} --timeout-secs 60 2>>"$WORK/loadgen.log"
}

# Runs one benchmark step; its result lines go to the results file. A failing step
# is noted in the report and the suite goes on.
step() {
    log "$*"
    if ! BENCH_PIDS="$(server_pids)" "$@" >>"$RESULTS"; then
        echo "- step failed: \`$(basename "$1") ${*:2}\`" >>"$NOTES"
        echo "step failed: $*" >&2
    fi
}

log "starting 3 etcd members and 3 rota nodes in $WORK"
for i in $(seq 1 $NODES); do
    start_node etcd "$i"
    start_node rota "$i"
done
for system in etcd rota; do
    if ! leader_of "$system" all >/dev/null; then
        echo "the $system cluster did not form; the end of its logs:" >&2
        for i in $(seq 1 $NODES); do tail -n 10 "$WORK/$system$i.log" >&2; done
        exit 1
    fi
done

machine_facts "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- key/value ---------------------------------------------------------------
# Both systems at their leader, found again before each step (it may have moved).
for op in kv get; do
    has_step "$op" || continue
    for c in $KV_CLIENTS; do
        # In rounds, the systems taking turns (which one goes first alternates).
        for r in $(seq 1 "$KV_ROUNDS"); do
            for system in $(round_order "$r"); do
                if ! leader=$(leader_of "$system" all); then
                    echo "- $op $system c=$c round $r skipped: no settled cluster" >>"$NOTES"
                    continue
                fi
                step "$LG" "$op" --target "$system" --url "$(url_of "$system" "$leader")" \
                    --nodes $NODES --clients "$c" --secs "$KV_SECS" \
                    --key-prefix "cluster-$op-c$c-r$r" --round "$r"
            done
        done
    done
done

# --- scheduling lag ----------------------------------------------------------
if ! has_step lag; then
    :
elif leader=$(leader_of rota all); then
    step "$LG" lag --url "$(rota_url "$leader")" --nodes $NODES --jobs "$LAG_JOBS" \
        --executor record --dir "$STAMPS"
else
    echo "- lag skipped: no settled rota cluster" >>"$NOTES"
fi

# --- failover ----------------------------------------------------------------
# Succeeds once the writer logged an acknowledgement later than $2 (Unix ns).
wait_ack_after() {
    local acks=$1 after=$2 writer=$3 deadline=$((SECONDS + 60)) last
    while [ $SECONDS -lt $deadline ]; do
        last=$(tail -n 1 "$acks" 2>/dev/null | cut -d' ' -f1)
        if [ -n "$last" ] && [ "$last" -gt "$after" ]; then
            return 0
        fi
        kill -0 "$writer" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}

failover_series() {
    local system=$1 acks=$WORK/failover-$system.acks kills=$WORK/failover-$system.kills
    local stop=$WORK/failover-$system.stop out=$WORK/failover-$system.jsonl
    local writer leader rep kill_ns end_ns
    : >"$kills"
    rm -f "$stop"
    log "failover: $KILLS leader kills of $system"
    "$LG" failover --target "$system" --urls "$(urls_of "$system")" --acks "$acks" \
        --kills "$kills" --stop-file "$stop" >"$out" 2>>"$WORK/loadgen.log" &
    writer=$!
    STARTED_PIDS+=("$writer")
    for rep in $(seq 1 "$KILLS"); do
        # Settled, with the writer acknowledged since: the kill hits a working cluster.
        if ! leader=$(leader_of "$system" all) ||
            ! wait_ack_after "$acks" "$(date +%s%N)" "$writer"; then
            echo "- $system failover stopped before kill $rep: cluster not settled or writer stuck" >>"$NOTES"
            break
        fi
        kill_ns=$(date +%s%N)
        kill_node "$system" "$leader"
        # Resumed = the survivors agree on a new leader and a write went through
        # after that. An acknowledgement alone could be one in flight at the kill,
        # and a node restarted before the others noticed its death may lead again.
        if ! leader_of "$system" >/dev/null ||
            ! wait_ack_after "$acks" "$(date +%s%N)" "$writer"; then
            echo "- $system kill $rep: writes did not resume within 60 s" >>"$NOTES"
        fi
        start_node "$system" "$leader"
        if ! leader_of "$system" all >/dev/null; then
            echo "- $system kill $rep: node $leader did not catch up within 60 s" >>"$NOTES"
        fi
        end_ns=$(date +%s%N)
        echo "$rep $leader $kill_ns $end_ns" >>"$kills"
        printf '%s kill %d of node %d done\n' "$system" "$rep" "$leader" >&2
    done
    touch "$stop"
    if wait "$writer"; then
        cat "$out" >>"$RESULTS"
        cat "$out" >&2
    else
        echo "- $system failover writer failed (see loadgen.log)" >>"$NOTES"
    fi
}

if has_step failover; then
    for system in rota etcd; do
        failover_series "$system"
    done
fi

# --- frozen leader -----------------------------------------------------------
# Each repetition: wait until settled, then `loadgen frozen` stops the leader
# (SIGSTOP), writes once to a follower, watches the survivors for a new leader,
# continues the old leader (SIGCONT) and waits until every node caught up.
frozen_series() {
    local system=$1 rep leader pid
    log "frozen leader: $FROZEN_REPS repetitions of $system"
    for rep in $(seq 1 "$FROZEN_REPS"); do
        if ! leader=$(leader_of "$system" all); then
            echo "- $system frozen leader stopped before repetition $rep: cluster not settled" >>"$NOTES"
            break
        fi
        pid=${PID[$system$leader]}
        step "$LG" frozen --target "$system" --urls "$(urls_of "$system")" \
            --leader "$leader" --pid "$pid" --rep "$rep"
        # loadgen continues it; this only matters when loadgen failed half-way.
        kill -CONT "$pid" 2>/dev/null || true
    done
}

if has_step frozen; then
    for system in rota etcd; do
        frozen_series "$system"
    done
fi

# --- report ------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$ROOT/bench/results"
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT=$ROOT/bench/results/$STAMP-cluster.md
{
    echo "# rota 3-node benchmark results ($STAMP UTC, $MODE)"
    echo
    echo "## Machine"
    echo
    machine_lines "$LOAD_START" "$LOAD_END"
    echo "- rota $ROTA_COMMIT (release build); $ETCD_VERSION"
    echo "- rota: 3 nodes, \`rota server --node-id N --peers ... --max-running 20000\`, default settings otherwise"
    echo "- etcd: 3 members, default settings (heartbeat 100 ms, election timeout 1000 ms)"
    echo "- $KV_SECS s windows per key/value step; $KILLS leader kills per system"
    if has_step frozen; then
        echo "- $FROZEN_REPS frozen-leader writes per system"
    fi
    if [ "$STEPS" != " kv get lag failover frozen " ]; then
        echo "- steps run:$STEPS(CLUSTER_STEPS)"
    fi
    echo "- every node, and the load generator, on the same machine (loopback)"
    echo
    "$LG" report --input "$RESULTS" --cores "$(nproc)"
    if [ -s "$NOTES" ]; then
        echo
        echo "## Steps that failed"
        echo
        cat "$NOTES"
    fi
} >"$OUT"
cp "$RESULTS" "$ROOT/bench/results/$STAMP-cluster.jsonl"
cat "$OUT"
echo >&2
echo "written: $OUT" >&2
