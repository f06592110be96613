"""The RISC folder layout: `captions.csv` plus an image folder, read into normalised rows.

A RISC folder looks like::

    DATA_DIR/
        captions.csv      source,split,image,caption_1,...,caption_5 (one row per image)
        resized/          the images (`imgs/` or `images/` are accepted too)

This module only reads and normalises; deciding whether a row is usable is `validation.py`'s job.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

CAPTIONS_FILE = "captions.csv"
IMAGE_DIR_NAMES = ("resized", "imgs", "images")
RISC_SOURCES = ("NWPU", "RSICD", "UCM")
# Sydney-Captions is not part of RISC, but its Karpathy file is a common companion; importing it gives
# rows with source SYDNEY, which `all` and the `sydney` config load.
KNOWN_SOURCES = (*RISC_SOURCES, "SYDNEY")
SPLITS = ("train", "val", "test")
NUM_CAPTIONS = 5
CAPTION_COLUMNS = tuple(f"caption_{i}" for i in range(1, NUM_CAPTIONS + 1))
REQUIRED_COLUMNS = ("source", "split", "image", *CAPTION_COLUMNS)

# Bumped whenever the way rows are read or stored changes, so old caches are not reused.
LAYOUT_VERSION = "1"


@dataclass(frozen=True)
class RISCRow:
    """One data row of `captions.csv`, normalised.

    `line` is the 1-based line of `captions.csv` where the record starts (the header is line 1).
    `captions` holds one entry per caption column, stripped; None where the row is too short to have it.
    `num_fields`/`num_columns` let validation spot rows whose fields do not line up with the header.
    """

    line: int
    source: str
    split: str
    image: str
    raw_image: str
    captions: tuple[str | None, ...]
    num_fields: int
    num_columns: int


def ordered_splits(names) -> list[str]:
    """`names` (split names) in the usual order: train, val, test, then any others sorted."""
    return [split for split in SPLITS if split in names] + sorted(split for split in names if split not in SPLITS)


def normalize_image_name(value: str | None) -> str:
    """File name of an image as written in `captions.csv`, made portable.

    Surrounding whitespace is dropped, Windows backslashes become slashes and any folder part is removed
    (RISC files written on Windows hold names like `dataset/resized\\NWPU_27985.jpg`).

    >>> normalize_image_name("  dataset/resized\\\\NWPU_27985.jpg ")
    'NWPU_27985.jpg'
    """
    if value is None:
        return ""
    name = value.strip().strip('"').strip().replace("\\", "/")
    return name.rsplit("/", 1)[-1].strip()


def find_image_dir(data_dir: str | os.PathLike) -> Path:
    """The image folder of a RISC folder: the first of `resized/`, `imgs/`, `images/` that exists."""
    data_dir = Path(data_dir)
    for name in IMAGE_DIR_NAMES:
        if (data_dir / name).is_dir():
            return data_dir / name
    raise FileNotFoundError(
        f"No image folder in data_dir={str(data_dir)!r}: expected one of "
        f"{', '.join(name + '/' for name in IMAGE_DIR_NAMES)}. "
        "Fix: put the images in DATA_DIR/resized/ (or import them with `python -m dataset_builder import ...`)."
    )


def captions_path(data_dir: str | os.PathLike) -> Path:
    path = Path(data_dir) / CAPTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"No {CAPTIONS_FILE} in data_dir={str(data_dir)!r}. Fix: point data_dir at a RISC folder "
            f"({CAPTIONS_FILE} with columns {','.join(REQUIRED_COLUMNS)} and a resized/ image folder), "
            "or build one with `python -m dataset_builder import ...`."
        )
    return path


def read_captions_csv(data_dir: str | os.PathLike) -> list[RISCRow]:
    """Read `captions.csv` of a RISC folder into normalised rows (no validation beyond the header).

    Source names are upper-cased and splits lower-cased, both stripped; captions are stripped. Extra columns
    (e.g. `image_path`) are ignored. A UTF-8 byte-order mark is tolerated.
    """
    path = captions_path(data_dir)
    rows: list[RISCRow] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [column.strip().lower() for column in next(reader)]
        except StopIteration:
            raise ValueError(
                f"{path} is empty. Fix: write the header {','.join(REQUIRED_COLUMNS)} and one row per image."
            ) from None
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise ValueError(
                f"{path} lacks the column(s) {', '.join(missing)} (header: {','.join(header)}). "
                f"Fix: the header must contain {','.join(REQUIRED_COLUMNS)}."
            )
        index = {column: header.index(column) for column in REQUIRED_COLUMNS}
        start_line = reader.line_num + 1
        for fields in reader:
            line, start_line = start_line, reader.line_num + 1
            if not any(field.strip() for field in fields):
                continue  # blank line

            value = {column: fields[i] if i < len(fields) else None for column, i in index.items()}  # None: too short
            rows.append(
                RISCRow(
                    line=line,
                    source=(value["source"] or "").strip().upper(),
                    split=(value["split"] or "").strip().lower(),
                    image=normalize_image_name(value["image"]),
                    raw_image=value["image"] or "",
                    captions=tuple(None if value[c] is None else value[c].strip() for c in CAPTION_COLUMNS),
                    num_fields=len(fields),
                    num_columns=len(header),
                )
            )
    return rows


def fingerprint(data_dir: str | os.PathLike) -> str:
    """A short hash of everything a load depends on: `captions.csv` bytes and the image folder listing.

    The listing covers each file's name, size and modification time, so replacing, adding or touching an image
    gives a new fingerprint without reading any image (a `stat` per file: ~50 ms for RISC's 44k images).
    """
    digest = hashlib.sha256(f"risc-layout-{LAYOUT_VERSION}".encode())
    digest.update(captions_path(data_dir).read_bytes())
    image_dir = find_image_dir(data_dir)
    digest.update(image_dir.name.encode())
    with os.scandir(image_dir) as entries:
        listing = sorted((entry.name, entry.stat()) for entry in entries if entry.is_file())
    digest.update("".join(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n" for name, stat in listing).encode())
    return digest.hexdigest()[:16]
