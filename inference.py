"""Caption aerial images, name their scene, count or detect objects in them, with a TSN-PaliGemma (or any
PaliGemma) checkpoint: files, folders or globs in, one record per image out (text, JSONL or CSV on stdout),
optionally a picture grid.

    python inference.py IMAGE_OR_FOLDER_OR_GLOB... --model PATH_OR_HUB_ID [--task caption] [--batch_size 8]
        [--num_beams N] [--max_new_tokens N] [--format {text,jsonl,csv}] [--grid grid.png]
    python inference.py IMAGES --model M --task classify                        # the scene
    python inference.py IMAGES --model M --task count --classes airplane        # how many airplanes
    python inference.py IMAGES --model M --task detect --format jsonl           # boxes of every class it knows
    python inference.py IMAGES --model M --prompt "detect airplane ; ship"      # a prompt of your own

`--task` (any registered task: `tasks/`) asks as the model recorded the task (its config's `trained_tasks`, written
by finetune.py; the task's defaults for other models); `--prompt` overrides it and then picks the task itself
(`tasks.task_for_prompt`). Decoding follows the task's record (detection: greedy, room for every box), else the
model's own `generation_config`; `--num_beams` / `--max_new_tokens` override it. A task with a closed set of answers
(the scene classes a model recorded) ranks them instead of generating: the answer is always one of them, as
`finetune.py` scored it.

Records (docs/inference.md): JSONL `{"file", "task", "text": the answer (a caption, a class, the raw detection
text), ...the task's own fields}`: `"boxes": [{"label", "box": [x1, y1, x2, y2]}]` in the original image's pixels
for detection, `"count"` for counting. Text: `file<TAB>text`, or one `file<TAB>label<TAB>x1,y1,x2,y2` line per box
(`file<TAB>-` for none); CSV the same columns with a header.

Device and dtype are automatic: CUDA in bf16 when the GPU supports it (else fp32), CPU in fp32. Every image is read
as 8-bit RGB by the one reader training uses too (`images.load_image`). Unreadable files are named on stderr with
the reason and skipped; the good ones are still written, and the exit status is then 1.
"""

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from PIL import Image

from command_line import parse_command_line
from images import IMAGE_ERRORS, collect_inputs, load_image, no_match_message, render_grid
from inference_core import (
    ModelNotFoundError,
    choose_task,
    csv_rows,
    load_model,
    result_record,
    run_task,
    run_tiled,
    text_lines,
)
from scenes import answer_scenes, needs_tiles
from tasks import DEFAULT_PROMPT, DEFAULT_TASK, task_names

FORMATS = ("text", "jsonl", "csv")


@dataclass
class InferenceArguments:
    model: str = field(metadata={"help": "Local checkpoint folder or Hub model id."})
    inputs: list[str] = field(
        default_factory=list,
        metadata={"help": "Image files, folders (their images, sorted, not recursive) or glob patterns (quote them)."},
    )
    task: str = field(
        default=DEFAULT_TASK,
        metadata={"help": f"One of {', '.join(task_names())}: the prompt the model was trained with for it."},
    )
    classes: str | None = field(
        default=None,
        metadata={
            "help": "detect: the classes to find ('airplane ; ship'; default: all the model knows); count: the "
            "class to count."
        },
    )
    question: str | None = field(default=None, metadata={"help": "count: a question of your own ('how many ...')."})
    prompt: str | None = field(
        default=None,
        metadata={
            "help": f"Prompt of your own instead of --task's ('<image>' is prepended), e.g. '{DEFAULT_PROMPT}'."
        },
    )
    batch_size: int = field(default=8, metadata={"help": "Images per generate call (read lazily, per batch)."})
    num_beams: int | None = field(
        default=None,
        metadata={"help": "Beam width (1 = greedy). Default: the model's generation_config, its scored setting."},
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Longest caption in tokens. Default: the model's generation_config."}
    )
    format: Literal["text", "jsonl", "csv"] = field(
        default="text",
        metadata={
            "help": "stdout records: text = 'file<TAB>caption', jsonl = {file, caption}, csv = file,caption; "
            "detection: jsonl adds boxes, text and csv give one line per box (file, label, x1, y1, x2, y2)."
        },
    )
    grid: str | None = field(default=None, metadata={"help": "Also write a PNG grid of images with their captions."})
    grid_max_images: int = field(default=16, metadata={"help": "At most this many (the first) images in --grid."})
    tile_size: int | None = field(
        default=None,
        metadata={
            "help": "Answer in tiles of this many source pixels (a scene). Default: the tile size the model was "
            "trained at for the task (chips larger than it are answered in its tiles and merged), else a chip is one "
            "input; an input of more than 4 times 1024x1024 pixels is tiled at 1024. 0: every chip whole."
        },
    )
    overlap: int | None = field(
        default=None,
        metadata={"help": "Tile overlap in source pixels (default: the one the model recorded, else 1/8 tile)."},
    )
    bands: str | None = field(
        default=None, metadata={"help": "Scenes: the 1-based bands shown as R,G,B ('4,3,2'; default: 1,2,3)."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Write DIR/<input stem>.geojson (boxes, or one polygon per tile) in the raster's CRS, and for "
            "scene classes DIR/<input stem>.tif, a class map; inputs with complete outputs are skipped."
        },
    )
    vector_format: Literal["geojson", "gpkg"] = field(default="geojson", metadata={"help": "geojson or gpkg."})

    def __post_init__(self):
        for name in ("batch_size", "num_beams", "max_new_tokens", "grid_max_images"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)} is invalid; use a positive integer.")
        if self.tile_size is not None and self.tile_size < 0:
            raise ValueError(f"--tile_size {self.tile_size} is invalid; use a positive integer, or 0 for whole chips.")


