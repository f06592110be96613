"""A detection model scored on a boxes folder's split through inference's own path: each image answered in the tiles
the model was trained at and merged (or with `--tile_size`; 0: the whole image as one input), the boxes scored per
box from their tokens, then COCOeval (AP, AP50, AP75, AP50 per class) and the count MAE of the merged boxes (over
every image and class, and over the classes each image holds: the count task's questions). Prints one JSON object,
with the decoding seconds per image.

    python -m scripts.detection_scores MODEL DATA_DIR [--split test] [--tile_size 0] [--predictions FILE.jsonl]
"""

import json
import sys
import time
from dataclasses import dataclass, field

from command_line import parse_command_line
from dataset_builder.detection import detection_classes, load_detection
from images import to_rgb
from inference_core import choose_task, load_model, run_task, run_tiled
from tasks import get_task
from tasks.tiling import chosen_overlap


@dataclass
class DetectionScoresArguments:
    model: str = field(metadata={"help": "A model folder (or Hub id) that knows detection."})
    dataset_dir: str = field(metadata={"help": "A COCO / PaliGemma JSONL / YOLO boxes folder."})
    split: str = field(default="test", metadata={"help": "The split scored."})
    tile_size: int | None = field(
        default=None, metadata={"help": "Tiles of this many source pixels; default: the model's; 0: whole images."}
    )
    overlap: int | None = field(
        default=None, metadata={"help": "Tile overlap in source pixels (default: the model's, else 1/8 tile)."}
    )
    batch_size: int = field(default=16, metadata={"help": "Images (or tiles) per generate call."})
    max_images: int | None = field(default=None, metadata={"help": "Score only the split's first N images."})
    predictions: str | None = field(default=None, metadata={"help": "Also write one JSONL record per image here."})


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(DetectionScoresArguments, argv, positional=("model", "dataset_dir"))
    splits = load_detection(args.dataset_dir)
    if args.split not in splits:
        sys.exit(f"{args.dataset_dir}: no {args.split!r} split (it has {sorted(splits)}). Fix: --split.")
    rows = splits[args.split]
    rows = rows.select(range(min(args.max_images, len(rows)))) if args.max_images else rows
    classes = detection_classes(rows)
    model, processor = load_model(args.model)
    recorded = choose_task(model.config, get_task("detect").name, classes=" ; ".join(classes))
    tile_size = recorded.tile_size if args.tile_size is None else (args.tile_size or None)
    # the folder's classes, in its order
    task = type(recorded)(classes, recorded.generation, tile_size, recorded.tile_overlap)
    records, seconds = [], 0.0
    for row in rows:
        image = to_rgb(row["image"])
        start = time.perf_counter()
        if tile_size:
            (result,) = run_tiled(model, processor, [image], task, tile_size, args.overlap, args.batch_size)
        else:
            (result,) = run_task(model, processor, [image], task, args.batch_size)
        seconds += time.perf_counter() - start
        reference = task.record({**row, "tile": None}, "")  # the row's reference boxes in the record's layout
        records.append({**reference, "prediction": result["text"], "boxes": result["boxes"], "dropped": {}})
    if args.predictions:
        with open(args.predictions, "w") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)
    scores = task.score(records)
    # The count task's questions: each image and each class it holds (at least one reference box).
    asked = [(r, name) for r in records for name in dict.fromkeys(item["label"] for item in r["references"])]
    errors = [
        abs(sum(b["label"] == name for b in r["boxes"]) - sum(b["label"] == name for b in r["references"]))
        for r, name in asked
    ]
    summary = {
        "model": args.model,
        "split": args.split,
        "images": len(records),
        "tile_size": tile_size,
        "overlap": chosen_overlap(task, tile_size, args.overlap) if tile_size else None,
        "seconds_per_image": round(seconds / max(len(records), 1), 3),
        **{key: scores["overall"][key] for key in ("ap", "ap50", "ap75", "count_mae", "boxes", "predicted_boxes")},
        "count_mae_of_present_classes": sum(errors) / len(errors) if errors else None,
        "ap50_per_class": {name: group["ap50"] for name, group in scores["groups"].items()},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
