"""Caption aerial images with a TSN-PaliGemma (or any PaliGemma) checkpoint: files, folders or globs in, one record
per image out (text, JSONL or CSV on stdout), optionally a picture grid.

    python inference.py IMAGE_OR_FOLDER_OR_GLOB... --model PATH_OR_HUB_ID [--prompt "caption en"] [--batch_size 8]
        [--num_beams 1] [--max_new_tokens 30] [--format {text,jsonl,csv}] [--grid grid.png]

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
import glob
import json
import math
import sys
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import AutoModelForImageTextToText, AutoProcessor, HfArgumentParser

from processing import DEFAULT_PROMPT, IMAGE_TOKEN, decode_captions

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")
FORMATS = ("text", "jsonl", "csv")
# What PIL raises for files it cannot decode: UnidentifiedImageError and truncated data are OSErrors, odd headers
# ValueError/SyntaxError, oversized images DecompressionBombError.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass
class InferenceArguments:
    model: str = field(metadata={"help": "Local checkpoint folder or Hub model id."})
    inputs: list[str] = field(
        default_factory=list,
        metadata={"help": "Image files, folders (their images, sorted, not recursive) or glob patterns (quote them)."},
    )
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "Task prompt; '<image>' is prepended."})
    batch_size: int = field(default=8, metadata={"help": "Images per generate call (read lazily, per batch)."})
    num_beams: int = field(default=1, metadata={"help": "1 = greedy decoding; 3-5 = beam search."})
    max_new_tokens: int = field(default=30, metadata={"help": "Longest caption in tokens."})
    format: Literal["text", "jsonl", "csv"] = field(
        default="text",
        metadata={"help": "stdout records: text = 'file<TAB>caption', jsonl = {file, caption}, csv = file,caption."},
    )
    grid: str | None = field(default=None, metadata={"help": "Also write a PNG grid of images with their captions."})
    grid_max_images: int = field(default=16, metadata={"help": "At most this many (the first) images in --grid."})

    def __post_init__(self):
        for name in ("batch_size", "num_beams", "max_new_tokens", "grid_max_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)} is invalid; use a positive integer.")


def collect_inputs(patterns: Sequence[str]) -> list[Path]:
    """Expand files, folders (their image files, sorted) and glob patterns, keeping order and dropping duplicates.

    A file named explicitly is kept whatever its extension (it is reported later if it is not an image). Raises
    FileNotFoundError naming the first pattern that matches nothing.
    """
    paths: dict[Path, None] = {}  # ordered set
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = _folder_images(path)
        else:
            found = []
            for match in sorted(glob.glob(pattern, recursive=True)):
                match = Path(match)
                found += _folder_images(match) if match.is_dir() else [match] if match.is_file() else []
        if not found:
            raise FileNotFoundError(
                f"input {pattern!r} matches no image: pass an image file, a folder holding "
                f"{'/'.join(IMAGE_EXTENSIONS)} files, or a glob such as 'images/*.jpg'."
            )
        paths.update(dict.fromkeys(found))
    return list(paths)


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Read any PIL-readable image as 8-bit RGB (first frame of multi-page files, EXIF orientation applied).

    `max_pixels`: refuse (ValueError) a larger image before decoding it.

    - 16/32-bit integer and float grayscale ("I;16", "I", "F"): linear stretch from the image's own min..max to
      0..255 (remote-sensing products rarely fill their whole range, so a fixed /257 would be near black);
    - transparency (RGBA, LA, palette with a transparent colour): composited on white, as viewers show it;
    - grayscale, 1-bit, palette, CMYK, YCbCr: PIL's conversion to RGB.

    Raises OSError/ValueError (PIL's errors) for unreadable files.
    """
    with Image.open(path) as image:
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ValueError(f"{image.width}x{image.height} pixels is over the limit of {max_pixels:,} pixels")
        image.load()  # decode now, so truncated data fails here and not later
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)  # (H, W)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def caption_images(
    model,
    processor,
    images: Sequence[Image.Image],
    prompt: str = DEFAULT_PROMPT,
    batch_size: int = 8,
    num_beams: int = 1,
    max_new_tokens: int = 30,
    **generate_kwargs,
) -> list[str]:
    """Captions for RGB PIL images: generate from `"<image>" + prompt` only, slice the prompt off, clean the text.

    Decoding is deterministic (no sampling). Extra keyword arguments go to `model.generate`.
    """
    prompt = prompt.removeprefix(IMAGE_TOKEN)
    captions: list[str] = []
    for start in range(0, len(images), batch_size):
        batch = list(images[start : start + batch_size])
        inputs = processor(images=batch, text=[IMAGE_TOKEN + prompt] * len(batch), return_tensors="pt",
                           padding="longest")  # fmt: skip
        inputs = {
            key: value.to(model.device, dtype=model.dtype if key == "pixel_values" else None)
            for key, value in inputs.items()
            if key in ("input_ids", "attention_mask", "token_type_ids", "pixel_values")  # not the empty `labels`
        }
        with torch.inference_mode():
            sequences = model.generate(**inputs, do_sample=False, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                       **generate_kwargs)  # fmt: skip
        # Every row has the same prompt, so the (left-padded) prompt length is the input width.
        captions += decode_captions(processor, sequences, inputs["input_ids"].shape[1], prompt)
    return captions


