#!/usr/bin/env bash
# The GPU check (issues 6, 26, 27) as one script for a machine with an NVIDIA GPU, in
# order of value, each step skipped once the time budget is spent (BUDGET seconds, default
# 480, so one call of the device tool holds it with start-up to spare):
#   1. every convolution shape of the full-size detector at batch 8 through every GPU
#      convolution path (Burn's direct kernel, gemm, implicit-gemm): median ms and the
#      largest difference from the direct kernel (benches/conv_paths.rs);
#   2. the whole detector, 800x1200, fp32, at batch 1 and 8 for each path (--stages at
#      batch 8), next to PyTorch eager with TF32 off and on in the same run; batch 32 for
#      the two tensor-core paths and PyTorch; peak GPU memory of each run (nvidia-smi);
#   3. cold start: the first forward pass, each new input size, each new batch size;
#   4. the HOICLIP parity fixture on CUDA for each path (tests/cuda_parity.rs, TF32
#      tolerances from tests/fixtures/tf32_sensitivity.py);
#   5. the served pipeline (`hoiclip detect`: vocabulary, engine, classifiers from the CLIP
#      text tower) on CUDA against the same binary on the CPU, same demo weights;
#   6. a served full-size model's cold start with an empty and then a filled kernel cache
#      (time to ready with every bucketed shape warmed, the slowest of 50 requests of
#      random sizes after ready against their median), and 50 images at once under the
#      `same-size` and `pad` batch policies (benches/serve_cold.rs).
# Every result is a JSON line in $OUT/results.jsonl; $OUT/summary.md has the tables to
# paste into BENCHMARKS.md (benches/gpu_summary.py).
#
# Two ways to run it:
#   benches/gpu.sh                      # on a GPU machine with a Rust toolchain: builds, then runs
#   benches/gpu.sh --prepare            # here: builds the five binaries into .gpu/ and the
#                                       # PyTorch reference's wheels into .whl/ (both git-ignored)
#   BIN_DIR=.gpu OUT=$OUT benches/gpu.sh   # there (no toolchain, no network): runs what was carried
# Environment: PYTHON (python3), ITERS (5), OUT (where logs and outputs go; default
# target/gpu), BUDGET (seconds, 480), STEPS (which steps, in order; default
# "1 2 4 6 3 2b 5": the convolution sweep, throughput, parity, the served cold start
# first).
# Steps do not stop the script when they fail: each prints its own verdict.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
ITERS="${ITERS:-5}"
OUT="${OUT:-target/gpu}"
BUDGET="${BUDGET:-480}"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
STARTED=$(date +%s)

# The five binaries, built with --features cuda: the CUDA parity test, the detector,
# convolution and cold-start benches, and the server/CLI.
build() {
  cargo build --release --features cuda --test cuda_parity --bench detector --bench conv_paths \
    --bench serve_cold --bin hoiclip --message-format=json-render-diagnostics |
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
  # Compressed with xz (half of gzip's size: about 33 MB for the five), they fit the
  # device tool's 64 MiB with the working tree.
  mkdir -p .gpu && tar -C target/gpu-bin -cf - . | xz -T0 -9 >.gpu/bin.tar.xz
  ls -la .gpu
  # open_clip is not on the GPU image; its other needs (torch, timm, ...) are.
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl open_clip_torch ftfy wcwidth
  exit
fi

: >"$RESULTS"
if [ -z "${BIN_DIR:-}" ]; then
  BIN_DIR=target/gpu-bin
  build "$BIN_DIR" || exit 1
elif [ -f "$BIN_DIR/bin.tar.xz" ]; then
  unpacked=$(mktemp -d) && xz -dc "$BIN_DIR/bin.tar.xz" | tar -C "$unpacked" -xf - || exit 1
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

gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
echo "# $(date -u +%F) $gpu"
echo "# CUDA_PATH=${CUDA_PATH:-unset} nvrtc=${nvrtc:-not found} cores=$(nproc)"
torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))')
echo "# torch $torch_version"
"$PYTHON" - "$gpu" "$torch_version" >>"$RESULTS" <<'PY'
import json, sys, datetime
print(json.dumps({"machine": sys.argv[1], "torch": sys.argv[2], "date": datetime.date.today().isoformat()}))
PY

# Steps start only while the budget lasts; each has its own timeout within what is left.
left() { echo $((BUDGET - ($(date +%s) - STARTED))); }
step() {
  echo
  echo "== $1 ($(date -u +%T), $(left) s of the budget left)"
  if [ "$(left)" -lt "${2:-30}" ]; then
    echo "skipped: the time budget is spent"
    echo "{\"skipped\": \"$1\"}" >>"$RESULTS"
    return 1
  fi
}
# Peak GPU memory while a command runs (nvidia-smi sampled every 100 ms), as a JSON line.
with_memory() {
  local label=$1
  shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/mem.txt" 2>/dev/null &
  local sampler=$!
  "$@"
  local rc=$?
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  local peak
  peak=$(sort -n "$OUT/mem.txt" | tail -1)
  echo "{\"memory\": \"$label\", \"peak_gpu_used_mb\": ${peak:-null}}" >>"$RESULTS"
  return $rc
}
# A bench's JSON lines (stdout and stderr) into the results, the rest to a log.
keep_json() { grep -h '^{' "$@" >>"$RESULTS"; }
limit() { t=$(left); [ "$t" -gt "$1" ] && t=$1; [ "$t" -lt 10 ] && t=10; echo "$t"; }

run_1() {
  step "1. convolution paths, every shape at batch 8 (benches/conv_paths.rs)" 60 || return
  timeout "$(limit 150)" "$BIN_DIR/conv_paths" --device cuda --batch 8 --iters "$ITERS" \
    >"$OUT/conv.json" 2>"$OUT/conv.err"
  echo "exit $?"
  keep_json "$OUT/conv.json"
  grep summary "$OUT/conv.json"
}

