#!/usr/bin/env bash
# The main job: start the local Milvus 2.3.5 and S3 when none is running,
# start the milvus-backup server, then back up hello_milvus over gRPC and
# restore it as hello_milvus_recover, comparing every row.
# CONFIG=path uses another configuration (then no local environment is started).
# PORT=8080 is the server's port. KEEP_ENV=1 leaves the local environment running.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
PORT=${PORT:-8080}
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  fi
  env_down
}
trap cleanup EXIT

ensure_packages
if [ -z "${CONFIG:-}" ]; then
  CONFIG=configs/backup.yaml
  if ! (exec 3<>/dev/tcp/127.0.0.1/19530) 2>/dev/null; then
    env_up
  else
    log "a Milvus already answers on 127.0.0.1:19530; using it"
  fi
fi

log "building milvus-backup"
cargo build --bin milvus-backup --example hello_milvus

log "starting milvus-backup server on port $PORT"
mkdir -p "$IT_RUN"
target/debug/milvus-backup --config "$CONFIG" server --address 127.0.0.1 -p "$PORT" 2> "$IT_RUN/server.log" &
SERVER_PID=$!

target/debug/examples/hello_milvus --server "http://127.0.0.1:$PORT" --config "$CONFIG"
log "server log: $IT_RUN/server.log"
