"""Parsers for the caption formats users hold; each returns `ImportRecord`s (no image is opened here).

- `karpathy`: `dataset_rsicd.json`, `dataset_ucm.json`, `dataset_sydney.json` (`images[].sentences[].raw`,
  split per image, `restval` -> train) and NWPU-Captions' `dataset_nwpu.json`
  (`{class: [{filename, raw, raw_1..raw_4, split}]}`).
- `coco`: COCO captions JSON (`images[]` with id/file_name, `annotations[]` with image_id/caption); the split
  comes from the file name (`captions_val2017.json`, `data_test_UCM.json`) or `split=`.
- `nwpu_lines`: `{split}_images.txt` + `{split}_references_{0..4}.txt`, line i = image i; split = file prefix.
- `flickr8k`: `captions.txt` (CSV `image,caption`) or `Flickr8k.token.txt` (`name#k<TAB>caption`); no split in
  the file: `split=` (default train).
- `csv` / `jsonl`: an image column and captions as a `captions` list (JSON), `caption_1..N` columns, or one
  `caption` per row (rows of one image are grouped); optional `source` and `split` columns.

`split=...` forces one split for every record; otherwise the file's own split is used. `source=...` likewise;
otherwise it is read from the file (`dataset` key, `source` column) or its name (rsicd/ucm/sydney/nwpu).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

from ..layout import CAPTIONS_FILE
from .writer import ImportRecord

logger = logging.getLogger(__name__)

SOURCE_ALIASES = {"rsicd": "RSICD", "ucm": "UCM", "uc merced": "UCM", "sydney": "SYDNEY", "nwpu": "NWPU"}
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "restval": "train",  # Karpathy's "rest of val", used for training
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
IMAGE_COLUMNS = ("image", "filename", "file_name", "image_name", "image_file", "image_path", "img", "path")
SINGLE_CAPTION_COLUMNS = ("caption", "text", "sentence", "raw")


def normalize_split(value) -> str:
    text = str(value or "").strip().lower()
    return SPLIT_ALIASES.get(text, text)


def normalize_source(value) -> str:
    text = str(value or "").strip()
    return SOURCE_ALIASES.get(text.lower(), text.upper())


def infer_source(path: Path, hint: str | None = None) -> str | None:
    """Source named by `hint` (e.g. Karpathy's `dataset` key) or by the file name, None if neither tells."""
    words = re.findall(r"[a-z]+", f"{hint or ''} {path.name}".lower())
    return next((SOURCE_ALIASES[word] for word in words if word in SOURCE_ALIASES), None)


def infer_split(path: Path) -> str | None:
    """Split named by the file name: `captions_val2017.json` -> val, `data_test_UCM.json` -> test."""
    words = re.findall(r"[a-z]+", path.stem.lower())
    return next((SPLIT_ALIASES[word] for word in words if word in SPLIT_ALIASES and word != "restval"), None)


def _require_source(path: Path, source: str | None, hint: str | None = None) -> str:
    resolved = normalize_source(source) if source else infer_source(path, hint)
    if not resolved:
        raise ValueError(
            f"Cannot tell the source of {path}: its name says none of rsicd/ucm/sydney/nwpu. "
            "Fix: pass source='RSICD' (CLI: --source RSICD)."
        )
    return resolved


def _require_split(path: Path, split: str | None, what: str) -> str:
    resolved = normalize_split(split) if split else infer_split(path)
    if not resolved:
        raise ValueError(f"{path} holds no split ({what}) and its name names none. Fix: pass split='train' (--split).")
    return resolved


def read_karpathy(path, source: str | None = None, split: str | None = None) -> list[ImportRecord]:
    """Karpathy-style JSON (RSICD/UCM/Sydney `dataset_*.json`) and NWPU-Captions' `dataset_nwpu.json`."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    records = []
    if isinstance(data, dict) and "images" in data:
        resolved_source = _require_source(path, source, data.get("dataset"))
        for position, entry in enumerate(data["images"]):
            filename = entry.get("filename") or entry.get("file_name") or ""
            folder = entry.get("filepath") or ""
            captions = [s.get("raw") or " ".join(s.get("tokens", [])) for s in entry.get("sentences", [])]
            records.append(
                ImportRecord(
                    source=resolved_source,
                    split=normalize_split(split or entry.get("split")),
                    image_ref=f"{folder}/{filename}" if folder else filename,
                    captions=[caption.strip() for caption in captions],
                    origin=f"{path.name} images[{position}]",
                )
            )
    elif isinstance(data, dict) and all(isinstance(value, list) for value in data.values()):
        # NWPU-Captions: {"airport": [{"filename": "airport_1.jpg", "raw": ..., "raw_1": ..., "split": ...}]}
        resolved_source = _require_source(path, source or "NWPU")
        for category, entries in data.items():
            for position, entry in enumerate(entries):
                keys = ["raw"] + sorted((k for k in entry if re.fullmatch(r"raw_\d+", k)), key=lambda k: int(k[4:]))
                records.append(
                    ImportRecord(
                        source=resolved_source,
                        split=normalize_split(split or entry.get("split")),
                        image_ref=f"{category}/{entry.get('filename', '')}",
                        captions=[str(entry[k]).strip() for k in keys if k in entry],
                        origin=f"{path.name} {category}[{position}]",
                    )
                )
    else:
        raise ValueError(
            f"{path} is not a Karpathy JSON (no 'images' list) nor NWPU's dataset_nwpu.json ({{class: [entries]}}). "
            "Fix: pick the format matching the file (coco, nwpu_lines, flickr8k, csv, jsonl)."
        )
    return records


def read_coco(path, source: str | None = None, split: str | None = None) -> list[ImportRecord]:
    """COCO captions JSON: `images` (id, file_name) and `annotations` (image_id, caption), in file order."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path} is not a COCO captions file (needs 'images' and 'annotations'). Fix: check format.")
    resolved_source = _require_source(path, source)
    resolved_split = _require_split(path, split, "COCO files have no split field")
    captions: dict = {image["id"]: [] for image in data["images"]}
    orphans = 0
    for annotation in data["annotations"]:
        if annotation["image_id"] in captions:
            captions[annotation["image_id"]].append(str(annotation["caption"]).strip())
        else:
            orphans += 1
    if orphans:
        logger.warning("%s: %d annotations name an image id that is not in 'images'; they are ignored", path, orphans)
    return [
        ImportRecord(
            resolved_source,
            resolved_split,
            image["file_name"],
            captions[image["id"]],
            f"{path.name} images[{position}] (id {image['id']})",
        )
        for position, image in enumerate(data["images"])
    ]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def read_nwpu_lines(path, source: str | None = None, split: str | None = None) -> list[ImportRecord]:
    """Line-aligned NWPU files: `{split}_images.txt` and `{split}_references_{0..4}.txt` (line i = image i).

    `path` is the folder holding them (every split with an image list is read) or one `*_images.txt` file.
    """
    path = Path(path)
    if path.is_dir():
        image_lists = sorted(path.glob("*_images.txt"))
        for references in sorted(path.glob("*_references_0.txt")):
            prefix = references.name[: -len("_references_0.txt")]
            if not (path / f"{prefix}_images.txt").is_file():
                logger.warning(
                    "%s has %s_references_*.txt but no %s_images.txt: that split cannot be imported "
                    "(its image names are unknown)",
                    path,
                    prefix,
                    prefix,
                )
    else:
        image_lists = [path]
    if not image_lists:
        raise FileNotFoundError(f"No *_images.txt in {path}. Fix: point at the folder of the NWPU line files.")
    resolved_source = normalize_source(source or "NWPU")
    records = []
    for image_list in image_lists:
        prefix = image_list.name[: -len("_images.txt")]
        images = [line.strip() for line in _lines(image_list)]
        reference_files = sorted(
            image_list.parent.glob(f"{prefix}_references_*.txt"), key=lambda p: int(p.stem.rsplit("_", 1)[1])
        )
        if not reference_files:
            raise FileNotFoundError(f"No {prefix}_references_*.txt next to {image_list}.")
        references = [_lines(file) for file in reference_files]
        for file, lines in zip(reference_files, references):
            if len(lines) != len(images):
                raise ValueError(
                    f"{file} has {len(lines)} lines but {image_list} has {len(images)}: the files are not aligned. "
                    "Fix: use the files of one release, unmodified."
                )
        resolved_split = normalize_split(split or prefix)
        for position, image in enumerate(images):
            captions = [lines[position].strip() for lines in references]
            origin = f"{image_list.name} line {position + 1}"
            records.append(ImportRecord(resolved_source, resolved_split, image, captions, origin))
    return records


