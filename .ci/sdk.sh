#!/usr/bin/env bash
# Generates a Python client from openapi/openapi.json (must generate without warnings),
# starts the server on the demo model on loopback, and drives it through the client.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${HOICLIP_SDK_VENV:-$HOME/.cache/hoiclip-sdk-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "openapi-python-client==0.29.1"

work="$(mktemp -d)"
( cd "$work" && "$VENV/bin/openapi-python-client" generate --path "$ROOT/openapi/openapi.json" \
    --meta none --config "$ROOT/.ci/sdk-config.yml" ) > "$work/generate.log" 2>&1
if grep -qi "warning" "$work/generate.log"; then
  cat "$work/generate.log"
  echo "the OpenAPI document generates with warnings"
  exit 1
fi

source "$ROOT/.ci/demo-server.sh"
start_demo_server
PYTHONPATH="$work" "$VENV/bin/python" "$ROOT/.ci/sdk_test.py" "http://127.0.0.1:$port" "$ROOT/tests/fixtures/hoiclip/img0.png"
