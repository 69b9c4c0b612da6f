#!/usr/bin/env bash
# Mount benchmark: reads through an hdist FUSE mount against a native directory,
# squashfuse and bindfs, over the same tree (Debian's CPython 3.11, its stdlib
# precompiled with --invalidation-mode unchecked-hash, as when mounts showed every file
# with mtime 1: kept so results compare with earlier runs; mounts now keep mtimes, so
# the default timestamp mode works as well).
#
#   scripts/bench-mount.sh            (as root; installs what it needs)
#
# Variants:
#   native          a copy of corpus/cpython/usr (+ .pyc files), the baseline
#   hdist root      `hdist mount` as root (FUSE passthrough on kernel >= 6.9)
#   hdist non-root  `hdist mount` as user $BENCH_USER (own store, fusermount3, no
#                   passthrough); its measurements run as that user
#   squashfuse      squashfuse on a `mksquashfs -comp zstd` image of the tree
#   bindfs          `bindfs -r` of the native directory
#
# Measurements:
#   (a) python3 -c 'import json, sqlite3, ssl, decimal, asyncio, email'  (hyperfine, mean)
#   (b) find DIR -printf '%s\n' > /dev/null, warm                       (hyperfine, mean)
#   (c) tar -cf - DIR | cat > /dev/null, warm                           (hyperfine, mean)
#   (d) dd if=FILE of=/dev/null bs=1M of a 1 GiB random file, warm      (median GB/s)
#   (e) `hdist mount` wall time until it returns (median of $BENCH_MOUNTS) for a
#       profile of 1 artifact (cpython) and of 500 artifacts holding 100k files,
#       and the daemon's VmRSS after `find MNT` over the 500-artifact mount
# stdout gets one Markdown table and PASS/FAIL lines for the targets; progress and
# hyperfine's output go to stderr.
#
# Environment:
#   HDIST=path          hdist binary (default: cargo build --release); it is copied to
#                       $BENCH_OUT so concurrent rebuilds cannot swap it mid-run
#   BENCH_OUT=dir       scratch dir (default: mktemp -d); must be new or empty; removed
#                       at exit unless KEEP=1
#   KEEP=1              keep $BENCH_OUT (everything is still unmounted at exit)
#   BENCH_RUNS=n        hyperfine runs per command (20), split over BENCH_ROUNDS=n rounds
#                       (4) that each go through all variants; BENCH_WARMUP=n warmup
#                       runs per round (3)
#   BENCH_DD_RUNS=n     dd runs per variant (7); BENCH_BIG_MB=n size of the big file (1024)
#   BENCH_MOUNTS=n      mounts per profile for (e) (5)
#   BENCH_USER=name     unprivileged user (hdistbench; created with useradd if missing)
#   HDIST_CACHE=dir     cache/corpus location (see scripts/lib.sh)
#
# Side effects outside $BENCH_OUT: the user $BENCH_USER is created if missing (and
# kept); /dev/fuse is made mode 666 for the run and its old mode restored at exit.
# Exit status: 0 when every measurement ran (target misses are reported, not fatal),
# 1 when some measurement failed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${BENCH_RUNS:-20}"
ROUNDS="${BENCH_ROUNDS:-4}"
WARMUP="${BENCH_WARMUP:-3}"
DD_RUNS="${BENCH_DD_RUNS:-7}"
BIG_MB="${BENCH_BIG_MB:-1024}"
MOUNT_RUNS="${BENCH_MOUNTS:-5}"
BUSER="${BENCH_USER:-hdistbench}"
N_ART=500
N_FILES=200 # per artifact: bin/tool-K plus lib/libK/file-1..199
IMPORTS='import json, sqlite3, ssl, decimal, asyncio, email'
VARIANTS=(native hdist hdistu squash bindfs)
declare -A LABEL=(
    [native]="native"
    [hdist]="hdist root"
    [hdistu]="hdist non-root"
    [squash]="squashfuse"
    [bindfs]="bindfs"
)

for v in RUNS ROUNDS WARMUP DD_RUNS BIG_MB MOUNT_RUNS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
ROUND_RUNS=$(((RUNS + ROUNDS - 1) / ROUNDS))
[[ "$(id -u)" -eq 0 ]] || die "run as root (mounts as root and as $BUSER, installs packages)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"

