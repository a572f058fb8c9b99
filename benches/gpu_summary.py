#!/usr/bin/env python3
"""Tables for BENCHMARKS.md from benches/gpu.sh's results.jsonl (one JSON object a line).

    python3 benches/gpu_summary.py target/gpu/results.jsonl > summary.md
"""
import json
import sys
from collections import defaultdict


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def main():
    rows = load(sys.argv[1])
    out = []
    machine = next((r for r in rows if "machine" in r), {})
    out.append(f"Machine: {machine.get('machine', '?')}; PyTorch {machine.get('torch', '?')}; "
               f"{machine.get('date', '?')}.\n")

    conv = [r for r in rows if "shape" in r and "path" in r]
    if conv:
        paths = list(dict.fromkeys(r["path"] for r in conv))
        batch = conv[0]["batch"]
        out.append(f"**Convolutions, batch {batch}** (median ms per call; largest difference from the "
                   "first path relative to its output's largest value):\n")
        out.append("| shape | count | " + " | ".join(f"{p} ms" for p in paths) + " | " +
                   " | ".join(f"{p} error" for p in paths[1:]) + " |")
        out.append("|---|---:|" + "---:|" * (2 * len(paths) - 1))
        by_shape = defaultdict(dict)
        for r in conv:
            by_shape[(r["shape"], r["count"])][r["path"]] = r
        for (shape, count), cells in by_shape.items():
            times = " | ".join(fmt(cells.get(p, {}).get("median_ms"), 2) for p in paths)
            errors = " | ".join(f"{cells[p]['max_rel_error']:.1e}" if p in cells else "-" for p in paths[1:])
            out.append(f"| {shape} | {count} | {times} | {errors} |")
        for r in rows:
            if r.get("summary"):
                out.append(f"\nAll convolutions of one forward pass, `{r['path']}`: "
                           f"{r['ms_per_image']:.1f} ms per image at batch {r['batch']} "
                           f"(largest error {r['max_rel_error']:.1e}).")
        out.append("")

    runs = [r for r in rows if "images_per_s" in r]
    memory = {r["memory"]: r.get("peak_gpu_used_mb") for r in rows if "memory" in r}
    if runs:
        out.append("**Whole detector, 800x1200, fp32** (img/s; ratios against PyTorch eager in the same "
                   "run, TF32 off / on; peak GPU memory from nvidia-smi):\n")
        out.append("| batch | implementation | img/s | vs torch fp32 | vs torch tf32 | peak GPU MB |")
        out.append("|---:|---|---:|---:|---:|---:|")
        for batch in sorted({r["batch"] for r in runs}):
            at = [r for r in runs if r["batch"] == batch]
            torch32 = next((r for r in at if r["impl"].startswith("pytorch") and not r["impl"].endswith("tf32")), None)
            torchtf = next((r for r in at if r["impl"].startswith("pytorch") and r["impl"].endswith("tf32")), None)
            for r in at:
                name = r["impl"]
                label = (f"pytorch batch {batch}" + (" tf32" if name.endswith("tf32") else "")
                         if name.startswith("pytorch") else f"{name} batch {batch}")
                ratio = lambda t: fmt(r["images_per_s"] / t["images_per_s"], 2) + "x" if t else "-"
                out.append(f"| {batch} | {name} | {r['images_per_s']:.1f} | {ratio(torch32)} | "
                           f"{ratio(torchtf)} | {fmt(memory.get(label), 0)} |")
        out.append("")

    stages = [r for r in rows if "stage" in r and "impl" in r]
    if stages:
        impls = list(dict.fromkeys(r["impl"] for r in stages))
        out.append("**Stages** (ms per image, each part alone):\n")
        out.append("| stage | batch | " + " | ".join(impls) + " |")
        out.append("|---|---:|" + "---:|" * len(impls))
        cells = defaultdict(dict)
        for r in stages:
            cells[(r["stage"], r["batch"])][r["impl"]] = r["ms_per_image"]
        for (stage, batch), by_impl in cells.items():
            out.append(f"| {stage} | {batch} | " + " | ".join(fmt(by_impl.get(i), 2) for i in impls) + " |")
        out.append("")

    cold = [r for r in rows if "cold" in r]
    if cold:
        out.append("**Cold start** (ms; first call at a shape, then a second at the same shape):\n")
        out.append("| implementation | event | batch | size | first | second |")
        out.append("|---|---|---:|---|---:|---:|")
        for r in cold:
            out.append(f"| {r.get('impl', '?')} | {r['cold']} | {r['batch']} | {r['size'][0]}x{r['size'][1]} | "
                       f"{fmt(r.get('first_ms'), 0)} | {fmt(r.get('second_ms'), 0)} |")
        out.append("")

    served = [r for r in rows if "serve_cold" in r]
    if served:
        out.append("**Served cold start and first requests** (full-size model; 50 images of random sizes "
                   "one at a time after ready; with a burst, the same 50 at once):\n")
        out.append("| policy | kernel cache | warm-up shapes | s to ready | median ms | slowest ms | "
                   "slowest / median | burst img/s | burst passes |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        seen_cache = set()
        for r in served:
            cache = r.get("kernel_cache") or "-"
            state = "filled" if cache in seen_cache else "empty"
            seen_cache.add(cache)
            burst = r.get("burst") or {}
            out.append(f"| {r.get('policy', '?')} | {state} | {r['warm_up_shapes']} | {r['seconds_to_ready']:.1f} | "
                       f"{r['median_ms']:.1f} | {r['slowest_ms']:.1f} | {r['slowest_over_median']:.2f} | "
                       f"{fmt(burst.get('images_per_s'))} | {burst.get('passes', '-')} |")
        out.append("")

    for r in rows:
        if "parity_exit" in r:
            out.append(f"CUDA parity (tests/cuda_parity.rs): {'passed' if r['parity_exit'] == 0 else 'FAILED'}.")
        if "skipped" in r:
            out.append(f"Skipped (time budget): {r['skipped']}.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