def render_grid(images: Sequence[str | Path | Image.Image], captions: Sequence[str], out_png: str | Path,
                columns: int = 4, wrap: int = 32) -> Path:  # fmt: skip
    """Write a PNG grid: each image (paths are read with `load_image`) under its caption, wrapped to `wrap` chars
    (line breaks in a caption are kept); `columns` images per row."""
    from matplotlib.figure import Figure  # object API: no pyplot state, renders with Agg

    if not images or len(images) != len(captions):
        raise ValueError(f"render_grid needs as many captions as images (got {len(images)} and {len(captions)}).")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(3.2 * columns, 4.0 * rows), layout="constrained")
    for index, (image, caption) in enumerate(zip(images, captions)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(image if isinstance(image, Image.Image) else load_image(image))
        axes.set_axis_off()
        # Line breaks in a caption are kept (e.g. "prediction\n[ref] reference"); control bytes have no glyph.
        lines = ["".join(char for char in line if char.isprintable()) for line in caption.splitlines()]
        title = "\n".join(textwrap.fill(line, width=wrap) for line in lines if line) or "(empty caption)"
        if not isinstance(image, Image.Image):
            title = f"{Path(image).name}\n{title}"
        axes.set_title(title, fontsize=8, loc="left")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=100, facecolor="white")
    return out_png


def pick_device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """CUDA in bf16 where supported (fp32 otherwise), else CPU in fp32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.device("cpu"), torch.float32


def load_model(model_name_or_path: str):
    """(model in eval mode on the automatic device/dtype, processor) from a folder or Hub id, as Hub custom code."""
    device, dtype = pick_device_and_dtype()
    model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, trust_remote_code=True, dtype=dtype)
    processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=True)
    return model.to(device).eval(), processor


class RecordWriter:
    """One record per image on `stream`: text (`file<TAB>caption`), JSONL or CSV with a header."""

    def __init__(self, stream: TextIO, format: str):
        if format not in FORMATS:
            raise ValueError(f"format={format!r} is invalid; use one of {list(FORMATS)}.")
        self.stream, self.format = stream, format
        self.csv = csv.writer(stream, lineterminator="\n") if format == "csv" else None
        if self.csv:
            self.csv.writerow(["file", "caption"])

    def write(self, file: str, caption: str) -> None:
        if self.csv:
            self.csv.writerow([file, caption])
        elif self.format == "jsonl":
            self.stream.write(json.dumps({"file": file, "caption": caption}, ensure_ascii=False) + "\n")
        else:
            self.stream.write(f"{file}\t{caption}\n")
        self.stream.flush()


def _batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def caption_files(model, processor, paths: Iterable[Path], args: InferenceArguments,
                  errors: TextIO | None = None) -> Iterator[tuple[Path, str]]:  # fmt: skip
    """(path, caption) per readable file, reading images lazily one batch at a time; unreadable files are named
    on `errors` (default: stderr) with the reason and skipped."""
    errors = errors or sys.stderr
    for batch_paths in _batches(list(paths), args.batch_size):
        readable, images = [], []
        for path in batch_paths:
            try:
                images.append(load_image(path))
                readable.append(path)
            except IMAGE_ERRORS as error:
                errors.write(f"unreadable image {path}: {type(error).__name__}: {error}\n")
        if images:
            captions = caption_images(model, processor, images, args.prompt, args.batch_size, args.num_beams,
                                      args.max_new_tokens)  # fmt: skip
            yield from zip(readable, captions)


def parse_args(argv: list[str] | None = None) -> InferenceArguments:
    """Positional INPUTs may come before or after the options (`--inputs a b` works too)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    leading = 0
    while leading < len(argv) and not argv[leading].startswith("-"):
        leading += 1
    if leading:
        argv = ["--inputs", *argv[:leading], *argv[leading:]]
    parser = HfArgumentParser(InferenceArguments, usage="inference.py INPUT... --model PATH_OR_HUB_ID [options]",
                              description=__doc__.split("\n\n")[0])  # fmt: skip
    try:
        args, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except ValueError as error:  # __post_init__'s checks: exit like argparse, with the message
        parser.error(str(error))
    unknown = [item for item in remaining if item.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.inputs = [*args.inputs, *remaining]  # positionals after the options
    if not args.inputs:
        parser.error("no INPUT given: pass image files, folders or glob patterns before or after the options.")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 some files unreadable, 2 bad inputs)."""
    args = parse_args(argv)
    try:
        paths = collect_inputs(args.inputs)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model, processor = load_model(args.model)
    writer = RecordWriter(sys.stdout, args.format)
    captioned: list[tuple[Path, str]] = []
    for path, caption in caption_files(model, processor, paths, args):
        writer.write(str(path), caption)
        captioned.append((path, caption))
    unreadable = len(paths) - len(captioned)
    if args.grid and captioned:
        shown = captioned[: args.grid_max_images]
        grid = render_grid([path for path, _ in shown], [caption for _, caption in shown], args.grid)
        print(f"grid of {len(shown)} images -> {grid}", file=sys.stderr)
    if unreadable:
        print(f"{unreadable} of {len(paths)} files could not be read (named above); captioned the other "
              f"{len(captioned)}.", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
