#!/usr/bin/env bash
# Fetch the test/benchmark corpus into $CACHE_DIR/corpus (default .cache/corpus).
#
#   scripts/fetch-corpus.sh [cpython] [numpy] [debsrc] [templ] [sci]   (no argument = all but sci)
#
# Every download is pinned by version and SHA-256 in scripts/corpus.lock (override the file
# with HDIST_CORPUS_LOCK). Each run checks every cached download and every extracted tree
# against what was recorded, and fetches again what does not match. A part appears in the
# corpus only once it is complete; a part that cannot be fetched is removed, never left half.
#
# Parts:
#   cpython  Debian bookworm's CPython 3.11 (python3.11, python3.11-minimal,
#            libpython3.11-stdlib, libpython3.11-minimal) extracted with dpkg -x into
#            corpus/cpython, so it holds usr/bin/python3.11 and usr/lib/python3.11/...;
#            usr/bin/python3 -> python3.11 is added. Runs as a prefix with
#            PYTHONHOME=corpus/cpython/usr (shared libraries come from the host).
#   numpy    three numpy releases (CPython 3.11, manylinux x86_64 wheels), each unzipped into
#            corpus/numpy/<version>/.
#   debsrc   upstream tarballs (*.orig.tar.*) of the Debian source packages hello, zlib and
#            gzip, in corpus/debsrc/, listed in corpus/debsrc/MANIFEST as
#            "<filename> <sha256> <size-in-bytes>" lines. Adds a deb-src entry to apt
#            (/etc/apt/sources.list.d/hdist-debsrc.sources) unless one exists.
#   templ    one small real package per build template (tests/templates.rs), in
#            corpus/templ/ with a MANIFEST like debsrc's: Debian upstream tarballs (a file
#            named *.orig.tar.*, fetched as in debsrc) and PyPI files (an sdist or a wheel,
#            pip download NAME==VERSION, hash-checked).
#   sci      the sources of the scientific stack (scripts/stacks/sci.toml, about 70 MB):
#            Debian upstream tarballs (files named *.orig.tar.*, fetched as debsrc's are) and
#            PyPI sdists and wheels (the other files), in corpus/sci/ with a MANIFEST as debsrc's.
#            Only on request: CI (scripts/test.sh) does not fetch it.
#
# HDIST_FRESH_CORPUS=1 empties the corpus and download caches first (the fresh-machine path).
# Downloads use only Debian's apt mirrors and PyPI. Safe to re-run and to run concurrently.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CORPUS="$CACHE_DIR/corpus"
DONE="$CORPUS/.done"
DOWNLOADS="$CACHE_DIR/downloads"
LOCK_FILE="${HDIST_CORPUS_LOCK:-$ROOT/scripts/corpus.lock}"
DEBSRC_SOURCES=/etc/apt/sources.list.d/hdist-debsrc.sources
CPYTHON_CHECK_MODULES="json, sqlite3, ssl, decimal, asyncio, email, hashlib, zlib, ctypes"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

# Scratch space of this run, on the cache filesystem (so mv is a rename); removed at exit,
# including what subshells made in it.
mkdir -p "$CACHE_DIR"
RUN_TMP="$(mktemp -d "$CACHE_DIR/tmp.XXXXXX")"
trap 'rm -rf "$RUN_TMP"' EXIT

# new_tmp VAR : a fresh scratch directory
new_tmp() {
    local d
    d="$(mktemp -d "$RUN_TMP/XXXXXX")"
    printf -v "$1" '%s' "$d"
}

size_h() { numfmt --to=iec --suffix=B "$1" 2>/dev/null || echo "$1 B"; }

# ------------------------------------------------------------ the lock file

