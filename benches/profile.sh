#!/usr/bin/env bash
# Where the full-size detector's time goes, Burn (default CPU backend) against the PyTorch
# reference, stage by stage, same machine, same threads, same run: the ResNet-50 stem and
# its four stages, the whole backbone, the CLIP image tower and the whole forward; the
# transformer (encoder, both decoders, CLIP fusion) plus heads is what the forward spends
# beyond backbone and CLIP tower. Batch 1 and 4 (BATCHES). Needs torch + open_clip_torch +
# pillow<13 (PYTHON=.venv-ref/bin/python by default).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv-ref/bin/python}"
ITERS="${ITERS:-2}"
BATCHES="${BATCHES:-1 4}"
export BENCH_THREADS="${BENCH_THREADS:-$(nproc)}"
export RAYON_NUM_THREADS="${BENCH_THREADS}"
echo "# $(date -u +%F) $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), threads=${BENCH_THREADS}, iters=${ITERS}"
cargo bench --quiet --bench detector --no-run
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for batch in $BATCHES; do
  "$PYTHON" benches/detector_torch.py --iters "$ITERS" --batch "$batch" --stages 2> >(sed 's/^/torch /' >> "$lines") > /dev/null
  cargo bench --quiet --bench detector -- --iters "$ITERS" --batch "$batch" --stages 2> >(sed 's/^/burn /' >> "$lines") > /dev/null
done
sleep 1
"$PYTHON" - "$lines" <<'PY'
import json, sys
ms = {}
for line in open(sys.argv[1]):
    side, _, rest = line.partition(" ")
    if not rest.startswith("{"):
        continue
    r = json.loads(rest)
    ms[(side, r["batch"], r["stage"])] = r["ms_per_image"]
order = ["stem", "layer1", "layer2", "layer3", "layer4", "backbone", "clip-image",
         "transformer+heads", "forward"]
for side in ("torch", "burn"):
    for b in {k[1] for k in ms}:
        try:
            ms[(side, b, "transformer+heads")] = (ms[(side, b, "forward")]
                - ms[(side, b, "backbone")] - ms[(side, b, "clip-image")])
        except KeyError:
            pass
for b in sorted({k[1] for k in ms}):
    print(f"\nbatch {b}: ms per image")
    print("| stage | PyTorch | Burn | Burn / PyTorch |")
    print("|---|---:|---:|---:|")
    for stage in order:
        t, u = ms.get(("torch", b, stage)), ms.get(("burn", b, stage))
        if t is None or u is None:
            continue
        print(f"| {stage} | {t:.1f} | {u:.1f} | {u / t:.2f} |")
PY
