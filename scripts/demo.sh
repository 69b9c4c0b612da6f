#!/usr/bin/env bash
# The main job, end to end on real software:
#
#   scripts/demo.sh
#
# 0. installs the Debian packages it needs (fuse3, build-essential, pkg-config) if missing,
# 1. fetches Debian's CPython 3.11, numpy wheels and three upstream tarballs (scripts/
#    fetch-corpus.sh: pinned in scripts/corpus.lock, hash-checked, cached in .cache/),
# 2. builds hdist (cargo build --release: about 5 min the first time on 2 cores) and installs
#    it with `cargo install --path .` so `hdist` is on PATH (~/.cargo/bin; skip with
#    HDIST_NO_INSTALL=1), then ingests both as artifacts into a fresh store,
# 3. verifies the store and exports an artifact byte for byte,
# 4. makes a profile of the two, mounts it, and runs python3 from the mount's bin/ on $PATH,
# 5. unmounts,
# 6. builds GNU hello, zlib and minigzip (linked by rpath against the zlib artifact) from
#    Debian's upstream tarballs with `hdist up` on a stack file, mounts that profile and runs
#    hello and minigzip from it; then shows a cached `up`, a rollback, and GC.
#
# HDIST_DEMO_DIR keeps the store and mount point somewhere else (default: a temp dir, removed).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START=$SECONDS
need_pkgs fuse3 build-essential pkg-config
"$ROOT/scripts/fetch-corpus.sh" cpython numpy debsrc
export HDIST_FRESH_CORPUS=0
CORPUS="$CACHE_DIR/corpus"
build_hdist || die "cargo build failed"
if [[ "${HDIST_NO_INSTALL:-0}" != 1 ]]; then
    install_hdist || die "cargo install --path . failed"
fi
BUILT=$SECONDS

WORK="${HDIST_DEMO_DIR:-$(mktemp -d /tmp/hdist-demo.XXXXXX)}"
mkdir -p "$WORK"
STORE="$WORK/store"
MNT="$WORK/sw"
cleanup() {
    for m in "$MNT" "$STORE/view"; do
        if grep -q " $m " /proc/self/mountinfo 2>/dev/null; then "$HDIST" umount "$m" || true; fi
    done
    [[ -n "${HDIST_DEMO_DIR:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
hd() { "$HDIST" --store "$STORE" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# numpy as a prefix: its wheel's content under lib/python3/dist-packages (Debian's layout),
# hardlinked from the corpus so staging costs nothing.
NUMPY_VERSION=1.26.4
NUMPY_PREFIX="$CACHE_DIR/demo/numpy-$NUMPY_VERSION"
if [[ ! -d "$NUMPY_PREFIX" ]]; then
    mkdir -p "$NUMPY_PREFIX.tmp/lib/python3/dist-packages"
    cp -al "$CORPUS/numpy/$NUMPY_VERSION/." "$NUMPY_PREFIX.tmp/lib/python3/dist-packages/"
    mv "$NUMPY_PREFIX.tmp" "$NUMPY_PREFIX"
fi

step "ingest CPython $(basename "$(readlink -f "$CORPUS/cpython/usr/bin/python3")") and numpy $NUMPY_VERSION"
time hd store add "$CORPUS/cpython/usr" --name cpython --version 3.11 >"$WORK/cpython.id"
time hd store add "$NUMPY_PREFIX" --name numpy --version "$NUMPY_VERSION" >"$WORK/numpy.id"
CPY=$(cat "$WORK/cpython.id")
NPY=$(cat "$WORK/numpy.id")
echo "cpython: $CPY"
echo "numpy:   $NPY"
hd store stats

step "the same tree again adds nothing"
hd store add "$CORPUS/cpython/usr" --name cpython --version 3.11 --json

step "list and read without mounting"
hd ls
hd ls "$CPY" bin
hd cat "$CPY" lib/python3.11/this.py | head -n 3

step "verify every object and export byte for byte"
hd store verify
hd export "$CPY" "$WORK/exported"
diff -r --no-dereference "$CORPUS/cpython/usr" "$WORK/exported" && echo "export identical to the source tree"

step "profile and mount"
hd profile create sci "$CPY" "$NPY"
hd profile show sci
mkdir -p "$MNT"
time hd mount sci "$MNT"
hd mounts
ls "$MNT" "$MNT/bin"

step "run python from the mounted profile"
export PATH="$MNT/bin:$PATH"
command -v python3
python3 -c 'import json, sqlite3, ssl, decimal, asyncio, email; print("stdlib OK from", json.__file__)'
python3 -c 'import numpy; print("numpy", numpy.__version__, "sum", numpy.arange(10**6).sum(), "from", numpy.__file__)'

step "unmount"
hd umount "$MNT"
hd mounts

step "build a stack from source: hello, zlib, minigzip (hdist up)"
# The stack's sources point into the corpus cache; aim them at this cache wherever it is.
sed "s|\.\./\.\./\.cache/corpus|$CORPUS|" "$ROOT/scripts/stacks/hello-zlib.toml" >"$WORK/stack.toml"
hd fetch --stack "$WORK/stack.toml"
hd status "$WORK/stack.toml"
time hd up -j2 "$WORK/stack.toml"
time hd up "$WORK/stack.toml"
hd status "$WORK/stack.toml"
hd mount tools "$MNT"
hello
echo "hdist hdist hdist" >"$WORK/words" && minigzip "$WORK/words" && ls -l "$WORK/words.gz" && minigzip -d "$WORK/words.gz" && cat "$WORK/words"
ldd "$MNT/bin/minigzip" | grep libz
eval "$(hd env tools)"
hd module tools | head -n 6

step "uninstall minigzip: remove it from the stack and run up again (the mount follows)"
# Everything before minigzip's [[package]] table.
awk '/^\[\[package\]\]/ { table = 1; buf = $0; next }
     table && /^name = "minigzip"/ { exit }
     table { print buf; table = 0 }
     !/^#/ { print }' "$WORK/stack.toml" >"$WORK/stack-without.toml"
grep -q minigzip "$WORK/stack-without.toml" && die "could not cut minigzip out of the stack"
hd up "$WORK/stack-without.toml"
sleep 0.2
ls "$MNT/bin"
hd profile history tools
hd profile rollback tools
sleep 0.2
ls "$MNT/bin"
hd gc --dry-run
hd umount "$MNT"
hd umount "$STORE/view" 2>/dev/null || true
log "set-up (packages, corpus, build) $((BUILT - START)) s, demo $((SECONDS - BUILT)) s"
if [[ -n "${HDIST_DEMO_DIR:-}" ]]; then where="store kept in $STORE"; else where="its store ($STORE) is removed on exit; HDIST_DEMO_DIR=DIR keeps it"; fi
echo "demo finished: ingested CPython + numpy and ran python from a mounted profile; built hello, zlib, minigzip with hdist up and ran them from the mount; $where"
