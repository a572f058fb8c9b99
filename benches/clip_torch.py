#!/usr/bin/env python3
"""PyTorch reference for benches/clip.rs: the same full-size ViT-B/32 computation
(open_clip, QuickGELU, random weights, fp32, eager) on the same machine and threads.
Text: the 600 HICO-DET prompts padded to 77 as OpenAI's code does, in chunks of 100."""
import json
import os
import sys
import time

import open_clip
import torch

iters = int(sys.argv[sys.argv.index("--iters") + 1]) if "--iters" in sys.argv else 5
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
torch.manual_seed(0)
model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
image = torch.randn(1, 3, 224, 224)
tokens_out = {}
model.visual.ln_post.register_forward_hook(lambda m, i, o: tokens_out.__setitem__("t", o))
with torch.inference_mode():
    model.encode_image(image)
    start = time.perf_counter()
    for _ in range(iters):
        model.encode_image(image)
    image_ms = (time.perf_counter() - start) * 1000 / iters
    here = os.path.dirname(os.path.abspath(__file__))
    hico = json.load(open(os.path.join(here, "..", "models", "vocab", "hico-det.json")))
    prompts = [i["prompt"] for i in hico["interactions"]]
    tok = open_clip.get_tokenizer("ViT-B-32")
    ids = tok(prompts)
    model.encode_text(ids[:8])
    start = time.perf_counter()
    for i in range(0, len(ids), 100):
        model.encode_text(ids[i : i + 100])
    text_ms = (time.perf_counter() - start) * 1000
print(json.dumps({"impl": f"pytorch-{torch.__version__}", "image_ms": image_ms, "text600_ms": text_ms,
                  "threads": torch.get_num_threads()}))
