#!/usr/bin/env bash
# Builds the Go client as another Go module would, offline: a consumer module
# (example.com/consumer) requires github.com/milvus-backup-rs/clients/go and
# builds its packages and example in module mode (-mod=vendor). No proxy is
# reached: the consumer's vendor/ holds this checkout's clients/go and Debian's
# Go sources (golang-google-grpc-dev 1.33.3, golang-google-protobuf-dev 1.28.1,
# ...) standing in for the versions that clients/go/go.mod selects.
# usage: build_go_client.sh OUT_DIR   (writes OUT_DIR/backup_and_restore)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_codegen
OUT=$(realpath -m "${1:?usage: build_go_client.sh OUT_DIR}")
MOD=github.com/milvus-backup-rs/clients/go
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"
export GOFLAGS= GOPROXY=off GONOSUMDB= GOSUMDB=off GOCACHE="$IT_ENV/go-cache" GOPATH="$work/gopath"

# The packages the client and its example import, found in GOPATH mode over
# Debian's sources (/usr/share/gocode).
mkdir -p "$work/gopath/src/github.com/milvus-backup-rs/clients"
ln -s "$ROOT/clients/go" "$work/gopath/src/$MOD"
deps=$(GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" go list -deps \
  -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$MOD/examples/backup_and_restore")

# The consumer: go.mod as `go mod tidy` writes it (go 1.17+ lists the
# indirect modules too), with the client's requirements.
consumer="$work/consumer"
mkdir -p "$consumer/vendor"
indirect=$(sed -n '/^require (/,/^)/p' clients/go/go.mod | grep -E '^\s+[a-z]' | sed 's#//.*##' | awk '{print $1" "$2}')
{
  echo "module example.com/consumer"
  echo
  echo "go 1.19"
  echo
  echo "require $MOD v0.1.0"
  echo
  echo "require ("
  echo "$indirect" | sed 's/^/\t/; s/$/ \/\/ indirect/'
  echo ")"
  echo
  echo "replace $MOD => $ROOT/clients/go"
} > "$consumer/go.mod"
cat > "$consumer/main.go" <<'EOF'
// Command consumer is another module that imports the milvus-backup client.
package main

import (
	"fmt"

	"github.com/milvus-backup-rs/clients/go/backupv1"
	"google.golang.org/grpc"
)

func main() {
	conn, err := grpc.Dial("127.0.0.1:1", grpc.WithInsecure())
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	var client backupv1.BackupServiceClient = backupv1.NewBackupServiceClient(conn)
	fmt.Println(backupv1.JobState_JOB_STATE_SUCCEEDED, client != nil)
}
EOF

# vendor/: each module's directory and vendor/modules.txt listing its packages.
modules_txt="$consumer/vendor/modules.txt"
: > "$modules_txt"
vendor_module() { # path version source go-version [replacement]
  local path=$1 version=$2 src=$3 gover=$4 repl=${5:-}
  mkdir -p "$(dirname "$consumer/vendor/$path")"
  ln -s "$src" "$consumer/vendor/$path"
  if [ -n "$repl" ]; then echo "# $path $version => $repl"; else echo "# $path $version"; fi >> "$modules_txt"
  echo "## explicit; go $gover" >> "$modules_txt"
  echo "$deps" | while read -r pkg; do
    case "$pkg" in "$path"|"$path"/*) echo "$pkg";; esac
  done >> "$modules_txt"
}
go_version() { sed -n 's/^go \([0-9.]*\)$/\1/p' "$1/go.mod" | head -1; }
vendor_module "$MOD" v0.1.0 "$ROOT/clients/go" "$(go_version "$ROOT/clients/go")" "$ROOT/clients/go"
echo "$indirect" | while read -r path version; do
  src=/usr/share/gocode/src/$path
  [ -d "$src" ] || { echo "missing Debian sources for $path in $src" >&2; exit 1; }
  vendor_module "$path" "$version" "$src" "$(go_version "$src")"
done
echo "# $MOD => $ROOT/clients/go" >> "$modules_txt"

cd "$consumer"
GO111MODULE=on go vet -mod=vendor "$MOD/backupv1"
GO111MODULE=on go build -mod=vendor -o "$OUT/consumer" .
GO111MODULE=on go build -mod=vendor -o "$OUT/backup_and_restore" "$MOD/examples/backup_and_restore"
"$OUT/consumer" >/dev/null
echo "built $OUT/backup_and_restore and $OUT/consumer (module mode, offline)"
