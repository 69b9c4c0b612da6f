#!/usr/bin/env bash
# Profiles, builds and GC at scale, in one run:
#
#   scripts/bench-profile.sh
#
# 1. 500 artifacts with 200 distinct files each (100k files, 100k+ objects) in one profile:
#    time from `hdist profile switch` until the mounted view shows the other generation.
# 2. `hdist gc` over that store (dry run and real, after dropping 100 artifacts).
# 3. The hello/zlib/minigzip stack: `hdist build` with everything cached, and a re-fetch of a
#    present source key (counted connect() calls must be 0).
# BENCH_OUT keeps the work directory (default: a temp dir, removed at exit).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_pkgs fuse3 strace python3
build_hdist || die "cargo build failed"
OUT="${BENCH_OUT:-$(mktemp -d /tmp/hdist-bench-profile.XXXXXX)}"
STORE="$OUT/store"
MNT="$OUT/mnt"
cleanup() {
    for m in "$MNT" "$STORE/view"; do
        if grep -q " $m " /proc/self/mountinfo 2>/dev/null; then "$HDIST" umount "$m" || true; fi
    done
    [[ -n "${BENCH_OUT:-}" ]] || rm -rf "$OUT"
}
trap cleanup EXIT
hd() { "$HDIST" --store "$STORE" -q "$@"; }

log "generating 500 artifacts x 200 files"
python3 - "$OUT/src" <<'PY'
import os, sys
root = sys.argv[1]
for a in range(500):
    base = os.path.join(root, f"pkg{a}")
    os.makedirs(os.path.join(base, "bin"), exist_ok=True)
    os.makedirs(os.path.join(base, f"lib/pkg{a}"), exist_ok=True)
    with open(os.path.join(base, f"bin/tool-{a}"), "w") as f:
        f.write(f"#!/bin/sh\necho tool {a}\n")
    for j in range(199):
        with open(os.path.join(base, f"lib/pkg{a}/file-{j}"), "w") as f:
            f.write(f"artifact {a} file {j}\n")
PY
log "ingesting"
t0=$(now_ms)
for a in $(seq 0 499); do hd store add "$OUT/src/pkg$a" --name "pkg$a" >>"$OUT/ids"; done
t1=$(now_ms)
mapfile -t IDS <"$OUT/ids"
hd profile create big "${IDS[@]}" >/dev/null            # generation 1: all 500
hd profile create big "${IDS[@]:0:499}" >/dev/null      # generation 2: without pkg499
OBJECTS=$(hd store stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["objects"])')
mkdir -p "$MNT"
t2=$(now_ms); hd mount big "$MNT"; t3=$(now_ms)
find "$MNT" -type f | wc -l >"$OUT/files"

wait_until() { # wait_until exists|gone PATH -> ms waited
    python3 - "$@" <<'PY'
import os, sys, time
want, path = sys.argv[1], sys.argv[2]
start = time.monotonic()
while (os.path.exists(path)) != (want == "exists"):
    if time.monotonic() - start > 10: print("timeout"); sys.exit(1)
    time.sleep(0.001)
print(round((time.monotonic() - start) * 1000, 1))
PY
}
SWITCH=()
for _ in 1 2 3 4 5; do
    hd profile switch big 1 >/dev/null
    SWITCH+=("$(wait_until exists "$MNT/bin/tool-499")")
    hd profile switch big 2 >/dev/null
    SWITCH+=("$(wait_until gone "$MNT/bin/tool-499")")
done
hd umount "$MNT" 2>/dev/null || "$HDIST" umount "$MNT"

log "gc"
hd profile create big "${IDS[@]:0:400}" >/dev/null      # drop 100 artifacts
t4=$(now_ms); hd gc --dry-run >"$OUT/gc-dry"; t5=$(now_ms)
t6=$(now_ms); hd gc --keep-generations 0 >"$OUT/gc"; t7=$(now_ms)
hd store verify

log "cached build of the hello/zlib/minigzip stack"
"$ROOT/scripts/fetch-corpus.sh" debsrc
for f in hello_2.10.orig.tar.gz zlib_1.2.13.dfsg.orig.tar.bz2; do hd fetch "$CACHE_DIR/corpus/debsrc/$f" >/dev/null; done
SPECS=("$ROOT/tests/fixtures/specs/hello.json" "$ROOT/tests/fixtures/specs/zlib.json" "$ROOT/tests/fixtures/specs/minigzip.json")
hd build -j2 "${SPECS[@]}" >/dev/null
BUILD_MS=()
for _ in 1 2 3; do
    b0=$(now_ms); hd build "${SPECS[@]}" >/dev/null; b1=$(now_ms); BUILD_MS+=("$((b1 - b0))")
done
KEY=$(hd fetch "$CACHE_DIR/corpus/debsrc/hello_2.10.orig.tar.gz")
strace -f -e trace=connect -o "$OUT/strace" "$HDIST" --store "$STORE" -q fetch "http://127.0.0.1:9/hello_2.10.orig.tar.gz" "$KEY" >/dev/null
CONNECTS=$(grep -c 'connect(' "$OUT/strace" || true)

echo
echo "| measurement | value |"
echo "| --- | ---: |"
echo "| artifacts / files in the profile | 500 / $(cat "$OUT/files") |"
echo "| objects in the store | $OBJECTS |"
echo "| ingest of 500 artifacts (500 processes) | $((t1 - t0)) ms |"
echo "| mount of the 500-artifact profile | $((t3 - t2)) ms |"
echo "| generation switch until the mounted view shows it (median of 10) | $(median %.0f <<<"${SWITCH[*]}") ms |"
echo "| generation switch, all 10 samples | ${SWITCH[*]} ms |"
echo "| gc --dry-run over the store | $((t5 - t4)) ms |"
echo "| gc (100 artifacts dropped) | $((t7 - t6)) ms |"
echo "| gc freed | $(tail -n 1 "$OUT/gc") |"
echo "| hdist build of the cached hello/zlib/minigzip stack | $(median %.0f <<<"${BUILD_MS[*]}") ms (runs: ${BUILD_MS[*]}) |"
echo "| connect() calls when re-fetching a present key | $CONNECTS |"
