#!/usr/bin/env bash
# Full-size HOICLIP on one 800x1200 image: Burn (default CPU backend) vs the PyTorch
# reference, same machine, same threads, same run. Needs torch + open_clip_torch + pillow<13
# (PYTHON=.venv-ref/bin/python by default).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv-ref/bin/python}"
ITERS="${ITERS:-3}"
export BENCH_THREADS="${BENCH_THREADS:-$(nproc)}"
export RAYON_NUM_THREADS="${BENCH_THREADS}"
echo "# $(date -u +%F) $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), threads=${BENCH_THREADS}"
torch_json=$("$PYTHON" benches/detector_torch.py --iters "$ITERS")
echo "$torch_json"
burn_json=$(cargo bench --quiet --bench detector -- --iters "$ITERS")
echo "$burn_json"
"$PYTHON" - "$torch_json" "$burn_json" <<'PY'
import json, sys
t, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{b['impl']}: {b['ms_per_image']:.0f} ms/image ({b['ms_per_image']/t['ms_per_image']:.2f}x torch), "
      f"peak RSS {b['peak_rss_mb']:.0f} MB (torch {t['peak_rss_mb']:.0f} MB)")
PY
