"""Images with captions or a class, as users hold them, read straight into a `datasets.DatasetDict` with RISC's
columns (`image`, `captions`: one or more, `source`, `filename`) plus `label` (a class, "" where none):

- a CSV file: `image,caption` (one row per caption; `file_name`/`text` name them too), or `image,label`; optional
  `split` and `source` columns;
- a JSONL file: PaliGemma's `{"image", "prefix": "caption en", "suffix": "a caption"}`, `{"image", "captions": [...]}`
  or `{"image", "label"}`, optional `split`, `source`;
- a COCO captions JSON (`images` with `file_name`, `annotations` with `image_id` and `caption`);
- a folder in `datasets`' imagefolder layout: a `metadata.csv` / `metadata.jsonl` (`file_name` and `text`,
  `captions` or `label`), or a folder per class (`airport/1.jpg`: torchvision's `ImageFolder`), each optionally
  under `train/`, `val/` (or `validation/`) and `test/`.

Paths are relative to the file (or folder) that names them. A row's split is its `split` column or its top folder;
without either, a deterministic split by a hash of the file name (`hashed_split`: `--val_fraction` and
`--test_fraction` of the images, the same on every machine and run). `source` defaults to the data's own name (the
file's stem or the folder's name). Every problem names the file, the row and the image, and the fix.

>>> splits = load_user_data("my_captions.csv", val_fraction=0.1, test_fraction=0.1)  # doctest: +SKIP
>>> splits["train"][0]["captions"]  # doctest: +SKIP
['a plane is parked at the airport .']
"""

import csv
import hashlib
import json
import logging
from pathlib import Path

import datasets

from images import IMAGE_EXTENSIONS
from tasks import DEFAULT_TASK, task_for_prompt

logger = logging.getLogger(__name__)

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "captions": datasets.List(datasets.Value("string")),
        "source": datasets.Value("string"),
        "filename": datasets.Value("string"),
        "label": datasets.Value("string"),
    }
)
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IMAGE_KEYS, TEXT_KEYS = ("image", "file_name", "filename", "path"), ("caption", "text", "suffix")
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
FIXES = {
    "no_image_column": f"name the image column one of {', '.join(IMAGE_KEYS)}",
    "no_text": "give the row a caption (`caption`, `text`, `suffix` or `captions`) or a class (`label`)",
    "missing_file": "put the image where the path points (paths are relative to the file that names them)",
    "unknown_split": f"use one of {', '.join(sorted(set(SPLIT_NAMES)))}, or leave the split out",
    "malformed_line": "write one JSON object per line",
}


class UserDataError(ValueError):
    """Problems of a user's data, one line each: file, row, image, reason and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"{len(problems)} problem(s) in the data:\n" + "\n".join(problems) + "\nFix them, or load with "
            "--skip_invalid true to leave those rows out."
        )


def problem(file: Path, where: str, image: str, reason: str, detail: str) -> str:
    return f"  {file}, {where} ({image or '<no image>'}): {reason}: {detail}. Fix: {FIXES[reason]}."


def hashed_split(filename: str, val_fraction: float, test_fraction: float) -> str:
    """The split of an image without one: a hash of its file name read as a number in [0, 1) is `test` below
    `test_fraction`, `val` below `test_fraction + val_fraction`, else `train`."""
    position = int(hashlib.sha256(filename.encode()).hexdigest()[:12], 16) / 16**12
    return "test" if position < test_fraction else "val" if position < test_fraction + val_fraction else "train"


def _text_of(row: dict) -> tuple[list[str], str]:
    """(captions, label) of one row of any format."""
    captions = row.get("captions")
    if isinstance(captions, str):
        captions = [captions]
    texts = list(captions or []) + [str(row[key]) for key in TEXT_KEYS if row.get(key)]
    if row.get("prefix") and task_for_prompt(str(row["prefix"])).name != DEFAULT_TASK:
        texts = []  # a PaliGemma line of another task (detect ..., answer ...) is no caption
    return [text.strip() for text in texts if str(text).strip()], str(row.get("label") or "").strip()


def _table_rows(path: Path) -> list[tuple[str, dict]]:
    """(where, row) of a CSV or JSONL file; malformed JSON lines are reported as rows with an `_error`."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [(f"row {number}", row) for number, row in enumerate(csv.DictReader(handle), start=2)]
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as error:
                rows.append((f"line {number}", {"_error": str(error)}))
    return rows


def _coco_rows(path: Path) -> list[tuple[str, dict]]:
    coco = json.loads(path.read_text(encoding="utf-8"))
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    return [
        (f"annotation {note.get('id', index)}", {"image": names.get(note["image_id"], ""), "text": note["caption"]})
        for index, note in enumerate(coco["annotations"])
    ]


