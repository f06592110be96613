"""Do a model's image tokens say where the objects are? A linear probe on the tokens the language model reads.

Each image of a boxes folder is cut into the grid of tiles inference answers (`tasks.tiling.tile_boxes`); each tile
goes through the model's image path (`get_image_features`: vision tower, projector and, with TSN, the segment
encoder) and gives one token per cell of a g x g grid (g = 8 at 128 px with 16-px patches). A cell is positive when
its centre lies inside a reference box (clipped to the tile). Logistic regressions fitted on the `train` split's
cells, scored on `--split` (average precision and ROC AUC per cell), with three inputs:

- `position`: only which cell it is (one-hot): the boxes' layout prior, what a model blind to the image can do;
- `global`: the tile's mean token and the cell's position: what the tile holds, not where;
- `local`: the cell's own token and its position: where, if the tokens keep it.

`local` well above `global` means the tokens locate the objects. To write a box the decoder must also read where a
token lies from the token itself (its order reaches the decoder only through relative attention), so a fourth
probe (`where`) reads each token's row and column (multinomial logistic regressions, accuracy; chance 1 / g).
Prints one JSON object per model.

    python -m scripts.probe_image_tokens DATA_DIR MODEL [MODEL ...] [--tile_size 256] [--split test]
"""

import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from command_line import parse_command_line
from dataset_builder.detection import load_detection
from images import to_rgb
from inference_core import load_model
from tasks.tiling import default_overlap, tile_boxes

INPUTS = ("position", "global", "local")


@dataclass
class ProbeArguments:
    dataset_dir: str = field(metadata={"help": "A COCO / PaliGemma JSONL / YOLO boxes folder with a train split."})
    models: list[str] = field(default_factory=list, metadata={"help": "Model folders, each probed on the same tiles."})
    split: str = field(default="test", metadata={"help": "The split the probes are scored on (fitted on train)."})
    tile_size: int = field(default=256, metadata={"help": "Tiles of this many source pixels (0: whole images)."})
    max_train_images: int | None = field(default=None, metadata={"help": "Fit on the train split's first N images."})
    batch_size: int = field(default=32, metadata={"help": "Tiles per forward pass."})


def split_tiles(rows, tile_size: int) -> list[tuple[object, tuple, list]]:
    """(image, tile, boxes in the tile's pixels) for every tile of every row; boxes are clipped, not dropped."""
    tiles = []
    for row in rows:
        image = to_rgb(row["image"])
        width, height = image.size
        grid = (
            tile_boxes(width, height, tile_size, default_overlap(tile_size)) if tile_size else [(0, 0, width, height)]
        )
        boxes = [(x, y, x + w, y + h) for x, y, w, h in row["objects"]["bbox"]]
        for tile in grid:
            x0, y0, x1, y1 = tile
            inside = [
                (max(a, x0) - x0, max(b, y0) - y0, min(c, x1) - x0, min(d, y1) - y0)
                for a, b, c, d in boxes
                if min(c, x1) > max(a, x0) and min(d, y1) > max(b, y0)
            ]
            tiles.append((image, tile, inside))
    return tiles


def cell_targets(boxes, width: float, height: float, grid: int) -> np.ndarray:
    """(grid * grid,) 0/1, row-major as the image tokens: 1 where the cell's centre lies inside a box.

    >>> cell_targets([(0, 0, 50, 25)], 100, 100, 4).reshape(4, 4)[:2].tolist()
    [[1, 1, 0, 0], [0, 0, 0, 0]]
    """
    centres_x = (np.arange(grid) + 0.5) * width / grid
    centres_y = (np.arange(grid) + 0.5) * height / grid
    occupied = np.zeros((grid, grid), dtype=np.int64)
    for x1, y1, x2, y2 in boxes:
        rows = (centres_y >= y1) & (centres_y < y2)
        columns = (centres_x >= x1) & (centres_x < x2)
        occupied |= np.outer(rows, columns)
    return occupied.reshape(-1)


