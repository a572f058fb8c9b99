#!/usr/bin/env python3
"""Compares two `hoiclip detect` outputs of the same images (one JSON object per line),
e.g. --device cpu against --device cuda: for each image, how many triplets pair up by
(interaction id, human box, object box) within TOL, and the largest score and box
differences among the pairs. Exit 1 if any triplet has no partner."""
import json
import sys

TOL = 1e-2  # pixels and score units; pairs are matched loosely, then the diffs are printed


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def close(a, b):
    return a["interaction_id"] == b["interaction_id"] and all(
        abs(x - y) <= max(TOL, 1e-3 * abs(x))
        for part in ("human", "object")
        for x, y in zip(a[part]["box"], b[part]["box"])
    )


def main():
    left, right = load(sys.argv[1]), load(sys.argv[2])
    if len(left) != len(right) or not left:
        print(f"{sys.argv[1]}: {len(left)} images, {sys.argv[2]}: {len(right)}")
        sys.exit(1)
    unpaired = 0
    for a, b in zip(left, right):
        score_diff, box_diff, paired = 0.0, 0.0, 0
        rest = list(b["triplets"])
        for t in a["triplets"]:
            match = next((u for u in rest if close(t, u)), None)
            if match is None:
                continue
            rest.remove(match)
            paired += 1
            score_diff = max(score_diff, abs(t["score"] - match["score"]))
            for part in ("human", "object"):
                box_diff = max(box_diff, *(abs(x - y) for x, y in zip(t[part]["box"], match[part]["box"])))
        unpaired += len(a["triplets"]) - paired
        same_order = [t["interaction_id"] for t in a["triplets"][:10]] == [
            t["interaction_id"] for t in b["triplets"][:10]
        ]
        print(
            f"{a['image']}: {paired}/{len(a['triplets'])} triplets paired, max score diff {score_diff:.2e}, "
            f"max box diff {box_diff:.2e} px, top-10 order {'same' if same_order else 'DIFFERS'}, "
            f"inference {a['timings']['inference_ms']:.0f} ms vs {b['timings']['inference_ms']:.0f} ms"
        )
    sys.exit(1 if unpaired else 0)


if __name__ == "__main__":
    main()