# lock_lines PART : the lock file's lines of PART as "name version file sha256 size"
lock_lines() {
    [[ -f "$LOCK_FILE" ]] || die "lock file $LOCK_FILE is missing"
    awk -v part="$1" '$1 == part && NF == 6 { print $2, $3, $4, $5, $6 }' "$LOCK_FILE"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# verified FILE SHA : the file exists and hashes to SHA. A mismatch is reported and the file
# removed, so that it is fetched again.
verified() {
    local file="$1" want="$2" got
    [[ -f "$file" ]] || return 1
    got="$(sha256_of "$file")"
    if [[ "$got" == "$want" ]]; then
        return 0
    fi
    log "hash mismatch: $file has sha256 $got; $(basename "$LOCK_FILE") records $want"
    rm -f "$file"
    return 1
}

# tree_digest DIR : one SHA-256 over every path, type, mode, link target and file content.
tree_digest() {
    (
        cd "$1"
        find . -printf '%y %m %p %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    ) | sha256sum | cut -d' ' -f1
}

# part_ok PART DIR : the part was completed and its tree still hashes as recorded.
part_ok() {
    local part="$1" dir="$2" want got
    [[ -f "$DONE/$part" && -d "$dir" ]] || return 1
    want="$(awk '$1 == "tree" {print $2}' "$DONE/$part")"
    got="$(tree_digest "$dir")"
    if [[ -n "$want" && "$got" == "$want" ]]; then
        return 0
    fi
    log "$part: $dir differs from what was extracted (tree digest $got, recorded ${want:-none}); extracting again"
    return 1
}

# install_part PART STAGED DEST INFO : move a complete staged tree into place, then record it.
install_part() {
    local part="$1" staged="$2" dest="$3" info="$4"
    mkdir -p "$DONE" "$(dirname "$dest")"
    rm -f "$DONE/$part"
    rm -rf "$dest"
    mv "$staged" "$dest"
    printf 'tree %s\n%s\n' "$(tree_digest "$dest")" "$info" >"$DONE/$part.tmp"
    mv "$DONE/$part.tmp" "$DONE/$part"
}

# drop_part PART DEST : a part that cannot be completed is removed whole.
drop_part() {
    rm -f "$DONE/$1"
    rm -rf "$2"
}

# Directory that the unprivileged _apt download sandbox may write to (avoids apt's
# "Download is performed unsandboxed as root" warning where possible).
apt_dl_dir() {
    mkdir -p "$1"
    chmod 0777 "$1"
    chmod o+x "$(dirname "$1")" 2>/dev/null || true
}

# Attempts are collected here and printed when a file cannot be had from any source.
ATTEMPTS=()
attempt_failed() { # WHAT OUTPUT_FILE
    local why
    why="$(grep -E '^(E:|Err:|ERROR:|  [0-9]{3} )' "$2" 2>/dev/null | head -n 3 | tr '\n' ' ')"
    [[ -n "$why" ]] || why="$(tail -n 2 "$2" 2>/dev/null | tr '\n' ' ')"
    ATTEMPTS+=("$1: ${why:-no output}")
    log "  failed: $1: ${why:-no output}"
}

fail_file() { # FILE
    local a
    log "error: could not fetch $1 with the hash scripts/corpus.lock records. Tried:"
    for a in "${ATTEMPTS[@]}"; do
        printf '  - %s\n' "$a" >&2
    done
    log "check the network and apt sources (apt-get update), or update $LOCK_FILE"
    exit 1
}

# -------------------------------------------------------------------- debsrc

# Print a deb-src configuration equivalent to the Debian deb sources configured
# here, as deb822 (from debian.sources) or one-line format (from sources.list).
debsrc_config() {
    local main=/etc/apt/sources.list.d/debian.sources
    if [[ -f "$main" ]]; then
        awk '
            function flush() {
                if (isdeb && uris != "") {
                    printf "%sTypes: deb-src\nURIs: %s\nSuites: %s\nComponents: %s\n", sep, uris, suites, comps
                    if (signed != "") printf "Signed-By: %s\n", signed
                    sep = "\n"
                }
                isdeb = 0; uris = suites = comps = signed = ""
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            {
                key = $1; sub(/:$/, "", key); val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
                if (key == "Types") { n = split(val, t, /[[:space:]]+/); for (i = 1; i <= n; i++) if (t[i] == "deb") isdeb = 1 }
                else if (key == "URIs") uris = val
                else if (key == "Suites") suites = val
                else if (key == "Components") comps = val
                else if (key == "Signed-By") signed = val
            }
            END { flush() }
        ' "$main"
        return 0
    fi
    if [[ -f /etc/apt/sources.list ]]; then
        sed -n -E 's/^[[:space:]]*deb[[:space:]]+(.*debian.*)$/deb-src \1/p' /etc/apt/sources.list
    fi
}

enable_debsrc() {
    local probe="$1" target="$DEBSRC_SOURCES" config existing
    config="$(debsrc_config)"
    [[ -n "$config" ]] || die "debsrc: found no Debian 'deb' source to derive deb-src from"
    [[ "$config" == Types:* ]] || target="${DEBSRC_SOURCES%.sources}.list"
    existing="$(grep -ElsR '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep -v '/hdist-debsrc\.' || true)"
    if [[ -n "$existing" ]]; then
        log "debsrc: deb-src already configured in: $existing"
    elif [[ ! -f "$target" || "$(cat "$target")" != "$config" ]]; then
        log "debsrc: adding the deb-src entries apt needs for 'apt-get source': writing $target"
        printf '%s\n' "$config" | as_root tee "$target" >/dev/null
    fi
    # grep reads all of the output (not -q): an early exit would fail apt-cache with SIGPIPE,
    # and pipefail would report a long listing (zlib's) as missing.
    if ! apt-cache showsrc "$probe" 2>/dev/null | grep '^Package:' >/dev/null; then
        HDIST_APT_UPDATED=0
        apt_update_once
    fi
    apt-cache showsrc "$probe" 2>/dev/null | grep '^Package:' >/dev/null ||
        die "debsrc: no source package index after apt-get update (is $target right?)"
}

# Versions of source package NAME whose Checksums-Sha256 list FILE with SHA, as apt knows them.
debsrc_versions_with() { # NAME FILE SHA
    apt-cache showsrc "$1" 2>/dev/null | awk -v file="$2" -v sha="$3" '
        /^Version:/ { version = $2 }
        /^Checksums-Sha256:/ { in_sums = 1; next }
        /^[^ ]/ { in_sums = 0 }
        in_sums && $1 == sha && $3 == file { print version }
    ' | awk '!seen[$0]++'
}

# fetch_debsrc_file NAME VERSION FILE SHA SIZE : into $DOWNLOADS/debsrc/FILE, verified.
fetch_debsrc_file() {
    local name="$1" version="$2" file="$3" sha="$4" size="$5" dest="$DOWNLOADS/debsrc/$3"
    local candidates=() v tmp out
    if verified "$dest" "$sha"; then
        return 0
    fi
    candidates+=("$version")
    while read -r v; do
        [[ -z "$v" || "$v" == "$version" ]] || candidates+=("$v")
    done < <(debsrc_versions_with "$name" "$file" "$sha")
    ATTEMPTS=()
    mkdir -p "$DOWNLOADS/debsrc"
    for v in "${candidates[@]}"; do
        new_tmp tmp
        apt_dl_dir "$tmp/dl"
        out="$tmp/apt.out"
        log "debsrc: fetching $file ($(size_h "$size")) with apt-get source $name=$v"
        if ! (cd "$tmp/dl" && apt-get source -q --download-only "$name=$v") </dev/null >"$out" 2>&1; then
            attempt_failed "apt-get source $name=$v" "$out"
            continue
        fi
        if [[ ! -f "$tmp/dl/$file" ]]; then
            ATTEMPTS+=("apt-get source $name=$v: succeeded but gave no $file")
            continue
        fi
        if ! verified "$tmp/dl/$file" "$sha"; then
            ATTEMPTS+=("apt-get source $name=$v: $file has another hash")
            continue
        fi
        [[ "$v" == "$version" ]] || log "debsrc: fallback: $file came from $name $v (pinned: $version)"
        mv "$tmp/dl/$file" "$dest"
        return 0
    done
    fail_file "$file"
}

fetch_debsrc() { fetch_listed_part debsrc; }

# ------------------------------------------------------------------- cpython

python_check() { # TREE : import the check modules from TREE as prefix
    local tree="$1"
    env -u PYTHONPATH -u PYTHONSTARTUP -u PYTHONSAFEPATH \
        PYTHONHOME="$tree/usr" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1 \
        "$tree/usr/bin/python3.11" -c "
import sys, os
import $CPYTHON_CHECK_MODULES
prefix = os.path.realpath(sys.argv[1])
for m in (json, sqlite3, ssl, decimal, asyncio, email):
    f = os.path.realpath(m.__file__)
    assert f.startswith(prefix + os.sep), (m.__name__, f)
print(sys.version.split()[0])
" "$tree/usr"
}

python_diagnose() { # TREE : show unresolved shared libraries
    local tree="$1" f
    log "shared libraries not found on this host:"
    for f in "$tree/usr/bin/python3.11" "$tree"/usr/lib/python3.11/lib-dynload/*.so; do
        ldd "$f" 2>/dev/null | awk -v f="${f##*/}" '/not found/ {print "  " f ": " $1}' >&2 || true
    done
}

# Install the host runtime libraries the interpreter links against (libssl3, libsqlite3-0,
# ...): the Depends of the packages, minus the packages themselves (those are extracted).
python_host_deps() {
    local names=("$@") deps=() p s skip
    apt_update_once
    while read -r p; do
        skip=0
        for s in "${names[@]}"; do [[ "$p" == "$s" ]] && skip=1; done
        [[ $skip == 1 ]] || deps+=("$p")
    done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances "${names[@]}" |
        awk '$1 == "Depends:" && $2 !~ /^</ {print $2}' | sort -u)
    log "cpython: host runtime libraries it links against: ${deps[*]}"
    need_pkgs "${deps[@]}"
}

# fetch_deb_set VERSION : every cpython package at VERSION into $DOWNLOADS/deb, verified.
fetch_deb_set() {
    local want="$1" name version file sha size tmp out
    mkdir -p "$DOWNLOADS/deb"
    while read -r name version file sha size; do
        [[ "$version" == "$want" ]] || continue
        verified "$DOWNLOADS/deb/$file" "$sha" && continue
        new_tmp tmp
        apt_dl_dir "$tmp/dl"
        out="$tmp/apt.out"
        log "cpython: fetching $file ($(size_h "$size")) with apt-get download $name=$version"
        if ! (cd "$tmp/dl" && apt-get download -q "$name=$version") </dev/null >"$out" 2>&1; then
            # Stale or missing package lists on a fresh machine: refresh once and retry.
            HDIST_APT_UPDATED=0
            apt_update_once
            if ! (cd "$tmp/dl" && apt-get download -q "$name=$version") </dev/null >"$out" 2>&1; then
                attempt_failed "apt-get download $name=$version" "$out"
                return 1
            fi
        fi
        if ! verified "$tmp/dl/$file" "$sha"; then
            ATTEMPTS+=("apt-get download $name=$version: $file missing or with another hash")
            return 1
        fi
        mv "$tmp/dl/$file" "$DOWNLOADS/deb/$file"
    done < <(lock_lines cpython)
}

fetch_cpython() {
    local dest="$CORPUS/cpython" tmp version v info="" versions=() names=() name file sha size
    if part_ok cpython "$dest"; then
        log "cpython: cached and verified ($dest)"
        return 0
    fi
    while read -r name v file sha size; do
        [[ " ${versions[*]} " == *" $v "* ]] || versions+=("$v")
        [[ " ${names[*]} " == *" $name "* ]] || names+=("$name")
    done < <(lock_lines cpython)
    [[ ${#versions[@]} -gt 0 ]] || die "cpython: no cpython lines in $LOCK_FILE"
    ATTEMPTS=()
    version=""
    for v in "${versions[@]}"; do
        if fetch_deb_set "$v"; then
            version="$v"
            break
        fi
    done
    if [[ -z "$version" ]]; then
        drop_part cpython "$dest"
        fail_file "CPython ${names[*]} (versions ${versions[*]})"
    fi
    [[ "$version" == "${versions[0]}" ]] || log "cpython: fallback: version $version (pinned first: ${versions[0]})"

    new_tmp tmp
    mkdir "$tmp/tree"
    while read -r name v file sha size; do
        [[ "$v" == "$version" ]] || continue
        dpkg -x "$DOWNLOADS/deb/$file" "$tmp/tree"
        info+="deb $name $v $sha"$'\n'
    done < <(lock_lines cpython)
    [[ -x "$tmp/tree/usr/bin/python3.11" ]] || die "cpython: usr/bin/python3.11 missing after extraction"
    if [[ ! -e "$tmp/tree/usr/bin/python3" && ! -L "$tmp/tree/usr/bin/python3" ]]; then
        ln -s python3.11 "$tmp/tree/usr/bin/python3"
    fi
    if ! python_check "$tmp/tree" >/dev/null; then
        python_diagnose "$tmp/tree"
        python_host_deps "${names[@]}"
        python_check "$tmp/tree" >/dev/null || {
            python_diagnose "$tmp/tree"
            die "cpython: 'import $CPYTHON_CHECK_MODULES' fails with PYTHONHOME=$tmp/tree/usr"
        }
    fi
    install_part cpython "$tmp/tree" "$dest" "${info%$'\n'}"
    # Paths are not baked in, but check the final location too.
    python_check "$dest" >/dev/null || die "cpython: import check failed at $dest"
    log "cpython: Python $(python_check "$dest") in $dest imports $CPYTHON_CHECK_MODULES"
}

# --------------------------------------------------------------------- numpy

PIP=()
find_pip() {
    [[ ${#PIP[@]} -eq 0 ]] || return 0
    if python3 -m pip --version >/dev/null 2>&1; then
        PIP=(python3 -m pip)
    else
        need_pkgs python3-pip
        PIP=(/usr/bin/python3 -m pip)
    fi
}

# pypi_path FILE : where a PyPI download is cached: wheels in wheel/, source distributions in sdist/
pypi_path() {
    if [[ "$1" == *.whl ]]; then echo "$DOWNLOADS/wheel/$1"; else echo "$DOWNLOADS/sdist/$1"; fi
}

# fetch_pypi NAME VERSION FILE SHA SIZE : a PyPI file (a CPython 3.11 manylinux x86_64 or pure
# wheel, or a source distribution) into its pypi_path, verified.
fetch_pypi() {
    local name="$1" version="$2" file="$3" sha="$4" size="$5" tmp dest kind=(--only-binary=:all:
        --python-version 3.11 --implementation cp --abi cp311 --platform manylinux2014_x86_64)
    dest="$(pypi_path "$file")"
    [[ "$file" == *.whl ]] || kind=(--no-binary=:all:)
    verified "$dest" "$sha" && return 0
    find_pip
    new_tmp tmp
    printf '%s==%s --hash=sha256:%s\n' "$name" "$version" "$sha" >"$tmp/requirements.txt"
    log "pypi: fetching $file ($(size_h "$size")) with pip download $name==$version"
    ATTEMPTS=()
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "${PIP[@]}" download -q --no-deps --require-hashes \
        "${kind[@]}" -r "$tmp/requirements.txt" -d "$tmp/dl" </dev/null >"$tmp/pip.out" 2>&1; then
        attempt_failed "pip download $name==$version (PyPI)" "$tmp/pip.out"
        fail_file "$file"
    fi
    verified "$tmp/dl/$file" "$sha" || {
        ATTEMPTS+=("pip download $name==$version: no $file with the recorded hash")
        fail_file "$file"
    }
    mkdir -p "$(dirname "$dest")"
    mv "$tmp/dl/$file" "$dest"
}

fetch_numpy() {
    local name version file sha size tmp dest ok=1
    command -v unzip >/dev/null 2>&1 || need_pkgs unzip
    while read -r name version file sha size; do
        dest="$CORPUS/numpy/$version"
        if part_ok "numpy-$version" "$dest"; then
            log "numpy $version: cached and verified"
            continue
        fi
        if ! (fetch_pypi "$name" "$version" "$file" "$sha" "$size"); then
            drop_part "numpy-$version" "$dest"
            ok=0
            continue
        fi
        new_tmp tmp
        unzip -q "$DOWNLOADS/wheel/$file" -d "$tmp/tree"
        [[ -f "$tmp/tree/numpy/__init__.py" ]] || die "numpy $version: unexpected wheel layout in $file"
        install_part "numpy-$version" "$tmp/tree" "$dest" "wheel $file $sha"
        log "numpy $version: unpacked into $dest"
    done < <(lock_lines numpy)
    [[ $ok == 1 ]] || die "numpy: some wheels could not be fetched (see above)"
}

# ------------------------------------------------------- debsrc and sci parts

# fetch_listed_part PART : every file the lock file lists for PART, flat in corpus/PART/ with a
# MANIFEST. A file named *.orig.tar.* is the upstream tarball of the Debian source package the
# line names; any other file is from the PyPI project the line names.
fetch_listed_part() {
    local part="$1" dest="$CORPUS/$1" tmp name version file sha size lines manifest="" fetcher from
    lines="$(lock_lines "$part")"
    [[ -n "$lines" ]] || die "$part: no $part lines in $LOCK_FILE"
    # The lock file may list other files than were fetched (a line added or changed).
    if part_ok "$part" "$dest" && [[ "$(cat "$dest/MANIFEST")" == "$(cut -d' ' -f3- <<<"$lines")" ]]; then
        log "$part: cached and verified ($dest)"
        return 0
    fi
    enable_debsrc "$(awk '$3 ~ /\.orig\.tar\./ { print $1; exit }' <<<"$lines")"
    new_tmp tmp
    mkdir "$tmp/$part"
    while read -r name version file sha size; do
        case "$file" in
        *.orig.tar.*) fetcher=fetch_debsrc_file from="$DOWNLOADS/debsrc/$file" ;;
        *) fetcher=fetch_pypi from="$(pypi_path "$file")" ;;
        esac
        if ! ("$fetcher" "$name" "$version" "$file" "$sha" "$size"); then
            drop_part "$part" "$dest"
            die "$part: $file could not be fetched (see above); the $part corpus was removed, not left half"
        fi
        cp "$from" "$tmp/$part/$file"
        manifest+="$file $sha $size"$'\n'
    done <<<"$lines"
    printf '%s' "$manifest" >"$tmp/$part/MANIFEST"
    install_part "$part" "$tmp/$part" "$dest" "from $LOCK_FILE"
    log "$part: $(wc -l <<<"${manifest%$'\n'}") files in $dest"
}

fetch_sci() { fetch_listed_part sci; }

fetch_templ() { fetch_listed_part templ; }

# ---------------------------------------------------------------------- main

main() {
    local parts=() p
    for p in "$@"; do
        case "$p" in
        cpython | numpy | debsrc | templ | sci) parts+=("$p") ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown part '$p' (expected: cpython numpy debsrc templ sci)" ;;
        esac
    done
    [[ ${#parts[@]} -gt 0 ]] || parts=(cpython numpy debsrc templ)

    mkdir -p "$CORPUS"
    # One fetch at a time per cache (test.sh and the benchmarks may overlap).
    exec 9>"$CACHE_DIR/.fetch-corpus.lock"
    flock 9

    if [[ "${HDIST_FRESH_CORPUS:-0}" == 1 ]]; then
        log "HDIST_FRESH_CORPUS=1: emptying $CORPUS and $DOWNLOADS first"
        rm -rf "$CORPUS" "$DOWNLOADS"
        mkdir -p "$CORPUS"
    fi

    local start=$SECONDS
    for p in "${parts[@]}"; do
        "fetch_$p"
    done

    log "corpus in $CORPUS ($((SECONDS - start)) s):"
    for p in "${parts[@]}"; do
        printf '  %-8s %6s  %s\n' "$p" "$(du_h "$CORPUS/$p")" "$CORPUS/$p" >&2
    done
    printf '  %-8s %6s  %s\n' downloads "$(du_h "$DOWNLOADS")" "$DOWNLOADS" >&2
}

main "$@"
