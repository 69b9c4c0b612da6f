#!/usr/bin/env bash
# Real-tree mount benchmark: a large, realistic Python prefix (Debian bookworm's
# CPython 3.11 plus numpy, scipy, pandas and matplotlib, every module byte-compiled in
# the default timestamp mode, as Debian and pip do) read natively, through an hdist
# mount and through squashfuse_ll, side by side in one run.
#
#   scripts/bench-realtree.sh            (as root; installs what it needs)
#
# The tree is built once into $CACHE_DIR/realtree/python/usr (rebuilt when missing or
# when scripts/realtree-requirements.txt changes): a copy of corpus/cpython/usr
# (scripts/fetch-corpus.sh cpython) byte-compiled with its own interpreter
# (`python3.11 -m compileall`), plus `pip install --require-hashes -r
# scripts/realtree-requirements.txt --target <its dist-packages>` (wheels cached in
# $CACHE_DIR/downloads/realtree/), byte-compiled too. It must import the workload
# natively before anything is measured.
#
# Setups (each a directory R holding bin/python3.11, run with PYTHONHOME=R):
#   native          $CACHE_DIR/realtree/python/usr itself
#   hdist root      `hdist store add` of the tree, `hdist profile create`, `hdist mount`
#   squashfuse_ll   squashfuse_ll on a `mksquashfs -comp zstd` image of the tree
# plus, for (5), a separate artifact / image holding one file of random data.
#
# Measurements (every round goes through all setups in turn, so drifting load from
# other processes hits them alike):
#   (1) R/bin/python3.11 -c 'import numpy, scipy.linalg, pandas, matplotlib.pyplot',
#       warm: 2 warm-up runs per setup, then median of $BENCH_HOT_RUNS
#   (2) the same with the page cache dropped (echo 3 > drop_caches) before each run
#   (3) find R -printf '%s\n' right after a fresh mount (hdist and squashfuse_ll are
#       remounted before each sample; native gets echo 2 > drop_caches, i.e. dentries
#       and inodes dropped), then again warm
#   (4) find R -type f -print0 | xargs -0 cat > /dev/null, warm (after one warm-up)
#   (5) dd bs=1M of a $BENCH_BIG_MB MiB random file, warm (after one warm-up), GB/s
#   (6) VmRSS of the mount daemons after all of the above
# and the wall time of `hdist store add` and of `mksquashfs` over the tree (page cache
# dropped before, a trailing sync included). Python runs with PYTHONDONTWRITEBYTECODE=1
# (nothing is written, natively either), MPLBACKEND=Agg and one MPLCONFIGDIR per setup
# (its font cache is made by the warm-up runs). All times are wall-clock ms.
#
# stdout gets one Markdown table (also written to $BENCH_OUT/results.md); progress goes
# to stderr.
#
# Environment:
#   HDIST=path          hdist binary (default: cargo build --release); copied to
#                       $BENCH_OUT so concurrent rebuilds cannot swap it mid-run
#   BENCH_OUT=dir       output dir (default: mktemp -d); must be new or empty. At exit
#                       everything in it but results.md is removed unless KEEP=1
#   KEEP=1              keep all of $BENCH_OUT (everything is still unmounted at exit)
#   BENCH_HOT_RUNS=n    runs of (1) per setup (20); BENCH_COLD_RUNS=n runs of (2) (5)
#   BENCH_FIND_RUNS=n   samples of (3) (5); BENCH_READ_RUNS=n runs of (4) (3)
#   BENCH_DD_RUNS=n     runs of (5) (5); BENCH_BIG_MB=n size of the big file (1024)
#   HDIST_CACHE=dir     cache/corpus location (see scripts/lib.sh)
#
# Side effects outside $BENCH_OUT: the tree cache above; the system-wide page cache is
# dropped many times (this slows other processes on the machine for a while).
# Exit status: 0 when every measurement ran, 1 when some failed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOT_RUNS="${BENCH_HOT_RUNS:-20}"
HOT_WARMUP=2
COLD_RUNS="${BENCH_COLD_RUNS:-5}"
FIND_RUNS="${BENCH_FIND_RUNS:-5}"
READ_RUNS="${BENCH_READ_RUNS:-3}"
DD_RUNS="${BENCH_DD_RUNS:-5}"
BIG_MB="${BENCH_BIG_MB:-1024}"
IMPORTS='import numpy, scipy.linalg, pandas, matplotlib.pyplot'
VARIANTS=(native hdist squash)
declare -A LABEL=([native]="native" [hdist]="hdist root" [squash]="squashfuse_ll")

