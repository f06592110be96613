"""Captioning building blocks shared by inference.py, characteristics.py, finetune.py's outputs and app.py: read any
image as RGB, load a model as Hub code on the right device, caption a batch (prompt-only generation, prompt sliced off,
text cleaned), and draw a picture grid.

```python
>>> model, processor = load_model("examples/rs-mini")  # doctest: +SKIP
>>> caption_images(model, processor, [load_image("RSICD_00001.jpg")], num_beams=3)  # doctest: +SKIP
['many buildings and green trees are in a dense residential area .']
```
"""

import glob
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import AutoModelForImageTextToText, AutoProcessor

from processing import DEFAULT_PROMPT, IMAGE_TOKEN, postprocess_caption
from tasks.likelihood import answer_tokens, likeliest_answers

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")
# What PIL raises for files it cannot decode: UnidentifiedImageError and truncated data are OSErrors, odd headers
# ValueError/SyntaxError, oversized images DecompressionBombError.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


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


def generation_inputs(model, processor, images: Sequence[Image.Image], prompt: str) -> dict[str, torch.Tensor]:
    """`"<image>" + prompt` for every image, on the model's device (pixels in its dtype): what `generate` takes."""
    images = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
    text = [IMAGE_TOKEN + prompt.removeprefix(IMAGE_TOKEN)] * len(images)
    inputs = processor(images=images, text=text, return_tensors="pt", padding="longest")
    return {
        key: value.to(model.device, dtype=model.dtype if key == "pixel_values" else None)
        for key, value in inputs.items()
        if key in ("input_ids", "attention_mask", "token_type_ids", "pixel_values")  # not the empty `labels`
    }


# Used only where a model's generation_config names no value (a bare PaliGemma config).
FALLBACK_DECODING = {"num_beams": 1, "max_new_tokens": 30}


def decoding_settings(model, num_beams: int | None = None, max_new_tokens: int | None = None) -> dict[str, int]:
    """{"num_beams", "max_new_tokens"}: the given values, else the model's own `generation_config` (what a
    finetune.py run saves: the decoding its reported scores were measured with)."""
    config = getattr(model, "generation_config", None)
    given = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
    return {
        name: int(value if value is not None else getattr(config, name, None) or FALLBACK_DECODING[name])
        for name, value in given.items()
    }


