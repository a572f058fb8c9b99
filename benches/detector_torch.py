#!/usr/bin/env python3
"""PyTorch reference for benches/detector.rs: the full-size HOICLIP forward (ResNet-50,
6-layer encoder, 3+3 decoder layers, CLIP ViT-B/32, 600 classes) with random weights,
fp32, eager, on one 800x1200 image, same machine and threads. The model is
benches/reference_model.py's. Prints ms per image and peak RSS."""
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_model  # noqa: E402

def arg(flag, default):
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


iters = int(arg("--iters", 3))
batch = int(arg("--batch", 1))
device = torch.device(arg("--device", "cpu"))
# Plain f32 by default; --tf32 lets convolutions and matmuls use TF32 tensor cores (what
# PyTorch does for convolutions unless told otherwise, and what Burn's CUDA backend does).
tf32 = "--tf32" in sys.argv
torch.backends.cudnn.allow_tf32 = tf32
torch.backends.cuda.matmul.allow_tf32 = tf32
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
model = reference_model.full_size(device)
x, mask, clip_input = reference_model.inputs(batch, device)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


with torch.inference_mode():
    model(x, mask, clip_input)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        model(x, mask, clip_input)
    sync()
    ms = (time.perf_counter() - start) * 1000 / (iters * batch)
if "--stages" in sys.argv:
    # The stages benches/detector.rs --stages times, under the same names, each after a
    # warm-up, one JSON line each on stderr.
    body = model.backbone[0].body

    def stem(t):
        return body.maxpool(body.relu(body.bn1(body.conv1(t))))

    def timed(name, f, inputs):
        with torch.inference_mode():
            f(inputs[0])
            sync()
            start = time.perf_counter()
            for t in inputs:
                f(t)
            sync()
        ms = (time.perf_counter() - start) * 1000 / (len(inputs) * batch)
        print(json.dumps({"stage": name, "ms_per_image": ms, "batch": batch}), file=sys.stderr)

    with torch.inference_mode():
        xs = [torch.randn(batch, 3, 800, 1200, device=device) for _ in range(iters)]
        timed("stem", stem, xs)
        ys = [stem(t) for t in xs]
        for name in ["layer1", "layer2", "layer3", "layer4"]:
            layer = getattr(body, name)
            timed(name, layer, ys)
            ys = [layer(t) for t in ys]
        timed("backbone", lambda t: model.backbone[0](t, mask), xs)
        clips = [torch.randn(batch, 3, 224, 224, device=device) for _ in range(iters)]
        timed("clip-image", model.clip_image, clips)
        timed("forward", lambda t: model(t, mask, clip_input), xs)

rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
print(json.dumps({"impl": f"pytorch-{torch.__version__}-{device.type}" + ("-tf32" if tf32 else ""),
                  "batch": batch, "ms_per_image": ms, "images_per_s": 1000 / ms, "peak_rss_mb": rss_mb,
                  "peak_gpu_allocated_mb": gpu_mb, "threads": torch.get_num_threads()}))
