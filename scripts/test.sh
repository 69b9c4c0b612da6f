#!/usr/bin/env bash
# The project's test command:
#
#   scripts/test.sh [extra cargo test arguments...]
#
# Installs the Debian packages the tests use (if missing), fetches the test corpus
# (scripts/fetch-corpus.sh; the tests themselves never reach the network), exports
# HDIST_CORPUS and runs `cargo test --workspace "$@"`. Exits with cargo's status.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# fuse3: fusermount3 for the FUSE profile tests; squashfs-tools:
# peers used by tests; build-essential, pkg-config: builds from source;
# util-linux (setpriv), passwd (useradd): tests that run as an unprivileged user;
# nginx-light, zstd: the cluster tests (a real HTTP server, forged objects); git: git sources.
need_pkgs fuse3 squashfs-tools build-essential pkg-config util-linux passwd nginx-light zstd git strace

"$ROOT/scripts/fetch-corpus.sh" cpython debsrc
export HDIST_CORPUS="$CACHE_DIR/corpus"

cd "$ROOT"
log "HDIST_CORPUS=$HDIST_CORPUS cargo test --workspace $*"
exec cargo test --workspace "$@"
