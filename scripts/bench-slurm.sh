#!/usr/bin/env bash
# Slurm's own overhead on the private test cluster (scripts/slurm-cluster.sh), with the
# recipe's SchedulerParameters (batch_sched_delay=0,sched_min_interval=0) and with Slurm's
# defaults: what a Slurm executor pays per package before any build work.
#
#   scripts/bench-slurm.sh [RUNS]     (default 5; medians reported)
#
#   start → idle      daemons started until `sinfo` shows all three nodes idle
#   job               `sbatch --wrap true` until the job has left the queue (COMPLETED): the
#                     first job after the nodes are idle, and three later ones
#   afterok hop       a chain of HOPS trivial jobs, each afterok on the previous one, all
#                     submitted at once: (last done − first done) / (HOPS − 1)
#
# Jobs are polled with `squeue -h -j ID` every 20 ms (as an executor would poll).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

RUNS="${1:-5}"
HOPS=6
need_pkgs slurm-wlm munge
CLUSTER="$ROOT/scripts/slurm-cluster.sh"
WORK="$(mktemp -d /tmp/hdist-bench-slurm.XXXXXX)"
chmod 755 "$WORK" # munged (the munge user) must reach the cluster directories
BASE=""
cleanup() {
    [[ -n "$BASE" ]] && "$CLUSTER" stop "$BASE" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# wait_gone ID : until job ID is no longer in the queue (bounded: 120 s).
wait_gone() {
    local i
    for ((i = 0; i < 6000; i++)); do
        [[ -z "$(squeue -h -j "$1" 2>/dev/null)" ]] && return 0
        sleep 0.02
    done
    die "job $1 still queued after 120 s"
}

submit() { # submit [SBATCH ARGS...] : job id
    sbatch --parsable -D "$WORK" -o /dev/null "$@" --wrap true
}

declare -A R
VARIANTS=(recipe default)
for variant in "${VARIANTS[@]}"; do
    idle=() job=() warm=() hop=()
    for ((run = 1; run <= RUNS; run++)); do
        BASE="$WORK/cluster-$variant-$run"
        scheduler=""
        [[ "$variant" == default ]] && scheduler=default
        t0="$(now_ms)"
        HDIST_SLURM_SCHEDULER="$scheduler" "$CLUSTER" start "$BASE" >/dev/null
        "$CLUSTER" wait "$BASE"
        idle+=($(($(now_ms) - t0)))
        export SLURM_CONF="$BASE/slurm.conf"
        # Trivial job: submit → gone from the queue.
        t0="$(now_ms)"
        id="$(submit)"
        wait_gone "$id"
        job+=($(($(now_ms) - t0)))
        # Once the controller has scheduled a job: three more, one after the other.
        for ((k = 0; k < 3; k++)); do
            t0="$(now_ms)"
            id="$(submit)"
            wait_gone "$id"
            warm+=($(($(now_ms) - t0)))
        done
        # A chain: record when each job leaves the queue.
        ids=("$(submit)")
        for ((h = 1; h < HOPS; h++)); do
            ids+=("$(submit --dependency="afterok:${ids[h - 1]}")")
        done
        wait_gone "${ids[0]}"
        first="$(now_ms)"
        for ((h = 1; h < HOPS; h++)); do
            wait_gone "${ids[h]}"
        done
        last="$(now_ms)"
        state="$(scontrol show job -o "${ids[HOPS - 1]}" | grep -o 'JobState=[A-Z]*')"
        [[ "$state" == JobState=COMPLETED ]] || die "chain end ${ids[HOPS - 1]}: $state"
        hop+=($(((last - first) / (HOPS - 1))))
        "$CLUSTER" stop "$BASE" 2>/dev/null
        BASE=""
    done
    R[idle/$variant]="$(echo "${idle[*]}" | median %.0f)"
    R[job/$variant]="$(echo "${job[*]}" | median %.0f)"
    R[warm/$variant]="$(echo "${warm[*]}" | median %.0f)"
    R[hop/$variant]="$(echo "${hop[*]}" | median %.0f)"
    log "$variant: start→idle ${idle[*]} ms; first job ${job[*]} ms; later jobs ${warm[*]} ms; hop ${hop[*]} ms"
done

echo "| median of $RUNS (ms) | recipe SchedulerParameters | Slurm defaults |"
echo "|---|---:|---:|"
echo "| cluster start → 3 nodes idle | ${R[idle/recipe]} | ${R[idle/default]} |"
echo "| first trivial job submit → done | ${R[job/recipe]} | ${R[job/default]} |"
echo "| later trivial job submit → done | ${R[warm/recipe]} | ${R[warm/default]} |"
echo "| per afterok hop (chain of $HOPS) | ${R[hop/recipe]} | ${R[hop/default]} |"
