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
