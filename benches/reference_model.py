"""The full-size PyTorch reference detector that the CPU and GPU benchmarks time (ResNet-50,
6-layer encoder, 3+3 decoder layers, CLIP ViT-B/32, 600 classes), with seeded random
weights: tests/fixtures/make_hoiclip.py's from-the-spec model, cross-checked there against
the official code. One definition for benches/detector_torch.py and
benches/detector_onnx.py, so both time the same model."""
import json
import os
import sys

import open_clip
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "fixtures"))
import make_hoiclip  # noqa: E402


def full_size(device="cpu"):
    """The model in eval mode on `device`, weights from seed 0."""
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    hico = json.load(open(os.path.join(here, "..", "models", "vocab", "hico-det.json")))
    config = {
        "clip": {"embed_dim": 512, "vision_width": 768},
        "backbone_layers": [3, 4, 6, 3], "backbone_base_width": 64,
        "hidden_dim": 256, "nheads": 8, "enc_layers": 6, "dec_layers": 3, "inter_dec_layers": 3,
        "dim_feedforward": 2048, "num_queries": 64, "num_hoi_classes": 600,
        "num_verb_classes": 117, "num_obj_classes": 80, "verb_weight": 0.5,
        "hoi_verb": [i["verb"] for i in hico["interactions"]],
    }
    return make_hoiclip.HOICLIP(config, clip).eval().to(device)


def inputs(batch, device="cpu"):
    """One 800x1200 image per batch entry (no padding) and its 224x224 CLIP crop."""
    x = torch.randn(batch, 3, 800, 1200, device=device)
    mask = torch.zeros(batch, 800, 1200, dtype=torch.bool, device=device)
    clip_input = torch.randn(batch, 3, 224, 224, device=device)
    return x, mask, clip_input