REQUIREMENTS="$ROOT/scripts/realtree-requirements.txt"
REALTREE="$CACHE_DIR/realtree"
TREE="$REALTREE/python"
WHEELS="$CACHE_DIR/downloads/realtree"
# The wheels are chosen for the tree's Python, whatever Python runs pip.
PIP_PLATFORM=(--python-version 3.11 --implementation cp --platform manylinux2014_x86_64 --only-binary=:all:)

for v in HOT_RUNS COLD_RUNS FIND_RUNS READ_RUNS DD_RUNS BIG_MB; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ "$(id -u)" -eq 0 ]] || die "run as root (mounts, drops the page cache, installs packages)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"
[[ -f "$REQUIREMENTS" ]] || die "$REQUIREMENTS is missing"
SCRIPT_START="$EPOCHREALTIME"

# ----------------------------------------------------------------- cleanup

TMPDIRS=()

cleanup() {
    local status=$? d
    trap - EXIT INT TERM
    release_bench_out results.md
    for d in "${TMPDIRS[@]}"; do
        rm -rf --one-file-system "$d"
    done
    [[ ! -e "${BENCH_OUT:-}/results.md" ]] || log "results: $BENCH_OUT/results.md"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------- the tree

# tree_python DIR ARGS... : the interpreter of the tree in DIR (DIR/usr), as its own prefix.
# SOURCE_DATE_EPOCH would switch compileall to checked-hash .pyc files.
tree_python() {
    env -u SOURCE_DATE_EPOCH -u PYTHONPATH PYTHONNOUSERSITE=1 PYTHONHOME="$1/usr" "$1/usr/bin/python3.11" "${@:2}"
}

requirements_sum() { sha256sum "$REQUIREMENTS" | cut -d' ' -f1; }

# Download the pinned wheels once (pip checks every hash); the marker records which
# requirements file they were fetched for.
fetch_wheels() {
    if [[ -f "$WHEELS/.complete" && "$(cat "$WHEELS/.complete")" == "$(requirements_sum)" ]]; then
        return 0
    fi
    log "downloading the pinned wheels into $WHEELS"
    mkdir -p "$WHEELS"
    python3 -m pip download -q --no-deps --require-hashes -r "$REQUIREMENTS" \
        --dest "$WHEELS" "${PIP_PLATFORM[@]}" >&2 || die "pip download of $REQUIREMENTS failed"
    requirements_sum >"$WHEELS/.complete"
}

# count_uncompiled DIR : how many .py files of the tree in DIR have no .pyc
count_uncompiled() {
    tree_python "$1" -c '
import importlib.util, os, pathlib, sys
print(sum(1 for p in pathlib.Path(sys.argv[1]).rglob("*.py")
          if not os.path.exists(importlib.util.cache_from_source(str(p)))))' "$1/usr"
}

build_tree() {
    local tmp site missing
    mkdir -p "$REALTREE"
    tmp="$(mktemp -d "$REALTREE/tmp.XXXXXX")"
    TMPDIRS+=("$tmp")
    log "building the tree in $tmp"
    cp -a "$CACHE_DIR/corpus/cpython/usr" "$tmp/usr"
    # As Debian's py3compile does after installing: the default (timestamp) mode.
    # compileall exits non-zero when some file does not compile; the count of .py
    # files left without .pyc below tells whether that matters.
    tree_python "$tmp" -m compileall -q "$tmp/usr/lib/python3.11" >&2 ||
        log "warning: compileall reported errors in the stdlib"

    # The dist-packages directory Debian's interpreter puts on sys.path.
    site="$(tree_python "$tmp" -c '
import os, site, sys
print(next(p for p in sys.path if p in site.getsitepackages() and os.path.isdir(p)))')" ||
        die "the tree's python has no existing site directory on sys.path"
    log "pip install into $site"
    python3 -m pip install -q --root-user-action=ignore --no-index --find-links "$WHEELS" --no-deps --require-hashes \
        -r "$REQUIREMENTS" --target "$site" "${PIP_PLATFORM[@]}" >&2 || die "pip install failed"
    # pip compiles what it installs (timestamp mode); this catches anything it skipped.
    tree_python "$tmp" -m compileall -q "$site" >&2 ||
        log "warning: compileall reported errors in $site"
    missing="$(count_uncompiled "$tmp")"
    log "$missing .py files have no .pyc (files that do not compile, e.g. test data)"

    log "checking that the tree imports the workload natively"
    MPLBACKEND=Agg MPLCONFIGDIR="$tmp/mplconfig" tree_python "$tmp" -c "$IMPORTS" >&2 ||
        die "the new tree cannot run: $IMPORTS"
    rm -rf "$tmp/mplconfig"

    rm -rf --one-file-system "$TREE" "$REALTREE/.done"
    mkdir -p "$TREE"
    mv "$tmp/usr" "$TREE/usr"
    requirements_sum >"$REALTREE/.done"
}

"$ROOT/scripts/fetch-corpus.sh" cpython
need_pkgs squashfs-tools squashfuse fuse3 util-linux procps
python3 -m pip --version >/dev/null 2>&1 || need_pkgs python3-pip

if [[ ! -f "$REALTREE/.done" || "$(cat "$REALTREE/.done")" != "$(requirements_sum)" || ! -x "$TREE/usr/bin/python3.11" ]]; then
    fetch_wheels
    build_tree
fi
NATIVE="$TREE/usr"

# ----------------------------------------------------------------- output dir, binary

make_bench_out bench-realtree
log "output: $BENCH_OUT"
copy_hdist

STORE="$BENCH_OUT/store"
MNT="$BENCH_OUT/mnt"
mkdir -p "$MNT" "$BENCH_OUT/mpl"

drop_caches() { # 3 = page cache + dentries/inodes, 2 = dentries/inodes only
    sync
    echo "$1" >/proc/sys/vm/drop_caches
}

declare -A R=() # results: KEY -> number
FAILS=()

# timed_setup KEY OUTFILE CMD... : wall time of CMD plus a trailing sync, from a dropped
# cache; CMD's stdout goes to OUTFILE (- : to stderr)
timed_setup() {
    local key="$1" out="$2" t
    shift 2
    drop_caches 3
    [[ "$out" != - ]] || out=/dev/fd/2
    # shellcheck disable=SC2016 # expanded by the inner bash
    if t="$(time_ms bash -c 'out="$1"; shift; "$@" >>"$out" && sync' _ "$out" "$@")"; then
        R[$key]="$t"
    else
        FAILS+=("$key")
        return 1
    fi
}

log "ingesting the tree into $STORE"
timed_setup ingest "$BENCH_OUT/ingest.out" \
    "$HDIST" --store "$STORE" -q store add "$NATIVE" --name pytree --version 3.11 ||
    die "hdist store add failed"
PY_ID="$(cat "$BENCH_OUT/ingest.out")"
STORE_SIZE="$(du_h "$STORE")"
"$HDIST" --store "$STORE" -q profile create py "$PY_ID" >/dev/null

log "building the squashfs image"
timed_setup mksquashfs - mksquashfs "$NATIVE" "$BENCH_OUT/py.sqfs" -comp zstd -noappend -quiet -no-progress ||
    die "mksquashfs failed"

log "creating a ${BIG_MB} MiB random file (artifact big, image big.sqfs)"
mkdir -p "$BENCH_OUT/big"
head -c "${BIG_MB}M" /dev/urandom >"$BENCH_OUT/big/data.bin"
BIG_ID="$("$HDIST" --store "$STORE" -q store add "$BENCH_OUT/big" --name big)"
"$HDIST" --store "$STORE" -q profile create big "$BIG_ID" >/dev/null
# -noD: random data does not compress, and mksquashfs would store every block
# uncompressed after trying zstd on it; -noD gives the same image without the wait.
mksquashfs "$BENCH_OUT/big" "$BENCH_OUT/big.sqfs" -comp zstd -noD -noappend -quiet -no-progress >&2

# ----------------------------------------------------------------- mounts

# Root mounts log at info for hdist_fs, so "passthrough unavailable" would show up.
export HDIST_LOG="warn,fuser=error,hdist_fs=info"

mount_squash() { # IMAGE MNT
    mount_fuse "$2" squashfuse_ll "$1" "$2"
}

declare -A DIR BIGDIR
DIR[native]="$NATIVE"
DIR[hdist]="$MNT/hdist"
DIR[squash]="$MNT/squash"
BIGDIR[native]="$BENCH_OUT/big"
BIGDIR[hdist]="$MNT/hdist-big"
BIGDIR[squash]="$MNT/squash-big"

# remount SETUP : a fresh mount of the tree (native: a no-op)
remount() {
    case "$1" in
    hdist)
        unmount_one "${DIR[hdist]}"
        mount_hdist py "${DIR[hdist]}"
        ;;
    squash)
        unmount_one "${DIR[squash]}"
        mount_squash "$BENCH_OUT/py.sqfs" "${DIR[squash]}"
        ;;
    esac
}

