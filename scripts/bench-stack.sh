#!/usr/bin/env bash
# `hdist up` on stack files:
#
#   scripts/bench-stack.sh
#
# 1. tests/fixtures/stacks/six.toml (6 packages whose builds only write files): first `up` (builds
#    all six, -j3), then `hdist up` with nothing changed, 20 times (target: well under 1 s;
#    it parses, hashes six specs, does six index lookups and one profile read, and writes
#    nothing), then `hdist status`.
# 2. With the debsrc corpus fetched (scripts/fetch-corpus.sh debsrc):
#    scripts/stacks/hello-zlib.toml from source, then unchanged.
# Prints a Markdown table. BENCH_OUT keeps the work directory (default: a temp dir, removed).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_pkgs fuse3 build-essential
build_hdist || die "cargo build failed"
OUT="${BENCH_OUT:-$(mktemp -d /tmp/hdist-bench-stack.XXXXXX)}"
STORE="$OUT/store"
cleanup() {
    if grep -q " $STORE/view " /proc/self/mountinfo 2>/dev/null; then "$HDIST" umount "$STORE/view" || true; fi
    [[ -n "${BENCH_OUT:-}" ]] || rm -rf "$OUT"
}
trap cleanup EXIT
hd() { "$HDIST" --store "$STORE" -q "$@"; }
# median_ms N CMD... : median of N runs in milliseconds
median_ms() {
    local n=$1 i
    shift
    for ((i = 0; i < n; i++)); do time_ms "$@"; done | median %.0f
}

rows=()
SIX="$ROOT/tests/fixtures/stacks/six.toml"
rows+=("| six.toml: first \`up\` (6 builds, -j3) | $(time_ms hd up "$SIX" -j3) ms |")
rows+=("| six.toml: \`up\`, nothing changed (median of 20) | $(median_ms 20 hd up "$SIX") ms |")
rows+=("| six.toml: \`status\` (median of 20) | $(median_ms 20 hd status "$SIX") ms |")

DEBSRC="$CACHE_DIR/corpus/debsrc"
if [[ -f "$DEBSRC/hello_2.10.orig.tar.gz" ]]; then
    # The example stack's sources are relative to its directory; point them at the corpus.
    sed "s#../../.cache/corpus/debsrc#$DEBSRC#" "$ROOT/scripts/stacks/hello-zlib.toml" >"$OUT/hello-zlib.toml"
    rows+=("| hello-zlib.toml: \`fetch --stack\` | $(time_ms hd fetch --stack "$OUT/hello-zlib.toml") ms |")
    rows+=("| hello-zlib.toml: first \`up\` (3 builds from source) | $(time_ms hd up "$OUT/hello-zlib.toml") ms |")
    rows+=("| hello-zlib.toml: \`up\`, nothing changed (median of 20) | $(median_ms 20 hd up "$OUT/hello-zlib.toml") ms |")
else
    log "debsrc corpus missing (scripts/fetch-corpus.sh debsrc): skipping the hello/zlib stack"
fi

echo
echo "| hdist up | time |"
echo "| --- | --- |"
printf '%s\n' "${rows[@]}"
