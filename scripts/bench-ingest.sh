#!/usr/bin/env bash
# Ingest benchmark: hdist's store against tar --zstd, mksquashfs, ostree and casync.
#
#   scripts/bench-ingest.sh
#
# Datasets (fetched by scripts/fetch-corpus.sh cpython numpy):
#   cpython  Debian's CPython 3.11 tree (corpus/cpython)
#   numpy3   three numpy releases (corpus/numpy/<version>), ingested one after the
#            other into one output; reported as one row (summed time, final size)
#
# For every dataset and tool: wall time (date +%s.%N around the command; `sync`
# before every measured step, a fresh output location for every run) and the
# output's size (du -sb). The table goes to stdout, progress to stderr.
#
# Environment:
#   HDIST=path         hdist binary to use (default: cargo build --release)
#   BENCH_OUT=dir      where outputs go (default: a mktemp -d removed at exit;
#                      a given BENCH_OUT is kept)
#   BENCH_RUNS=n       runs per dataset and tool, the median time is reported (3)
#   BENCH_SYNC_AFTER=1 also time a trailing `sync`, so data a tool leaves in the
#                      page cache is charged to it (1; 0 = time the command only)
#   BENCH_TOOLS="..."  subset of: hdist tar mksquashfs ostree casync
#   HDIST_CACHE=dir    cache/corpus location (see scripts/lib.sh)
#
# Tool logs: $CACHE_DIR/bench/logs/. Exit status: 0 when every measurement ran
# (target misses are reported, not fatal), 1 when some tool failed.

# The step_*/size_* functions are called indirectly ("step_$tool").
# shellcheck disable=SC2317
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${BENCH_RUNS:-3}"
SYNC_AFTER="${BENCH_SYNC_AFTER:-1}"
read -r -a TOOLS <<<"${BENCH_TOOLS:-hdist tar mksquashfs ostree casync}"
DATASETS=(cpython numpy3)
CORPUS="$CACHE_DIR/corpus"
LOGDIR="$CACHE_DIR/bench/logs"

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"

declare -A TOOL_LABEL=(
    [hdist]="hdist"
    [tar]="tar --zstd"
    [mksquashfs]="mksquashfs"
    [ostree]="ostree"
    [casync]="casync"
)

# ----------------------------------------------------------------- setup

"$ROOT/scripts/fetch-corpus.sh" cpython numpy
need_pkgs squashfs-tools ostree casync zstd tar

rm -rf "$LOGDIR"
mkdir -p "$LOGDIR"

if [[ -n "${BENCH_OUT:-}" ]]; then
    mkdir -p "$BENCH_OUT"
    BENCH_OUT="$(cd "$BENCH_OUT" && pwd)"
else
    BENCH_OUT="$(mktemp -d "${TMPDIR:-/tmp}/hdist-bench.XXXXXX")"
    trap 'rm -rf "$BENCH_OUT"' EXIT
fi
log "outputs in $BENCH_OUT, tool logs in $LOGDIR"

HDIST_ERR=""
if [[ " ${TOOLS[*]} " == *" hdist "* ]]; then
    if [[ -n "${HDIST:-}" ]]; then
        [[ -x "$HDIST" ]] || HDIST_ERR="HDIST=$HDIST is not executable"
    elif ! build_hdist >"$LOGDIR/build.log" 2>&1; then
        HDIST_ERR="cargo build --release failed (see $LOGDIR/build.log)"
    fi
    if [[ -n "$HDIST_ERR" ]]; then
        log "hdist: $HDIST_ERR; its rows will show as failed"
    else
        log "hdist: $HDIST"
    fi
fi

