#!/usr/bin/env bash
# The CPU anchor: the full-size detector (random weights, 800x1200, f32) in hoiclip
# (default CPU backend), ONNX Runtime (the PyTorch reference exported to ONNX, every graph
# optimisation) and PyTorch eager, same machine, same threads, same run, batch 1 and 4
# (BATCHES); then each stage's time beside ONNX Runtime's own per-node profile summed by
# the same stages, and ONNX Runtime's time by operator type. Needs the optional Python
# environment of the references (PYTHON=.venv-ref/bin/python: torch, open_clip_torch,
# onnx, onnxruntime); CI does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv-ref/bin/python}"
ITERS="${ITERS:-3}"
BATCHES="${BATCHES:-1 4}"
export BENCH_THREADS="${BENCH_THREADS:-$(nproc)}"
export RAYON_NUM_THREADS="${BENCH_THREADS}"
cpu=$(lscpu | sed -n 's/^Model name: *//p')
family=$(lscpu | sed -n 's/^CPU family: *//p')
echo "# $(date -u +%F) $(nproc) cores, ${cpu} (family ${family}), threads=${BENCH_THREADS}, iters=${ITERS}"
cargo bench --quiet --bench detector --no-run
# Every raw line is kept (target/onnx/last-run.jsonl) to read again after the run.
mkdir -p target/onnx
lines=target/onnx/last-run.jsonl
: > "$lines"
for batch in $BATCHES; do
  # Alternating, so a slow spell of the machine does not land on one side only.
  echo "ort $("$PYTHON" benches/detector_onnx.py --iters "$ITERS" --batch "$batch")" >> "$lines"
  echo "burn $(cargo bench --quiet --bench detector -- --iters "$ITERS" --batch "$batch" 2>/dev/null | tail -1)" >> "$lines"
  echo "torch $("$PYTHON" benches/detector_torch.py --iters "$ITERS" --batch "$batch")" >> "$lines"
  cargo bench --quiet --bench detector -- --iters "$ITERS" --batch "$batch" --stages 2> >(sed 's/^/stage /' >> "$lines") > /dev/null
done
sleep 1
"$PYTHON" - "$lines" <<'PY'
import json, sys
runs, stages = {}, {}
for line in open(sys.argv[1]):
    side, _, rest = line.partition(" ")
    if not rest.startswith("{"):
        continue
    r = json.loads(rest)
    if side == "stage":
        if "stage" in r:  # not the bench's "cold" line
            stages[(r["batch"], r["stage"])] = r["ms_per_image"]
    elif "ms_per_image" in r and "cold" not in r:
        runs[(side, r["batch"])] = r
order = ["stem", "layer1", "layer2", "layer3", "layer4", "clip-image", "transformer+heads"]
for b in sorted({k[1] for k in runs}):
    o, h, t = runs.get(("ort", b)), runs.get(("burn", b)), runs.get(("torch", b))
    if not (o and h):
        continue
    print(f"\nbatch {b}: ms per image (peak RSS MB)")
    print("| | ONNX Runtime | hoiclip | PyTorch | hoiclip / ORT |")
    print("|---|---:|---:|---:|---:|")
    tt = f"{t['ms_per_image']:.0f} ({t['peak_rss_mb']:.0f})" if t else "-"
    print(f"| forward | {o['ms_per_image']:.0f} ({o['peak_rss_mb']:.0f}) | "
          f"{h['ms_per_image']:.0f} ({h['peak_rss_mb']:.0f}) | {tt} | "
          f"{h['ms_per_image'] / o['ms_per_image']:.2f} |")
    print(f"(ONNX Runtime's outputs within {o['max_abs_diff_vs_torch']:.1e} of torch's)")
    prof = o["profile_ms_per_image"]
    if (b, "forward") in stages:
        stages[(b, "transformer+heads")] = (stages[(b, "forward")] - stages[(b, "backbone")]
                                           - stages[(b, "clip-image")])
    print("\n| stage | ONNX Runtime (profile) | hoiclip (--stages) | hoiclip / ORT |")
    print("|---|---:|---:|---:|")
    for s in order:
        p, u = prof["stages"].get(s), stages.get((b, s))
        if p is None or u is None:
            continue
        print(f"| {s} | {p:.1f} | {u:.1f} | {u / p:.2f} |")
    total = sum(prof["stages"].values())
    print(f"| sum of nodes | {total:.1f} | | |")
    print("\nONNX Runtime by operator: " + ", ".join(
        f"{op} {ms:.1f}" for op, ms in list(prof["ops"].items())[:10]))
PY
