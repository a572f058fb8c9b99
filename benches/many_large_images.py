#!/usr/bin/env python3
"""Peak server memory while many large images arrive at once (issue 11, "memory bounded
under concurrency"). Starts `hoiclip serve` (demo model) twice on the same machine in the
same run: once with the default decoded-pixel budget and once with the budget effectively
off, sends N concurrent POST /detect of a 6300x6300 PNG (legal under the 40 MP limit;
~40 KB on the wire, ~119 MB decoded) to each, and prints peak RSS (VmHWM) and the ratio.

usage: benches/many_large_images.py [N] [path/to/hoiclip]
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

N = int(sys.argv[1]) if len(sys.argv) > 1 else 32
BIN = sys.argv[2] if len(sys.argv) > 2 else "target/release/hoiclip"
SIDE = 6300


def big_png(side):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x80" * (3 * side)
    raw = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run(budget, png, work):
    port = free_port()
    args = [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--database-url",
            f"sqlite://{work}/b{budget}.db", "--rate-limit", "0", "--max-queue", str(N),
            "--request-timeout", "600", "--decode-budget-pixels", str(budget)]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2).status == 200:
                    break
            except Exception:
                time.sleep(0.5)
        base = peak_rss_kib(server.pid)
        statuses = []

        def send():
            req = urllib.request.Request(f"http://127.0.0.1:{port}/detect?top_k=1", data=png,
                                         headers={"content-type": "image/png"})
            try:
                statuses.append(urllib.request.urlopen(req, timeout=900).status)
            except urllib.error.HTTPError as e:
                statuses.append(e.code)

        started = time.time()
        threads = [threading.Thread(target=send) for _ in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return base, peak_rss_kib(server.pid), time.time() - started, statuses
    finally:
        server.kill()
        server.wait()


def main():
    png = big_png(SIDE)
    with tempfile.TemporaryDirectory() as work:
        rows = []
        for label, budget in [("default budget (120 MP)", 120_000_000), ("budget off (10^12 px)", 10**12)]:
            base, peak, secs, statuses = run(budget, png, work)
            ok = sum(1 for s in statuses if s == 200)
            rows.append((label, base, peak, secs, ok))
            print(f"{label}: idle {base / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB, "
                  f"{secs:.1f} s for {N} images, {ok}/{N} answered 200", flush=True)
    print(f"peak RSS ratio, budget on / off: {rows[0][2] / rows[1][2]:.2f}")


if __name__ == "__main__":
    main()
