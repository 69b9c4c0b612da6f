#!/usr/bin/env bash
# Remote mounts over loopback: cold and warm Python start-up from
#   native     the corpus directory itself
#   local      `hdist mount` of the local store
#   remote     `hdist mount --remote` of the published store (nginx on 127.0.0.1), fresh cache,
#              without and with the prefetch list recorded from the same workload
# and the bytes/requests a cold remote start costs. Prints a Markdown table.
#
#   scripts/bench-remote.sh [RUNS]      (default 5 warm runs; median reported)
#
# Needs root for drop_caches (cold runs); without it "cold" is page-cache warm for native.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${1:-5}"
WORKLOAD='import json, sqlite3, ssl, decimal, asyncio, email'
need_pkgs nginx-light fuse3
"$ROOT/scripts/fetch-corpus.sh" cpython >/dev/null
build_hdist
CPY="$CACHE_DIR/corpus/cpython/usr"

WORK="$(mktemp -d /tmp/hdist-bench-remote.XXXXXX)"
chmod 755 "$WORK" # nginx workers (www-data) must reach the published files
NGINX_PID=""
MOUNTS=()
cleanup() {
    for m in "${MOUNTS[@]}"; do
        mountpoint -q "$m" && "$HDIST" umount "$m" 2>/dev/null || true
    done
    [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export HDIST_STORE="$WORK/store"

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
run_ms() { # run_ms PYTHON : wall ms of one workload run
    local t0 t1
    t0=$(now_ms); "$1" -c "$WORKLOAD"; t1=$(now_ms); echo $((t1 - t0))
}
warm_ms() { local i; "$1" -c "$WORKLOAD"; for ((i = 0; i < RUNS; i++)); do run_ms "$1"; done | median %.0f; }

log "ingest + publish"
id=$("$HDIST" -q store add "$CPY" --name cpython --version 3.11)
"$HDIST" -q profile create py "$id" >/dev/null
KEY=$("$HDIST" key generate 2>/dev/null)
"$HDIST" -q publish --to "$WORK/srv/plain"
# The prefetch list: record the workload through a local mount (`hdist trace record` does this).
mkdir -p "$WORK/rec" "$HDIST_STORE/traces"
"$HDIST" mount --record-trace "$HDIST_STORE/traces/py.trace" py "$WORK/rec"
MOUNTS+=("$WORK/rec")
"$WORK/rec/bin/python3" -c "$WORKLOAD"
"$HDIST" umount "$WORK/rec"
for _ in $(seq 50); do [[ -s "$HDIST_STORE/traces/py.trace" ]] && break; sleep 0.1; done
"$HDIST" -q publish --to "$WORK/srv/prefetch"

# Bytes of the files the workload touched (from the trace; decompressed copies in the store).
TOUCHED=0
while read -r d; do
    [[ "$d" == hdist-trace-1 ]] && continue
    f="$HDIST_STORE/cache/blobs/${d:0:2}/$d"
    [[ -f "$f" ]] || f="$HDIST_STORE/objects/${d:0:2}/$d"
    [[ -f "$f" ]] && TOUCHED=$((TOUCHED + $(stat -c %s "$f")))
done <"$HDIST_STORE/traces/py.trace"
FILES=$(($(wc -l <"$HDIST_STORE/traces/py.trace") - 1))

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon on; worker_processes 2; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  log_format bytes '\$request_uri \$status \$body_bytes_sent';
  access_log $WORK/nginx/access.log bytes;
  client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
  sendfile on; keepalive_requests 100000; default_type application/octet-stream;
  server { listen 127.0.0.1:$PORT; root $WORK/srv; }
}
EOF
/usr/sbin/nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
NGINX_PID=$(cat "$WORK/nginx/nginx.pid")

log "native"
drop_caches; NATIVE_COLD=$(run_ms "$CPY/bin/python3"); NATIVE_WARM=$(warm_ms "$CPY/bin/python3")

log "local mount"
mkdir -p "$WORK/local"
drop_caches
"$HDIST" mount py "$WORK/local"; MOUNTS+=("$WORK/local")
LOCAL_COLD=$(run_ms "$WORK/local/bin/python3"); LOCAL_WARM=$(warm_ms "$WORK/local/bin/python3")
"$HDIST" umount "$WORK/local"

remote() { # remote NAME : cold ms, requests, bytes, warm ms
    local name=$1 mnt="$WORK/mnt-$1" before cold reqs bytes warm
    mkdir -p "$mnt"
    drop_caches
    before=$(wc -l <"$WORK/nginx/access.log")
    local t0; t0=$(now_ms)
    "$HDIST" mount --remote "http://127.0.0.1:$PORT/$name" --key "$KEY" --cache "$WORK/cache-$name" py "$mnt"
    MOUNTS+=("$mnt")
    "$mnt/bin/python3" -c "$WORKLOAD"
    cold=$(($(now_ms) - t0))
    sleep 1 # let the prefetcher finish before counting
    reqs=$(tail -n +$((before + 1)) "$WORK/nginx/access.log" | grep -c /objects/ || true)
    bytes=$(tail -n +$((before + 1)) "$WORK/nginx/access.log" | awk '{s += $3} END {print s + 0}')
    warm=$(warm_ms "$mnt/bin/python3")
    "$HDIST" umount "$mnt"
    echo "$cold $reqs $bytes $warm"
}
log "remote, no prefetch list"
read -r PLAIN_COLD PLAIN_REQS PLAIN_BYTES PLAIN_WARM < <(remote plain)
log "remote, prefetch list"
read -r PF_COLD PF_REQS PF_BYTES PF_WARM < <(remote prefetch)

echo
echo "Workload: \`python3 -c '$WORKLOAD'\`; $FILES files, $TOUCHED bytes touched; warm = median of $RUNS."
echo
echo "| setup | cold ms | cold / local cold | warm ms | warm / local warm | requests | bytes fetched | fetched / touched |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
echo "| native dir | $NATIVE_COLD | $(ratio "$NATIVE_COLD" "$LOCAL_COLD") | $NATIVE_WARM | $(ratio "$NATIVE_WARM" "$LOCAL_WARM") | - | - | - |"
echo "| local hdist mount | $LOCAL_COLD | 1.00 | $LOCAL_WARM | 1.00 | - | - | - |"
echo "| remote, no prefetch | $PLAIN_COLD | $(ratio "$PLAIN_COLD" "$LOCAL_COLD") | $PLAIN_WARM | $(ratio "$PLAIN_WARM" "$LOCAL_WARM") | $PLAIN_REQS | $PLAIN_BYTES | $(ratio "$PLAIN_BYTES" "$TOUCHED") |"
echo "| remote, prefetch list | $PF_COLD | $(ratio "$PF_COLD" "$LOCAL_COLD") | $PF_WARM | $(ratio "$PF_WARM" "$LOCAL_WARM") | $PF_REQS | $PF_BYTES | $(ratio "$PF_BYTES" "$TOUCHED") |"
