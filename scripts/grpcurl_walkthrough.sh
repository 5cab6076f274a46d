#!/usr/bin/env bash
# The grpcurl walkthrough of docs/grpcurl.md, run as written and checked: reflection,
# health, create, watch, list, get, restore, watch restore, get restore, a policy.
# Needs the test environment up (scripts/test.sh does it) and grpcurl on PATH.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ensure_tools
PORT=${PORT:-18080}
A=127.0.0.1:$PORT
NAME=walkthrough_$(date +%s)
SERVER_PID=
trap '[ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null; wait 2>/dev/null || true' EXIT

cargo build -q --bin milvus-backup --example hello_milvus
CONFIG=$IT_RUN/walkthrough.yaml
# The default configuration with the environment's addresses.
source "$IT_RUN/env"
sed -e "s#^  port: 19530#  port: ${MILVUS_ADDR##*:}#" -e "s#^  port: 9000#  port: ${S3_ENDPOINT##*:}#" \
    -e "s#^  bucketName: .*#  bucketName: $S3_BUCKET#" -e "s#^  backupBucketName: .*#  backupBucketName: $S3_BUCKET#" \
    -e "s#^  rootPath: .*#  rootPath: $S3_ROOTPATH#" configs/backup.yaml > "$CONFIG"
target/debug/examples/hello_milvus --config "$CONFIG" --create-only
target/debug/milvus-backup --config "$CONFIG" server --address 127.0.0.1 -p "$PORT" 2> "$IT_RUN/walkthrough-server.log" &
SERVER_PID=$!
for _ in $(seq 1 50); do grpcurl -plaintext "$A" list >/dev/null 2>&1 && break; sleep 0.2; done

fail() { echo "walkthrough: $*" >&2; exit 1; }
expect() { # text, pattern, what
  grep -q -- "$2" <<<"$1" || { echo "$1" >&2; fail "$3: expected $2"; }
}
run() { echo "\$ grpcurl $*" >&2; grpcurl "$@"; }

out=$(run -plaintext "$A" list)
expect "$out" "milvus.backup.v1.BackupService" "reflection lists our service"
expect "$out" "grpc.health.v1.Health" "reflection lists health"
out=$(run -plaintext -d '{"service":"milvus.backup.v1.BackupService"}' "$A" grpc.health.v1.Health/Check)
expect "$out" '"SERVING"' "health"

out=$(run -plaintext -d "{\"backup_name\":\"$NAME\",\"collection_names\":[\"hello_milvus\"]}" \
  "$A" milvus.backup.v1.BackupService/CreateBackup)
expect "$out" "JOB_STATE_SUCCEEDED" "CreateBackup ends in SUCCEEDED"
expect "$out" '"percent": 100' "CreateBackup ends at 100%"

out=$(run -plaintext -d "{\"name\":\"$NAME\"}" "$A" milvus.backup.v1.BackupService/WatchBackup)
expect "$out" "JOB_STATE_SUCCEEDED" "WatchBackup"
out=$(run -plaintext "$A" milvus.backup.v1.BackupService/ListBackups)
expect "$out" "\"name\": \"$NAME\"" "ListBackups lists the backup"
out=$(run -plaintext -d "{\"name\":\"$NAME\"}" "$A" milvus.backup.v1.BackupService/GetBackup)
expect "$out" '"rowCount": "3000"' "GetBackup shows the rows"

out=$(run -plaintext -d "{\"backup_name\":\"$NAME\",\"collection_suffix\":\"_recover\",\"drop_existing_collections\":true}" \
  "$A" milvus.backup.v1.BackupService/Restore)
expect "$out" "JOB_STATE_SUCCEEDED" "Restore ends in SUCCEEDED"
id=$(grep -m1 -o '"id": "[^"]*"' <<<"$out" | cut -d'"' -f4)
[ -n "$id" ] || fail "no restore id"
out=$(run -plaintext -d "{\"id\":\"$id\"}" "$A" milvus.backup.v1.BackupService/WatchRestore)
expect "$out" "JOB_STATE_SUCCEEDED" "WatchRestore after the end"
expect "$out" '"importedRows": "3000"' "WatchRestore shows the imported rows"
out=$(run -plaintext -d "{\"id\":\"$id\"}" "$A" milvus.backup.v1.BackupService/GetRestore)
expect "$out" "hello_milvus_recover" "GetRestore names the target"

out=$(grpcurl -plaintext -d '{"backup_name":"../x"}' "$A" milvus.backup.v1.BackupService/CreateBackup 2>&1 || true)
expect "$out" "InvalidArgument" "a bad name is refused"
# A policy, stored disabled (it never runs on its schedule), run once now.
P=walk_$(date +%s)
out=$(run -plaintext -d "{\"policy\":{\"name\":\"$P\",\"schedule\":\"0 3 * * *\",\"collection_names\":[\"hello_milvus\"],
  \"retention\":{\"keep_daily\":7},\"enabled\":false}}" "$A" milvus.backup.v1.PolicyService/CreatePolicy)
expect "$out" "\"name\": \"$P\"" "CreatePolicy"
out=$(run -plaintext -d "{\"name\":\"$P\"}" "$A" milvus.backup.v1.PolicyService/RunPolicyNow)
expect "$out" "\"backupName\": \"${P}_" "RunPolicyNow names the run's backup"
for _ in $(seq 1 120); do
  out=$(grpcurl -plaintext -d "{\"name\":\"$P\"}" "$A" milvus.backup.v1.PolicyService/GetPolicy)
  grep -q '"lastSuccess"' <<<"$out" && break; sleep 0.5
done
expect "$out" '"lastSuccess"' "GetPolicy shows the run's success"
out=$(run -plaintext -d "{\"name\":\"$P\"}" "$A" milvus.backup.v1.PolicyService/PreviewRetention)
expect "$out" '"keep": true' "PreviewRetention keeps the newest"
run -plaintext -d "{\"name\":\"$P\"}" "$A" milvus.backup.v1.PolicyService/DeletePolicy >/dev/null
echo "grpcurl walkthrough: 16 checks passed"
