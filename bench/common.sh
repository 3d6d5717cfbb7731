# Helpers shared by the benchmark scripts (bench/run.sh, bench/cluster.sh); sourced,
# not run. Expects ROOT (the repository) to be set.

log() { printf '\n=== %s\n' "$*" >&2; }

# The systems of key/value round $1, in the order they run: rota first in odd
# rounds, etcd first in even ones, so that neither always runs right after the other.
round_order() { if [ $(($1 % 2)) = 1 ]; then echo "rota etcd"; else echo "etcd rota"; fi; }

# Installs Debian's etcd-server (etcd 3.4) when no etcd is on the PATH.
ensure_etcd() {
    if ! command -v etcd >/dev/null 2>&1; then
        log "installing etcd (Debian's etcd-server)"
        if [ "$(id -u)" -eq 0 ]; then
            apt-get install -y etcd-server
        else
            sudo apt-get install -y etcd-server
        fi
    fi
}

# Sets MACHINE_* (CPU model, memory, disk of the directory $1), ROTA_COMMIT and
# ETCD_VERSION for the head of a results file.
machine_facts() {
    local dir=$1 dev
    MACHINE_CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
    MACHINE_MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null || true)
    dev=$(df --output=source "$dir" 2>/dev/null | tail -1 || true)
    # The kernel's rotational flag; virtio disks report 1 whatever backs them.
    MACHINE_DISK=$(lsblk -dno NAME,ROTA,MODEL "$dev" 2>/dev/null |
        awk '{name = $1; rota = $2; $1 = ""; $2 = ""; model = $0; gsub(/^ +| +$/, "", model);
              if (model != "") name = name " " model;
              virt = (name ~ /^x?vd/) ? ", virtual disk" : "";
              printf "%s (kernel rotational flag %s%s)", name, rota, virt}' || true)
    MACHINE_DISK=${MACHINE_DISK:-$dev}
    ROTA_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    # No `head` in these pipelines: with pipefail, a writer cut off by SIGPIPE fails.
    if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | sed -n 1p || true)" ]; then
        ROTA_COMMIT="$ROTA_COMMIT (with uncommitted changes)"
    fi
    ETCD_VERSION=$(etcd --version 2>/dev/null | sed -n 1p || true)
}

# The machine lines of a results file (after machine_facts); $1 and $2 are the
# load averages at start and end.
machine_lines() {
    echo "- CPU: $(nproc) cores, ${MACHINE_CPU:-unknown model}; memory ${MACHINE_MEM:-unknown}"
    echo "- kernel: $(uname -sr)"
    echo "- disk of the data directories: ${MACHINE_DISK:-unknown}"
    echo "- load average (1, 5, 15 min) at start: $1; at end: $2"
}
