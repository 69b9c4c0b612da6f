#!/usr/bin/env bash
# The fuzz tests, long: every parser of untrusted input (tar.gz/tar.bz2/tar.xz/zip unpacking,
# build specs, stack files, signed manifests, chunk tables, tree packs, tree objects) fed
# generated valid input mangled at random, and random bytes (proptest, with shrinking).
#
#   scripts/fuzz.sh [CASES]          # default 2000 cases per test (about 20 minutes on 2 cores)
#
# The same tests run in CI with a few hundred cases each (`cargo test`, under a minute in a
# release build); this runs them with PROPTEST_CASES=CASES, in a release build. A failure
# prints the shrunk input: keep it as a named unit test beside the parser, then fix.
# Changes nothing on the system; the tests write only below temporary directories.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES="${1:-2000}"
[[ "$CASES" =~ ^[0-9]+$ ]] || die "usage: scripts/fuzz.sh [CASES] (a number of cases per test)"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup, stable) and re-run"
cd "$ROOT"
START=$SECONDS
log "PROPTEST_CASES=$CASES cargo test --release -p hdist-store --lib fuzz"
PROPTEST_CASES="$CASES" cargo test --release --locked -p hdist-store --lib fuzz
log "fuzzing: $CASES cases per test, $((SECONDS - START)) s (build included)"
