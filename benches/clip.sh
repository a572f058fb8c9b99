#!/usr/bin/env bash
# Full-size CLIP ViT-B/32 on every Burn CPU backend and in PyTorch, same machine, same run.
# Needs a Python with torch + open_clip_torch (PYTHON=.venv-ref/bin/python by default).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv-ref/bin/python}"
ITERS="${ITERS:-5}"
export BENCH_THREADS="${BENCH_THREADS:-$(nproc)}"
export RAYON_NUM_THREADS="${BENCH_THREADS}"
echo "# $(date -u +%F) $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), threads=${BENCH_THREADS}"
torch_json=$("$PYTHON" benches/clip_torch.py --iters "$ITERS")
echo "$torch_json"
cargo bench --quiet --bench clip --features ndarray,candle -- --iters "$ITERS" | tee /tmp/hoiclip-clip-bench.jsonl
"$PYTHON" - "$torch_json" <<'PY'
import json, sys
ref = json.loads(sys.argv[1])
for line in open("/tmp/hoiclip-clip-bench.jsonl"):
    r = json.loads(line)
    print(f"{r['impl']:>14}: image {r['image_ms']:8.1f} ms ({r['image_ms']/ref['image_ms']:.2f}x torch), "
          f"600 prompts {r['text600_ms']:8.0f} ms ({r['text600_ms']/ref['text600_ms']:.2f}x torch)")
PY
