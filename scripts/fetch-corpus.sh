#!/usr/bin/env bash
# Fetch the test/benchmark corpus into $CACHE_DIR/corpus (default .cache/corpus).
#
#   scripts/fetch-corpus.sh [cpython] [numpy] [debsrc]     (no argument = all parts)
#
# Parts (each skipped when its done-marker in $CACHE_DIR/corpus/.done/ exists):
#   cpython  Debian bookworm's CPython 3.11 (python3.11, python3.11-minimal,
#            libpython3.11-stdlib, libpython3.11-minimal) extracted with dpkg -x into
#            corpus/cpython, so it holds usr/bin/python3.11 and usr/lib/python3.11/...;
#            usr/bin/python3 -> python3.11 is added. Runs as a prefix with
#            PYTHONHOME=corpus/cpython/usr (shared libraries come from the host).
#   numpy    three consecutive numpy releases (CPython 3.11, manylinux x86_64 wheels),
#            each unzipped into corpus/numpy/<version>/. Override the list with
#            HDIST_NUMPY_VERSIONS="1.26.2 1.26.3 1.26.4".
#   debsrc   upstream tarballs (*.orig.tar.*) of the Debian source packages hello,
#            zlib and pigz (gzip if pigz can't be had; override the list with
#            HDIST_DEBSRC_PKGS="hello zlib pigz|gzip"), in corpus/debsrc/, listed in corpus/debsrc/MANIFEST as
#            "<filename> <sha256> <size-in-bytes>" lines. Enables deb-src in apt.
#
# Downloads use only Debian's apt mirrors and PyPI. Safe to re-run (idempotent).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CORPUS="$CACHE_DIR/corpus"
DONE="$CORPUS/.done"
DOWNLOADS="$CACHE_DIR/downloads"

CPYTHON_PKGS=(python3.11 python3.11-minimal libpython3.11-stdlib libpython3.11-minimal)
CPYTHON_CHECK_MODULES="json, sqlite3, ssl, decimal, asyncio, email, hashlib, zlib, ctypes"
read -r -a NUMPY_VERSIONS <<<"${HDIST_NUMPY_VERSIONS:-1.26.2 1.26.3 1.26.4}"
# "a|b": take source package a, or b if the mirror can't serve a (this mirror
# answers 404 for pigz 2.6's tarballs, so gzip stands in for it there).
read -r -a DEBSRC_PKGS <<<"${HDIST_DEBSRC_PKGS:-hello zlib pigz|gzip}"
DEBSRC_SOURCES=/etc/apt/sources.list.d/hdist-debsrc.sources

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

TMPDIRS=()
cleanup() {
    local d
    for d in "${TMPDIRS[@]}"; do
        rm -rf "$d"
    done
}
trap cleanup EXIT

# new_tmp VAR : create a scratch dir on the cache filesystem (so mv is a rename)
new_tmp() {
    local d
    mkdir -p "$CACHE_DIR"
    d="$(mktemp -d "$CACHE_DIR/tmp.XXXXXX")"
    TMPDIRS+=("$d")
    printf -v "$1" '%s' "$d"
}

is_done() { [[ -f "$DONE/$1" ]]; }

mark_done() {
    mkdir -p "$DONE"
    printf '%s\n' "${2:-done}" >"$DONE/$1"
}

# Directory that the unprivileged _apt download sandbox may write to (avoids
# apt's "Download is performed unsandboxed as root" warning where possible).
apt_dl_dir() {
    mkdir -p "$1"
    chmod 0777 "$1"
    chmod o+x "$(dirname "$1")" 2>/dev/null || true
}

# apt-get download PKG... in the current directory; refresh package lists once if
# the first attempt fails (fresh machine without lists, or stale lists).
apt_download() {
    if ! apt-get download -q "$@" >&2; then
        log "apt-get download failed; refreshing package lists and retrying"
        HDIST_APT_UPDATED=0
        apt_update_once
        apt-get download -q "$@" >&2
    fi
}

# ---------------------------------------------------------------- cpython

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

# Install the host runtime libraries the interpreter links against (libssl3,
# libsqlite3-0, ...): the Depends of the four packages, minus the packages
# themselves (those live in the extracted tree).
python_host_deps() {
    local deps=() p skip
    apt_update_once
    while read -r p; do
        skip=0
        for s in "${CPYTHON_PKGS[@]}"; do [[ "$p" == "$s" ]] && skip=1; done
        [[ $skip == 1 ]] || deps+=("$p")
    done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances "${CPYTHON_PKGS[@]}" |
        awk '$1 == "Depends:" && $2 !~ /^</ {print $2}' | sort -u)
    log "host runtime dependencies: ${deps[*]}"
    need_pkgs "${deps[@]}"
}

