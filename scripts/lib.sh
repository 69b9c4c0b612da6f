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
set -euo pipefail

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "lib.sh is meant to be sourced, not executed" >&2
    exit 1
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${HDIST_CACHE:-$ROOT/.cache}"
[[ "$CACHE_DIR" == /* ]] || CACHE_DIR="$PWD/$CACHE_DIR"
export ROOT CACHE_DIR

# cargo installed by rustup may not be on PATH in minimal environments (CI).
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
    export PATH
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
    log "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# build_hdist : release build of the hdist binary; sets and exports HDIST.
# Returns non-zero (without exiting) when the build fails.
build_hdist() {
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release -q --bin hdist) || return 1
    local target="${CARGO_TARGET_DIR:-target}"
    [[ "$target" == /* ]] || target="$ROOT/$target"
    HDIST="$target/release/hdist"
    export HDIST
    if [[ ! -x "$HDIST" ]]; then
        log "error: build succeeded but $HDIST is missing"
        return 1
    fi
}

# human-readable size of a path (du -sh), or "-" if it doesn't exist
du_h() {
    if [[ -e "$1" ]]; then du -sh "$1" | cut -f1; else echo "-"; fi
}
