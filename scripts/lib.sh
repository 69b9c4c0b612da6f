#!/usr/bin/env bash
# Shared helpers for the scripts in scripts/. Source it, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Provides:
#   ROOT        repository root
#   CACHE_DIR   download/corpus cache (default $ROOT/.cache, override with HDIST_CACHE)
#   log MSG...  print a message to stderr
#   die MSG...  log and exit 1
#   need_pkgs PKG...   apt-get install the Debian packages that are not installed yet
#   apt_update_once    apt-get update, at most once per process tree
#   build_hdist        cargo build --release, sets HDIST to the binary
#   install_hdist      cargo install --path . (reuses that build): hdist on PATH
#   du_h PATH          human-readable size of PATH (du -sh), or "-"
#
# and for the benchmark scripts (scripts/bench-*.sh):
#   median [FORMAT]         median of the whitespace-separated numbers on stdin, printed
#                           with FORMAT (printf; default %.6f, %.0f for whole ms)
#   now_ms                  wall clock in ms (for spans that are not one command)
#   time_ms CMD...          run CMD (stdout discarded), print its wall time in ms
#   is_mounted MNT          MNT is a mount point of this mount namespace
#   pid_alive PID           PID runs (zombies count as gone)
#   wait_pid_gone PID N     wait up to N tenths of a second for PID to be gone
#   find_pid PATTERN        newest pid whose full command line matches PATTERN (or "")
#   rss_kb PID              VmRSS of PID in kB (0 when it is gone)
#   MKIND, MPID, unmount_one MNT, unmount_all   the mounts a benchmark made
#   mount_hdist PROFILE MNT, mount_fuse MNT CMD...  make one
#   make_bench_out NAME     the output dir BENCH_OUT
#   release_bench_out [KEEP_NAME]   unmount everything, remove BENCH_OUT (at exit)
#   copy_hdist              HDIST copied into it
#   ratio, cell, row        Markdown table cells from R[MEASURE/VARIANT] over VARIANTS
#   mb KB                   KB as "12.3 MB"