fetch_cpython() {
    local dest="$CORPUS/cpython" tmp deb version info=""
    if is_done cpython && [[ -x "$dest/usr/bin/python3.11" ]]; then
        log "cpython: cached ($dest)"
        return 0
    fi
    log "cpython: downloading ${CPYTHON_PKGS[*]}"
    new_tmp tmp
    apt_dl_dir "$tmp/debs"
    (cd "$tmp/debs" && apt_download "${CPYTHON_PKGS[@]}")
    mkdir "$tmp/tree"
    for deb in "$tmp"/debs/*.deb; do
        dpkg -x "$deb" "$tmp/tree"
        # shellcheck disable=SC2016 # dpkg-deb format fields, not shell expansions
        info+="$(dpkg-deb --showformat='${Package} ${Version}' -W "$deb") $(sha256sum "$deb" | cut -d' ' -f1)"$'\n'
    done
    [[ -x "$tmp/tree/usr/bin/python3.11" ]] || die "cpython: usr/bin/python3.11 missing after extraction"
    if [[ ! -e "$tmp/tree/usr/bin/python3" && ! -L "$tmp/tree/usr/bin/python3" ]]; then
        ln -s python3.11 "$tmp/tree/usr/bin/python3"
    fi

    if ! version="$(python_check "$tmp/tree")"; then
        python_diagnose "$tmp/tree"
        log "cpython: import check failed; installing the host runtime libraries it needs"
        python_host_deps
        version="$(python_check "$tmp/tree")" || {
            python_diagnose "$tmp/tree"
            die "cpython: 'import $CPYTHON_CHECK_MODULES' fails with PYTHONHOME=$dest/usr"
        }
    fi
    log "cpython: Python $version imports: $CPYTHON_CHECK_MODULES"

    rm -rf "$dest"
    mkdir -p "$CORPUS"
    mv "$tmp/tree" "$dest"
    # Re-check at the final location (paths are not baked in, but be sure).
    python_check "$dest" >/dev/null || die "cpython: import check failed at $dest"
    mark_done cpython "python $version"$'\n'"${info%$'\n'}"
}

# ------------------------------------------------------------------ numpy

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

fetch_numpy() {
    local v whl tmp dest wanted="${NUMPY_VERSIONS[*]}"
    if is_done numpy && [[ "$(cat "$DONE/numpy")" == "$wanted" ]]; then
        log "numpy: cached ($CORPUS/numpy: $wanted)"
        return 0
    fi
    [[ ${#NUMPY_VERSIONS[@]} -gt 0 ]] || die "numpy: no versions given"
    command -v unzip >/dev/null 2>&1 || need_pkgs unzip
    for v in "${NUMPY_VERSIONS[@]}"; do
        dest="$CORPUS/numpy/$v"
        if is_done "numpy-$v" && [[ -d "$dest/numpy" ]]; then
            log "numpy $v: cached"
            continue
        fi
        mkdir -p "$DOWNLOADS/numpy"
        whl="$(find "$DOWNLOADS/numpy" -maxdepth 1 -name "numpy-$v-cp311-cp311-*x86_64*.whl" | head -n1)"
        if [[ -z "$whl" ]]; then
            find_pip
            log "numpy $v: pip download"
            new_tmp tmp
            PIP_DISABLE_PIP_VERSION_CHECK=1 "${PIP[@]}" download -q "numpy==$v" \
                --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
                --abi cp311 --platform manylinux2014_x86_64 -d "$tmp" >&2
            whl="$(find "$tmp" -maxdepth 1 -name "numpy-$v-cp311-cp311-*x86_64*.whl" | head -n1)"
            [[ -n "$whl" ]] || die "numpy $v: no cp311 manylinux x86_64 wheel downloaded"
            mv "$whl" "$DOWNLOADS/numpy/"
            whl="$DOWNLOADS/numpy/${whl##*/}"
        fi
        log "numpy $v: unpacking ${whl##*/}"
        new_tmp tmp
        unzip -q "$whl" -d "$tmp/tree"
        [[ -f "$tmp/tree/numpy/__init__.py" ]] || die "numpy $v: unexpected wheel layout"
        rm -rf "$dest"
        mkdir -p "$CORPUS/numpy"
        mv "$tmp/tree" "$dest"
        mark_done "numpy-$v" "${whl##*/} $(sha256sum "$whl" | cut -d' ' -f1)"
    done
    mark_done numpy "$wanted"
}

