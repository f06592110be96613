"""A detection folder that only a model which localises can score on: flat coloured rectangles on noisy backgrounds,
the colour being the class, in COCO format (train / val / test), drawn from a seed.

    python -m scripts.synthetic_boxes outputs/synthetic-boxes
    python finetune.py configs/rs_mini_tiles.yaml --tile_size 128 --max_steps 400 \
        --mixture '[{"task": "detect", "dataset_dir": "outputs/synthetic-boxes", "weight": 1, "name": "synthetic"}]'

Aerial objects are hard to tell from their surroundings; these are not (one colour, sharp edges, no overlaps), so a
detection recipe that fails here fails at learning where things are, not at seeing them. It separates the two
causes when boxes do not land on real images, and is cheap: 1,500 training images of 128 px are written in seconds.
"""

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from command_line import parse_command_line

COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220), "yellow": (230, 220, 40)}
CLASSES = list(COLOURS)  # category ids 1, 2, 3 in this order
NOISE_CELL = 8  # the background is noise on cells of this many pixels, smoothed by the resize


@dataclass
class SyntheticBoxesArguments:
    output_dir: str = field(
        metadata={"help": "Where to write annotations/instances_{split}.json and images/{split}/."}
    )
    image_size: int = field(default=128, metadata={"help": "Side of the square images in pixels."})
    train_images: int = field(default=1500, metadata={"help": "Images in the train split."})
    eval_images: int = field(default=100, metadata={"help": "Images in each of val and test."})
    max_objects: int = field(default=3, metadata={"help": "At most this many rectangles per image (at least one)."})
    seed: int = field(default=0, metadata={"help": "Seed of the images and boxes."})


def place_rectangles(size: int, count: int, rng: random.Random) -> list[tuple[int, int, int, int, str]]:
    """Up to `count` non-overlapping (x, y, w, h, colour) rectangles, each side 1/10 to 1/3 of the image; a
    rectangle that finds no free place in 20 tries is left out."""
    placed = []
    for _ in range(count):
        for _attempt in range(20):
            width, height = rng.randint(size // 10, size // 3), rng.randint(size // 10, size // 3)
            x, y = rng.randint(0, size - width), rng.randint(0, size - height)
            if all(x + width <= a or a + c <= x or y + height <= b or b + d <= y for a, b, c, d, _ in placed):
                placed.append((x, y, width, height, rng.choice(CLASSES)))
                break
    return placed


def draw_background(size: int, noise: np.random.Generator) -> Image.Image:
    """Grey-ish noise on cells of NOISE_CELL pixels, smoothed by a bilinear resize."""
    cells = noise.normal(110, 30, (size // NOISE_CELL, size // NOISE_CELL, 3)).clip(0, 255).astype("uint8")
    return Image.fromarray(cells).resize((size, size), Image.Resampling.BILINEAR)


def draw_rectangles(image: Image.Image, rectangles) -> Image.Image:
    """The rectangles filled in their colour (pixels x..x+w-1, y..y+h-1) on `image` (changed in place)."""
    draw = ImageDraw.Draw(image)
    for x, y, width, height, colour in rectangles:
        draw.rectangle((x, y, x + width - 1, y + height - 1), fill=COLOURS[colour])
    return image


def write_split(
    output_dir: Path, split: str, images: int, args: SyntheticBoxesArguments, rng: random.Random, noise
) -> int:
    """Write one split's images and COCO annotations; returns the number of boxes."""
    size = args.image_size
    image_dir = output_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    image_records, annotations = [], []
    for index in range(images):
        background = draw_background(size, noise)
        rectangles = place_rectangles(size, rng.randint(1, args.max_objects), rng)
        file_name = f"{split}_{index:04d}.png"
        draw_rectangles(background, rectangles).save(image_dir / file_name)
        image_records.append({"id": index + 1, "file_name": file_name, "width": size, "height": size})
        for x, y, width, height, colour in rectangles:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": CLASSES.index(colour) + 1,
                    "bbox": [x, y, width, height],
                    "area": width * height,
                    "iscrowd": 0,
                }
            )
    coco = {
        "images": image_records,
        "annotations": annotations,
        "categories": [{"id": index + 1, "name": name} for index, name in enumerate(CLASSES)],
    }
    (output_dir / "annotations").mkdir(parents=True, exist_ok=True)
    (output_dir / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return len(annotations)


def write_synthetic_boxes(args: SyntheticBoxesArguments) -> dict[str, int]:
    """Write train, val and test, in that order, from one random stream (so no image repeats across them);
    returns the boxes per split."""
    if args.image_size < 32 or args.image_size % NOISE_CELL:
        raise ValueError(f"--image_size {args.image_size}: give a multiple of {NOISE_CELL} of at least 32.")
    if args.max_objects < 1:
        raise ValueError(f"--max_objects {args.max_objects}: give at least 1.")
    output_dir = Path(args.output_dir)
    rng, noise = random.Random(args.seed), np.random.default_rng(args.seed)
    sizes = {"train": args.train_images, "val": args.eval_images, "test": args.eval_images}
    return {split: write_split(output_dir, split, images, args, rng, noise) for split, images in sizes.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(SyntheticBoxesArguments, argv, positional=("output_dir",))
    boxes = write_synthetic_boxes(args)
    sys.stdout.write(json.dumps({"output_dir": args.output_dir, "boxes": boxes}) + "\n")


if __name__ == "__main__":
    main()
