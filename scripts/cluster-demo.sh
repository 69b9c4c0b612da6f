#!/usr/bin/env bash
# A cluster on one machine: Debian's nginx serves a published store on 127.0.0.1 and NODES
# nodes (default 3), each in its own mount namespace (`unshare -m`) with its own cache, mount
# the same profile and run Python from it. Then the faults:
#   1. nginx stopped mid-run: cached files keep working, an uncached one fails (EIO) within
#      the timeout; nginx restarted: the same read succeeds again.
#   2. an object corrupted on the server: a fresh node refuses it (EIO + log line).
#   3. the manifest replaced by one signed with another key: a fresh node refuses to mount.
# Network namespaces are not used: everything talks to 127.0.0.1 only.
#
#   scripts/cluster-demo.sh [NODES]        (as root: unshare -m needs CAP_SYS_ADMIN)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES="${1:-3}"
need_pkgs nginx-light fuse3 util-linux zstd
"$ROOT/scripts/fetch-corpus.sh" cpython >/dev/null
if [[ -z "${HDIST:-}" ]]; then build_hdist || die "cargo build failed"; fi  # HDIST=path uses that binary (the tests do)
CPY="$CACHE_DIR/corpus/cpython/usr"

WORK="$(mktemp -d /tmp/hdist-cluster.XXXXXX)"
chmod 755 "$WORK" # nginx workers (www-data) must reach the published files
NGINX_PID=""
cleanup() {
    [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2>/dev/null || true
    # Node namespaces unmount their own mounts; wait for their shells to be gone.
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export HDIST_STORE="$WORK/store"

log "publisher: ingest CPython, profile py, key, publish"
id=$("$HDIST" -q store add "$CPY" --name cpython --version 3.11)
"$HDIST" -q profile create py "$id" >/dev/null
KEY=$("$HDIST" key generate 2>/dev/null)
"$HDIST" -q publish --to "$WORK/pub"

# A free port from the corpus's own Python (the host may have none, or one tied to a home dir).
PORT=$(PYTHONHOME="$CPY" "$CPY/bin/python3.11" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon on; worker_processes 2; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log $WORK/nginx/access.log;
  client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
  sendfile on; keepalive_requests 100000; default_type application/octet-stream;
  server {
    listen 127.0.0.1:$PORT; root $WORK/pub;
    location = /manifest.json { add_header Cache-Control no-cache; }
    location /objects/ { add_header Cache-Control "public, max-age=31536000, immutable"; }
    location /.tmp/ { return 404; }
  }
}
EOF
start_nginx() {
    /usr/sbin/nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
    NGINX_PID=$(cat "$WORK/nginx/nginx.pid")
    log "nginx up (pid $NGINX_PID) on 127.0.0.1:$PORT"
}
stop_nginx() {
    kill "$NGINX_PID"
    while kill -0 "$NGINX_PID" 2>/dev/null; do sleep 0.05; done
    log "nginx stopped (pid $NGINX_PID)"
    NGINX_PID=""
}
start_nginx
URL="http://127.0.0.1:$PORT"
export HDIST URL KEY WORK

# One node: its own mount namespace, mount point and cache. Phases are synchronised with the
# orchestrator through flag files in $WORK/flags.
node_script='
set -euo pipefail
n=$1; mnt=$WORK/node$n/mnt; flags=$WORK/flags
mkdir -p "$mnt"
wait_flag() { while [[ ! -e $flags/$1 ]]; do sleep 0.05; done; }
"$HDIST" mount --remote "$URL" --key "$KEY" --cache "$WORK/node$n/cache" --timeout 2 py "$mnt"
trap "\"$HDIST\" umount \"$mnt\" || true" EXIT
"$mnt/bin/python3" -c "import json, sqlite3, decimal, email; print(\"node $n: python\", __import__(\"sys\").version.split()[0], \"ok\")"
touch "$flags/ran.$n"; wait_flag offline
"$mnt/bin/python3" -c "import json; print(\"node $n offline: cached import json ok\")"
t0=$(date +%s%N)
if cat "$mnt/lib/python3.11/antigravity.py" >/dev/null 2>&1; then
    echo "node $n offline: FAIL (uncached file served)"; exit 1
fi
echo "node $n offline: uncached read failed after $((($(date +%s%N) - t0) / 1000000)) ms (EIO expected)"
touch "$flags/offline.$n"; wait_flag online
for _ in $(seq 100); do cat "$mnt/lib/python3.11/antigravity.py" >/dev/null 2>&1 && break; sleep 0.1; done
cat "$mnt/lib/python3.11/antigravity.py" >/dev/null
echo "node $n: recovered after the server came back"
'
mkdir -p "$WORK/flags"
pids=()
for n in $(seq "$NODES"); do
    unshare -m --propagation private bash -c "$node_script" node "$n" &
    pids+=($!)
done
wait_all() { # wait_all PREFIX : every node touched PREFIX.n (or a node died)
    local n
    for n in $(seq "$NODES"); do
        while [[ ! -e "$WORK/flags/$1.$n" ]]; do
            kill -0 "${pids[$((n - 1))]}" 2>/dev/null || die "node $n failed"
            sleep 0.05
        done
    done
}
wait_all ran
log "fault 1: nginx stopped mid-run"
stop_nginx
touch "$WORK/flags/offline"
wait_all offline
start_nginx
touch "$WORK/flags/online"
for p in "${pids[@]}"; do wait "$p" || die "a node failed"; done
log "no node mount left: $(grep -c ' fuse.hdist ' /proc/self/mountinfo || true) hdist mounts in this namespace"

log "fault 2: an object corrupted on the server"
digest=$(sha256sum "$CPY/lib/python3.11/antigravity.py" | cut -d' ' -f1)
object="$WORK/pub/objects/${digest:0:2}/$digest.zst"
cp "$object" "$WORK/object.orig"
echo 'print("owned")' | zstd -q -c >"$object"
if unshare -m --propagation private bash -c '
    mnt=$WORK/fresh/mnt; mkdir -p "$mnt"
    "$HDIST" mount --remote "$URL" --key "$KEY" --cache "$WORK/fresh/cache" --timeout 2 py "$mnt"
    trap "\"$HDIST\" umount \"$mnt\"" EXIT
    ! cat "$mnt/lib/python3.11/antigravity.py" >/dev/null 2>&1'; then
    log "corrupt object refused: $(grep -h 'refusing object' "$WORK"/fresh/cache/logs/*.log | head -1)"
else
    die "the corrupt object was served"
fi
cp "$WORK/object.orig" "$object"

log "fault 3: a manifest signed by another key"
"$HDIST" key generate --key-file "$WORK/other.key" >/dev/null 2>&1
"$HDIST" -q publish --to "$WORK/pub" --key-file "$WORK/other.key"
if unshare -m --propagation private bash -c '
    mnt=$WORK/fresh2/mnt; mkdir -p "$mnt"
    "$HDIST" mount --remote "$URL" --key "$KEY" --cache "$WORK/fresh2/cache" --timeout 2 py "$mnt"' 2>"$WORK/refused.txt"; then
    die "a manifest signed by another key was accepted"
fi
log "foreign manifest refused: $(tail -1 "$WORK/refused.txt")"
stop_nginx
log "cluster demo: all checks passed"
