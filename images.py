"""Images in and out: reading any image as the model sees it (one conversion to 8-bit RGB for training data,
evaluation, inference and the app, so that the same file always gives the same pixels), finding the images a user
names (files, folders, globs), and drawing them in a grid with their texts.

```python
>>> image = load_image("RSICD_00001.jpg")  # doctest: +SKIP
>>> image.mode  # doctest: +SKIP
'RGB'
```

- 16/32-bit integer and float grayscale ("I;16", "I", "F"): linear stretch from the image's own min..max to 0..255
  (remote-sensing products rarely fill their whole range, so a fixed /257 would be near black);
- transparency (RGBA, LA, palette with a transparent colour): composited on white, as viewers show it;
- grayscale, 1-bit, palette, CMYK, YCbCr: PIL's conversion to RGB;
- EXIF orientation applied; 8-bit RGB pixels are kept as they are.
"""

import glob
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# What PIL raises for files it cannot decode: UnidentifiedImageError and truncated data are OSErrors, odd headers
# ValueError/SyntaxError, oversized images DecompressionBombError.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def load_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Read any PIL-readable image as 8-bit RGB (first frame of multi-page files, converted by `to_rgb`).

    `max_pixels`: refuse (ValueError) a larger image before decoding it.

    Raises OSError/ValueError (PIL's errors, see `IMAGE_ERRORS`) for unreadable files.
    """
    with Image.open(path) as image:
        if max_pixels is not None and image.width * image.height > max_pixels:
            raise ValueError(f"{image.width}x{image.height} pixels is over the limit of {max_pixels:,} pixels")
        image.load()  # decode now, so truncated data fails here and not later
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB version of an open PIL image (a decoded `datasets` row, a frame already read), converted as
    `load_image` converts a file: EXIF orientation applied, then the rules of the module docstring.

    Returns a new image; `image` is left as it is.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in HIGH_DEPTH_MODES:
        return _stretch_to_rgb(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _stretch_to_rgb(image: Image.Image) -> Image.Image:
    """One-channel 16/32-bit or float image, stretched linearly from its min..max to 0..255 (a flat one: black)."""
    values = np.asarray(image, dtype=np.float64)  # (H, W)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L").convert("RGB")


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def collect_inputs(patterns: Sequence[str], missing: list[str] | None = None) -> list[Path]:
    """Expand files, folders (their image files, sorted) and glob patterns, keeping order and dropping duplicates.

    A file named explicitly is kept whatever its extension (it is reported later if it is not an image). A pattern
    that matches nothing raises FileNotFoundError naming it, or, given a `missing` list, is appended to it.
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
        if not found and missing is None:
            raise FileNotFoundError(no_match_message(pattern))
        if not found:
            missing.append(pattern)
        paths.update(dict.fromkeys(found))
    return list(paths)


def no_match_message(pattern: str) -> str:
    return (
        f"input {pattern!r} matches no image: pass an image file, a folder holding "
        f"{'/'.join(IMAGE_EXTENSIONS)} files, or a glob such as 'images/*.jpg'."
    )


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


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
