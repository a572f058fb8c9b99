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

port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$TARGET/release/hoiclip" serve --listen "127.0.0.1:$port" --database-url "sqlite://$work/sdk.db" > "$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
"$VENV/bin/python" - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(120):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/ready", timeout=2).status == 200:
            sys.exit(0)
    except Exception:
        time.sleep(1)
sys.exit("server not ready after 120 s")
PY
PYTHONPATH="$work" "$VENV/bin/python" "$ROOT/.ci/sdk_test.py" "http://127.0.0.1:$port" "$ROOT/tests/fixtures/hoiclip/img0.png"
