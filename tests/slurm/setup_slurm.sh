#!/usr/bin/env bash
# A single-node Slurm on this machine for tests/test_slurm.py: munged + slurmctld + slurmd on
# 127.0.0.1, one node with this machine's CPUs and no GPUs, no cgroups.
#
#   tests/slurm/setup_slurm.sh start    install (Debian packages) if missing, configure, start,
#                                       wait until the node is idle; prints SLURM_CONF=<path>
#   tests/slurm/setup_slurm.sh stop     stop the daemons this script started
#   tests/slurm/setup_slurm.sh status   exit 0 when the node is up and idle
#
# Idempotent: `start` on a running, healthy cluster returns at once. Every wait is bounded.
# Exit status: 0 ready; 77 this environment cannot run it (not root, no apt-get, packages not
# installable, a port taken...): the reason is the last line on stderr; anything else is a bug.
#
# Environment: SPECFORGE_SLURM_DIR (state, logs, config; default /tmp/specforge-slurm),
# SPECFORGE_SLURM_PORT (slurmctld's port, slurmd uses the next one; default 16817).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${SPECFORGE_SLURM_DIR:-/tmp/specforge-slurm}"
CTLD_PORT="${SPECFORGE_SLURM_PORT:-16817}"
SLURMD_PORT=$((CTLD_PORT + 1))
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"
PACKAGES=(munge slurmctld slurmd slurm-client)
APT_TIMEOUT=600      # apt-get update + install, each
DAEMON_TIMEOUT=30    # each daemon to come up / go down
NODE_TIMEOUT=60      # the node to report idle

log() { echo "setup_slurm: $*" >&2; }
# cannot: the environment does not allow it (the test skips); die: something is wrong (it fails)
cannot() { log "CANNOT RUN: $*"; exit 77; }
die() { log "ERROR: $*"; exit 1; }

show_logs() {
    local f
    for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.log /var/log/munge/munged.log; do
        [[ -s "$f" ]] || continue
        log "--- last lines of $f"
        tail -n 15 "$f" >&2 || true
    done
}

pid_alive() {  # pid_alive PIDFILE
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

node_state() {  # the node's state as sinfo reports it, or nothing
    timeout 10 sinfo --noheader --Node --format=%T 2>/dev/null | head -n 1 || true
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.5 s
    local seconds="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            log "timed out after ${seconds}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

install_packages() {
    local missing=() cmd
    for cmd in munged slurmctld slurmd sbatch sinfo scontrol; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ "$(id -u)" == 0 ]] || cannot "missing ${missing[*]} and not root, so cannot apt-get install them"
    command -v apt-get >/dev/null 2>&1 || cannot "missing ${missing[*]} and there is no apt-get (not Debian/Ubuntu)"
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # No service starts during install (containers have no init); we start the daemons ourselves.
    local apt=(timeout "$APT_TIMEOUT" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
               apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=120
               "${PACKAGES[@]}")
    if ! "${apt[@]}" >"$DIR/log/apt.log" 2>&1; then
        log "apt-get install failed; running apt-get update once and retrying"
        timeout "$APT_TIMEOUT" apt-get update -qq -o DPkg::Lock::Timeout=120 >>"$DIR/log/apt.log" 2>&1 \
            || { tail -n 5 "$DIR/log/apt.log" >&2; cannot "apt-get update failed (offline?), see $DIR/log/apt.log"; }
        "${apt[@]}" >>"$DIR/log/apt.log" 2>&1 \
            || { tail -n 5 "$DIR/log/apt.log" >&2; cannot "apt-get install ${PACKAGES[*]} failed, see $DIR/log/apt.log"; }
    fi
    for cmd in munged slurmctld slurmd sbatch sinfo scontrol; do
        command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after installing ${PACKAGES[*]}"
    done
}

