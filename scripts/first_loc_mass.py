"""Where a detector's first `<loc>` puts its probability on a boxes folder's tiles: the decoder's side of "does the
model know where the objects are?" (`probe_image_tokens` asks the image tokens).

A detection answer starts with the top edge (y1) of its first box. For each tile of the split's grid that holds the
top edge of an object, the model's distribution over the 1,024 `<loc>` bins at that first position gives:

- `p_loc0000`: the probability of `<loc0000>` (the tile's top edge, where a cut box starts), of the loc bins' total;
- `argmax_loc0000`: the share of tiles whose likeliest loc is `<loc0000>` (greedy decoding writes it);
- `near_top_edge`: the mass of bins 1-1023 within `--window` bins of an object's top edge, of bins 1-1023's total,
  beside `uniform`, the share of bins 1-1023 those windows cover (what a model blind to the image puts there);
- `argmax_near_top_edge`: how often the likeliest of bins 1-1023 lies within the window, beside `uniform` again:
  where greedy decoding would start the first box if `<loc0000>` were not its choice.

Prints one JSON object per model.

    python -m scripts.first_loc_mass DATA_DIR MODEL [MODEL ...] [--split test] [--max_images 60]
"""

import json
from dataclasses import dataclass, field

import torch

from command_line import parse_command_line
from dataset_builder.detection import detection_classes, load_detection
from images import to_rgb
from inference_core import choose_task, generation_inputs, load_model
from tasks import get_task
from tasks.loc_codec import NUM_BINS as LOC_BINS
from tasks.tiling import chosen_overlap, clip_boxes, tile_boxes


@dataclass
class FirstLocArguments:
    dataset_dir: str = field(metadata={"help": "A COCO / PaliGemma JSONL / YOLO boxes folder."})
    models: list[str] = field(default_factory=list, metadata={"help": "Detection models, each on the same tiles."})
    split: str = field(default="test", metadata={"help": "The split whose tiles are asked."})
    tile_size: int = field(default=256, metadata={"help": "Tiles of this many source pixels."})
    overlap: int | None = field(default=None, metadata={"help": "Tile overlap (default: the model's, else 1/8)."})
    max_images: int | None = field(default=60, metadata={"help": "The split's first N images (0 or none: all)."})
    window: int = field(default=64, metadata={"help": "Bins either side of a top edge that count as near it."})


def top_edge_windows(tops: list[float], height: float, window: int) -> torch.Tensor:
    """A mask over the `LOC_BINS` bins: True within `window` bins of a top edge (`tops` in pixels of a side of
    `height`), never bin 0 (the tile's own edge)."""
    mask = torch.zeros(LOC_BINS, dtype=torch.bool)
    for top in tops:
        centre = round(top / height * (LOC_BINS - 1))
        mask[max(1, centre - window) : centre + window + 1] = True
    return mask


def first_loc_summary(distributions: list[torch.Tensor], masks: list[torch.Tensor]) -> dict:
    """The module docstring's figures from each tile's loc distribution (`LOC_BINS` probabilities, any scale) and
    its top-edge mask, averaged over the tiles."""
    totals = {"p_loc0000": 0.0, "argmax_loc0000": 0, "near_top_edge": 0.0, "argmax_near_top_edge": 0, "uniform": 0.0}
    for probabilities, mask in zip(distributions, masks):
        rest = probabilities[1:]
        totals["p_loc0000"] += (probabilities[0] / probabilities.sum()).item()
        totals["argmax_loc0000"] += int(probabilities.argmax().item() == 0)
        totals["near_top_edge"] += (rest[mask[1:]].sum() / rest.sum()).item()
        totals["argmax_near_top_edge"] += int(mask[1 + rest.argmax().item()].item())
        totals["uniform"] += mask[1:].float().mean().item()
    count = max(len(distributions), 1)
    return {"tiles": len(distributions), **{name: round(value / count, 4) for name, value in totals.items()}}


def first_loc_distribution(model, processor, image, prompt: str) -> torch.Tensor:
    """The model's probabilities of the `LOC_BINS` loc tokens as the first token of its answer about `image`."""
    inputs = generation_inputs(model, processor, [image], prompt)
    with torch.inference_mode():
        logits = model(**inputs).logits[0, -1].float()
    first = processor.tokenizer.convert_tokens_to_ids("<loc0000>")
    return torch.softmax(logits, dim=-1)[first : first + LOC_BINS]


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(
        FirstLocArguments, argv, positional=("dataset_dir",), variadic="models", variadic_missing="give a model folder"
    )
    splits = load_detection(args.dataset_dir)
    if args.split not in splits:
        raise SystemExit(f"{args.dataset_dir}: no {args.split!r} split (it has {sorted(splits)}). Fix: --split.")
    rows = splits[args.split]
    rows = rows.select(range(min(args.max_images, len(rows)))) if args.max_images else rows
    classes = detection_classes(rows)
    for path in args.models:
        model, processor = load_model(path)
        task = choose_task(model.config, get_task("detect").name, classes=" ; ".join(classes))
        overlap = chosen_overlap(task, args.tile_size, args.overlap)
        distributions, masks = [], []
        for row in rows:
            image = to_rgb(row["image"])
            boxes = [(x, y, x + w, y + h) for x, y, w, h in row["objects"]["bbox"]]
            for tile in tile_boxes(*image.size, args.tile_size, overlap):
                clipped, _ = clip_boxes(boxes, tile, keep_area=1e-9)  # every box that reaches into the tile
                tops = [box[1] for box in clipped if box[1] > 0]  # its top edge inside the tile
                if tops:
                    masks.append(top_edge_windows(tops, tile[3] - tile[1], args.window))
                    distributions.append(first_loc_distribution(model, processor, image.crop(tile), task.prompt))
        summary = first_loc_summary(distributions, masks)
        print(json.dumps({"model": path, "split": args.split, "overlap": overlap, "window": args.window, **summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
