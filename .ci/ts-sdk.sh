#!/usr/bin/env bash
# Generates a TypeScript client from openapi/openapi.json with @hey-api/openapi-ts (must
# generate without warnings), type-checks .ci/sdk_test.ts against it with tsc --strict,
# starts the server on the demo model on loopback, and drives it through the client.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${HOICLIP_SDK_VENV:-$HOME/.cache/hoiclip-sdk-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
NODE_DIR="${HOICLIP_TS_DIR:-$HOME/.cache/hoiclip-ts-sdk}"
if [ ! -x "$NODE_DIR/node_modules/.bin/openapi-ts" ] || [ ! -x "$NODE_DIR/node_modules/.bin/tsc" ]; then
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent "@hey-api/openapi-ts@0.90.0" "typescript@5.9.3" "@types/node@20"
fi

work="$(mktemp -d)"
( cd "$work" && NO_COLOR=1 "$NODE_DIR/node_modules/.bin/openapi-ts" -i "$ROOT/openapi/openapi.json" -o sdk ) \
  > "$work/generate.log" 2>&1 || { cat "$work/generate.log"; exit 1; }
if grep -qi "warn" "$work/generate.log"; then
  cat "$work/generate.log"
  echo "the OpenAPI document generates with warnings"
  exit 1
fi
cp "$ROOT/.ci/sdk_test.ts" "$work/"
cat > "$work/tsconfig.json" <<JSON
{ "compilerOptions": { "strict": true, "target": "es2022", "module": "commonjs",
  "moduleResolution": "node", "types": ["node"], "typeRoots": ["$NODE_DIR/node_modules/@types"],
  "outDir": "out", "skipLibCheck": false, "noEmit": false },
  "files": ["sdk_test.ts"] }
JSON
( cd "$work" && "$NODE_DIR/node_modules/.bin/tsc" -p tsconfig.json )

source "$ROOT/.ci/demo-server.sh"
start_demo_server
node "$work/out/sdk_test.js" "http://127.0.0.1:$port" "$ROOT/tests/fixtures/hoiclip/img0.png"