munge_works() { timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then return 0; fi  # a system munged (or ours from an earlier start) is up
    local key=/etc/munge/munge.key user=root
    id munge >/dev/null 2>&1 && user=munge
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [[ ! -s "$key" ]]; then
        log "creating $key"
        if command -v mungekey >/dev/null 2>&1; then mungekey --create --keyfile="$key" --force
        else dd if=/dev/urandom of="$key" bs=1 count=1024 status=none; fi
    fi
    chown -R "$user:" /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 700 /etc/munge && chmod 400 "$key" && chmod 755 /run/munge
    local args=()  # logs to /var/log/munge/munged.log
    [[ "$user" == root ]] && args+=(--force)  # munged refuses root without it
    log "starting munged as $user"
    if [[ "$user" == munge ]]; then
        runuser -u munge -- munged "${args[@]}" || die "munged did not start, see /var/log/munge/munged.log"
    else
        munged "${args[@]}" || die "munged did not start, see /var/log/munge/munged.log"
    fi
    wait_for "$DAEMON_TIMEOUT" "munged to answer" munge_works || { show_logs; die "munged is not answering"; }
    touch "$DIR/munged.ours"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_conf() {
    local host node cpus
    host="$(hostname -s)"
    # torchrun's rendezvous uses the node name as an address: it must resolve
    if getent hosts "$host" >/dev/null 2>&1; then node="$host"; else node=localhost; fi
    cpus="$(nproc)"
    sed -e "s|@DIR@|$DIR|g" -e "s|@CTLD_HOST@|$host|g" -e "s|@NODE_NAME@|$node|g" \
        -e "s|@CPUS@|$cpus|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        "$HERE/slurm.conf.in" >"$CONF.new"
    mv "$CONF.new" "$CONF"
    echo "$node" >"$DIR/node_name"
}

stop_daemon() {  # stop_daemon NAME PIDFILE
    local pid
    pid_alive "$2" || { rm -f "$2"; return 0; }
    pid="$(cat "$2")"
    log "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    if ! wait_for "$DAEMON_TIMEOUT" "$1 to exit" pid_alive_not "$2"; then
        kill -9 "$pid" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$2"
}
pid_alive_not() { ! pid_alive "$1"; }

# pids first: sinfo retries for ~10 s when no slurmctld answers
cluster_ready() { pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" && [[ "$(node_state)" == idle* ]]; }

start() {
    mkdir -p "$DIR/log"
    install_packages
    [[ "$(id -u)" == 0 ]] || cannot "SlurmUser=root in this test config: run as root"
    start_munge
    if [[ -s "$CONF" ]] && cluster_ready; then
        log "already running"
        echo "SLURM_CONF=$CONF"
        return 0
    fi
    # a half-started cluster from an earlier run: start over from a clean state
    stop_daemon slurmd "$DIR/slurmd.pid"
    stop_daemon slurmctld "$DIR/slurmctld.pid"
    rm -rf "$DIR/state" "$DIR/spool"
    mkdir -p "$DIR/state" "$DIR/spool"
    : >"$DIR/log/slurmctld.log"
    : >"$DIR/log/slurmd.log"
    local port
    for port in "$CTLD_PORT" "$SLURMD_PORT"; do
        port_free "$port" || cannot "port $port is in use (set SPECFORGE_SLURM_PORT to another)"
    done
    write_conf
    log "starting slurmctld and slurmd ($CONF)"
    slurmctld -c -f "$CONF" || { show_logs; die "slurmctld failed to start"; }
    wait_for "$DAEMON_TIMEOUT" "slurmctld to answer" eval 'timeout 5 scontrol ping 2>/dev/null | grep -q UP' \
        || { show_logs; die "slurmctld is not answering"; }
    local node
    node="$(cat "$DIR/node_name")"
    if [[ "$node" == "$(hostname -s)" ]]; then slurmd -f "$CONF"; else slurmd -f "$CONF" -N "$node"; fi \
        || { show_logs; die "slurmd failed to start"; }
    if ! wait_for "$NODE_TIMEOUT" "node $node to be idle" eval '[[ "$(node_state)" == idle* ]]'; then
        log "node state: $(node_state)"
        timeout 10 scontrol show node "$node" >&2 || true
        show_logs
        die "node $node did not become idle"
    fi
    log "ready: node $node idle, $(nproc) CPUs"
    echo "SLURM_CONF=$CONF"
}

stop() {
    [[ -d "$DIR" ]] || return 0
    stop_daemon slurmd "$DIR/slurmd.pid"
    stop_daemon slurmctld "$DIR/slurmctld.pid"
    if [[ -e "$DIR/munged.ours" ]]; then
        local pidfile=/run/munge/munged.pid
        [[ -s "$pidfile" ]] || pidfile="$(ls /var/run/munge/munged.pid 2>/dev/null || true)"
        if [[ -n "$pidfile" ]]; then stop_daemon munged "$pidfile"; fi
        rm -f "$DIR/munged.ours"
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) cluster_ready ;;
    *) die "usage: $0 start|stop|status" ;;
esac
