"""Do a detector's boxes land on objects more than boxes placed blind would? From a run's `predictions.jsonl` (one
record per image: its predicted `boxes` and its `references`), each predicted box's best IoU with any reference of
its own image, beside the same box against the references of another image of the split (a random other image,
seeded): the boxes' sizes and layout kept, the image's content taken away. Prints one JSON object per file.

    python -m scripts.box_landing RUN/predictions.jsonl [MORE.jsonl ...]
"""

import json
import random
import sys

import numpy as np
import torch
from torchvision.ops import box_iou


def best_ious(boxes: list[list[float]], references: list[list[float]]) -> np.ndarray:
    """Each box's highest IoU with any of `references` (0 without references); boxes are [x1, y1, x2, y2]."""
    if not boxes:
        return np.zeros(0)
    if not references:
        return np.zeros(len(boxes))
    ious = box_iou(torch.tensor(boxes, dtype=torch.float64), torch.tensor(references, dtype=torch.float64))
    return ious.max(dim=1).values.numpy()


def landing(records: list[dict], seed: int = 0) -> dict:
    """Mean best IoU and the share at IoU >= 0.5, on each box's own image and on another image's references."""
    rng = random.Random(seed)
    own, other = [], []
    for index, record in enumerate(records):
        boxes = [item["box"] for item in record["boxes"]]
        partner = rng.choice([k for k in range(len(records)) if k != index]) if len(records) > 1 else index
        own.append(best_ious(boxes, [item["box"] for item in record["references"]]))
        other.append(best_ious(boxes, [item["box"] for item in records[partner]["references"]]))
    own_all, other_all = np.concatenate(own or [np.zeros(0)]), np.concatenate(other or [np.zeros(0)])

    def summary(values: np.ndarray) -> dict:
        if not len(values):
            return {"mean_best_iou": None, "share_iou_50": None}
        return {
            "mean_best_iou": round(float(values.mean()), 4),
            "share_iou_50": round(float((values >= 0.5).mean()), 4),
        }

    return {"boxes": int(len(own_all)), "own_image": summary(own_all), "another_image": summary(other_all)}


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        raise SystemExit("usage: python -m scripts.box_landing RUN/predictions.jsonl [MORE.jsonl ...]")
    for path in paths:
        with open(path) as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        print(json.dumps({"predictions": path, **landing(records)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
