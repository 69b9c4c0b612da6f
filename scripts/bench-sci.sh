#!/usr/bin/env bash
# The scientific stack (scripts/stacks/sci.toml over the package repository scripts/pkgs/),
# built from source in a fresh store:
#
#   scripts/bench-sci.sh
#
# 1. fetches its sources (scripts/fetch-corpus.sh sci: ~70 MB, pinned in scripts/corpus.lock);
# 2. `hdist up` from nothing (CPython and everything it links against, NumPy from its wheel,
#    mpmath from its sdist, and CMake/Meson/make libraries; -j2), then `hdist up` with nothing
#    changed (median of 5);
# 3. touches one leaf: a copy of the stack overrides lz4's make_flags, and checks that exactly
#    lz4 and its dependents (zstd) need a build (`hdist status --json`) and get rebuilt, then
#    times that `up`. BENCH_SCI_DEEP=1 also touches zlib, under CPython (rebuilds zlib,
#    sqlite, python, numpy, mpmath and zstd: about as long as the first build);
# 4. counts the files of the profile and runs, from the mounted profile,
#    `hdist shell sci -- python3 -c 'import numpy, sqlite3, lzma, bz2, zlib, ctypes; ...'`.
#
# Prints a Markdown table. HDIST=path uses a built binary (default: cargo build --release);
# BENCH_OUT keeps the work directory (default: a temp dir, removed); KEEP=1 keeps it too.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHECK='import numpy, sqlite3, lzma, bz2, zlib, ctypes, readline, mpmath; print(numpy.ones(3).sum())'
JOBS="${BENCH_SCI_JOBS:-2}"

need_pkgs fuse3 build-essential cmake meson ninja-build pkg-config tcl
"$ROOT/scripts/fetch-corpus.sh" sci
make_bench_out sci
trap release_bench_out EXIT
copy_hdist
STORE="$BENCH_OUT/store"
hd() { "$HDIST" --store "$STORE" -q "$@"; }

# The package files name their sources relative to themselves (../../.cache/corpus/sci);
# copies point at this cache's corpus, so the stack builds from any checkout and cache.
SCI="$CACHE_DIR/corpus/sci"
mkdir -p "$BENCH_OUT/pkgs" "$BENCH_OUT/stacks"
for f in "$ROOT"/scripts/pkgs/*.toml; do
    sed "s#\.\./\.\./\.cache/corpus/sci#$SCI#" "$f" >"$BENCH_OUT/pkgs/$(basename "$f")"
done
STACK="$BENCH_OUT/stacks/sci.toml"
cp "$ROOT/scripts/stacks/sci.toml" "$STACK"

# needs_build STACK : the names of the packages `hdist status` says need a build, sorted
needs_build() {
    hd status --json "$1" | python3 -c '
import json, sys
print(" ".join(sorted(p["name"] for p in json.load(sys.stdin)["packages"] if p["state"] == "needs-build")))'
}

# touch_leaf NAME KEY VALUE EXPECTED... : a copy of the stack whose package NAME overrides KEY
# with VALUE; checks that exactly EXPECTED (NAME and its dependents) need a build, then times
# the `up` that rebuilds them. Prints "ms|rebuilt names".
touch_leaf() {
    local name="$1" key="$2" value="$3" touched="$BENCH_OUT/stacks/sci-$1.toml" want got ms
    shift 3
    want="$(printf '%s\n' "$@" | sort | xargs)"
    awk -v name="$name" -v kv="$key = $value" '
        { print }
        $0 == "name = \"" name "\"" { print kv }
    ' "$STACK" >"$touched"
    grep -q "^$key = " "$touched" || die "could not override $key of $name in $touched"
    got="$(needs_build "$touched")"
    [[ "$got" == "$want" ]] || die "touching $name: needs a build: '$got'; expected exactly '$want'"
    ms="$(time_ms hd up "$touched" -j"$JOBS")" || die "hdist up $touched failed"
    [[ -z "$(needs_build "$touched")" ]] || die "after up, $touched still needs builds"
    echo "$ms|$got"
}

log "first hdist up of the sci stack (from source; tens of minutes on 2 cores)"
rows=()
first="$(time_ms "$HDIST" --store "$STORE" up "$STACK" -j"$JOBS")" || die "hdist up $STACK failed"
rows+=("| first \`up\` ($(hd status --json "$STACK" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["packages"]))') packages incl. host tools, -j$JOBS) | $(awk -v m="$first" 'BEGIN { printf "%.1f min", m / 60000 }') |")
noop="$(for _ in 1 2 3 4 5; do time_ms hd up "$STACK"; done | median %.0f)"
rows+=("| \`up\`, nothing changed (median of 5) | $noop ms |")

# shellcheck disable=SC2016 # ${ARTIFACT} is for hdist's job language
touched="$(touch_leaf lz4 make_flags '["PREFIX=${ARTIFACT}", "MOREFLAGS=-DLZ4_TOUCHED"]' lz4 zstd)"
IFS='|' read -r ms rebuilt <<<"$touched"
rows+=("| touch leaf lz4 (make_flags): rebuilt exactly {$rebuilt} | $(awk -v m="$ms" 'BEGIN { printf "%.1f s", m / 1000 }') |")
if [[ "${BENCH_SCI_DEEP:-0}" == 1 ]]; then
    touched="$(touch_leaf zlib configure_flags '["--64"]' zlib sqlite python numpy mpmath zstd)"
    IFS='|' read -r ms rebuilt <<<"$touched"
    rows+=("| touch leaf zlib (configure_flags): rebuilt exactly {$rebuilt} | $(awk -v m="$ms" 'BEGIN { printf "%.1f min", m / 60000 }') |")
fi
hd up "$STACK"

files="$(hd shell sci -- sh -c 'find -L "$HDIST_PROFILE" ! -type d | wc -l')"
rows+=("| profile sci: files (find -L ! -type d) | $files |")
out="$(hd shell sci -- python3 -c "$CHECK")" || die "hdist shell sci -- python3 -c '$CHECK' failed"
[[ "$out" == "3.0" ]] || die "the check printed '$out', expected 3.0"
where="$(hd shell sci -- sh -c 'command -v python3')"
rows+=("| \`hdist shell sci -- python3 -c '$CHECK'\` | prints $out ($where) |")

echo
echo "| sci stack | result |"
echo "| --- | --- |"
printf '%s\n' "${rows[@]}"