# Inputs of each dataset, as parallel arrays of "dir name version" steps.
DS_DIRS=()
DS_NAMES=()
DS_VERS=()
dataset_steps() {
    DS_DIRS=()
    DS_NAMES=()
    DS_VERS=()
    local v
    case "$1" in
    cpython)
        DS_DIRS=("$CORPUS/cpython")
        DS_NAMES=(cpython)
        v="$(PYTHONHOME="$CORPUS/cpython/usr" "$CORPUS/cpython/usr/bin/python3.11" \
            -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo 3.11)"
        DS_VERS=("$v")
        ;;
    numpy3)
        while read -r v; do
            DS_DIRS+=("$CORPUS/numpy/$v")
            DS_NAMES+=(numpy)
            DS_VERS+=("$v")
        done < <(find "$CORPUS/numpy" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -V)
        [[ ${#DS_DIRS[@]} -eq 3 ]] || die "expected 3 numpy versions in $CORPUS/numpy, found ${#DS_DIRS[@]}"
        ;;
    esac
}

# Bytes of content: regular file sizes plus symlink target lengths.
content_bytes() {
    find "$@" \( -type f -o -type l \) -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }'
}

# du -sb of several paths, summed (one total).
size_of() {
    du -scb "$@" | tail -n1 | cut -f1
}

now() { date +%s.%N; }

# ----------------------------------------------------------------- tools
# step_TOOL OUT DIR NAME VERSION : ingest one input into OUT (runs once per input)
# size_TOOL OUT                  : bytes of what the tool produced in OUT

step_hdist() {
    [[ -z "$HDIST_ERR" ]] || {
        echo "hdist unavailable: $HDIST_ERR"
        return 1
    }
    "$HDIST" --store "$1/hdist-store" -q store add "$2" --name "$3" --version "$4"
}
size_hdist() { size_of "$1/hdist-store"; }

step_tar() { tar --zstd -cf "$1/$3-$4.tar.zst" -C "$2" .; }
size_tar() { size_of "$1"/*.tar.zst; }

step_mksquashfs() { mksquashfs "$2" "$1/$3-$4.sqfs" -comp zstd -noappend -quiet; }
size_mksquashfs() { size_of "$1"/*.sqfs; }

step_ostree() {
    if [[ ! -d "$1/ostree-repo" ]]; then
        ostree --repo="$1/ostree-repo" init --mode=archive
    fi
    ostree --repo="$1/ostree-repo" commit --branch="bench/$3" --subject="$3 $4" --tree=dir="$2"
}
size_ostree() { size_of "$1/ostree-repo"; }

# (a directory needs a .caidx directory index; .caibx is casync's blob index)
step_casync() { casync make --store="$1/castr" "$1/$3-$4.caidx" "$2"; }
size_casync() { size_of "$1/castr" "$1"/*.caidx; }

# ----------------------------------------------------------------- measure

declare -A INPUT TIMES SIZE FAILED LASTOUT

# measure DATASET TOOL RUN : one timed run; appends to TIMES, sets SIZE/FAILED
measure() {
    local ds="$1" tool="$2" run="$3" key="$1/$2" out i t0 t1 total=0
    local logf="$LOGDIR/$ds-$tool.log"
    out="$BENCH_OUT/$ds/$tool/run$run"
    rm -rf "$out"
    mkdir -p "$out"
    for i in "${!DS_DIRS[@]}"; do
        sync
        printf '== run %s: %s %s %s\n' "$run" "$tool" "${DS_NAMES[$i]}" "${DS_VERS[$i]}" >>"$logf"
        t0="$(now)"
        if ! "step_$tool" "$out" "${DS_DIRS[$i]}" "${DS_NAMES[$i]}" "${DS_VERS[$i]}" >>"$logf" 2>&1; then
            FAILED[$key]="$logf"
            log "$ds / ${TOOL_LABEL[$tool]}: failed (see $logf)"
            tail -n 5 "$logf" | sed 's/^/    /' >&2
            return 0
        fi
        [[ "$SYNC_AFTER" == 0 ]] || sync
        t1="$(now)"
        total="$(awk -v a="$total" -v b="$t0" -v c="$t1" 'BEGIN { printf "%.6f", a + c - b }')"
    done
    TIMES[$key]="${TIMES[$key]:-} $total"
    SIZE[$key]="$("size_$tool" "$out")"
    # keep only the latest run's output (for store stats), free the rest
    [[ -z "${LASTOUT[$key]:-}" ]] || rm -rf "${LASTOUT[$key]}"
    LASTOUT[$key]="$out"
    log "$ds / ${TOOL_LABEL[$tool]} run $run: ${total}s, ${SIZE[$key]} bytes"
}

for ds in "${DATASETS[@]}"; do
    dataset_steps "$ds"
    INPUT[$ds]="$(content_bytes "${DS_DIRS[@]}")"
    # warm the page cache so every tool (and run) reads the input from memory
    find "${DS_DIRS[@]}" -type f -exec cat {} + >/dev/null
done

for run in $(seq 1 "$RUNS"); do
    for ds in "${DATASETS[@]}"; do
        dataset_steps "$ds"
        for tool in "${TOOLS[@]}"; do
            declare -F "step_$tool" >/dev/null || die "unknown tool '$tool' in BENCH_TOOLS"
            [[ -z "${FAILED[$ds/$tool]:-}" ]] || continue
            measure "$ds" "$tool" "$run"
        done
    done
done

# ----------------------------------------------------------------- report

declare -A TIME MBPS
for ds in "${DATASETS[@]}"; do
    for tool in "${TOOLS[@]}"; do
        key="$ds/$tool"
        [[ -z "${FAILED[$key]:-}" ]] || continue
        TIME[$key]="$(median <<<"${TIMES[$key]}")"
        MBPS[$key]="$(awk -v b="${INPUT[$ds]}" -v t="${TIME[$key]}" 'BEGIN { printf "%.1f", (t > 0 ? b / t / 1e6 : 0) }')"
    done
done

echo
echo "Ingest benchmark ($(nproc) cores, median of $RUNS run(s), time $([[ "$SYNC_AFTER" == 0 ]] && echo "without" || echo "including") a trailing sync; outputs on $(df -T "$BENCH_OUT" | awk 'NR == 2 { print $2 }'))"
echo
echo "| dataset | tool | input bytes | time s | MB/s | output bytes | ratio to input |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for ds in "${DATASETS[@]}"; do
    for tool in "${TOOLS[@]}"; do
        key="$ds/$tool"
        if [[ -n "${FAILED[$key]:-}" ]]; then
            printf '| %s | %s | %s | %s: failed (see %s) | - | - | - |\n' \
                "$ds" "${TOOL_LABEL[$tool]}" "${INPUT[$ds]}" "${TOOL_LABEL[$tool]}" "${FAILED[$key]}"
        else
            printf '| %s | %s | %s | %.3f | %s | %s | %s |\n' "$ds" "${TOOL_LABEL[$tool]}" \
                "${INPUT[$ds]}" "${TIME[$key]}" "${MBPS[$key]}" "${SIZE[$key]}" \
                "$(awk -v o="${SIZE[$key]}" -v i="${INPUT[$ds]}" 'BEGIN { printf "%.3f", o / i }')"
        fi
    done
done
echo
echo "input bytes: file contents (regular files + symlink targets). output bytes: du -sb."
echo "numpy3: hdist = one store, three adds; tar --zstd = three archives, sizes summed;"
echo "mksquashfs = one image per version, sizes summed; ostree = one archive-mode repo,"
echo "three commits on one branch; casync = one shared chunk store + three .caidx indexes."

# ----------------------------------------------------------------- targets

ok() { [[ -z "${FAILED[$1]:-}" && -n "${TIME[$1]:-}" ]]; }

fmt3() { printf '%.3f' "$1"; }

verdict() { # 1|0
    if [[ "$1" == 1 ]]; then echo PASS; else echo FAIL; fi
}

target_faster() { # DATASET PEER
    local h="$1/hdist" p="$1/$2" label="$1: hdist ingest faster than ${TOOL_LABEL[$2]}"
    if ! ok "$h"; then
        echo "$label: FAIL (hdist failed)"
    elif ! ok "$p"; then
        echo "$label: n/a (${TOOL_LABEL[$2]} failed)"
    else
        echo "$label: $(verdict "$(awk -v a="${TIME[$h]}" -v b="${TIME[$p]}" 'BEGIN { print (a < b) }')") (hdist $(fmt3 "${TIME[$h]}") s vs $(fmt3 "${TIME[$p]}") s)"
    fi
}

target_throughput() { # DATASET
    local h="$1/hdist" p="$1/tar" label="$1: hdist throughput >= 0.8x tar --zstd"
    if ! ok "$h"; then
        echo "$label: FAIL (hdist failed)"
    elif ! ok "$p"; then
        echo "$label: n/a (tar --zstd failed)"
    else
        echo "$label: $(verdict "$(awk -v a="${MBPS[$h]}" -v b="${MBPS[$p]}" 'BEGIN { print (a >= 0.8 * b) }')") (hdist ${MBPS[$h]} MB/s vs 0.8 x ${MBPS[$p]} MB/s)"
    fi
}

target_size() { # DATASET PEER
    local h="$1/hdist" p="$1/$2" label="$1: hdist store size <= ${TOOL_LABEL[$2]} repo size"
    if ! ok "$h"; then
        echo "$label: FAIL (hdist failed)"
    elif ! ok "$p"; then
        echo "$label: n/a (${TOOL_LABEL[$2]} failed)"
    else
        echo "$label: $(verdict "$(awk -v a="${SIZE[$h]}" -v b="${SIZE[$p]}" 'BEGIN { print (a <= b) }')") (${SIZE[$h]} vs ${SIZE[$p]} bytes)"
    fi
}

if [[ " ${TOOLS[*]} " == *" hdist "* ]]; then
    echo
    echo "Targets:"
    for ds in "${DATASETS[@]}"; do
        [[ " ${TOOLS[*]} " != *" ostree "* ]] || target_faster "$ds" ostree
        [[ " ${TOOLS[*]} " != *" mksquashfs "* ]] || target_faster "$ds" mksquashfs
        [[ " ${TOOLS[*]} " != *" tar "* ]] || target_throughput "$ds"
    done
    [[ " ${TOOLS[*]} " != *" ostree "* ]] || target_size numpy3 ostree

    for ds in "${DATASETS[@]}"; do
        ok "$ds/hdist" || continue
        echo
        echo "hdist store stats --json ($ds):"
        if ! "$HDIST" --store "${LASTOUT[$ds/hdist]}/hdist-store" store stats --json; then
            echo "(store stats failed)"
        fi
    done
fi

status=0
for key in "${!FAILED[@]}"; do
    status=1
    log "failed: $key (log: ${FAILED[$key]})"
done
exit "$status"
