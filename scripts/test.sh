#!/usr/bin/env bash
# The project's test command:
#
#   scripts/test.sh [extra cargo test arguments...]
#
# 1. installs the Debian packages the tests use (those missing; listed with their size),
# 2. fetches the test corpus (scripts/fetch-corpus.sh cpython debsrc templ: pinned, hash-checked;
#    the tests themselves never reach the network); HDIST_FRESH_CORPUS=1 fetches it anew,
# 3. runs `cargo test --release --workspace "$@"`: the release profile, so the build that
#    scripts/demo.sh made is reused (a first build on 2 cores takes about 5-6 minutes),
# 4. ends with one line: "tests: N passed, N failed, N skipped". Exits with cargo's status.
#
# System changes (as root): Debian packages; a deb-src apt entry (see fetch-corpus.sh); the
# tests create the user `hdisttest` and set /dev/fuse to mode 0666 (Debian's default) for
# the non-root mount test.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START=$SECONDS
# fuse3: fusermount3 for the FUSE profile tests; squashfs-tools:
# peers used by tests; build-essential, pkg-config: builds from source;
# util-linux (setpriv), passwd (useradd): tests that run as an unprivileged user;
# nginx-light, zstd: the cluster tests (a real HTTP server, forged objects); git: git sources;
# strace: tests that count what a process opens or connects to; cmake, meson, ninja-build:
# the cmake and meson template tests build with the host's tools (on the templates' PATH);
# python3-venv, python3-pip, python3-setuptools, python3-wheel: the python and wheel
# template tests install with a virtual environment over the host's python3;
# slurm-wlm, munge: the Slurm tests (scripts/slurm-cluster.sh runs a private three-node cluster).
need_pkgs fuse3 squashfs-tools build-essential pkg-config util-linux passwd nginx-light zstd git strace \
    cmake meson ninja-build python3-venv python3-pip python3-setuptools python3-wheel slurm-wlm munge
command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup, stable) and re-run"

"$ROOT/scripts/fetch-corpus.sh" cpython debsrc templ
# Only the first fetch of this run starts from empty caches: scripts the tests run
# (cluster-demo.sh) fetch again and must find the corpus in place.
export HDIST_FRESH_CORPUS=0
export HDIST_CORPUS="$CACHE_DIR/corpus"
FETCHED=$SECONDS

cd "$ROOT"
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
log "HDIST_CORPUS=$HDIST_CORPUS cargo test --release --workspace $*"
set +e
cargo test --release --locked --workspace "$@" 2>&1 | tee "$OUT"
status=${PIPESTATUS[0]}
set -e

# One closing line over every test binary (unit tests of each crate, the integration binary).
read -r passed failed ignored < <(awk '
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i - 1)
            if ($(i) ~ /^failed;?$/) f += $(i - 1)
            if ($(i) ~ /^ignored;?$/) g += $(i - 1)
        }
    }
    END { print p + 0, f + 0, g + 0 }' "$OUT")
log "setup and corpus $((FETCHED - START)) s, build and tests $((SECONDS - FETCHED)) s; cargo exit status $status"
echo "tests: $passed passed, $failed failed, $ignored skipped"
exit "$status"
