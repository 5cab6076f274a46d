#!/usr/bin/env bash
# Builds the Go client and its example offline, with Debian's Go toolchain and
# Debian's grpc and protobuf sources (GOPATH mode). usage: build_go_client.sh OUT_DIR
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_codegen
OUT=$(realpath -m "${1:?usage: build_go_client.sh OUT_DIR}")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gopath/src/github.com/milvus-backup-rs/clients" "$OUT"
ln -s "$ROOT/clients/go" "$work/gopath/src/github.com/milvus-backup-rs/clients/go"
export GO111MODULE=off GOFLAGS= GOPROXY=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$IT_ENV/go-cache"
go vet github.com/milvus-backup-rs/clients/go/backupv1
go build -o "$OUT/backup_and_restore" github.com/milvus-backup-rs/clients/go/examples/backup_and_restore
echo "built $OUT/backup_and_restore"
