"""Which decoding gives a captioner its best captions: every combination of beams, length penalty and n-gram
blocking, scored on a RISC split (val: never the split that is reported). One JSON line per setting (the
coco-caption scores, distinct captions, seconds), then the best by CIDEr-D.

    python -m scripts.decoding_sweep MODEL --dataset_dir data/rsicd --split val \\
        --num_beams 1,3,5 --length_penalty 0.6,1.0,1.4 --no_repeat_ngram_size 0,3 [--write_best]

`--write_best` stores the winner in the model folder's generation_config.json, so that inference.py, the app and
the pipeline decode with it by default.
"""

import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from command_line import parse_command_line
from dataset_builder import load_risc
from inference_core import caption_images, load_model
from metrics import caption_metrics


@dataclass
class SweepArguments:
    model: str = field(metadata={"help": "Model folder (or Hub id without --write_best)."})
    dataset_dir: str = field(default="data/rsicd", metadata={"help": "RISC folder."})
    split: str = field(default="val", metadata={"help": "Split to score (val: keep test for the report)."})
    num_beams: str = field(default="1,3,5", metadata={"help": "Beam widths, comma-separated."})
    length_penalty: str = field(default="1.0", metadata={"help": "Beam length penalties, comma-separated."})
    no_repeat_ngram_size: str = field(default="0", metadata={"help": "n-gram blocking sizes (0 = off)."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Default: the model's generation_config."})
    max_images: int | None = field(default=None, metadata={"help": "Score the first N images only."})
    batch_size: int = field(default=16, metadata={"help": "Images per generate call."})
    write_best: bool = field(default=False, metadata={"help": "Store the best setting in generation_config.json."})


def _values(text: str, kind) -> list:
    try:
        return [kind(value) for value in text.split(",") if value.strip()]
    except ValueError as error:
        raise ValueError(f"{text!r} is not a comma-separated list of {kind.__name__} ({error}).") from error


def settings(args: SweepArguments) -> list[dict]:
    """Every combination; a length penalty only changes beam search, so greedy decoding is tried once."""
    grid = []
    for beams, penalty, block in itertools.product(
        _values(args.num_beams, int), _values(args.length_penalty, float), _values(args.no_repeat_ngram_size, int)
    ):
        setting = {"num_beams": beams, "length_penalty": penalty if beams > 1 else 1.0, "no_repeat_ngram_size": block}
        if setting not in grid:
            grid.append(setting)
    return grid


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(SweepArguments, argv, positional=("model",))
    model, processor = load_model(args.model)
    rows = load_risc(args.dataset_dir)[args.split]
    if args.max_images:
        rows = rows.select(range(min(args.max_images, len(rows))))
    images = [row["image"].convert("RGB") for row in rows]
    references = rows["captions"]
    results = []
    for setting in settings(args):
        started = time.perf_counter()
        captions = caption_images(
            model, processor, images, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, **setting
        )
        scores = caption_metrics(captions, references)["overall"]
        result = {
            **setting,
            **scores,
            "distinct_captions": len(set(captions)),
            "seconds": round(time.perf_counter() - started, 1),
        }
        results.append(result)
        print(json.dumps(result), flush=True)
    best = max(results, key=lambda result: result["cider"])
    print(json.dumps({"best": best, "split": args.split, "images": len(images)}), flush=True)
    if args.write_best:
        config = model.generation_config
        for key in ("num_beams", "length_penalty", "no_repeat_ngram_size"):
            setattr(config, key, best[key])
        config.save_pretrained(Path(args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