log "mounting"
remount hdist
remount squash
mount_hdist big "${BIGDIR[hdist]}"
mount_squash "$BENCH_OUT/big.sqfs" "${BIGDIR[squash]}"

# py SETUP ARGS... : the setup's python3.11 as its own prefix
py() {
    local r="${DIR[$1]}"
    env -u PYTHONPATH -u PYTHONSTARTUP -u SOURCE_DATE_EPOCH PYTHONHOME="$r" PYTHONNOUSERSITE=1 \
        PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg MPLCONFIGDIR="$BENCH_OUT/mpl/$1" \
        "$r/bin/python3.11" "${@:2}"
}

log "checking every setup: same entries, python imports the workload"
declare -A ENTRIES=()
for s in "${VARIANTS[@]}"; do
    mkdir -p "$BENCH_OUT/mpl/$s"
    # the size of a directory differs from one file system to the next
    ENTRIES[$s]="$(cd "${DIR[$s]}" && find . \( -type d -printf 'd %p\n' \) -o -printf '%y %s %p\n' |
        LC_ALL=C sort | sha256sum | cut -c1-16)"
    if ! out="$(py "$s" -c "$IMPORTS; import sys, numpy; print(sys.prefix, numpy.__file__)" 2>&1)"; then
        log "${LABEL[$s]}: python failed: $out"
        FAILS+=("python on ${LABEL[$s]}")
    elif [[ "$out" != "${DIR[$s]} ${DIR[$s]}/"* ]]; then
        log "${LABEL[$s]}: warning: expected prefix and numpy below ${DIR[$s]}, got: $out"
    fi