def read_flickr8k(path, source: str | None = None, split: str | None = None) -> list[ImportRecord]:
    """Flickr8k `captions.txt` or `Flickr8k.token.txt`; `source` is required unless the file name names one."""
    path = Path(path)
    resolved_source = _require_source(path, source)
    resolved_split = normalize_split(split or "train")
    lines = _lines(path)
    if lines and lines[0].strip().lower().replace(" ", "") == "image,caption":
        reader = csv.reader(lines[1:])
        items = ((row[0], ",".join(row[1:])) for row in reader if row)
        offset = 2
    else:
        items = ((line.split("\t", 1)[0].rsplit("#", 1)[0], line.split("\t", 1)[1]) for line in lines if "\t" in line)
        offset = 1
    records: dict[str, ImportRecord] = {}  # one per image, in order of first appearance
    for position, (image, caption) in enumerate(items):
        image = image.strip()
        if image not in records:
            origin = f"{path.name} line {position + offset}"
            records[image] = ImportRecord(resolved_source, resolved_split, image, [], origin)
        records[image].captions.append(caption.strip())
    return list(records.values())


def _table_rows(path: Path) -> list[dict]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return [json.loads(line) for line in _lines(path) if line.strip()]
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _table_columns(path: Path, rows: list[dict], image_column: str | None) -> tuple[dict, str, Callable]:
    """(keys, image column, captions of a row) of a CSV/JSONL table, found from the first row's keys; ValueError
    naming the columns there are. `keys` maps lower-cased names to the header as written, so column matching ignores
    case and surrounding spaces. A row's captions are its `captions` list if there is one, else caption_1..N (in
    numeric order: caption_10 after caption_9), else its one-caption-per-row column."""
    keys = {key.strip().lower(): key for key in rows[0] if key is not None}
    if image_column:
        image_key = keys.get(image_column.lower())
    else:
        image_key = next((keys[k] for k in IMAGE_COLUMNS if k in keys), None)
    if image_key is None:
        raise ValueError(
            f"{path}: no image column among {', '.join(keys)}. Fix: pass image_column=... (--image_column)."
        )
    numbered = sorted((k for k in keys if re.fullmatch(r"caption_?\d+", k)), key=lambda k: int(re.sub(r"\D", "", k)))
    single = next((keys[k] for k in SINGLE_CAPTION_COLUMNS if k in keys), None)
    if "captions" not in keys and not numbered and single is None:
        raise ValueError(f"{path}: no caption column (captions, caption_1..N or caption) among {', '.join(keys)}.")

    def captions(row: dict) -> list:
        if "captions" in keys:
            value = row[keys["captions"]]
            return json.loads(value) if isinstance(value, str) else list(value or [])
        if numbered:
            return [str(row[keys[k]] or "") for k in numbered]
        return [str(row.get(single) or "")]

    return keys, image_key, captions