# ----------------------------------------------------------------- cleanup

FUSE_MODE_OLD=""

as_user() {
    (cd / && setpriv --reuid "$BUSER" --regid "$BUSER" --init-groups \
        env HOME="$UHOME" USER="$BUSER" LOGNAME="$BUSER" "$@")
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    release_bench_out ""
    if [[ -n "$FUSE_MODE_OLD" ]]; then
        chmod "$FUSE_MODE_OLD" /dev/fuse || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------- setup

"$ROOT/scripts/fetch-corpus.sh" cpython
need_pkgs hyperfine squashfs-tools squashfuse bindfs fuse3 util-linux procps

make_bench_out bench-mount
chmod 755 "$BENCH_OUT"
log "scratch: $BENCH_OUT"
copy_hdist

if ! id "$BUSER" >/dev/null 2>&1; then
    log "creating user $BUSER"
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$BUSER"
fi
FUSE_MODE_NOW="$(stat -c %a /dev/fuse)"
if [[ "$FUSE_MODE_NOW" != 666 ]]; then
    FUSE_MODE_OLD="$FUSE_MODE_NOW"
    chmod 666 /dev/fuse
fi
UDIR="$BENCH_OUT/user"
UHOME="$UDIR/home"
mkdir -p "$UHOME" "$UDIR/mnt-py" "$UDIR/mnt-big" "$UDIR/mnt-time" "$BENCH_OUT/hf"
chown -R "$BUSER:$BUSER" "$UDIR"
chmod 1777 "$BENCH_OUT/hf"
as_user test -x "$HDIST" || die "$BUSER cannot reach $HDIST (is a parent of $BENCH_OUT private?)"

STORE="$BENCH_OUT/store"
USTORE="$UDIR/store"
NATIVE="$BENCH_OUT/native-usr"
MNT="$BENCH_OUT/mnt"
mkdir -p "$MNT"

log "copying the CPython tree and precompiling its stdlib"
cp -a "$CACHE_DIR/corpus/cpython/usr" "$NATIVE"
"$NATIVE/bin/python3.11" -m compileall -q --invalidation-mode unchecked-hash "$NATIVE/lib/python3.11" >&2 ||
    die "compileall failed"
chmod -R a+rX "$NATIVE"

hdist_add() { # STORE DIR NAME [as_user] -> prints the id
    if [[ "${4:-}" == user ]]; then
        as_user "$HDIST" --store "$1" -q store add "$2" --name "$3"
    else
        "$HDIST" --store "$1" -q store add "$2" --name "$3"
    fi
}

log "ingesting the tree (root store and $BUSER's store)"
PY_ID="$(hdist_add "$STORE" "$NATIVE" cpython)"
"$HDIST" --store "$STORE" -q profile create py "$PY_ID" >/dev/null
PY_UID="$(hdist_add "$USTORE" "$NATIVE" cpython user)"
as_user "$HDIST" --store "$USTORE" -q profile create py "$PY_UID" >/dev/null

log "building the squashfs image"
mksquashfs "$NATIVE" "$BENCH_OUT/py.sqfs" -comp zstd -noappend -quiet >&2

log "creating a ${BIG_MB} MiB random file"
mkdir -p "$BENCH_OUT/big"
head -c "${BIG_MB}M" /dev/urandom >"$BENCH_OUT/big/data.bin"
chmod -R a+rX "$BENCH_OUT/big"
BIG_ID="$(hdist_add "$STORE" "$BENCH_OUT/big" big)"
"$HDIST" --store "$STORE" -q profile create big "$BIG_ID" >/dev/null
BIG_UID="$(hdist_add "$USTORE" "$BENCH_OUT/big" big user)"
as_user "$HDIST" --store "$USTORE" -q profile create big "$BIG_UID" >/dev/null
mksquashfs "$BENCH_OUT/big" "$BENCH_OUT/big.sqfs" -comp zstd -noappend -quiet >&2

log "generating and ingesting $N_ART artifacts of $N_FILES files"
MANY_IDS=()
for ((k = 1; k <= N_ART; k++)); do
    d="$BENCH_OUT/many/a$k"
    mkdir -p "$d/bin" "$d/lib/lib$k"
    printf '#!/bin/sh\necho tool %d\n' "$k" >"$d/bin/tool-$k"
    chmod 755 "$d/bin/tool-$k"
    for ((j = 1; j < N_FILES; j++)); do
        printf 'artifact %d file %d\n' "$k" "$j" >"$d/lib/lib$k/file-$j"
    done
    MANY_IDS+=("$(hdist_add "$STORE" "$d" "pkg$k")")
done
"$HDIST" --store "$STORE" -q profile create many "${MANY_IDS[@]}" >/dev/null

# Drop the page cache of the big files (fadvise DONTNEED after a sync) so that every
# variant's warm cache is filled the same way, by readahead on the first read: on ext4
# with large folios a file cached by the small writes that created it reads ~3x slower
# than one cached by readahead, which would skew (d).
log "dropping the page cache of files >= 1 MiB below $BENCH_OUT"
sync
find "$BENCH_OUT" -type f -size +1M -print0 |
    xargs -0 -r "$NATIVE/bin/python3" -c '
import os, sys
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
'

# ----------------------------------------------------------------- mounts

# Root mounts log at info for hdist_fs, so "passthrough unavailable" would show up.
export HDIST_LOG="warn,fuser=error,hdist_fs=info"

mount_hdistu() { # PROFILE MNT -> mount as $BUSER
    MKIND[$2]=hdistu
    as_user "$HDIST" --store "$USTORE" -q mount "$1" "$2" >&2
    MPID[$2]="$(find_pid " mount .* $2\$")"
}

mount_squash() { # IMAGE MNT
    mount_fuse "$2" squashfuse "$1" "$2"
}

mount_bindfs() { # SRC MNT
    mount_fuse "$2" bindfs -r "$1" "$2"
}

declare -A DIR WHO BIGDIR
DIR[native]="$NATIVE"
DIR[hdist]="$MNT/hdist"
DIR[hdistu]="$UDIR/mnt-py"
DIR[squash]="$MNT/squash"
DIR[bindfs]="$MNT/bindfs"
for v in "${VARIANTS[@]}"; do WHO[$v]=root; done
WHO[hdistu]=user
BIGDIR[native]="$BENCH_OUT/big"
BIGDIR[hdist]="$MNT/hdist-big"
BIGDIR[hdistu]="$UDIR/mnt-big"
BIGDIR[squash]="$MNT/squash-big"
BIGDIR[bindfs]="$MNT/bindfs-big"

log "mounting the variants"
mount_hdist py "${DIR[hdist]}"
mount_hdistu py "${DIR[hdistu]}"
mount_squash "$BENCH_OUT/py.sqfs" "${DIR[squash]}"
mount_bindfs "$NATIVE" "${DIR[bindfs]}"
mount_hdist big "${BIGDIR[hdist]}"
mount_hdistu big "${BIGDIR[hdistu]}"
mount_squash "$BENCH_OUT/big.sqfs" "${BIGDIR[squash]}"
mount_bindfs "$BENCH_OUT/big" "${BIGDIR[bindfs]}"

run_as() { # root|user CMD...
    if [[ "$1" == user ]]; then
        shift
        as_user "$@"
    else
        shift
        "$@"
    fi
}

declare -A R=() # results: KEY -> number
FAILS=()

log "checking that python runs from every variant"
for v in "${VARIANTS[@]}"; do
    if ! out="$(run_as "${WHO[$v]}" "${DIR[$v]}/bin/python3" -c "$IMPORTS; import sys; print(sys.prefix)" 2>&1)"; then
        log "${LABEL[$v]}: python failed: $out"
        FAILS+=("python on ${LABEL[$v]}")
    elif [[ "$out" != "${DIR[$v]}" ]]; then
        log "${LABEL[$v]}: warning: sys.prefix is $out, expected ${DIR[$v]}"
    fi
done

# ----------------------------------------------------------------- measure

# hf KEY WHO noshell|shell CMD : one hyperfine round; appends its mean (ms) to RL[KEY]
declare -A RL=() HF_FAILED=()
hf() {
    local key="$1" who="$2" mode="$3" cmd="$4" csv="$BENCH_OUT/hf/${1//\//-}.csv"
    local opts=(--warmup "$WARMUP" --runs "$ROUND_RUNS" --style basic --export-csv "$csv")
    [[ -z "${HF_FAILED[$key]:-}" ]] || return 0
    [[ "$mode" == noshell ]] && opts+=(-N)
    rm -f "$csv"
    log "hyperfine [$key] round $round/$ROUNDS: $cmd"
    if run_as "$who" hyperfine "${opts[@]}" "$cmd" >&2 && [[ -s "$csv" ]]; then
        RL[$key]="${RL[$key]:-} $(awk -F, 'NR == 2 { printf "%.4f", $(NF - 6) * 1000 }' "$csv")"
    else
        log "[$key] failed"
        HF_FAILED[$key]=1
        FAILS+=("$key")
    fi
}

LOAD_START="$(uptime)"

# (a)-(c) run in rounds, each round going through every variant, so that load from
# other processes drifting over time hits all variants alike; every round has the same
# number of runs, so the mean of the round means is the mean of all runs.
for ((round = 1; round <= ROUNDS; round++)); do
    for v in "${VARIANTS[@]}"; do
        hf "a/$v" "${WHO[$v]}" noshell "${DIR[$v]}/bin/python3 -c '$IMPORTS'"
        hf "b/$v" "${WHO[$v]}" noshell "find ${DIR[$v]} -printf '%s\n'"
        hf "c/$v" "${WHO[$v]}" shell "tar -cf - ${DIR[$v]} | cat > /dev/null"
    done
done
for key in "${!RL[@]}"; do
    [[ -n "${HF_FAILED[$key]:-}" ]] ||
        R[$key]="$(tr ' ' '\n' <<<"${RL[$key]}" | awk 'NF { s += $1; n++ } END { printf "%.3f", s / n }')"
done

# (d) dd throughput, GB/s (1e9 bytes/s): one discarded warm-up read per variant, then
# DD_RUNS rounds that each read once through every variant (a 1 GiB read from the page
# cache takes ~40 ms, so one preemption by another process shows; rounds spread that
# over the variants), median per variant
declare -A DDR=()
for v in "${VARIANTS[@]}"; do
    log "dd [$v]: ${BIGDIR[$v]}/data.bin"
    if ! run_as "${WHO[$v]}" dd if="${BIGDIR[$v]}/data.bin" of=/dev/null bs=1M status=none; then
        FAILS+=("d/$v")
        DDR[$v]=failed
    fi
done
for ((i = 0; i < DD_RUNS; i++)); do
    for v in "${VARIANTS[@]}"; do
        [[ "${DDR[$v]:-}" != failed ]] || continue
        if line="$(run_as "${WHO[$v]}" env LC_ALL=C dd if="${BIGDIR[$v]}/data.bin" of=/dev/null bs=1M 2>&1 | tail -n1)"; then
            DDR[$v]+=" $(awk '{ printf "%.3f", $1 / $(NF - 3) / 1e9 }' <<<"$line")"
        else
            FAILS+=("d/$v")
            DDR[$v]=failed
        fi
    done
done
for v in "${VARIANTS[@]}"; do
    [[ "${DDR[$v]:-failed}" != failed ]] || continue
    log "dd [$v]:${DDR[$v]} GB/s"
    R[d/$v]="$(median <<<"${DDR[$v]}")"
done

# The daemon logs its open mode at start (info), and "passthrough unavailable" at the first
# open where passthrough was wanted but refused.
passthrough_note() { # STORE
    local mode msg
    mode="$(grep -aho 'open mode: .*' "$1"/logs/*.log 2>/dev/null | head -n1 || true)"
    msg="$(grep -aho 'passthrough unavailable.*' "$1"/logs/*.log 2>/dev/null | head -n1 || true)"
    echo "${mode:-open mode not logged}${msg:+; $msg}"
}
PT_ROOT="$(passthrough_note "$STORE")"
PT_USER="$(passthrough_note "$USTORE")"

# RSS of the cpython daemons after all of the above
RSS_PY="$(rss_kb "${MPID[${DIR[hdist]}]:-0}")"
RSS_PYU="$(rss_kb "${MPID[${DIR[hdistu]}]:-0}")"

# (e) mount time, ms: hdist mount until it returns; stat MNT/bin must answer right after
mount_time() { # KEY root|user PROFILE MNT
    local key="$1" who="$2" profile="$3" m="$4" i t times=""
    for ((i = 0; i < MOUNT_RUNS; i++)); do
        if [[ "$who" == user ]]; then
            MKIND[$m]=hdistu
            # timed inside the user's shell, so setpriv's own start-up is not counted
            # shellcheck disable=SC2016
            t="$(as_user bash -c 's=$EPOCHREALTIME; "$@" >&2 || exit 1; echo "$s $EPOCHREALTIME"' _ \
                "$HDIST" --store "$USTORE" -q mount "$profile" "$m")" || t=""
        else
            MKIND[$m]=hdist
            t="$EPOCHREALTIME"
            if "$HDIST" --store "$STORE" -q mount "$profile" "$m" >&2; then
                t+=" $EPOCHREALTIME"
            else
                t=""
            fi
        fi
        if [[ -z "$t" ]]; then
            log "[$key] hdist mount failed"
            FAILS+=("$key")
            unmount_one "$m"
            return 0
        fi
        MPID[$m]="$(find_pid " mount .* $m\$")"
        if ! run_as "$who" stat "$m/bin" >/dev/null; then
            log "[$key] stat $m/bin failed right after the mount returned"
            FAILS+=("$key")
            unmount_one "$m"
            return 0
        fi
        times+=" $(awk -v t="$t" 'BEGIN { split(t, x, " "); printf "%.3f", (x[2] - x[1]) * 1000 }')"
        unmount_one "$m"
    done
    log "mount time [$key]:$times ms"
    R[$key]="$(median <<<"$times")"
}

mkdir -p "$MNT/time-py" "$MNT/time-many"
mount_time e1/hdist root py "$MNT/time-py"
mount_time e1/hdistu user py "$UDIR/mnt-time"
mount_time e500/hdist root many "$MNT/time-many"

log "walking the $N_ART-artifact mount"
M500="$MNT/many"
N_FOUND=""
mount_hdist many "$M500"
if find "$M500" >/dev/null; then
    RSS_500="$(rss_kb "${MPID[$M500]:-0}")"
    N_FOUND="$(find "$M500" -type f | wc -l)"
    [[ "$N_FOUND" -eq $((N_ART * N_FILES)) ]] ||
        log "warning: found $N_FOUND files on the $N_ART-artifact mount, expected $((N_ART * N_FILES))"
else
    FAILS+=("find over the $N_ART-artifact mount")
fi
unmount_one "$M500"

LOAD_END="$(uptime)"

# ----------------------------------------------------------------- report

onlyrow() { # TITLE VARIANT=VALUE...
    local line="| $1 |" v kv val
    for v in "${VARIANTS[@]}"; do
        val="-"
        for kv in "${@:2}"; do
            [[ "${kv%%=*}" == "$v" ]] && val="${kv#*=}"
        done
        line+=" $val |"
    done
    echo "$line"
}

fmt_ms() { if [[ -n "${R[$1]:-}" ]]; then printf '%.1f ms' "${R[$1]}"; else echo failed; fi; }

echo
echo "Mount benchmark: $(uname -r), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1e6 }' /proc/meminfo) RAM"
echo "load at start: ${LOAD_START#*load average: } (1/5/15 min); at end: ${LOAD_END#*load average: }"
echo "tree: Debian CPython 3.11 (corpus/cpython/usr + unchecked-hash .pyc), $(find "$NATIVE" | wc -l) entries, $(du -sh "$NATIVE" | cut -f1)"
echo "hyperfine: mean of $((ROUNDS * ROUND_RUNS)) runs in $ROUNDS interleaved rounds ($WARMUP warmup each); dd: 1 warm-up + median of $DD_RUNS interleaved runs; mount: median of $MOUNT_RUNS"
echo "page cache of files >= 1 MiB dropped before the first (warm-up) read, so readahead fills it alike for all"
echo
echo "| measurement | ${LABEL[native]} | ${LABEL[hdist]} | ${LABEL[hdistu]} | ${LABEL[squash]} | ${LABEL[bindfs]} |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
row "(a) python3 -c '${IMPORTS}'" a ms .1f
row "(b) find DIR -printf '%s\\n' > /dev/null (warm)" b ms .2f
row "(c) tar -cf - DIR \\| cat > /dev/null (warm)" c ms .1f
row "(d) dd bs=1M of a ${BIG_MB} MiB file (warm)" d GB/s .2f
onlyrow "(e) hdist mount, 1 artifact" "hdist=$(fmt_ms e1/hdist)" "hdistu=$(fmt_ms e1/hdistu)"
onlyrow "(e) hdist mount, $N_ART artifacts / $((N_ART * N_FILES)) files" "hdist=$(fmt_ms e500/hdist)"
onlyrow "(e) daemon VmRSS after find over the $N_ART-artifact mount" "hdist=$(mb "${RSS_500:-}")"
onlyrow "daemon VmRSS of the cpython mount after (a)-(c)" "hdist=$(mb "$RSS_PY")" "hdistu=$(mb "$RSS_PYU")"
echo
echo "Ratios in parentheses are variant / native: for times (a)-(c) above 1 is slower,"
echo "for throughput (d) below 1 is slower. hdist non-root runs its commands as $BUSER."
echo "Passthrough in use: root: $PT_ROOT; non-root: $PT_USER."
[[ -z "$N_FOUND" ]] || echo "Files seen on the $N_ART-artifact mount: $N_FOUND."

# ----------------------------------------------------------------- targets

verdict() { # awk condition over a, b, c -> PASS/FAIL
    if awk -v a="${2:-}" -v b="${3:-}" -v c="${4:-}" "BEGIN { exit !(a != \"\" && ($1)) }"; then
        echo PASS
    else
        echo FAIL
    fi
}

r() { echo "${R[$1]:-}"; }
# rf KEY : the value for display
rf() { if [[ -n "${R[$1]:-}" ]]; then printf '%.2f' "${R[$1]}"; else echo "n/a"; fi; }

echo
echo "Targets:"
echo "(a) hdist root import <= 1.03x native and faster than squashfuse: $(verdict 'a <= 1.03 * b && a < c' "$(r a/hdist)" "$(r a/native)" "$(r a/squash)") ($(rf a/hdist) ms vs native $(rf a/native), squashfuse $(rf a/squash))"
echo "(b) hdist root find <= 1.3x native: $(verdict 'a <= 1.3 * b' "$(r b/hdist)" "$(r b/native)") ($(rf b/hdist) ms vs $(rf b/native) ms)"
echo "(b) hdist non-root find <= 1.3x native: $(verdict 'a <= 1.3 * b' "$(r b/hdistu)" "$(r b/native)") ($(rf b/hdistu) ms vs $(rf b/native) ms)"
echo "(d) hdist root (passthrough) read >= 0.95x native: $(verdict 'a >= 0.95 * b' "$(r d/hdist)" "$(r d/native)") ($(rf d/hdist) vs $(rf d/native) GB/s)"
echo "(d) hdist non-root read >= 2 GB/s: $(verdict 'a >= 2' "$(r d/hdistu)") ($(rf d/hdistu) GB/s)"
echo "(e) mount time < 50 ms, 1 artifact: $(verdict 'a < 50' "$(r e1/hdist)") ($(rf e1/hdist) ms)"
echo "(e) mount time < 50 ms, $N_ART artifacts: $(verdict 'a < 50' "$(r e500/hdist)") ($(rf e500/hdist) ms)"
echo "(e) daemon RSS < 64 MB after find over $N_ART artifacts: $(verdict 'a * 1024 < 64e6' "${RSS_500:-}") ($(mb "${RSS_500:-}"))"

if [[ ${#FAILS[@]} -gt 0 ]]; then
    log "failed measurements: ${FAILS[*]}"
    exit 1
fi
