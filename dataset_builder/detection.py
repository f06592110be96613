"""Object-detection data as a `datasets.DatasetDict`: COCO detection JSON or PaliGemma JSONL, validated row by row.

    >>> splits = load_detection("data/nwpu-vhr10")  # doctest: +SKIP
    >>> splits["train"].features["objects"]["category"].feature.names[:2]  # doctest: +SKIP
    ['airplane', 'ship']

Layouts found in a folder, per split (train, val, test; roboflow's `valid` is read as val):
- COCO: `annotations/instances_{split}.json` + `images/{split}/` (or `{split}/`), what most detection tools write;
- PaliGemma JSONL: `{split}.jsonl` or `_annotations.{split}.jsonl`, one `{"image", "prefix": "detect a ; b",
  "suffix": "<loc..>x4 a ; ..."}` per line (roboflow and big_vision), images next to the file or in `{split}/`;
- YOLO (what Ultralytics and most labelling tools export): `images/{split}/` + `labels/{split}/<image stem>.txt`,
  one `class x_center y_center width height` line per box (fractions of the image's sides), the class names in
  `data.yaml` (`names`: a list, or a mapping of index to name); an image without a label file has no box.

Rows (Hugging Face's detection convention): `image`, `filename`, `source`, `width`, `height`, `objects` =
{`bbox`: [x, y, w, h] in pixels of the image as stored, `category`: ClassLabel of the dataset's classes}. Every
problem names the file, the annotation or line, the image and the fix; strict loads raise one
`DetectionValidationError` listing them all, `skip_invalid=True` drops the bad images and logs them per reason.
A box may overhang its image by up to `EDGE_TOLERANCE` pixels (rounded annotations); it is clipped to the image.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets
import yaml
from PIL import Image, UnidentifiedImageError

from images import IMAGE_EXTENSIONS
from tasks.loc_codec import parse_objects, prompt_classes
from tasks.rows import box_classes as detection_classes  # the class names of a detection dataset

logger = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
EDGE_TOLERANCE = 1.0  # pixels

FIXES = {
    "missing_file": "add the image to the image folder or remove its entry",
    "unreadable_image": "replace the file with a valid image or remove its entry",
    "size_mismatch": "the boxes were drawn on an image of another size: fix width/height or use the original image",
    "unknown_image": "the annotation's image_id has no entry in `images`: add the image or remove the annotation",
    "unknown_category": "use a category id listed in `categories`, or add the category",
    "box_outside_image": "clip the box to the image (0 <= x, x + w <= width, same for y) or remove it",
    "zero_area_box": "give the box a positive width and height or remove it",
    "malformed_line": 'write one JSON object per line with "image", "prefix" and "suffix"',
    "unsupported_prefix": "give detection lines a 'detect a ; b' prefix (captions go into a RISC captions.csv)",
    "malformed_suffix": "write each object as four <locNNNN> tokens and a class of the prefix, joined by ' ; '",
    "malformed_label": "write one `class x_center y_center width height` line per box, numbers in [0, 1]",
}


@dataclass(frozen=True)
class DetectionProblem:
    file: str  # the annotation file
    where: str  # "annotation 17", "image 3", "line 5"
    image: str
    reason: str
    detail: str

    def format(self) -> str:
        image = self.image or "<no image>"
        return f"  {self.file}, {self.where} ({image}): {self.reason}: {self.detail}. Fix: {FIXES[self.reason]}."


class DetectionValidationError(ValueError):
    """Raised by strict loads; `.problems` holds every problem, the message lists them all."""

    def __init__(self, problems: list[DetectionProblem]):
        self.problems = problems
        counts = ", ".join(f"{reason} {count}" for reason, count in Counter(p.reason for p in problems).items())
        lines = [f"{len(problems)} problems in the detection annotations ({counts}):"]
        lines += [problem.format() for problem in problems]
        lines.append("Fix them, or load with skip_invalid=True (CLI: --skip_invalid) to drop the images they touch.")
        super().__init__("\n".join(lines))


def detection_features(classes: list[str]) -> datasets.Features:
    return datasets.Features(
        {
            "image": datasets.Image(),
            "filename": datasets.Value("string"),
            "source": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "objects": {
                "bbox": datasets.List(datasets.List(datasets.Value("float64"), length=4)),
                "category": datasets.List(datasets.ClassLabel(names=list(classes))),
            },
        }
    )


def _image_size(path: Path) -> tuple[int, int] | str:
    """(width, height) from the file's header, or the problem's reason."""
    if not path.is_file():
        return "missing_file"
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        return "unreadable_image"


def _check_box(box, width: int, height: int) -> tuple[str, str] | None:
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return "zero_area_box", f"bbox {box} has width {w} and height {h}"
    if min(x, y) < -EDGE_TOLERANCE or x + w > width + EDGE_TOLERANCE or y + h > height + EDGE_TOLERANCE:
        return "box_outside_image", f"bbox {box} (x, y, w, h) leaves the {width}x{height} image"
    return None


def _clip(box, width: int, height: int) -> list[float]:
    if box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= width and box[1] + box[3] <= height:
        return list(box)  # inside: kept exactly as annotated
    x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
    x2, y2 = min(box[0] + box[2], width), min(box[1] + box[3], height)
    return [x1, y1, x2 - x1, y2 - y1]


def _finish(rows, problems, classes, skip_invalid: bool, what: str) -> datasets.Dataset:
    if problems and not skip_invalid:
        raise DetectionValidationError(problems)
    bad = {problem.image for problem in problems}
    if problems:
        counts = dict(Counter(problem.reason for problem in problems))
        logger.warning("%s: skipped %d images with invalid annotations (%s)", what, len(bad), counts)
    kept = [row for row in rows if row["filename"] not in bad]
    features = detection_features(classes)
    return datasets.Dataset.from_dict({key: [row[key] for row in kept] for key in features}, features=features)


def read_coco_detection(
    annotations_json: str | Path, images_dir: str | Path, source: str, skip_invalid: bool = False
) -> datasets.Dataset:
    """One split from a COCO detection JSON (`images`, `annotations` with `bbox` = [x, y, w, h], `categories`)."""
    annotations_json, images_dir = Path(annotations_json), Path(images_dir)
    file = str(annotations_json)
    try:
        coco = json.loads(annotations_json.read_text(encoding="utf-8"))
        images, annotations, categories = coco["images"], coco["annotations"], coco["categories"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{file} is not COCO detection JSON ({error}); it needs `images`, `annotations` and `categories`."
        ) from error
    categories = sorted(categories, key=lambda category: category["id"])
    classes = [category["name"] for category in categories]
    class_index = {category["id"]: index for index, category in enumerate(categories)}
    problems, rows, by_id = [], [], {}
    for entry in images:
        name, path = entry["file_name"], images_dir / entry["file_name"]
        size = _image_size(path)
        if isinstance(size, str):
            problems.append(DetectionProblem(file, f"image {entry['id']}", name, size, f"{path} cannot be read"))
        elif size != (entry["width"], entry["height"]):
            detail = f"`images` says {entry['width']}x{entry['height']}, {path} is {size[0]}x{size[1]}"
            problems.append(DetectionProblem(file, f"image {entry['id']}", name, "size_mismatch", detail))
        row = {"image": str(path), "filename": name, "source": source, "width": entry["width"]}
        row.update(height=entry["height"], objects={"bbox": [], "category": []})
        by_id[entry["id"]] = row
        rows.append(row)
    for annotation in annotations:
        where = f"annotation {annotation.get('id')}"
        row = by_id.get(annotation["image_id"])
        if row is None:
            detail = f"image_id {annotation['image_id']} is not in `images`"
            problems.append(DetectionProblem(file, where, "", "unknown_image", detail))
            continue
        if annotation["category_id"] not in class_index:
            detail = f"category_id {annotation['category_id']} is not one of {sorted(class_index)}"
            problems.append(DetectionProblem(file, where, row["filename"], "unknown_category", detail))
            continue
        problem = _check_box(annotation["bbox"], row["width"], row["height"])
        if problem is not None:
            problems.append(DetectionProblem(file, where, row["filename"], *problem))
            continue
        row["objects"]["bbox"].append(_clip(annotation["bbox"], row["width"], row["height"]))
        row["objects"]["category"].append(class_index[annotation["category_id"]])
    return _finish(rows, problems, classes, skip_invalid, file)


def read_paligemma_jsonl(
    jsonl_path: str | Path, images_dir: str | Path, source: str, skip_invalid: bool = False
) -> datasets.Dataset:
    """One split from PaliGemma detection JSONL: `{"image", "prefix": "detect a ; b", "suffix": "<loc>... a"}`.

    The classes are those of all prefixes, sorted (so that every split lists them alike); the boxes are decoded
    from the suffix with the image's own size (the `<loc>` bins are fractions of each side).
    """
    jsonl_path, images_dir = Path(jsonl_path), Path(images_dir)
    file = str(jsonl_path)
    problems, rows, classes = [], [], []
    for number, line in enumerate(jsonl_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
            name, prefix, suffix = record["image"], record["prefix"], record["suffix"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            problems.append(DetectionProblem(file, where, "", "malformed_line", f"{error}"))
            continue
        try:
            line_classes = prompt_classes(prefix)
        except ValueError:
            problems.append(DetectionProblem(file, where, name, "unsupported_prefix", f"prefix {prefix!r}"))
            continue
        classes += [label for label in line_classes if label not in classes]
        path = images_dir / name
        size = _image_size(path)
        if isinstance(size, str):
            problems.append(DetectionProblem(file, where, name, size, f"{path} cannot be read"))
            continue
        parsed = parse_objects(suffix, *size, classes=line_classes)
        if parsed.dropped:
            detail = f"suffix {suffix[:80]!r}: {parsed.dropped} of its objects cannot be read"
            problems.append(DetectionProblem(file, where, name, "malformed_suffix", detail))
            continue
        boxes = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in parsed.boxes]
        row = {"image": str(path), "filename": name, "source": source, "width": size[0], "height": size[1]}
        row["objects"] = {"bbox": boxes, "category": parsed.labels}
        rows.append(row)
    classes = sorted(classes)
    for row in rows:  # names -> class indices, now that every prefix has been read
        row["objects"]["category"] = [classes.index(label) for label in row["objects"]["category"]]
    return _finish(rows, problems, classes, skip_invalid, file)


def yolo_classes(dataset_dir: Path) -> list[str]:
    """The class names of a YOLO folder's data.yaml (or dataset.yaml), in index order."""
    for name in ("data.yaml", "dataset.yaml"):
        if (dataset_dir / name).is_file():
            names = yaml.safe_load((dataset_dir / name).read_text(encoding="utf-8")).get("names") or []
            return [str(names[key]) for key in sorted(names)] if isinstance(names, dict) else list(map(str, names))
    raise FileNotFoundError(
        f"{dataset_dir} has labels/ but no data.yaml: add one with `names: [class0, class1, ...]`."
    )


