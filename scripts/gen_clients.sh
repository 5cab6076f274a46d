#!/usr/bin/env bash
# Regenerates the Python and Go clients from proto/milvus/backup/v1/backup.proto.
#   scripts/gen_clients.sh          rewrite clients/python and clients/go stubs
#   scripts/gen_clients.sh --check  fail when the checked-in stubs are stale
# Tools: grpcio-tools (PyPI, pinned) and Debian's protoc, protoc-gen-go, protoc-gen-go-grpc.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_codegen

out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
# Python: generated under the package name, so imports read milvus_backup_client.v1.
mkdir -p "$out/src/milvus_backup_client/v1" "$out/python"
cp proto/milvus/backup/v1/backup.proto "$out/src/milvus_backup_client/v1/backup.proto"
"$IT_ENV/codegen/bin/python" -m grpc_tools.protoc -I "$out/src" \
  --python_out="$out/python" --pyi_out="$out/python" --grpc_python_out="$out/python" \
  "$out/src/milvus_backup_client/v1/backup.proto"
# Go: the package backupv1.
mkdir -p "$out/go"
protoc -I proto --go_out="$out/go" --go_opt=paths=source_relative \
  --go-grpc_out="$out/go" --go-grpc_opt=paths=source_relative \
  proto/milvus/backup/v1/backup.proto

pairs=(
  "$out/python/milvus_backup_client/v1/backup_pb2.py:clients/python/milvus_backup_client/v1/backup_pb2.py"
  "$out/python/milvus_backup_client/v1/backup_pb2.pyi:clients/python/milvus_backup_client/v1/backup_pb2.pyi"
  "$out/python/milvus_backup_client/v1/backup_pb2_grpc.py:clients/python/milvus_backup_client/v1/backup_pb2_grpc.py"
  "$out/go/milvus/backup/v1/backup.pb.go:clients/go/backupv1/backup.pb.go"
  "$out/go/milvus/backup/v1/backup_grpc.pb.go:clients/go/backupv1/backup_grpc.pb.go"
)
stale=0
for p in "${pairs[@]}"; do
  new=${p%%:*}; old=${p#*:}
  if [ "${1:-}" = --check ]; then
    if ! cmp -s "$new" "$old"; then echo "stale: $old (run scripts/gen_clients.sh)" >&2; stale=1; fi
  else
    mkdir -p "$(dirname "$old")"; cp "$new" "$old"; echo "wrote $old"
  fi
done
[ "$stale" = 0 ] && [ "${1:-}" = --check ] && echo "generated clients are up to date"
exit "$stale"
