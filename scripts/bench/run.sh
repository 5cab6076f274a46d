#!/usr/bin/env bash
# The benchmark (by hand; never in CI): Milvus 2.3.5 on Garage, a generated
# dataset (cached in .bench/run), our backup and restore side by side with
# rclone and a raw CopyObject loop. Writes docs/benchmarks.md.
#
#   bash scripts/bench/run.sh [--runs 3] [--small 1000]
#
# Installs what it needs into ignored folders: rclone (apt), garage 2.5.0
# (cargo install into .bench/tools, ~30 min once), Milvus and pymilvus (as the
# tests do, into .it-env). Needs the test environment to be down: only one
# Milvus runs per machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
B=$ROOT/.bench
RUN=$B/run
IT_ENV=${IT_ENV:-$ROOT/.it-env}
SEED=${SEED:-42}
SMALL=1000
for ((i = 1; i <= $#; i++)); do [ "${!i}" = --small ] && j=$((i + 1)) && SMALL=${!j}; done
log() { echo "[bench $(date +%H:%M:%S)] $*"; }

command -v rclone >/dev/null || { apt-get update -qq && apt-get install -y -qq rclone; }
if [ ! -x "$B/tools/bin/garage" ]; then
  log "building garage 2.5.0 into .bench/tools (about 30 minutes, once)"
  cargo install garage@2.5.0 --locked --root "$B/tools" --target-dir "$B/target"
fi
export IT_ENV
source scripts/env.sh
ensure_packages
bash scripts/testenv/setup.sh "$IT_ENV" >/dev/null
ensure_pymilvus
log "building milvus-backup and the bench tool (release)"
cargo build --release --locked --bin milvus-backup --example bench_tool

if [ -f /run/milvus/standalone.pid ] && kill -0 "$(cat /run/milvus/standalone.pid)" 2>/dev/null \
   && ! [ -f "$RUN/milvus.pid" ]; then
  echo "another Milvus runs here (pid $(cat /run/milvus/standalone.pid)); stop it first" >&2
  echo "(the test environment: bash scripts/testenv/down.sh .it-run)" >&2
  exit 1
fi
mkdir -p "$RUN"
stop_env() { bash scripts/testenv/down.sh "$RUN"; [ -f "$RUN/garage/garage.pid" ] && kill "$(cat "$RUN/garage/garage.pid")" 2>/dev/null || true; }
trap stop_env EXIT
log "starting Milvus 2.3.5 on Garage (data kept in .bench/run)"
S3_IMPL=garage S3_PORT=3900 GARAGE_BIN=$B/tools/bin/garage bash scripts/testenv/up.sh "$IT_ENV" "$RUN"

MARK=$RUN/dataset-seed$SEED-small$SMALL.done
if [ ! -f "$MARK" ]; then
  log "generating the dataset (seed $SEED; once)"
  "$IT_ENV/pymilvus/bin/python" scripts/bench/dataset.py --seed "$SEED" --small "$SMALL"
  touch "$MARK"
fi
log "measuring"
"$IT_ENV/pymilvus/bin/python" scripts/bench/measure.py "$@"
log "wrote docs/benchmarks.md"