def read_table(
    path, source: str | None = None, split: str | None = None, image_column: str | None = None
) -> list[ImportRecord]:
    """Generic CSV/JSONL (see the module docstring). A RISC `captions.csv` is a valid input: re-importing a folder
    converts its images to RGB and resizes them."""
    path = Path(path)
    rows = _table_rows(path)
    if not rows:
        raise ValueError(f"{path} has no rows.")
    keys, image_key, captions_of = _table_columns(path, rows, image_column)
    file_split = split or (None if "split" in keys else infer_split(path))
    file_source = source or (None if "source" in keys else _require_source(path, None))
    # Rows of the same image are merged (one-caption-per-row tables), in order of first appearance; split, source
    # and origin come from the image's first row.
    offset = 1 if path.suffix.lower() in (".jsonl", ".ndjson") else 2  # CSV: line 1 is the header
    records: dict[str, ImportRecord] = {}
    for position, row in enumerate(rows):
        image = str(row.get(image_key) or "").strip()
        captions = captions_of(row)
        if image not in records:
            row_split = normalize_split(file_split or row.get(keys.get("split", ""), ""))
            row_source = normalize_source(file_source or row.get(keys.get("source", ""), ""))
            records[image] = ImportRecord(row_source, row_split, image, [], f"{path.name} line {position + offset}")
        records[image].captions.extend(str(caption).strip() for caption in captions)
    if path.name == CAPTIONS_FILE:
        logger.info("Re-importing the RISC file %s: images are converted to RGB and resized", path)
    return list(records.values())


FORMATS = {
    "karpathy": read_karpathy,
    "coco": read_coco,
    "nwpu_lines": read_nwpu_lines,
    "flickr8k": read_flickr8k,
    "csv": read_table,
    "jsonl": read_table,
}