class RecordWriter:
    """One record per image on `stream`: text (`inference_core.text_lines`), JSONL (`result_record`) or CSV with
    a header (`csv_rows`; columns "file" + the task's `text_header`)."""

    def __init__(self, stream: TextIO, format: str, task):
        if format not in FORMATS:
            raise ValueError(f"format={format!r} is invalid; use one of {list(FORMATS)}.")
        self.stream, self.format, self.task = stream, format, task
        self.csv = csv.writer(stream, lineterminator="\n") if format == "csv" else None
        if self.csv:
            self.csv.writerow(["file", *task.text_header])

    def write(self, file: str, result: dict) -> None:
        if self.format == "jsonl":
            self.stream.write(json.dumps(result_record(file, self.task, result), ensure_ascii=False) + "\n")
        elif self.csv:
            self.csv.writerows(csv_rows(file, self.task, result))
        else:
            self.stream.write("\n".join(text_lines(file, self.task, result)) + "\n")
        self.stream.flush()


def _batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_batch(paths: Sequence[Path], errors: TextIO) -> tuple[list[Path], list]:
    """(readable paths, their RGB images); each file that cannot be read is named on `errors` with the reason."""
    readable, images = [], []
    for path in paths:
        try:
            images.append(load_image(path))
            readable.append(path)
        except IMAGE_ERRORS as error:
            errors.write(f"unreadable image {path}: {type(error).__name__}: {error}\n")
    return readable, images


def answer_files(
    model, processor, paths: Iterable[Path], task, args: InferenceArguments, errors: TextIO | None = None
) -> Iterator[tuple[Path, dict, object]]:
    """(path, result, image) per readable file, reading images lazily one batch at a time (`run_task`).
    Unreadable files are named on `errors` (default: stderr) with the reason and skipped."""
    errors = errors or sys.stderr
    decoding = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens}
    tile_size = task.tile_size if args.tile_size is None else None  # --tile_size 0: whole chips
    for batch_paths in _batches(list(paths), args.batch_size):
        readable, images = read_batch(batch_paths, errors)
        if not images:
            continue
        if tile_size:  # the task was trained on tiles: each chip in the same tiles, merged
            results = run_tiled(model, processor, images, task, tile_size, args.overlap, args.batch_size, **decoding)
        else:
            results = run_task(model, processor, images, task, args.batch_size, **decoding)
        yield from zip(readable, results, images)


def own_share(paths: list[Path]) -> list[Path]:
    """This process's inputs under `accelerate launch` (every process takes every n-th input, so the processes
    together write exactly what one process writes); all of them in a plain run."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # without a GPU: one gloo process per CPU worker
    return paths[state.process_index :: state.num_processes]


def is_scene(path: Path, args: InferenceArguments) -> bool:
    """Answered in tiles (`scenes`): when asked to (--tile_size, --output_dir) or when too large to be one input."""
    if args.tile_size or args.output_dir:
        return True
    try:
        with Image.open(path) as image:  # the header only
            return needs_tiles(*image.size, None)
    except IMAGE_ERRORS:
        return False  # reported by the chip path


def resolve_task(args: InferenceArguments, model_config):
    """The task of the run: --prompt's when given, else --task's as the model recorded it."""
    return choose_task(model_config, args.task, args.classes, args.question, args.prompt)


def parse_args(argv: list[str] | None = None) -> InferenceArguments:
    """Positional INPUTs may come before or after the options (`--inputs a b` works too)."""
    args = parse_command_line(
        InferenceArguments,
        argv,
        variadic="inputs",
        variadic_missing="no INPUT given: pass image files, folders or glob patterns before or after the options.",
        usage="inference.py INPUT... --model PATH_OR_HUB_ID [options]",
        description=__doc__.split("\n\n")[0],
    )
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 some inputs missing or unreadable, 2 nothing to do)."""
    args = parse_args(argv)
    missing: list[str] = []
    paths = own_share(collect_inputs(args.inputs, missing))
    for pattern in missing:  # reported and skipped: the other inputs are still answered
        print(f"skipped: {no_match_message(pattern)}", file=sys.stderr)
    if not paths and missing:
        print(f"error: {no_match_message(missing[0])}", file=sys.stderr)
        return 2
    if not paths:  # under accelerate launch, more processes than inputs: nothing for this one
        return 0
    try:
        model, processor = load_model(args.model)
    except ModelNotFoundError as error:
        print(f"inference.py: error: --model {error}", file=sys.stderr)
        return 2
    try:
        task = resolve_task(args, model.config)
    except ValueError as error:
        print(f"inference.py: error: {error}", file=sys.stderr)
        return 2
    scenes = [path for path in paths if is_scene(path, args)]
    captioned = answer_scenes(model, processor, scenes, task, args, sys.stdout, sys.stderr) if scenes else 0
    writer = RecordWriter(sys.stdout, args.format, task)
    shown = []
    chips = [path for path in paths if path not in scenes]
    for path, result, image in answer_files(model, processor, chips, task, args):
        writer.write(str(path), result)
        captioned += 1
        if args.grid and len(shown) < args.grid_max_images:
            shown.append(task.draw(result, image))
    skipped = len(paths) - captioned + len(missing)
    if shown:
        grid = render_grid([picture for picture, _ in shown], [text for _, text in shown], args.grid)
        print(f"grid of {len(shown)} images -> {grid}", file=sys.stderr)
    if skipped:
        print(
            f"{skipped} of {len(paths) + len(missing)} files could not be read (named above: missing or unreadable); "
            f"answered the other {captioned}.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
