"""The constant-caption floor of a RISC folder: the one training sentence that scores the highest CIDEr when written
under every image of the scored split, and its BLEU-1..4, METEOR, ROUGE-L and CIDEr. Prints one JSON object.

    python -m scripts.caption_floor DATA_DIR [--split test] [--candidate_split train]
"""

import json
import sys
from dataclasses import dataclass, field

from command_line import parse_command_line
from dataset_builder.layout import read_captions_csv
from metrics.floor import constant_caption_floor


@dataclass
class CaptionFloorArguments:
    dataset_dir: str = field(metadata={"help": "RISC folder (captions.csv + resized/)."})
    split: str = field(default="test", metadata={"help": "The split whose images are scored."})
    candidate_split: str = field(default="train", metadata={"help": "The split whose sentences are the candidates."})


def split_captions(dataset_dir: str, split: str) -> list[list[str]]:
    """The captions of each image of `split` (non-empty ones), in captions.csv order."""
    rows = [row for row in read_captions_csv(dataset_dir) if row.split == split]
    if not rows:
        raise ValueError(f"{dataset_dir}/captions.csv has no rows with split={split!r}. Fix: --split train/val/test.")
    return [[caption for caption in row.captions if caption] for row in rows]


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(CaptionFloorArguments, argv, positional=("dataset_dir",))
    references = split_captions(args.dataset_dir, args.split)
    candidates = [
        caption for captions in split_captions(args.dataset_dir, args.candidate_split) for caption in captions
    ]
    floor = constant_caption_floor(candidates, references)
    print(json.dumps({"split": args.split, "images": len(references), **floor}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
