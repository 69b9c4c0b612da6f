#!/usr/bin/env bash
# A private Slurm cluster on this machine: one munged, one slurmctld and three slurmd "nodes"
# n1..n3, every file under BASE_DIR, nothing system-wide touched (no systemd, no /etc).
#
#   scripts/slurm-cluster.sh start  BASE_DIR   start the daemons, print `export SLURM_CONF=...`
#   scripts/slurm-cluster.sh wait   BASE_DIR   until all nodes are idle (bounded)
#   scripts/slurm-cluster.sh status BASE_DIR   daemons (alive/dead) and `sinfo`
#   scripts/slurm-cluster.sh stop   BASE_DIR   cancel jobs, stop exactly the recorded daemons
#
# Follows the verified recipe in ../shared/slurm/README.md (Debian 12, slurm-wlm 22.05): Debian
# builds Slurm with MULTIPLE_SLURMD, so several `slurmd -N nX` share this host on their own
# ports; munged runs as the munge user on a private socket that Slurm finds through
# `AuthInfo=socket=...`. The daemons run in the foreground (-D / -F) in the background of this
# script; their PIDs are recorded in BASE_DIR/run/<daemon>.pid, and `stop` signals only those.
#
# Environment:
#   HDIST_SLURM_PORT        slurmctld port (default: the first free port from 17000 in steps
#                           of 10); the nodes listen on the next three ports
#   HDIST_SLURM_SCHEDULER   SchedulerParameters (default batch_sched_delay=0,sched_min_interval=0:
#                           a submitted job starts in well under a second instead of ~3 s);
#                           set it to "default" to leave Slurm's defaults
#   HDIST_SLURM_WAIT        seconds `wait` gives the nodes to become idle (default 60)
#
# Layout of BASE_DIR:
#   slurm.conf  munge/munge.key  munge-run/munge.sock  ctld/  spool/<node>/
#   run/<daemon>.pid (ours)  run/slurm/*.pid (Slurm's own)  log/<daemon>.log, log/<daemon>.out
#
# Needs root (munged runs as the munge user; slurmd runs jobs as their submitter).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=(n1 n2 n3)
DEFAULT_SCHEDULER="batch_sched_delay=0,sched_min_interval=0"

usage() {
    die "usage: $0 start|stop|status|wait BASE_DIR"
}

