"""Importers: write the RISC layout (captions.csv + resized/) from the caption files users actually hold.

    >>> from dataset_builder.importers import import_annotations
    >>> summary = import_annotations("karpathy", ["dataset_rsicd.json"], images_dir="RSICD_images",
    ...                              output_dir="RISC")  # doctest: +SKIP

CLI: `python -m dataset_builder import FORMAT SRC [SRC ...] --images IMG_DIR --output_dir OUT`.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from .formats import FORMATS
from .writer import ImportRecord, ImportSummary, RISCImportError, convert_image, to_rgb, write_risc


def read_annotations(
    format: str,
    paths: str | os.PathLike | list,
    source: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    **kwargs,
) -> list[ImportRecord]:
    """Parse annotation file(s) of `format` into records; `limit` keeps the first N images of each file."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not supported. Fix: use one of {', '.join(FORMATS)}.")
    reader = FORMATS[format]
    extra = {k: v for k, v in kwargs.items() if k in inspect.signature(reader).parameters and v is not None}
    records: list[ImportRecord] = []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        records += reader(Path(path), source=source, split=split, **extra)[: limit or None]
    return records


def import_annotations(
    format: str,
    paths: str | os.PathLike | list,
    images_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    source: str | None = None,
    split: str | None = None,
    size: int | None = 224,
    limit: int | None = None,
    skip_invalid: bool = False,
    append: bool = False,
    image_column: str | None = None,
    num_threads: int | None = None,
) -> ImportSummary:
    """Read annotation file(s) and write a RISC folder at `output_dir` (see `write_risc` for the rules).

    Args:
        format: karpathy, coco, nwpu_lines, flickr8k, csv or jsonl.
        paths: the annotation file(s) (for nwpu_lines: the folder or a `*_images.txt`).
        images_dir: folder with the images (searched recursively).
        output_dir: the RISC folder to write.
        source / split: force these values (otherwise read from the file or its name).
        size: output side in pixels (224 default; 0/None keeps the size).
        limit: import only the first N images of each file (quick tries, tests).
        skip_invalid: skip and report bad entries instead of raising one error listing all.
        append: add to an existing RISC folder instead of replacing its captions.csv.
    """
    records = read_annotations(format, paths, source=source, split=split, limit=limit, image_column=image_column)
    return write_risc(
        records, images_dir, output_dir, size=size, skip_invalid=skip_invalid, append=append, num_threads=num_threads
    )


__all__ = [
    "FORMATS",
    "ImportRecord",
    "ImportSummary",
    "RISCImportError",
    "convert_image",
    "import_annotations",
    "read_annotations",
    "to_rgb",
    "write_risc",
]
