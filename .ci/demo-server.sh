# Sourced by the CI scripts: starts `hoiclip serve` on the demo model on a free loopback
# port with a fresh database in $work, waits until it is ready, and kills it on exit.
# Needs: ROOT, TARGET, VENV, work. Sets: port, server. Extra serve flags: "$@".
start_demo_server() {
  port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$TARGET/release/hoiclip" serve --listen "127.0.0.1:$port" --database-url "sqlite://$work/demo.db" \
      "$@" > "$work/server.log" 2>&1 &
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
}