done
for s in "${VARIANTS[@]}"; do
    [[ "${ENTRIES[$s]}" == "${ENTRIES[native]}" ]] ||
        log "warning: ${LABEL[$s]} lists other entries (types, sizes, paths) than native"
done

# sample KEY CMD... : time CMD, append the ms to S[KEY]; a failure is recorded once
declare -A S=() SFAILED=()
sample() {
    local key="$1" t
    shift
    [[ -z "${SFAILED[$key]:-}" ]] || return 0
    if t="$(time_ms "$@")"; then
        S[$key]+=" $t"
    else
        log "[$key] failed: $*"
        SFAILED[$key]=1
        FAILS+=("$key")
    fi
}

summarize() { # KEY... : R[KEY] = median of S[KEY]
    local key
    for key in "$@"; do
        [[ -n "${SFAILED[$key]:-}" || -z "${S[$key]:-}" ]] && continue
        log "[$key]:${S[$key]}"
        R[$key]="$(median <<<"${S[$key]}")"
    done
}

LOAD_START="$(uptime)"
MEASURE_START="$EPOCHREALTIME"
drop_caches 3

# (3) find after a fresh mount, then warm
for ((i = 1; i <= FIND_RUNS; i++)); do
    log "(3) find, round $i/$FIND_RUNS"
    for s in "${VARIANTS[@]}"; do
        if [[ "$s" == native ]]; then drop_caches 2; else remount "$s"; fi
        sample "findfresh/$s" find "${DIR[$s]}" -printf '%s\n'
        sample "findwarm/$s" find "${DIR[$s]}" -printf '%s\n'
    done
