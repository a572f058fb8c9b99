#!/usr/bin/env bash
# Contract fuzzing: schemathesis against the live server (demo model, fresh database) with
# every check on; any failure fails CI, so openapi/openapi.json documents every status and
# body the server really sends.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${HOICLIP_ST_VENV:-$HOME/.cache/hoiclip-st-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "schemathesis==4.32.5"

work="$(mktemp -d)"
# Rate limits off: schemathesis sends hundreds of requests a second and would mostly see
# (documented) 429s instead of reaching the handlers.
source "$ROOT/.ci/demo-server.sh"
start_demo_server --rate-limit 0 --vocabulary-wait-ms 50
cd "$work"
# One worker: with two, hypothesis describes filter lambdas with ast.parse on two threads,
# which CPython 3.11 sometimes fails ("AST constructor recursion depth mismatch", a
# SystemError reported as a runtime error of the run, not of the server).
if ! "$VENV/bin/st" --config-file "$ROOT/.ci/schemathesis.toml" run "$ROOT/openapi/openapi.json" \
    --url "http://127.0.0.1:$port" --checks all --max-examples "${HOICLIP_ST_EXAMPLES:-40}" \
    --seed "${HOICLIP_ST_SEED:-1}" --generation-database none --no-color --workers 1; then
  echo "--- server log (tail)"
  tail -50 "$work/server.log"
  exit 1
fi
if grep -q "panicked" "$work/server.log"; then
  echo "the server panicked during contract fuzzing:"
  grep -n -A5 "panicked" "$work/server.log"
  exit 1
fi