def _class_folder_rows(folder: Path) -> list[tuple[str, dict]]:
    """torchvision's ImageFolder: one folder per class (under split folders or not); the class in plain words."""
    rows = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            label = path.parent.name.replace("_", " ").replace("-", " ")
            rows.append((str(path.relative_to(folder)), {"image": str(path.relative_to(folder)), "label": label}))
    return rows


def read_rows(path: Path) -> tuple[Path, list[tuple[str, dict]]]:
    """(the file or folder the rows' paths are relative to, its (where, row) pairs), whatever the format."""
    if path.is_dir():
        for name in METADATA_FILES:
            if (path / name).is_file():
                return path / name, _table_rows(path / name)
        return path, _class_folder_rows(path)
    if path.suffix.lower() == ".json":
        return path, _coco_rows(path)
    return path, _table_rows(path)


def group_images(file: Path, rows, fractions: tuple[float, float]) -> tuple[dict[str, dict], list[str]]:
    """{image name as the rows give it: {path, captions, label, split, source, missing}}, and every problem."""
    base, images, problems = (file if file.is_dir() else file.parent), {}, []
    for where, row in rows:
        name = next((str(row[key]) for key in IMAGE_KEYS if row.get(key)), "")
        captions, label = _text_of(row)
        reason = "malformed_line" if "_error" in row else "no_image_column" if not name else None
        reason = reason or ("no_text" if not captions and not label else None)
        if reason:
            problems.append(problem(file, where, name, reason, row.get("_error") or f"keys {sorted(row)}"))
            continue
        top = Path(name).parts[0].lower() if len(Path(name).parts) > 1 else ""
        split = str(row.get("split") or "").strip().lower() or (top if top in SPLIT_NAMES else "")
        if split and split not in SPLIT_NAMES:
            problems.append(problem(file, where, name, "unknown_split", f"split {split!r}"))
            continue
        entry = images.setdefault(name, {"path": str(base / name), "captions": [], "label": label, "split": split})
        entry["captions"] += captions
        entry["source"] = str(row.get("source") or "").strip()
    for name, entry in images.items():
        entry["missing"] = not Path(entry["path"]).is_file()
        if entry["missing"]:
            problems.append(problem(file, "image", name, "missing_file", f"{entry['path']} does not exist"))
        entry["split"] = SPLIT_NAMES.get(entry["split"]) or hashed_split(name, *fractions)
    return images, problems


def is_risc_folder(path: Path) -> bool:
    """A RISC folder: captions.csv with RISC's header (source, split, image, caption_1..5)."""
    if not (path / "captions.csv").is_file():
        return False
    with (path / "captions.csv").open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    return {"source", "split", "image", "caption_1"} <= set(header)


def dataset_label(path: str | Path) -> str:
    """What a card calls a run's data: RISC for a RISC folder, else the data's own name (a file's stem, a folder's
    name); never a path."""
    path = Path(path)
    return "RISC" if path.is_dir() and is_risc_folder(path) else (path.stem if path.suffix else path.resolve().name)


def load_user_data(
    path: str | Path,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    skip_invalid: bool = False,
    source: str | None = None,
) -> datasets.DatasetDict:
    """train / val / test of a user's captions or classes (see the module docstring), in RISC's columns + `label`."""
    path = Path(path)
    if path.is_dir() and (path / "captions.csv").is_file() and not is_risc_folder(path):
        path = path / "captions.csv"  # a folder holding the user's own captions.csv (image,caption)
    file, rows = read_rows(path)
    images, problems = group_images(file, rows, (val_fraction, test_fraction))
    if problems and not skip_invalid:
        raise UserDataError(problems)
    if problems:
        logger.warning("%s: left out %d rows:\n%s", path, len(problems), "\n".join(problems))
    name = source or (path.name if path.is_dir() else path.stem)
    splits = {}
    for split in ("train", "val", "test"):
        mine = {image: entry for image, entry in images.items() if entry["split"] == split and not entry["missing"]}
        columns = {
            "image": [entry["path"] for entry in mine.values()],
            "captions": [entry["captions"] for entry in mine.values()],
            "source": [entry["source"] or name for entry in mine.values()],
            "filename": list(mine),  # as the data names it (relative path: two classes may both hold 1.jpg)
            "label": [entry["label"] for entry in mine.values()],
        }
        splits[split] = datasets.Dataset.from_dict(columns, features=FEATURES)
    logger.info("%s: %s images per split", path, {split: len(rows) for split, rows in splits.items()})
    return datasets.DatasetDict(splits)
