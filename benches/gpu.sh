#!/usr/bin/env bash
# The GPU check of issue 6, as one script for a machine with an NVIDIA GPU, the CUDA
# driver, and PyTorch with CUDA (`pip install torch open_clip_torch pillow<13` if absent):
#   1. build with --features cuda;
#   2. the HOICLIP parity fixture on CUDA (tolerance 1e-3, tests/cuda_parity.rs);
#   3. full-size throughput at batch 1/8/32: Burn CUDA next to PyTorch eager on the same GPU.
# Usage: PYTHON=python3 ITERS=5 benches/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
ITERS="${ITERS:-5}"
echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
cargo build --release --features cuda --benches --tests
cargo test --release --features cuda --test cuda_parity -- --nocapture
for batch in 1 8 32; do
  torch_json=$("$PYTHON" benches/detector_torch.py --device cuda --batch "$batch" --iters "$ITERS")
  burn_json=$(cargo bench --quiet --features cuda --bench detector -- --device cuda --batch "$batch" --iters "$ITERS")
  echo "$torch_json"
  echo "$burn_json"
  "$PYTHON" - "$torch_json" "$burn_json" <<'PY'
import json, sys
t, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"batch {b['batch']}: burn-cuda {b['images_per_s']:.1f} img/s, torch {t['images_per_s']:.1f} img/s, "
      f"ratio {b['images_per_s'] / t['images_per_s']:.2f}x")
PY
done
