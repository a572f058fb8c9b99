#!/usr/bin/env bash
# The web page in a real browser: Debian's Chromium driven by playwright-core (which
# downloads no browser), against the server on the demo model. Installs what a fresh
# machine lacks; writes a screenshot to ${HOICLIP_SCREENSHOT:-target/web-page.png}.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${HOICLIP_SDK_VENV:-$HOME/.cache/hoiclip-sdk-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq chromium
fi
NODE_DIR="${HOICLIP_NODE_DIR:-$HOME/.cache/hoiclip-browser-test}"
if [ ! -d "$NODE_DIR/node_modules/playwright-core" ]; then
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent "playwright-core@1.64.1"
fi

work="$(mktemp -d)"
source "$ROOT/.ci/demo-server.sh"
start_demo_server
NODE_PATH="$NODE_DIR/node_modules" node "$ROOT/.ci/browser_test.cjs" "http://127.0.0.1:$port" \
  "$ROOT/tests/fixtures/jpeg/photo_q75.jpg" "${HOICLIP_SCREENSHOT:-$TARGET/web-page.png}"
