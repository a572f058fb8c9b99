#!/usr/bin/env python3
"""ONNX Runtime as a CPU user would run the reference: benches/reference_model.py's
full-size detector exported with torch.onnx.export (opset 17, TorchScript exporter, so
node names keep their module paths), run by onnxruntime's CPUExecutionProvider with every
graph optimisation, BENCH_THREADS intra-op threads, one 800x1200 image per batch entry.

Prints one JSON line: ms per image, peak RSS, the largest output difference against torch
on the same inputs, and ONNX Runtime's own per-node profile summed by the stages
benches/detector.rs --stages times (stem, layer1-4, clip-image, transformer+heads) and by
operator type. The export (and torch's outputs, to compare with) runs in a child process and is cached
under target/onnx (EXPORT_DIR), so the peak RSS is ONNX Runtime's alone."""
import json
import os
import resource
import sys
import tempfile
import time

import subprocess

import numpy as np


def arg(flag, default):
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


iters = int(arg("--iters", 3))
batch = int(arg("--batch", 1))
threads = int(os.environ.get("BENCH_THREADS", os.cpu_count()))
here = os.path.dirname(os.path.abspath(__file__))
export_dir = os.environ.get("EXPORT_DIR", os.path.join(here, "..", "target", "onnx"))
os.makedirs(export_dir, exist_ok=True)
path = os.path.join(export_dir, f"hoiclip-full-b{batch}.onnx")

reference = os.path.join(export_dir, f"hoiclip-full-b{batch}.npz")


def export():
    """Builds the reference, exports it and saves its inputs and outputs (child process)."""
    import torch

    sys.path.insert(0, here)
    import reference_model

    torch.set_num_threads(threads)
    model = reference_model.full_size("cpu")
    x, mask, clip_input = reference_model.inputs(batch)
    with torch.inference_mode():
        out = model(x, mask, clip_input)
    out = list(out.values()) if isinstance(out, dict) else list(out)
    names = [f"out{i}" for i in range(len(out))]
    torch.onnx.export(model, (x, mask, clip_input), path, opset_version=17, dynamo=False,
                      input_names=["image", "mask", "clip_input"], output_names=names)
    np.savez(reference, image=x.numpy(), mask=mask.numpy(), clip_input=clip_input.numpy(),
             **{n: o.numpy() for n, o in zip(names, out)})


if "--export" in sys.argv:
    export()
    sys.exit(0)
if not (os.path.exists(path) and os.path.exists(reference)):
    subprocess.run([sys.executable, __file__, "--export", "--batch", str(batch)], check=True)

import onnxruntime as ort  # noqa: E402

saved = np.load(reference)
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
# The exporter drops inputs the graph does not read (the mask of an unpadded image).
feed = {i.name: saved[i.name] for i in session.get_inputs()}
got = session.run(None, feed)
diff = max(float(np.abs(g.astype(np.float64) - saved[o.name].astype(np.float64)).max())
           for g, o in zip(got, session.get_outputs()))
start = time.perf_counter()
for _ in range(iters):
    session.run(None, feed)
ms = (time.perf_counter() - start) * 1000 / (iters * batch)

# One more run with ONNX Runtime's profiler on (its own session, so the timing above is
# unprofiled), node times summed by stage and by operator type.
options.enable_profiling = True
options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
profiled = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
profiled.run(None, feed)
profiled.run(None, feed)
trace = json.load(open(profiled.end_profiling()))
runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
last_start = runs[-1]["ts"] if runs else 0


def stage(node):
    for s in ["layer1", "layer2", "layer3", "layer4"]:
        if f"/body/{s}/" in node:
            return s
    if "/body/" in node:
        return "stem"
    if "clip_model/visual" in node or "/visual/" in node:
        return "clip-image"
    return "transformer+heads"


stages, ops = {}, {}
for e in trace:
    if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < last_start:
        continue
    node = e["name"][: -len("_kernel_time")]
    ms_node = e["dur"] / 1000 / batch
    stages[stage(node)] = stages.get(stage(node), 0.0) + ms_node
    op = e.get("args", {}).get("op_name", "?")
    ops[op] = ops.get(op, 0.0) + ms_node

print(json.dumps({
    "impl": f"onnxruntime-{ort.__version__}-cpu", "batch": batch, "ms_per_image": ms,
    "images_per_s": 1000 / ms, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "threads": threads, "max_abs_diff_vs_torch": diff,
    "profile_ms_per_image": {"stages": stages, "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1]))},
}))