@torch.no_grad()
def image_tokens(model, processor, tiles, batch_size: int) -> np.ndarray:
    """(tiles, image tokens, D) float32: what the language model reads of each tile."""
    parts = []
    for start in range(0, len(tiles), batch_size):
        crops = [image.crop(tile) for image, tile, _ in tiles[start : start + batch_size]]
        inputs = processor(images=crops, text=["<image>"] * len(crops), return_tensors="pt")
        pixels = inputs["pixel_values"].to(model.device, model.dtype)
        parts.append(model.model.get_image_features(pixels).pooler_output.float().cpu().numpy())
    return np.concatenate(parts)


def probe_inputs(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The three inputs of each cell (tiles * cells rows): position one-hot, + tile mean, + the cell's token."""
    count, cells, _ = tokens.shape
    position = np.tile(np.eye(cells, dtype=np.float32), (count, 1))
    mean = np.repeat(tokens.mean(axis=1), cells, axis=0)
    local = tokens.reshape(count * cells, -1)
    return {
        "position": position,
        "global": np.concatenate([mean, position], axis=1),
        "local": np.concatenate([local, position], axis=1),
    }


def fit_and_score(train_x, train_y, test_x, test_y) -> dict:
    """A logistic regression (L2, C 1, standardised inputs) fitted on train, scored on test."""
    scaler = StandardScaler().fit(train_x)
    classifier = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(train_x), train_y)
    scores = classifier.predict_proba(scaler.transform(test_x))[:, 1]
    return {
        "average_precision": round(float(average_precision_score(test_y, scores)), 4),
        "roc_auc": round(float(roc_auc_score(test_y, scores)), 4),
    }


def position_readout(train_tokens: np.ndarray, test_tokens: np.ndarray) -> dict:
    """Accuracy of reading a token's row and column (of the g x g grid) from the token alone."""
    grid = math.isqrt(train_tokens.shape[1])
    scores = {}
    for axis, name in ((0, "row_accuracy"), (1, "column_accuracy")):
        cell = np.indices((grid, grid))[axis].reshape(-1)
        fitted = []
        for tokens in (train_tokens, test_tokens):
            fitted.append((tokens.reshape(-1, tokens.shape[-1]), np.tile(cell, len(tokens))))
        (train_x, train_y), (test_x, test_y) = fitted
        scaler = StandardScaler().fit(train_x)
        classifier = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(train_x), train_y)
        scores[name] = round(float(classifier.score(scaler.transform(test_x), test_y)), 4)
    return {**scores, "chance": round(1 / grid, 4)}


def probe_model(name: str, train_tiles, test_tiles, batch_size: int) -> dict:
    model, processor = load_model(name)
    scores = {"model": name}
    features, targets, tokens_of = {}, {}, {}
    for split, tiles in (("train", train_tiles), ("test", test_tiles)):
        tokens = tokens_of[split] = image_tokens(model, processor, tiles, batch_size)
        grid = math.isqrt(tokens.shape[1])
        targets[split] = np.concatenate(
            [cell_targets(boxes, tile[2] - tile[0], tile[3] - tile[1], grid) for _, tile, boxes in tiles]
        )
        features[split] = probe_inputs(tokens)
    for key in INPUTS:
        scores[key] = fit_and_score(features["train"][key], targets["train"], features["test"][key], targets["test"])
    scores["where"] = position_readout(tokens_of["train"], tokens_of["test"])
    scores["positive_share"] = round(float(targets["test"].mean()), 4)
    return scores


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(
        ProbeArguments, argv, positional=("dataset_dir",), variadic="models", variadic_missing="give a model folder"
    )
    splits = load_detection(args.dataset_dir)
    for split in ("train", args.split):
        if split not in splits:
            raise SystemExit(f"{args.dataset_dir}: no {split!r} split (it has {sorted(splits)}). Fix: --split.")

    train = splits["train"]
    train = train.select(range(min(args.max_train_images, len(train)))) if args.max_train_images else train
    train_tiles = split_tiles(train, args.tile_size)
    test_tiles = split_tiles(splits[args.split], args.tile_size)
    for name in args.models:
        result = probe_model(name, train_tiles, test_tiles, args.batch_size)
        result.update(split=args.split, tile_size=args.tile_size, train_tiles=len(train_tiles), tiles=len(test_tiles))
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