def generate_texts(
    model,
    processor,
    images: Sequence[Image.Image],
    prompt: str = DEFAULT_PROMPT,
    batch_size: int = 8,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    **generate_kwargs,
) -> list[str]:
    """The decoded text generated for each RGB PIL image from `"<image>" + prompt` only, the prompt sliced off
    (`<loc>` tokens kept: detection reads them).

    Decoding is deterministic (no sampling); `num_beams` / `max_new_tokens` left as None take the model's
    `generation_config` (`decoding_settings`), as do its other settings. Extra keyword arguments go to `generate`.
    """
    prompt = prompt.removeprefix(IMAGE_TOKEN)
    decoding = decoding_settings(model, num_beams, max_new_tokens)
    texts: list[str] = []
    for start in range(0, len(images), batch_size):
        inputs = generation_inputs(model, processor, images[start : start + batch_size], prompt)
        with torch.inference_mode():
            sequences = model.generate(**inputs, do_sample=False, **decoding, **generate_kwargs)
        # Every row has the same prompt, so the (left-padded) prompt length is the input width.
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :]
        texts += [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return texts


def choose_answers(
    model, processor, images: Sequence[Image.Image], prompt: str, answers: Sequence[str], batch_size: int = 8
) -> list[str]:
    """For each RGB PIL image, the likeliest of the closed set `answers` after `"<image>" + prompt` (e.g. the scene
    among the classes the model was trained on; `tasks.likelihood`): always one of them, never free text."""
    tokens, lengths = answer_tokens(processor.tokenizer, answers)  # once: every batch ranks the same answers
    chosen: list[str] = []
    for start in range(0, len(images), batch_size):
        inputs = generation_inputs(model, processor, images[start : start + batch_size], prompt)
        with torch.inference_mode():
            chosen += [answers[index] for index in likeliest_answers(model, inputs, tokens, lengths)]
    return chosen


def task_texts(
    model,
    processor,
    images: Sequence[Image.Image],
    task,
    batch_size: int = 8,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
) -> list[str]:
    """The raw answer per RGB PIL image for a `tasks` task, for its `read`: the likeliest of its closed set of
    answers when it has one (`choose_answers`: the scene classes a model recorded), else generated."""
    if getattr(task, "answers", None):
        return choose_answers(model, processor, images, task.prompt, task.answers, batch_size)
    return generate_texts(model, processor, images, task.prompt, batch_size, num_beams, max_new_tokens)


def caption_images(model, processor, images: Sequence[Image.Image], prompt: str = DEFAULT_PROMPT, *args, **kwargs):
    """Captions for RGB PIL images: `generate_texts` (same arguments), each cleaned by `postprocess_caption`."""
    texts = generate_texts(model, processor, images, prompt, *args, **kwargs)
    return [postprocess_caption(text, prompt.removeprefix(IMAGE_TOKEN)) for text in texts]


def render_grid(
    images: Sequence[str | Path | Image.Image],
    captions: Sequence[str],
    out_png: str | Path,
    columns: int = 4,
    wrap: int = 32,
) -> Path:
    """Write a PNG grid: each image (paths are read with `load_image`) under its caption, wrapped to `wrap` chars
    (line breaks in a caption are kept); `columns` images per row."""
    from matplotlib.figure import Figure  # object API: no pyplot state, renders with Agg

    if not images or len(images) != len(captions):
        raise ValueError(f"render_grid needs as many captions as images (got {len(images)} and {len(captions)}).")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(3.2 * columns, 4.6 * rows), layout="constrained")  # room for 6 caption lines
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


class ModelNotFoundError(FileNotFoundError):
    """A model reference that names no saved model: the message says why and how to fix it, in one line."""


def check_model_location(name: str, revision: str | None = None) -> None:
    """Raise ModelNotFoundError (message: what is wrong and the fix) for a model reference that cannot load, before
    any network call: a path that looks local but is not a model folder, or an uncached Hub id while offline.

    A Hub id is `owner/name`; anything else (absolute, ./ or ~, more than one '/', or an `owner` that is a folder
    here, such as outputs/...) is a local path, and a missing local path never reaches the Hub client's retries.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{name!r} is a folder without config.json, not a saved model. Fix: pass the folder that "
                "save_pretrained wrote (e.g. a run's output_dir/merged)."
            )
        return
    looks_local = (
        path.is_absolute() or name.startswith((".", "~")) or name.count("/") != 1 or Path(name.split("/")[0]).is_dir()
    )
    if looks_local:
        raise ModelNotFoundError(
            f"{name!r}: the folder does not exist. Fix: pass an existing model folder (e.g. examples/rs-mini; "
            "`python -m scripts.make_tiny_checkpoint DIR` builds a random test model) or a Hub id owner/name."
        )
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if constants.HF_HUB_OFFLINE and not isinstance(cached, str):
        raise ModelNotFoundError(
            f"{name!r} is not a local folder, and as a Hub id it is not in the cache while HF_HUB_OFFLINE=1. "
            "Fix: download it once online (unset HF_HUB_OFFLINE; `make` sets it), or pass a local folder."
        )


def load_model(model_name_or_path: str):
    """(model in eval mode on the automatic device/dtype, processor) from a folder or Hub id, as Hub custom code.

    A reference that cannot load raises ModelNotFoundError before any network call (`check_model_location`)."""
    check_model_location(model_name_or_path)
    device, dtype = pick_device_and_dtype()
    try:
        model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, trust_remote_code=True, dtype=dtype)
        processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=True)
    except OSError as error:  # a Hub id that is unreachable, unknown or gated: transformers says which
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelNotFoundError(f"{model_name_or_path!r} could not be loaded: {reason}") from error
    return model.to(device).eval(), processor