def _yolo_boxes(text: str, size: tuple[int, int], classes: list[str]) -> tuple[list, list] | str:
    """(bboxes in pixels, class indices) of one label file, or the detail of its first bad line."""
    boxes, categories = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            index, x, y, w, h = int(fields[0]), *map(float, fields[1:5])
        except (ValueError, TypeError):
            return f"line {number} {line!r}"
        if len(fields) != 5 or not 0 <= index < len(classes):
            return f"line {number} {line!r} (class index 0..{len(classes) - 1})"
        width, height = size
        boxes.append([(x - w / 2) * width, (y - h / 2) * height, w * width, h * height])
        categories.append(index)
    return boxes, categories


def read_yolo(
    labels_dir: str | Path, images_dir: str | Path, source: str, skip_invalid: bool = False
) -> datasets.Dataset:
    """One split of a YOLO folder: every image of `images_dir` with the boxes of its `labels_dir/<stem>.txt`."""
    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    classes = yolo_classes(labels_dir.parent.parent)
    problems, rows = [], []
    for path in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        label, where = labels_dir / f"{path.stem}.txt", f"labels of {path.name}"
        size = _image_size(path)
        found = _yolo_boxes(label.read_text(encoding="utf-8"), size, classes) if label.is_file() else ([], [])
        if isinstance(size, str) or isinstance(found, str):
            reason, detail = (size, f"{path} cannot be read") if isinstance(size, str) else ("malformed_label", found)
            problems.append(DetectionProblem(str(label), where, path.name, reason, detail))
            continue
        bad = [_check_box(box, *size) for box in found[0]]
        if any(bad):
            problems.append(DetectionProblem(str(label), where, path.name, *next(filter(None, bad))))
            continue
        row = {"image": str(path), "filename": path.name, "source": source, "width": size[0], "height": size[1]}
        row["objects"] = {"bbox": [_clip(box, *size) for box in found[0]], "category": found[1]}
        rows.append(row)
    return _finish(rows, problems, classes, skip_invalid, str(labels_dir))


