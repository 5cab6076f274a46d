#!/usr/bin/env bash
# (Re)starts Milvus 2.3.5 standalone on 127.0.0.1 with its object storage on the
# test environment's first S3 (STORAGE=s3) or on Azurite (STORAGE=azure). Each
# storage has its own Milvus data directory (etcd, rocksmq), so switching back and
# forth keeps each one's collections. Stops the running Milvus by its PID first.
# usage: milvus.sh PREFIX RUNDIR s3|azure
# env (from up.sh or RUNDIR/ports): S3_PORT AK SK BUCKET ROOT MILVUS_PORT METRICS_PORT AZURE_PORT
set -euo pipefail
P=$(realpath -m "$1"); R=$(realpath -m "$2"); STORAGE=$3
if [ -f "$R/ports" ]; then . "$R/ports"; fi
: "${S3_PORT:?}" "${MILVUS_PORT:?}" "${METRICS_PORT:?}" "${AZURE_PORT:?}" "${AK:?}" "${SK:?}" "${BUCKET:?}" "${ROOT:?}"
cat > "$R/ports" <<EOF
S3_PORT=$S3_PORT AK=$AK SK=$SK BUCKET=$BUCKET ROOT=$ROOT MILVUS_PORT=$MILVUS_PORT METRICS_PORT=$METRICS_PORT AZURE_PORT=$AZURE_PORT
EOF
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
case "$STORAGE" in
  s3)    W=$R/milvus; STORAGE_TYPE=minio; PROVIDER=aws; CONN= ;;
  azure) W=$R/milvus-azure; STORAGE_TYPE=remote; PROVIDER=azure
         CONN="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$AZURITE_KEY;BlobEndpoint=http://127.0.0.1:$AZURE_PORT/devstoreaccount1;" ;;
  *) echo "milvus.sh: storage s3 or azure, not $STORAGE" >&2; exit 2 ;;
esac

# ---------- stop the running one (by PID; gracefulStopTimeout=5) ----------
if [ -f "$R/milvus.pid" ]; then
  pid=$(cat "$R/milvus.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$R/milvus.pid"
fi

# ---------- config, rendered from the wheel's template ----------
# A segment's insert buffer and largest size; the bandwidth-cap benchmark
# raises both (MILVUS_INSERT_BUF_MIB, MILVUS_SEGMENT_MAX_MB) so that one flush
# writes a binlog above 100 MiB.
INSERT_BUF=$(( ${MILVUS_INSERT_BUF_MIB:-16} * 1024 * 1024 ))
mkdir -p "$W/configs" "$W/logs" "$W/data"
D=$P/milvus-wheel/milvus/data
cp "$D/glog.conf" "$W/configs/glog.conf"
sed -E \
 -e "s#\{\{ *etcd_data_dir *\}\}#$W/data/etcd.data#" \
 -e "s#\{\{ *local_storage_dir *\}\}#$W/data#" \
 -e "s#\{\{ *rocksmq_data_dir *\}\}#$W/data/rocksmq#" \
 -e "s#\{\{ *system_log_path *\}\}#$W/logs#" \
 -e "s#\{\{ *etcd_log_path(: *[^}]*)? *\}\}#$W/logs/etcd.log#" \
 -e "s#\{\{ *proxy_port\(int\): *[0-9]+ *\}\}#$MILVUS_PORT#" \
 -e 's#\{\{ *[a-z_]+(\([a-z]+\))?: *([^} ]+) *\}\}#\2#' \
 -e 's#^(  ip:).*#\1 127.0.0.1#' \
 -e "s#^(  storageType:).*#\1 $STORAGE_TYPE#" \
 -e "s#^(  cloudProvider:).*#\1 $PROVIDER#" \
 -e "s#^(  address:) localhost \# Address of MinIO/S3#\1 127.0.0.1#" \
 -e "s#^(  port:) 9000 \# Port of MinIO/S3#\1 $S3_PORT#" \
 -e "s#^(  accessKeyID:).*#\1 $AK#" \
 -e "s#^(  secretAccessKey:).*#\1 $SK#" \
 -e "s#^(  bucketName:).*#\1 $BUCKET#" \
 -e "s#^(  rootPath:) files#\1 $ROOT#" \
 -e "s#^(  gracefulStopTimeout:) [0-9]+#\1 5#" \
 -e "s#^(    insertBufSize:) [0-9]+#\1 $INSERT_BUF#" \
 -e "s#^(    maxSize:) 512 (\# Maximum size of a segment)#\1 ${MILVUS_SEGMENT_MAX_MB:-512} \2#" \
 -e 's#^(  endpoints:) localhost:#\1 127.0.0.1:#' \
 "$D/config.yaml.template" > "$W/configs/milvus.yaml"

# ---------- start, and wait until healthy ----------
cd "$W"   # glog.conf uses a relative log_dir=logs/
AZURE_STORAGE_CONNECTION_STRING=$CONN DEPLOY_MODE=STANDALONE METRICS_PORT=$METRICS_PORT \
  MILVUSCONF=$W/configs LD_LIBRARY_PATH=$P/milvus-bin nohup "$P/milvus-bin/milvus" run standalone \
  > "$W/logs/stdout.log" 2> "$W/logs/stderr.log" &
MP=$!
echo $MP > "$R/milvus.pid"
for i in $(seq 1 240); do
  if curl -sf "http://127.0.0.1:$METRICS_PORT/healthz" 2>/dev/null | grep -q OK; then
    echo "milvus ($STORAGE) pid $MP healthy after $((i / 2))s"; exit 0
  fi
  kill -0 "$MP" 2>/dev/null || { echo "milvus died; tail of log:" >&2; tail -30 "$W/logs/stdout.log" >&2; exit 1; }
  sleep 0.5
done
echo "milvus not healthy in 120s" >&2; exit 1
