"""Caption aerial images, name their scene, count or detect objects in them, with a TSN-PaliGemma (or any
PaliGemma) checkpoint: files, folders or globs in, one record per image out (text, JSONL or CSV on stdout),
optionally a picture grid.

    python inference.py IMAGE_OR_FOLDER_OR_GLOB... --model PATH_OR_HUB_ID [--task caption] [--batch_size 8]
        [--num_beams N] [--max_new_tokens N] [--format {text,jsonl,csv}] [--grid grid.png]
    python inference.py IMAGES --model M --task classify                        # the scene
    python inference.py IMAGES --model M --task count --classes airplane        # how many airplanes
    python inference.py IMAGES --model M --task detect --format jsonl           # boxes of every class it knows
    python inference.py IMAGES --model M --prompt "detect airplane ; ship"      # a prompt of your own

`--task` fills the prompt the model was trained with (its config's `task_prompts`, written by finetune.py; the
defaults for other models); `--prompt` overrides it and then picks the task itself (`tasks.task_for_prompt`).
Detection writes, per image, `{"file", "caption": the raw generated text, "boxes": [{"label", "box": [x1, y1, x2,
y2]}]}` in the original image's pixels (text and CSV: one line per box); it decodes greedily with room for the
model's recorded number of tokens (256 without a record) unless told otherwise. Counting adds `"count"`. Scene
classification with the classes the model recorded ranks them instead of generating: every class is scored as the
answer (its mean log-probability per token, `tasks.likelihood`) and the likeliest is written, so the answer is always
one of them, as `finetune.py` scored it.

Decoding defaults to the model's own `generation_config` (for a finetune.py model: the beams and length its
reported scores were measured with); `--num_beams` / `--max_new_tokens` override it.

Device and dtype are automatic: CUDA in bf16 when the GPU supports it (else fp32), CPU in fp32. Every image is
converted to 8-bit RGB first (`load_image`): 16-bit and 32-bit grayscale is stretched from its own min..max to
0..255, transparency is composited on WHITE, grayscale/palette/CMYK become RGB. Unreadable files are named on
stderr with the reason and skipped; the good ones are still written, and the exit status is then 1.

```python
>>> from transformers import AutoModelForImageTextToText, AutoProcessor  # doctest: +SKIP
>>> model = AutoModelForImageTextToText.from_pretrained("tiny-tsn", trust_remote_code=True)  # doctest: +SKIP
>>> processor = AutoProcessor.from_pretrained("tiny-tsn", trust_remote_code=True)  # doctest: +SKIP
>>> captions = caption_images(model, processor, [load_image("RSICD_00001.jpg")], num_beams=3)  # doctest: +SKIP
>>> len(captions)  # doctest: +SKIP
1
```
"""

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from captioning import (
    IMAGE_ERRORS,
    ModelNotFoundError,
    collect_inputs,
    load_image,
    load_model,
    render_grid,
    task_texts,
)
from command_line import parse_command_line
from processing import DEFAULT_PROMPT
from tasks import task_for_prompt
from tasks.recorded import CONFIG_KEY, TASK_KINDS, task_from_record

FORMATS = ("text", "jsonl", "csv")


@dataclass
class InferenceArguments:
    model: str = field(metadata={"help": "Local checkpoint folder or Hub model id."})
    inputs: list[str] = field(
        default_factory=list,
        metadata={"help": "Image files, folders (their images, sorted, not recursive) or glob patterns (quote them)."},
    )
    task: str = field(
        default="caption",
        metadata={"help": f"One of {', '.join(TASK_KINDS)}: the prompt the model was trained with for it."},
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

    def __post_init__(self):
        for name in ("batch_size", "num_beams", "max_new_tokens", "grid_max_images"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)} is invalid; use a positive integer.")


class RecordWriter:
    """One record per image on `stream`: text (`file<TAB>caption`), JSONL or CSV with a header; records with
    `boxes` (detection) give one text/CSV line per box, `file<TAB>label<TAB>x1,y1,x2,y2` (`file<TAB>-` for none)."""

    def __init__(self, stream: TextIO, format: str, boxes: bool = False):
        if format not in FORMATS:
            raise ValueError(f"format={format!r} is invalid; use one of {list(FORMATS)}.")
        self.stream, self.format = stream, format
        self.csv = csv.writer(stream, lineterminator="\n") if format == "csv" else None
        if self.csv:
            self.csv.writerow(["file", "label", "x1", "y1", "x2", "y2"] if boxes else ["file", "caption"])

    def write(self, file: str, record: dict) -> None:
        if self.format == "jsonl":
            self.stream.write(json.dumps({"file": file, **record}, ensure_ascii=False) + "\n")
        elif "boxes" not in record:
            if self.csv:
                self.csv.writerow([file, record["caption"]])
            else:
                self.stream.write(f"{file}\t{record['caption']}\n")
        elif self.csv:
            for item in record["boxes"]:
                self.csv.writerow([file, item["label"], *item["box"]])
        else:
            lines = [f"{file}\t{item['label']}\t{','.join(map(str, item['box']))}" for item in record["boxes"]]
            self.stream.write("\n".join(lines or [f"{file}\t-"]) + "\n")
        self.stream.flush()


def _batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def caption_files(
    model, processor, paths: Iterable[Path], args: InferenceArguments, errors: TextIO | None = None
) -> Iterator[tuple[Path, dict, object]]:
    """(path, record, image) per readable file, reading images lazily one batch at a time: the prompt's task reads
    the generated text (a caption; or boxes in the image's pixels). Unreadable files are named on `errors`
    (default: stderr) with the reason and skipped."""
    errors = errors or sys.stderr
    task = resolve_task(args, model.config)
    generation = getattr(task, "generation", {})
    num_beams = args.num_beams or generation.get("num_beams")
    max_new_tokens = args.max_new_tokens or generation.get("max_new_tokens")
    for batch_paths in _batches(list(paths), args.batch_size):
        readable, images = [], []
        for path in batch_paths:
            try:
                images.append(load_image(path))
                readable.append(path)
            except IMAGE_ERRORS as error:
                errors.write(f"unreadable image {path}: {type(error).__name__}: {error}\n")
        if images:
            texts = task_texts(model, processor, images, task, args.batch_size, num_beams, max_new_tokens)
            for path, text, image in zip(readable, texts, images):
                yield path, task.read(text, *image.size), image


def resolve_task(args: InferenceArguments, model_config):
    """The task of the run: --prompt's when given, else --task's as the model recorded it."""
    if args.prompt is not None:
        return task_for_prompt(args.prompt)
    return task_from_record(args.task, getattr(model_config, CONFIG_KEY, None), args.classes, args.question)


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
    """Run the CLI; returns the exit status (0 ok, 1 some files unreadable, 2 bad inputs)."""
    args = parse_args(argv)
    try:
        paths = collect_inputs(args.inputs)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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
    writer = RecordWriter(sys.stdout, args.format, boxes=task.name == "detect")
    captioned, shown = 0, []
    for path, record, image in caption_files(model, processor, paths, args):
        writer.write(str(path), record)
        captioned += 1
        if args.grid and len(shown) < args.grid_max_images:
            shown.append(task.draw(record, image))
    unreadable = len(paths) - captioned
    if shown:
        grid = render_grid([picture for picture, _ in shown], [text for _, text in shown], args.grid)
        print(f"grid of {len(shown)} images -> {grid}", file=sys.stderr)
    if unreadable:
        print(
            f"{unreadable} of {len(paths)} files could not be read (named above); captioned the other {captioned}.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