def split_files(dataset_dir: Path, split: str) -> tuple[str, Path, Path] | None:
    """(format, annotation file or folder, image folder) of one split, or None when the folder has no such split."""
    for name in SPLIT_ALIASES[split]:
        if (dataset_dir / "labels" / name).is_dir() and (dataset_dir / "images" / name).is_dir():
            return "yolo", dataset_dir / "labels" / name, dataset_dir / "images" / name
        coco = dataset_dir / "annotations" / f"instances_{name}.json"
        if coco.is_file():
            images = dataset_dir / "images" / name
            return "coco", coco, images if images.is_dir() else dataset_dir / name
        for jsonl in (dataset_dir / f"{name}.jsonl", dataset_dir / f"_annotations.{name}.jsonl"):
            if jsonl.is_file():
                images = dataset_dir / name
                return "jsonl", jsonl, images if images.is_dir() else dataset_dir
    return None


def load_detection(
    dataset_dir: str | Path, source: str | None = None, skip_invalid: bool = False
) -> datasets.DatasetDict:
    """Every split a detection folder holds (COCO JSON or PaliGemma JSONL), with one class list for all splits."""
    dataset_dir = Path(dataset_dir)
    source = source or dataset_dir.resolve().name
    readers = {"coco": read_coco_detection, "jsonl": read_paligemma_jsonl, "yolo": read_yolo}
    splits = {}
    for split in SPLIT_ALIASES:
        found = split_files(dataset_dir, split)
        if found is not None:
            kind, annotations, images = found
            splits[split] = readers[kind](annotations, images, source, skip_invalid=skip_invalid)
    if not splits:
        raise FileNotFoundError(
            f"{dataset_dir} holds no detection split: expected annotations/instances_train.json (COCO) or "
            "train.jsonl / _annotations.train.jsonl (PaliGemma JSONL) or labels/train/ + images/train/ (YOLO), and "
            "the same for val and test."
        )
    names = {split: detection_classes(rows) for split, rows in splits.items()}
    first = next(iter(names.values()))
    if any(classes != first for classes in names.values()):
        raise ValueError(f"{dataset_dir}: the splits list different classes {names}; give every split the same list.")
    return datasets.DatasetDict(splits)