detector() { # path batch [--stages]
  local path=$1 batch=$2
  shift 2
  with_memory "burn-cuda-$path batch $batch" timeout "$(limit 90)" "$BIN_DIR/detector" --device cuda \
    --gpu-conv "$path" --batch "$batch" --iters "$ITERS" "$@" \
    >"$OUT/det-$path-$batch.json" 2>"$OUT/det-$path-$batch.err"
  echo "burn-cuda $path batch $batch: exit $? $(tail -1 "$OUT/det-$path-$batch.json")"
  keep_json "$OUT/det-$path-$batch.json" "$OUT/det-$path-$batch.err"
}
torch_run() { # batch [--tf32]
  local batch=$1
  shift
  local name="torch-$batch${1:+-tf32}"
  with_memory "pytorch batch $batch${1:+ tf32}" timeout "$(limit 90)" "$PYTHON" benches/detector_torch.py \
    --device cuda --batch "$batch" --iters "$ITERS" "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
  echo "pytorch batch $batch ${1:-}: exit $? $(tail -1 "$OUT/$name.json")"
  keep_json "$OUT/$name.json"
}
run_2() {
  for batch in 1 8; do
    if step "2. throughput at batch $batch, 800x1200: every path and PyTorch (TF32 off, on)" 40; then
      stages=""
      [ "$batch" = 8 ] && stages="--stages"
      for path in gemm implicit-gemm; do detector "$path" "$batch" $stages; done
      torch_run "$batch"
      torch_run "$batch" --tf32
      detector direct "$batch"
    fi
  done
}

run_3() {
  step "3. cold start: first forward, new sizes, new batch sizes (gemm)" 40 || return
  timeout "$(limit 120)" "$BIN_DIR/detector" --device cuda --gpu-conv gemm --batch 1 --iters 1 --cold \
    >"$OUT/cold.json" 2>"$OUT/cold.err"
  echo "exit $?"
  keep_json "$OUT/cold.err"
  grep cold "$OUT/cold.err"
}

run_4() {
  step "4. CUDA parity, every convolution path (tests/cuda_parity.rs)" 60 || return
  timeout "$(limit 200)" "$BIN_DIR/cuda_parity" --nocapture --test-threads 1 >"$OUT/parity.log" 2>&1
  rc=$?
  grep -E "over tolerance|relative error|test result" "$OUT/parity.log" | tail -30
  echo "{\"parity_exit\": $rc}" >>"$RESULTS"
}

run_2b() {
  step "2b. throughput at batch 32: the tensor-core paths and PyTorch" 60 || return
  for path in gemm implicit-gemm; do detector "$path" 32; done
  torch_run 32
  torch_run 32 --tf32
}

run_5() {
  step "5. served pipeline: hoiclip detect on cuda vs cpu (demo weights, same seed)" 60 || return
  # Each image twice, one per pass: the second shows the warm time for that input size.
  images="tests/fixtures/hoiclip/img0.png tests/fixtures/hoiclip/img1.png tests/fixtures/hoiclip/img2.jpg"
  images="$images $images"
  for device in cpu cuda; do
    for pack in hico-det v-coco; do
      start=$(date +%s%N)
      # shellcheck disable=SC2086
      timeout "$(limit 100)" "$BIN_DIR/hoiclip" detect --device "$device" --pack "$pack" --top-k 100 --max-batch-size 1 \
        --database-url "sqlite:///tmp/gpu-$device.db?mode=rwc" $images >"$OUT/detect-$device-$pack.json" 2>"$OUT/detect-$device-$pack.err"
      echo "$device $pack: exit $? in $(( ($(date +%s%N) - start) / 1000000 )) ms"
      tail -2 "$OUT/detect-$device-$pack.err"
    done
  done
  for pack in hico-det v-coco; do
    "$PYTHON" benches/gpu_compare.py "$OUT/detect-cpu-$pack.json" "$OUT/detect-cuda-$pack.json"
  done
}

run_6() {
  step "6. served cold start: empty and filled kernel cache, then 50 images at once per batch policy" 120 || return
  cache=$(mktemp -d)
  export CUDA_CACHE_PATH="$cache/nvidia"
  for round in empty filled; do
    timeout "$(limit 240)" "$BIN_DIR/serve_cold" --full --device cuda --warm-up all --max-batch-size 4 \
      --kernel-cache "$cache/cubecl" --images 50 >"$OUT/serve-$round.json" 2>"$OUT/serve-$round.err"
    echo "kernel cache $round: exit $? $(tail -1 "$OUT/serve-$round.json")"
    keep_json "$OUT/serve-$round.json"
  done
  for policy in same-size pad; do
    timeout "$(limit 150)" "$BIN_DIR/serve_cold" --full --device cuda --warm-up all --max-batch-size 4 \
      --kernel-cache "$cache/cubecl" --images 50 --burst --policy "$policy" \
      >"$OUT/serve-$policy.json" 2>"$OUT/serve-$policy.err"
    echo "burst $policy: exit $? $(tail -1 "$OUT/serve-$policy.json")"
    keep_json "$OUT/serve-$policy.json"
  done
  unset CUDA_CACHE_PATH
}

# The steps, most valuable first; STEPS="4 6" (say) runs only those, in that order.
for s in ${STEPS:-1 2 4 6 3 2b 5}; do "run_$s"; done

echo
"$PYTHON" benches/gpu_summary.py "$RESULTS" | tee "$OUT/summary.md"
echo "total $(( $(date +%s) - STARTED )) s"
