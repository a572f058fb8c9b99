#!/usr/bin/env bash
# The GPU check (issue 6) as one script for a machine with an NVIDIA GPU:
#   1. the HOICLIP parity fixture on CUDA (tolerance 1e-3, tests/cuda_parity.rs);
#   2. the served pipeline (`hoiclip detect`: vocabulary, engine, classifiers from the
#      CLIP text tower) on CUDA against the same binary on the CPU, same demo weights;
#   3. full-size throughput at batch 1/8/32: Burn CUDA next to PyTorch eager on the same GPU.
#
# Two ways to run it:
#   benches/gpu.sh                      # on a GPU machine with a Rust toolchain: builds, then runs
#   benches/gpu.sh --prepare            # here: builds the three binaries into .gpu/ and the
#                                       # PyTorch reference's wheels into .whl/ (both git-ignored)
#   BIN_DIR=.gpu benches/gpu.sh         # there (no toolchain, no network): runs what was carried
# Environment: PYTHON (python3), ITERS (5), OUT (where logs and outputs go; default target/gpu).
# Steps do not stop the script when they fail: each prints its own verdict.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
ITERS="${ITERS:-5}"
OUT="${OUT:-target/gpu}"
mkdir -p "$OUT"

# The three binaries, built with --features cuda: the CUDA parity test, the detector
# bench and the server/CLI.
build() {
  cargo build --release --features cuda --test cuda_parity --bench detector --bin hoiclip \
    --message-format=json-render-diagnostics |
    "$PYTHON" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])' >target/gpu-binaries.txt
  mkdir -p "$1"
  while read -r name path; do cp "$path" "$1/$name"; done <target/gpu-binaries.txt
  strip "$1"/* 2>/dev/null || true
  ls -la "$1"
}

if [ "${1:-}" = "--prepare" ]; then
  rm -rf .gpu
  build target/gpu-bin
  # Compressed, the three fit the device tool's 64 MiB with the working tree.
  mkdir -p .gpu && tar -C target/gpu-bin -czf .gpu/bin.tar.gz .
  # open_clip is not on the GPU image; its other needs (torch, timm, ...) are.
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl open_clip_torch ftfy wcwidth
  exit
fi

if [ -z "${BIN_DIR:-}" ]; then
  BIN_DIR=target/gpu-bin
  build "$BIN_DIR" || exit 1
elif [ -f "$BIN_DIR/bin.tar.gz" ]; then
  unpacked=$(mktemp -d) && tar -C "$unpacked" -xzf "$BIN_DIR/bin.tar.gz" || exit 1
  BIN_DIR=$unpacked
fi
# Prebuilt test binaries find the fixtures through this (tests/common::fixture).
export CARGO_MANIFEST_DIR="$PWD"

if ! "$PYTHON" -c 'import open_clip' 2>/dev/null && [ -d .whl ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi

# cubecl compiles kernels with NVRTC and the toolkit's headers; cudarc loads libcuda and
# libnvrtc at run time.
if [ -z "${CUDA_PATH:-}" ]; then
  nvcc_path=$(command -v nvcc || ls /usr/local/cuda*/bin/nvcc 2>/dev/null | head -1)
  [ -n "$nvcc_path" ] && export CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")
fi
nvrtc=$(ls "${CUDA_PATH:-/usr/local/cuda}"/lib64/libnvrtc.so* "${CUDA_PATH:-/usr/local/cuda}"/targets/x86_64-linux/lib/libnvrtc.so* 2>/dev/null | head -1)
[ -z "$nvrtc" ] && nvrtc=$(find / -name 'libnvrtc.so*' -not -path '/proc/*' 2>/dev/null | head -1)
[ -n "$nvrtc" ] && export LD_LIBRARY_PATH="$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
echo "# CUDA_PATH=${CUDA_PATH:-unset} nvrtc=${nvrtc:-not found} cores=$(nproc)"
"$PYTHON" -c 'import torch; print("# torch", torch.__version__, torch.cuda.get_device_name(0))'

step() { echo; echo "== $1 ($(date -u +%T))"; }

step "1. CUDA parity (tests/cuda_parity.rs, tolerance 1e-3)"
timeout 150 "$BIN_DIR/cuda_parity" --nocapture --test-threads 1
echo "parity exit: $?"

step "2. served pipeline: hoiclip detect on cuda vs cpu (demo weights, same seed)"
# Each image twice, one per pass: the second shows the warm time for that input size.
images="tests/fixtures/hoiclip/img0.png tests/fixtures/hoiclip/img1.png tests/fixtures/hoiclip/img2.jpg"
images="$images $images"
for device in cpu cuda; do
  for pack in hico-det v-coco; do
    start=$(date +%s%N)
    # shellcheck disable=SC2086
    timeout 150 "$BIN_DIR/hoiclip" detect --device "$device" --pack "$pack" --top-k 100 --max-batch-size 1 \
      --database-url "sqlite:///tmp/gpu-$device.db?mode=rwc" $images >"$OUT/detect-$device-$pack.json" 2>"$OUT/detect-$device-$pack.err"
    echo "$device $pack: exit $? in $(( ($(date +%s%N) - start) / 1000000 )) ms"
    tail -2 "$OUT/detect-$device-$pack.err"
  done
done
for pack in hico-det v-coco; do
  "$PYTHON" benches/gpu_compare.py "$OUT/detect-cpu-$pack.json" "$OUT/detect-cuda-$pack.json"
done

step "3. throughput, full size 800x1200, fp32: burn-cuda vs PyTorch eager (stages: ms per image of each part alone)"
for batch in 1 8 32; do
  torch_json=$(timeout 120 "$PYTHON" benches/detector_torch.py --device cuda --batch "$batch" --iters "$ITERS" | tail -1)
  stages=""
  [ "$batch" -le 8 ] && stages="--stages"
  burn_json=$(timeout 150 "$BIN_DIR/detector" --device cuda --batch "$batch" --iters "$ITERS" $stages | tail -1)
  echo "$torch_json"
  echo "$burn_json"
  "$PYTHON" - "$torch_json" "$burn_json" <<'PY'
import json, sys
try:
    t, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
except ValueError:
    sys.exit("a run gave no result")
print(f"batch {b['batch']}: burn-cuda {b['images_per_s']:.1f} img/s, torch {t['images_per_s']:.1f} img/s, "
      f"ratio {b['images_per_s'] / t['images_per_s']:.2f}x")
PY
done