done

# (1) warm imports
for s in "${VARIANTS[@]}"; do
    for ((i = 0; i < HOT_WARMUP; i++)); do py "$s" -c "$IMPORTS" >/dev/null; done
done
for ((i = 1; i <= HOT_RUNS; i++)); do
    ((i % 5 == 1)) && log "(1) warm import, round $i/$HOT_RUNS"
    for s in "${VARIANTS[@]}"; do
        sample "hot/$s" py "$s" -c "$IMPORTS"
    done
done

# (2) imports from a dropped page cache
for ((i = 1; i <= COLD_RUNS; i++)); do
    log "(2) cold import, round $i/$COLD_RUNS"
    for s in "${VARIANTS[@]}"; do
        drop_caches 3
        sample "cold/$s" py "$s" -c "$IMPORTS"
    done
done

# (4) read every file, warm
read_all() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }
for s in "${VARIANTS[@]}"; do read_all "${DIR[$s]}"; done
for ((i = 1; i <= READ_RUNS; i++)); do
    log "(4) read every file, round $i/$READ_RUNS"
    for s in "${VARIANTS[@]}"; do
        sample "readall/$s" read_all "${DIR[$s]}"
    done
done

# (5) dd throughput, GB/s (1e9 bytes/s)
declare -A DDR=()
for s in "${VARIANTS[@]}"; do
    dd if="${BIGDIR[$s]}/data.bin" of=/dev/null bs=1M status=none || DDR[$s]=failed
done
for ((i = 0; i < DD_RUNS; i++)); do
    for s in "${VARIANTS[@]}"; do
        [[ "${DDR[$s]:-}" != failed ]] || continue
        if line="$(LC_ALL=C dd if="${BIGDIR[$s]}/data.bin" of=/dev/null bs=1M 2>&1 | tail -n1)"; then
            DDR[$s]+=" $(awk '{ printf "%.3f", $1 / $(NF - 3) / 1e9 }' <<<"$line")"
        else
            DDR[$s]=failed
        fi
    done
done
for s in "${VARIANTS[@]}"; do
    if [[ "${DDR[$s]:-failed}" == failed ]]; then
        FAILS+=("dd/$s")
        continue
    fi
    log "[dd/$s]:${DDR[$s]} GB/s"
    R[dd/$s]="$(median <<<"${DDR[$s]}")"
done

# (6) daemon RSS after all of it
RSS_PY_HDIST="$(rss_kb "${MPID[${DIR[hdist]}]:-0}")"
RSS_PY_SQUASH="$(rss_kb "${MPID[${DIR[squash]}]:-0}")"
RSS_BIG_HDIST="$(rss_kb "${MPID[${BIGDIR[hdist]}]:-0}")"
RSS_BIG_SQUASH="$(rss_kb "${MPID[${BIGDIR[squash]}]:-0}")"

for s in "${VARIANTS[@]}"; do
    summarize "findfresh/$s" "findwarm/$s" "hot/$s" "cold/$s" "readall/$s"
done
LOAD_END="$(uptime)"
MEASURE_END="$EPOCHREALTIME"

# The daemon logs its open mode at start (info), and "passthrough unavailable" at the first
# open where passthrough was wanted but refused.
OPEN_MODE="$(grep -aho 'open mode: .*' "$STORE"/logs/*.log 2>/dev/null | head -n1 || true)"
PT_MSG="$(grep -aho 'passthrough unavailable.*' "$STORE"/logs/*.log 2>/dev/null | head -n1 || true)"

# ----------------------------------------------------------------- report

