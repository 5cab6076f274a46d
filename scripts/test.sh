#!/usr/bin/env bash
# Runs every test: unit tests, the end-to-end tests against a real Milvus 2.3.5
# and S3 server (started here, stopped at the end), buf lint, and the grpcurl
# walkthrough of the README. Installs what it needs on a fresh machine.
# KEEP_ENV=1 leaves the environment running for the next run.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
trap env_down EXIT

ensure_packages
ensure_tools
ensure_codegen

log "format and lint"
cargo fmt --all -- --check
(cd proto && buf lint)
log "generated clients are up to date"
bash scripts/gen_clients.sh --check
ensure_python_client
ensure_pymilvus

log "building"
cargo build --all-targets --locked

env_up

log "cargo test (unit and end-to-end against the real Milvus and S3)"
# Figures are written by the tests that prove them (tests/common/figures.rs).
FIGURES="${CARGO_TARGET_DIR:-target}/test-figures"
rm -rf "$FIGURES"
cargo test --all-targets --locked -- --test-threads 4

log "grpcurl walkthrough of the README"
bash scripts/grpcurl_walkthrough.sh

log "figures, each from a test that fails if it is false"
for f in "$FIGURES"/*.txt; do
  [ -e "$f" ] || continue
  sed "s/^/$(basename "$f" .txt): /" "$f"
done

log "all tests passed"