set -euo pipefail

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "lib.sh is meant to be sourced, not executed" >&2
    exit 1
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${HDIST_CACHE:-$ROOT/.cache}"
[[ "$CACHE_DIR" == /* ]] || CACHE_DIR="$PWD/$CACHE_DIR"
export ROOT CACHE_DIR

# The Rust toolchain. rustup's proxies find it through RUSTUP_HOME (default ~/.rustup), so
# with HOME pointed elsewhere (a clean environment) use the account's own toolchain; cargo's
# registry cache (CARGO_HOME, default ~/.cargo) still follows HOME.
ACCOUNT_HOME="$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f6 || true)"
if [[ -z "${RUSTUP_HOME:-}" && ! -d "${HOME:-/nonexistent}/.rustup" && -n "$ACCOUNT_HOME" &&
    -d "$ACCOUNT_HOME/.rustup" ]]; then
    RUSTUP_HOME="$ACCOUNT_HOME/.rustup"
    export RUSTUP_HOME
fi
if ! command -v cargo >/dev/null 2>&1; then
    for _bin in "${CARGO_HOME:-${HOME:-/nonexistent}/.cargo}/bin" "$ACCOUNT_HOME/.cargo/bin"; do
        if [[ -x "$_bin/cargo" ]]; then
            PATH="$_bin:$PATH"
            export PATH
            break
        fi
    done
fi

log() {
    printf '[%s] %s\n' "$(basename "$0")" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# Run a command as root (directly when we are root, via sudo otherwise).
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $*"
    fi
}

# apt-get update at most once; exported so child scripts don't repeat it.
# Failures of unrelated third-party sources only produce a warning.
apt_update_once() {
    if [[ "${HDIST_APT_UPDATED:-0}" == 1 ]]; then
        return 0
    fi
    log "apt-get update"
    if ! as_root apt-get update -qq >/dev/null 2>&1; then
        log "warning: apt-get update reported errors (some sources unreachable?); continuing"
    fi
    HDIST_APT_UPDATED=1
    export HDIST_APT_UPDATED
}

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# need_pkgs PKG... : install the given Debian packages unless dpkg says they are there.
need_pkgs() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi
    apt_update_once
    log "installing Debian packages: ${missing[*]}"
    local out
    out="$(mktemp)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        die "apt-get install ${missing[*]} failed (output above)"
    fi
    # What it cost: apt's own summary ("Need to get 12.3 MB of archives", disk space).
    grep -E '^(Need to get|After this operation)' "$out" | sed 's/^/    /' >&2 || true
    log "installed $(grep -c '^Setting up' "$out" || true) packages (with dependencies)"
    rm -f "$out"
}

# build_hdist : release build of the hdist binary; sets and exports HDIST.
# Returns non-zero (without exiting) when the build fails.
build_hdist() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install the Rust toolchain (rustup, stable) and re-run"
    log "cargo build --release --bin hdist (a first build compiles ~250 crates: about 5 min on 2 cores)"
    (cd "$ROOT" && cargo build --release --locked --bin hdist) || return 1
    local target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" == /* ]] || target="$ROOT/$target"
    HDIST="$target/release/hdist"
    export HDIST
    if [[ ! -x "$HDIST" ]]; then
        log "error: build succeeded but $HDIST is missing"
        return 1
    fi
}

# install_hdist : put hdist on PATH as cargo does (~/.cargo/bin, or $CARGO_HOME/bin). It reuses
# the release build of build_hdist, so it takes seconds.
install_hdist() {
    log "cargo install --path . (hdist into ${CARGO_HOME:-$HOME/.cargo}/bin)"
    (cd "$ROOT" && cargo install --locked --quiet --path . --bin hdist) || return 1
}

# human-readable size of a path (du -sh), or "-" if it doesn't exist
du_h() {
    if [[ -e "$1" ]]; then du -sh "$1" | cut -f1; else echo "-"; fi
}

# ================================================================= benchmarks
# Helpers of the benchmark scripts (scripts/bench-*.sh).

median() {
    tr ' ' '\n' | awk 'NF' | sort -g | awk -v f="${1:-%.6f}\n" '{ v[NR] = $1 } END {
        if (NR == 0) exit 1
        if (NR % 2) printf f, v[(NR + 1) / 2]
        else printf f, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

now_ms() { date +%s%3N; }

# EPOCHREALTIME is read right before and after CMD, so the awk that does the
# arithmetic is not counted.
time_ms() {
    local start="$EPOCHREALTIME"
    "$@" >/dev/null || return 1
    awk -v s="${start/,/.}" -v e="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.1f\n", (e - s) * 1000 }'
}

is_mounted() {
    awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

pid_alive() {
    local state
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

wait_pid_gone() { # PID TIMEOUT_TENTHS
    local i
    for ((i = 0; i < $2; i++)); do
        pid_alive "$1" || return 0
        sleep 0.1
    done
    ! pid_alive "$1"
}

find_pid() { # PATTERN (regex on the full command line)
    pgrep -n -f -- "$1" || true
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# ----------------------------------------------------------------- mounts, output dir

# Mounts a benchmark made: MKIND[MNT] is hdist, hdistu (an hdist mount of the user the
# caller's as_user runs as) or fuse (any other FUSE daemon); MPID[MNT] its daemon's pid.
declare -A MKIND=() MPID=()
BENCH_OUT_MADE=0

# unmount_one MNT : unmount with the tool that fits, lazily as a last resort; then wait
# for the daemon we started to exit (and kill that pid, only that one, if it hangs)
unmount_one() {
    local m="$1" kind="${MKIND[$1]:-fuse}" pid="${MPID[$1]:-}"
    if is_mounted "$m"; then
        case "$kind" in
        hdist) "$HDIST" -q umount "$m" >&2 || true ;;
        hdistu) as_user "$HDIST" -q umount "$m" >&2 || true ;;
        *) fusermount3 -u "$m" >&2 || true ;;
        esac
    fi
    if is_mounted "$m"; then
        log "warning: $m still mounted; umount -l"
        umount -l "$m" || true
    fi
    if [[ -n "$pid" ]] && ! wait_pid_gone "$pid" 100; then
        log "warning: daemon $pid of $m did not exit; sending SIGTERM"
        kill "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" 30 || kill -KILL "$pid" 2>/dev/null || true
    fi
    unset "MKIND[$m]" "MPID[$m]"
}

# unmount_all : every mount in MKIND, then anything else still mounted below $BENCH_OUT
# (should not happen); fails when a mount below $BENCH_OUT remains
unmount_all() {
    local m
    for m in "${!MKIND[@]}"; do
        unmount_one "$m"
    done
    [[ -n "${BENCH_OUT:-}" ]] || return 0
    while read -r m; do
        log "warning: stray mount $m; umount -l"
        umount -l "$m" || true
    done < <(awk -v p="$BENCH_OUT/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    [[ -z "$(awk -v p="$BENCH_OUT/" 'index($5, p) == 1' /proc/self/mountinfo)" ]]
}

# mount_hdist PROFILE MNT : mount PROFILE of $STORE as root (returns once it answers)
mount_hdist() {
    mkdir -p "$2"
    MKIND[$2]=hdist
    "$HDIST" --store "$STORE" -q mount "$1" "$2" >&2
    MPID[$2]="$(find_pid " mount .* $2\$")"
}

# mount_fuse MNT CMD... : start the FUSE daemon CMD, whose last argument is MNT
mount_fuse() {
    local m="$1"
    shift
    mkdir -p "$m"
    MKIND[$m]=fuse
    "$@" >&2
    MPID[$m]="$(find_pid "$(basename "$1") .* $m\$")"
}

# make_bench_out NAME : BENCH_OUT as given (made absolute; must be new or empty, since
# the caller clears it at exit), or a new mktemp -d /tmp/hdist-NAME.XXXXXX; sets
# BENCH_OUT_MADE=1
make_bench_out() {
    if [[ -n "${BENCH_OUT:-}" ]]; then
        [[ "$BENCH_OUT" == /* ]] || BENCH_OUT="$PWD/$BENCH_OUT"
        if [[ -e "$BENCH_OUT" && -n "$(ls -A "$BENCH_OUT")" ]]; then
            die "BENCH_OUT=$BENCH_OUT is not empty (it is cleared at exit, so it must be new or empty)"
        fi
        mkdir -p "$BENCH_OUT"
    else
        BENCH_OUT="$(mktemp -d "${TMPDIR:-/tmp}/hdist-$1.XXXXXX")"
    fi
    BENCH_OUT_MADE=1
    [[ "$BENCH_OUT" != *[[:space:]]* ]] || die "BENCH_OUT must not contain whitespace"
}

# release_bench_out [KEEP_NAME] : for the exit trap. unmount_all, then remove what
# make_bench_out made: all of $BENCH_OUT, or all but its entry KEEP_NAME; nothing with
# KEEP=1 or while a mount remains below it
release_bench_out() {
    if ! unmount_all; then
        [[ "$BENCH_OUT_MADE" != 1 ]] || log "warning: mounts remain below $BENCH_OUT; not removing it"
        return 0
    fi
    if [[ "$BENCH_OUT_MADE" != 1 ]]; then
        return 0
    elif [[ "${KEEP:-0}" == 1 ]]; then
        log "kept $BENCH_OUT"
    elif [[ -n "${1:-}" ]]; then
        find "$BENCH_OUT" -mindepth 1 -maxdepth 1 ! -name "$1" -exec rm -rf --one-file-system {} +
    else
        rm -rf --one-file-system "$BENCH_OUT"
    fi
}

# copy_hdist : HDIST (or a cargo build --release) copied to $BENCH_OUT/bin/hdist, so a
# concurrent rebuild cannot swap it mid-run; HDIST then names the copy
copy_hdist() {
    if [[ -n "${HDIST:-}" ]]; then
        [[ -x "$HDIST" ]] || die "HDIST=$HDIST is not executable"
    else
        build_hdist || die "cargo build --release failed (or pass a built binary with HDIST=path)"
    fi
    mkdir -p "$BENCH_OUT/bin"
    cp "$HDIST" "$BENCH_OUT/bin/hdist"
    HDIST="$BENCH_OUT/bin/hdist"
    chmod 755 "$HDIST"
}

# ----------------------------------------------------------------- report

mb() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f MB", k * 1024 / 1e6 }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# cell KEY NATIVEKEY UNIT FORMAT : R[KEY] with its ratio to R[NATIVEKEY], or "failed"
cell() {
    local val="${R[$1]:-}" base="${R[$2]:-}"
    if [[ -z "$val" ]]; then
        echo "failed"
    elif [[ "$1" == "$2" || -z "$base" ]]; then
        printf "%$4 %s" "$val" "$3"
    else
        printf "%$4 %s (%sx)" "$val" "$3" "$(ratio "$val" "$base")"
    fi
}

# row TITLE MEASURE UNIT FORMAT : a Markdown table row of R[MEASURE/V] for V in VARIANTS
row() {
    local line="| $1 |" v
    for v in "${VARIANTS[@]}"; do
        line+=" $(cell "$2/$v" "$2/native" "$3" "$4") |"
    done
    echo "$line"
}