[[ $# -eq 2 ]] || usage
ACTION="$1"
BASE="$2"
mkdir -p "$BASE"
BASE="$(cd "$BASE" && pwd)"
CONF="$BASE/slurm.conf"
RUN="$BASE/run"
LOGS="$BASE/log"
export SLURM_CONF="$CONF"

# A port is free when nothing listens on it (ss lists listening TCP sockets).
port_free() {
    ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

pick_port() {
    if [[ -n "${HDIST_SLURM_PORT:-}" ]]; then
        echo "$HDIST_SLURM_PORT"
        return
    fi
    local base
    for ((base = 17000; base < 18000; base += 10)); do
        if port_free "$base" && port_free $((base + 1)) && port_free $((base + 2)) &&
            port_free $((base + 3)); then
            echo "$base"
            return
        fi
    done
    die "no free port range between 17000 and 18000 for slurmctld and the nodes; set HDIST_SLURM_PORT"
}

write_conf() {
    local port="$1" scheduler="${HDIST_SLURM_SCHEDULER:-$DEFAULT_SCHEDULER}" scheduler_line=""
    if [[ "$scheduler" != default ]]; then
        scheduler_line="SchedulerParameters=$scheduler"
    fi
    local tmp="$CONF.tmp"
    cat >"$tmp" <<EOF
# Written by scripts/slurm-cluster.sh: a private cluster, every path under $BASE.
ClusterName=hdisttest
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$BASE/munge-run/munge.sock
StateSaveLocation=$BASE/ctld
SlurmdSpoolDir=$BASE/spool/%n
SlurmctldPidFile=$RUN/slurm/slurmctld.pid
SlurmdPidFile=$RUN/slurm/slurmd-%n.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
$scheduler_line
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SlurmdTimeout=30
# No slurmdbd here: finished jobs stay visible to scontrol for this long.
MinJobAge=300
NodeName=n[1-3] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[$((port + 1))-$((port + 3))] CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    sync "$tmp"
    mv "$tmp" "$CONF"
}

# pid_alive NAME : the recorded daemon NAME is running (and is still the process we started:
# a recycled PID running something else does not count).
pid_alive() {
    local file="$RUN/$1.pid" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$BASE"
}

# running PID : the process exists and is not a zombie (an unreaped zombie has exited).
running() {
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != Z ]]
}

# launch NAME CMD... : run CMD in the background (foreground daemon), record its PID.
launch() {
    local name="$1"
    shift
    if pid_alive "$name"; then
        die "$name is already running (PID $(cat "$RUN/$name.pid")); stop the cluster first: $0 stop $BASE"
    fi
    "$@" </dev/null >"$LOGS/$name.out" 2>&1 &
    echo $! >"$RUN/$name.pid"
}

tail_logs() {
    local f
    for f in "$LOGS"/*; do
        [[ -s "$f" ]] || continue
        echo "--- last lines of $f" >&2
        tail -n 15 "$f" >&2
    done
}

start_munge() {
    local key_dir="$BASE/munge" sock_dir="$BASE/munge-run"
    mkdir -p "$key_dir" "$sock_dir"
    # munged runs as the munge user: it must reach its directories under BASE.
    chmod 0755 "$BASE"
    setpriv --reuid munge --regid munge --init-groups test -x "$sock_dir" ||
        die "the munge user cannot reach $BASE (a parent directory is not searchable by others); put BASE_DIR elsewhere or chmod o+x its parents"
    if [[ ! -s "$key_dir/munge.key" ]]; then
        head -c 128 /dev/urandom >"$key_dir/munge.key.tmp"
        mv "$key_dir/munge.key.tmp" "$key_dir/munge.key"
    fi
    chown -R munge:munge "$key_dir" "$sock_dir"
    chmod 0700 "$key_dir"
    chmod 0400 "$key_dir/munge.key"
    # Clients (slurmctld, slurmd, srun of any user) must reach the socket.
    chmod 0755 "$sock_dir"
    rm -f "$sock_dir/munge.sock"
    launch munged setpriv --reuid munge --regid munge --init-groups /usr/sbin/munged -F \
        --key-file="$key_dir/munge.key" --socket="$sock_dir/munge.sock" \
        --pid-file="$sock_dir/munged.pid" --seed-file="$sock_dir/munged.seed" \
        --log-file="$LOGS/munged.log"
    local pid deadline=$((SECONDS + 30))
    pid="$(cat "$RUN/munged.pid")"
    while ((SECONDS < deadline)); do
        [[ -S "$sock_dir/munge.sock" ]] && return 0
        running "$pid" || break
        sleep 0.05
    done
    tail_logs
    if running "$pid"; then
        die "munged (PID $pid) did not create its socket $sock_dir/munge.sock within 30 s (log above)"
    fi
    die "munged exited before creating its socket $sock_dir/munge.sock (log above)"
}

do_start() {
    need_pkgs slurm-wlm munge
    mkdir -p "$RUN/slurm" "$LOGS" "$BASE/ctld" "$BASE/spool"
    local node
    for node in "${NODES[@]}"; do
        mkdir -p "$BASE/spool/$node"
    done
    write_conf "$(pick_port)"
    start_munge
    launch slurmctld slurmctld -D -f "$CONF"
    for node in "${NODES[@]}"; do
        launch "slurmd-$node" slurmd -D -N "$node" -f "$CONF"
    done
    log "started munged, slurmctld and slurmd ${NODES[*]} under $BASE (PIDs in $RUN)"
    echo "export SLURM_CONF=$CONF"
}

do_wait() {
    [[ -f "$CONF" ]] || die "no cluster under $BASE ($CONF missing); start it first: $0 start $BASE"
    local limit="${HDIST_SLURM_WAIT:-60}" start=$SECONDS states=""
    while ((SECONDS - start < limit)); do
        for name in munged slurmctld; do
            if ! pid_alive "$name"; then
                tail_logs
                die "$name (recorded in $RUN/$name.pid) is not running (log tails above)"
            fi
        done
        states="$(sinfo -h -N -o %t 2>/dev/null || true)"
        if [[ "$(grep -cx idle <<<"$states" || true)" -eq ${#NODES[@]} ]]; then
            return 0
        fi
        sleep 0.1
    done
    tail_logs
    die "nodes not all idle after ${limit} s (sinfo node states: $(tr '\n' ' ' <<<"${states:-none}")); log tails above"
}

do_status() {
    local name
    for name in munged slurmctld "${NODES[@]/#/slurmd-}"; do
        if pid_alive "$name"; then
            echo "$name: running (PID $(cat "$RUN/$name.pid"))"
        else
            echo "$name: not running"
        fi
    done
    if pid_alive slurmctld; then
        sinfo -N 2>&1 || true
    fi
}

do_stop() {
    [[ -d "$RUN" ]] || return 0
    # Jobs still running belong to this cluster only (SLURM_CONF): cancel them so that no job
    # step outlives its slurmd.
    if pid_alive slurmctld && pid_alive munged; then
        scancel --user="$(id -un)" 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            [[ -z "$(squeue -h -t running,completing 2>/dev/null || true)" ]] && break
            sleep 0.1
        done
    fi
    local name pid pids=()
    # Nodes first, then the controller, then munged (which the others use to the end).
    for name in "${NODES[@]/#/slurmd-}" slurmctld munged; do
        if pid_alive "$name"; then
            pid="$(cat "$RUN/$name.pid")"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$RUN/$name.pid"
    done
    local deadline=$((SECONDS + 15))
    for pid in "${pids[@]}"; do
        while running "$pid"; do
            if ((SECONDS >= deadline)); then
                log "PID $pid did not exit after SIGTERM; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                deadline=$((SECONDS + 5))
            fi
            sleep 0.05
        done
    done
    log "stopped ${#pids[@]} daemons under $BASE"
}

case "$ACTION" in
start) do_start ;;
wait) do_wait ;;
status) do_status ;;
stop) do_stop ;;
*) usage ;;
esac