# ----------------------------------------------------------------- debsrc

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
    local target="$DEBSRC_SOURCES" config existing
    config="$(debsrc_config)"
    [[ -n "$config" ]] || die "debsrc: found no Debian 'deb' source to derive deb-src from"
    [[ "$config" == Types:* ]] || target="${DEBSRC_SOURCES%.sources}.list"
    existing="$(grep -ElsR '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep -v '/hdist-debsrc\.' || true)"
    if [[ -n "$existing" ]]; then
        log "debsrc: deb-src already configured in: $existing"
    elif [[ ! -f "$target" || "$(cat "$target")" != "$config" ]]; then
        log "debsrc: writing $target"
        printf '%s\n' "$config" | as_root tee "$target" >/dev/null
    fi
    if ! apt-cache showsrc "${DEBSRC_PKGS[0]}" 2>/dev/null | grep -q '^Package:'; then
        HDIST_APT_UPDATED=0
        apt_update_once
    fi
    apt-cache showsrc "${DEBSRC_PKGS[0]}" 2>/dev/null | grep -q '^Package:' ||
        die "debsrc: no source package index after apt-get update (is $target right?)"
}

fetch_debsrc() {
    local dest="$CORPUS/debsrc" tmp f n=0 info="" spec pkg got dir
    if is_done debsrc && [[ -f "$dest/MANIFEST" ]]; then
        log "debsrc: cached ($dest)"
        return 0
    fi
    enable_debsrc
    new_tmp tmp
    mkdir "$tmp/out"
    for spec in "${DEBSRC_PKGS[@]}"; do
        got=""
        IFS='|' read -r -a alts <<<"$spec"
        for pkg in "${alts[@]}"; do
            dir="$tmp/src-$pkg"
            apt_dl_dir "$dir"
            log "debsrc: apt-get source --download-only $pkg"
            if (cd "$dir" && apt-get source -q --download-only "$pkg" >&2); then
                got="$pkg"
                break
            fi
            log "debsrc: warning: could not download the source of '$pkg' from the mirror"
            rm -rf "$dir"
        done
        [[ -n "$got" ]] || die "debsrc: none of '$spec' could be downloaded"
        [[ "$got" == "${alts[0]}" ]] || log "debsrc: using '$got' instead of '${alts[0]}'"
        info+="$(awk '/^Source:/ {s = $2} /^Version:/ {print s, $2; nextfile}' "$dir"/*.dsc)"$'\n'
        for f in "$dir"/*.orig.tar.*; do
            [[ -e "$f" ]] || continue
            case "$f" in *.asc | *.sig) continue ;; esac
            mv "$f" "$tmp/out/"
            n=$((n + 1))
        done
    done
    [[ $n -ge ${#DEBSRC_PKGS[@]} ]] || die "debsrc: expected ${#DEBSRC_PKGS[@]} upstream tarballs, got $n"
    (
        cd "$tmp/out"
        for f in *.orig.tar.*; do
            printf '%s %s %s\n' "$f" "$(sha256sum "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")"
        done >MANIFEST
    )
    rm -rf "$dest"
    mkdir -p "$CORPUS"
    mv "$tmp/out" "$dest"
    mark_done debsrc "${info%$'\n'}"
}

# ------------------------------------------------------------------- main

main() {
    local parts=() p
    for p in "$@"; do
        case "$p" in
        cpython | numpy | debsrc) parts+=("$p") ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown part '$p' (expected: cpython numpy debsrc)" ;;
        esac
    done
    [[ ${#parts[@]} -gt 0 ]] || parts=(cpython numpy debsrc)

    mkdir -p "$CORPUS"
    # One fetch at a time per cache (test.sh and bench-ingest.sh may overlap).
    exec 9>"$CACHE_DIR/.fetch-corpus.lock"
    flock 9

    for p in "${parts[@]}"; do
        "fetch_$p"
    done

    log "corpus in $CORPUS:"
    for p in "${parts[@]}"; do
        case "$p" in
        numpy)
            printf '  %-8s %6s  %s\n' numpy "$(du_h "$CORPUS/numpy")" "$CORPUS/numpy" >&2
            for v in "${NUMPY_VERSIONS[@]}"; do
                printf '    %-6s %6s  %s\n' "$v" "$(du_h "$CORPUS/numpy/$v")" "$CORPUS/numpy/$v" >&2
            done
            ;;
        *) printf '  %-8s %6s  %s\n' "$p" "$(du_h "$CORPUS/$p")" "$CORPUS/$p" >&2 ;;
        esac
    done
    printf '  %-8s %6s  %s\n' total "$(du_h "$CORPUS")" "$CORPUS" >&2
}

main "$@"