secs() { awk -v ms="${1:-}" 'BEGIN { if (ms == "") print "failed"; else printf "%.1f s", ms / 1000 }'; }
elapsed() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.0f s", e - s }'; }

N_FILES="$(find "$NATIVE" -type f | wc -l)"
N_ENTRIES="$(find "$NATIVE" | wc -l)"
N_PYC="$(find "$NATIVE" -name '*.pyc' | wc -l)"
TREE_BYTES="$(du -sb "$NATIVE" | cut -f1)"
PY_VERSIONS="$(sed -n 's/^\([A-Za-z0-9_.-]*\)==\([^ ]*\).*/\1 \2/p' "$REQUIREMENTS" | grep -E '^(numpy|scipy|pandas|matplotlib) ' | paste -sd, - | sed 's/,/, /g')"

report() {
    echo
    echo "Real-tree mount benchmark: $(uname -r), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1e6 }' /proc/meminfo) RAM, hdist $("$HDIST" --version 2>/dev/null | awk '{ print $NF }')"
    echo "tree: Debian CPython 3.11 + pip ($PY_VERSIONS and dependencies), timestamp .pyc: $N_FILES files ($N_PYC .pyc), $N_ENTRIES entries, $(awk -v b="$TREE_BYTES" 'BEGIN { printf "%.0f MB", b / 1e6 }')"
    echo "load at start: ${LOAD_START#*load average: } (1/5/15 min); at end: ${LOAD_END#*load average: }; measurements took $(elapsed "$MEASURE_START" "$MEASURE_END")"
    echo "medians; every round goes through the setups in turn"
    echo
    echo "| measurement | ${LABEL[native]} | ${LABEL[hdist]} | ${LABEL[squash]} |"
    echo "| --- | ---: | ---: | ---: |"
    row "(1) import numpy, scipy.linalg, pandas, matplotlib.pyplot, warm ($HOT_RUNS runs)" hot ms .0f
    row "(2) the same, page cache dropped before each run ($COLD_RUNS runs)" cold ms .0f
    row "(3) find R -printf '%s\\n' right after (re)mount / echo 2 > drop_caches ($FIND_RUNS runs)" findfresh ms .1f
    row "(3) the same, warm (second walk)" findwarm ms .1f
    row "(4) find R -type f -print0 \\| xargs -0 cat, warm ($READ_RUNS runs)" readall ms .0f
    row "(5) dd bs=1M of a ${BIG_MB} MiB random file, warm ($DD_RUNS runs)" dd GB/s .2f
    echo "| (6) daemon VmRSS after (1)-(4), tree mount | - | $(mb "$RSS_PY_HDIST") | $(mb "$RSS_PY_SQUASH") |"
    echo "| (6) daemon VmRSS after (5), big-file mount | - | $(mb "$RSS_BIG_HDIST") | $(mb "$RSS_BIG_SQUASH") |"
    echo "| ingest: hdist store add / mksquashfs -comp zstd (cold cache, incl. sync) | - | $(secs "${R[ingest]:-}") | $(secs "${R[mksquashfs]:-}") |"
    echo "| size on disk: tree / hdist store after ingest / squashfs image | $(du_h "$NATIVE") | $STORE_SIZE | $(du_h "$BENCH_OUT/py.sqfs") |"
    echo
    echo "Ratios in parentheses are setup / native: for times above 1 is slower, for (5) below 1"
    echo "is slower. Python ran with PYTHONDONTWRITEBYTECODE=1, so a stale .pyc is recompiled"
    echo "in memory on every run."
    echo "hdist daemon: ${OPEN_MODE:-open mode not logged}${PT_MSG:+; $PT_MSG}${HDIST_FUSE_OPEN:+ (HDIST_FUSE_OPEN=$HDIST_FUSE_OPEN)}"
}

report | tee "$BENCH_OUT/results.md"
log "total run time (tree cached: $([[ ${#TMPDIRS[@]} -eq 0 ]] && echo yes || echo no)): $(elapsed "$SCRIPT_START" "$EPOCHREALTIME")"

if [[ ${#FAILS[@]} -gt 0 ]]; then
    log "failed measurements: ${FAILS[*]}"
    exit 1
fi
