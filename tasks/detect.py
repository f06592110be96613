"""Object detection: `detect a ; b` -> `<loc>` x 4 + label per object; scored by pycocotools' COCOeval.

Rows are those of `dataset_builder.detection` (`objects.bbox` = [x, y, w, h] pixels, `objects.category` class
indices, `width`, `height`). The prompt lists every class of the dataset, always in the same order, so the model
learns one closed-set detector; objects are written top to bottom, then left to right (a fixed order is easier to
learn than a random one), or in a new random order each time a training row is seen (`object_order="random"`, as
Pix2Seq trains: the first box need not be the topmost object; evaluation keeps the fixed order).
"""

import contextlib
import copy
import io
import random

import numpy as np
from PIL import Image, ImageDraw

from .base import BOXES_FORMAT, Task
from .box_merging import merge_boxes
from .card_text import cell, label_counts, number
from .cell_coverage import cell_coverage
from .loc_codec import detect_prompt, encode_objects, parse_objects, prompt_classes
from .registry import register_task
from .rows import split_classes, warn_untrained
from .tiling import KEEP_AREA, clip_boxes, default_overlap, random_tile, tile_boxes, to_image_box


def transform_box(box, width: float, height: float, move) -> tuple[float, float, float, float]:
    """The (x1, y1, x2, y2) pixel box after `image.transpose(move)` of a `width` x `height` image (None: as is)."""
    x1, y1, x2, y2 = box
    if move is None:
        return box
    if move == Image.Transpose.FLIP_LEFT_RIGHT:
        return (width - x2, y1, width - x1, y2)
    if move == Image.Transpose.FLIP_TOP_BOTTOM:
        return (x1, height - y2, x2, height - y1)
    if move == Image.Transpose.ROTATE_180:
        return (width - x2, height - y2, width - x1, height - y1)
    # The rest swap the sides: the new image is `height` wide and `width` high.
    if move == Image.Transpose.ROTATE_90:  # counter-clockwise: (x, y) -> (y, width - x)
        return (y1, width - x2, y2, width - x1)
    if move == Image.Transpose.ROTATE_270:  # clockwise: (x, y) -> (height - y, x)
        return (height - y2, x1, height - y1, x2)
    if move == Image.Transpose.TRANSPOSE:  # (x, y) -> (y, x)
        return (y1, x1, y2, x2)
    if move == Image.Transpose.TRANSVERSE:  # (x, y) -> (height - y, width - x)
        return (height - y2, width - x2, height - y1, width - x1)
    raise ValueError(f"unknown image transpose {move!r}")


def transformed_size(width: float, height: float, move) -> tuple[float, float]:
    swaps = move in (
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
    )
    return (height, width) if swaps else (width, height)


def corner_boxes(row) -> list[tuple[float, float, float, float]]:
    """The row's boxes as (x1, y1, x2, y2) pixels."""
    return [(x, y, x + w, y + h) for x, y, w, h in row["objects"]["bbox"]]


CARD_TEMPLATE = """
Object detection with the prompt `{{ prompt }}`, test split: COCO AP@[.5:.95], AP50 and AP75 by pycocotools' COCOeval
(area all, 100 detections per image), overall and per class, each box ranked by its score (the mean probability of
its `<loc>` and label tokens), and the mean absolute error of the per-image box count.
{%- if tile_size %} Each test image is answered in {{ tile_size }}-px tiles (the size the model was trained at and
records), merged per class by NMS.{% endif %} The same numbers are in `eval_results.json` and in the metadata.
{{ table(detection_header, detection_rows) }}
{%- if detection_examples %}

{{ table(["image", "boxes found", "reference boxes"], detection_examples) }}
{%- endif %}"""
USAGE_TEMPLATE = """
Boxes: with `text="<image>{{ prompt }}"` (greedy, room for a few hundred new tokens) the output holds, per
object, four `<locNNNN>` tokens (y_min, x_min, y_max, x_max; each bin / 1023 of the image's side) and the label,
joined by ` ; `:

```python
import re

text = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
width, height = image.size
for y1, x1, y2, x2, label in re.findall(r"<loc(\\d{4})><loc(\\d{4})><loc(\\d{4})><loc(\\d{4})>\\s*([^<;]+)", text):
    box = [int(x1) / 1023 * width, int(y1) / 1023 * height, int(x2) / 1023 * width, int(y2) / 1023 * height]
    print(label.strip(), box)
```"""
DETECTION_HEADER = ["set", "images", "boxes", "AP@[.5:.95]", "AP50", "AP75", "count MAE"]


@register_task
class DetectTask(Task):
    """Closed-set detection over `classes` (the dataset's ClassLabel names)."""

    name = "detect"
    data_format = BOXES_FORMAT
    default_prompt = "detect "
    row_columns = ("filename", "source", "width", "height", "objects", "tile")
    best_metric = "ap"
    summary_metrics = ("ap", "ap50", "ap75", "count_mae")
    headline_metrics = ("ap", "ap50")
    metric_names = {"ap": "AP@[.5:.95]", "ap50": "AP50", "ap75": "AP75", "count_mae": "count MAE"}
    generation = {"num_beams": 1, "max_new_tokens": 256}  # greedy; finetune.py sizes it to its busiest image
    card_noun = "object detector"
    hub_task = ("object-detection", "Object detection")
    hub_tags = ("object-detection",)
    hub_metrics = ("map",)
    card_template = CARD_TEMPLATE
    usage_template = USAGE_TEMPLATE
    scoring_text = "detection boxes are read from the `<loc>` tokens and scored by COCOeval"
    text_header = ("label", "x1", "y1", "x2", "y2")

    def __init__(
        self,
        classes,
        generation: dict | None = None,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        keep_area: float = KEEP_AREA,
        object_order: str = "sorted",
    ):
        self.classes = list(classes)
        super().__init__(detect_prompt(self.classes))
        self.generation = dict(generation or type(self).generation)
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap  # of the evaluation grid (None: `default_overlap`)
        self.keep_area = keep_area  # of a box in a training tile (`clip_boxes`)
        self.object_order = object_order  # of the objects in a training target: "sorted" or "random"

    @classmethod
    def for_run(cls, rows, run) -> "DetectTask":
        data = run.data_args
        tile_size = getattr(data, "tile_size", None)
        overlap = getattr(data, "tile_overlap", None) if tile_size else None
        task = cls(
            run.classes,
            tile_size=tile_size,
            tile_overlap=overlap,
            keep_area=getattr(data, "tile_keep_area", KEEP_AREA),
            object_order=getattr(data, "object_order", "sorted"),
        )
        longest = longest_suffix(task, rows, run.processor)
        task.generation = {"num_beams": 1, "max_new_tokens": longest + 8}  # greedy, room for the busiest image
        return task

    @classmethod
    def task_rows(cls, splits: dict, data_args, dataset_dir: str) -> dict:
        """With `tile_size`, each val / test image becomes the rows of its grid of tiles (a `tile` column: the
        tile's [x1, y1, x2, y2] in the image), as inference cuts them; training rows stay whole images, cut at
        random each time they are seen (`tile_view`), unless `tile_positions` is "grid" (then they are tiled too)."""
        tile_size = getattr(data_args, "tile_size", None)
        if not tile_size:
            return splits
        random_train = getattr(data_args, "tile_positions", "random") == "random"
        overlap = getattr(data_args, "tile_overlap", None)
        return {
            split: rows if split == "train" and random_train else grid_rows(rows, tile_size, overlap)
            for split, rows in splits.items()
        }

    def tile_view(self, row: dict, image) -> tuple:
        """The row's tile (a random one for a training row, `tasks.tiling.random_tile`) and the row with its
        boxes clipped into it (`clip_boxes`: a box keeping less than `keep_area` of its area is dropped; with 1.0
        only whole boxes stay, and a random tile holds its chosen box whole when it fits)."""
        if not self.tile_size:
            return image, row
        boxes = corner_boxes(row)
        whole = self.keep_area >= 1
        tile = tuple(row.get("tile") or ()) or random_tile(
            row["width"], row["height"], self.tile_size, boxes, random, whole=whole
        )
        clipped, kept = clip_boxes(boxes, tile, self.keep_area)
        x1, y1, x2, y2 = tile
        objects = {
            "bbox": [[a, b, c - a, d - b] for a, b, c, d in clipped],
            "category": [row["objects"]["category"][index] for index in kept],
        }
        return image.crop(tile), {**row, "width": x2 - x1, "height": y2 - y1, "objects": objects}

    def evaluation_copy(self) -> "DetectTask":
        """The fixed order: a random one would make the evaluation loss change between evaluations."""
        if self.object_order == "sorted":
            return self
        fixed = copy.copy(self)  # every other setting kept as is
        fixed.object_order = "sorted"
        return fixed

    def suffix(self, row, move=None) -> str:
        """The training target of the row's image after `move` (the collator's augmentation)."""
        width, height = row["width"], row["height"]
        boxes = [transform_box(box, width, height, move) for box in corner_boxes(row)]
        labels = [self.classes[index] for index in row["objects"]["category"]]
        order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0], labels[i]))
        if self.object_order == "random":
            random.shuffle(order)  # python's `random`: in the checkpoint's RNG state, so a resumed run draws the same
        return encode_objects(
            [boxes[i] for i in order], [labels[i] for i in order], *transformed_size(width, height, move)
        )

    def cell_targets(self, row, move, grid: int) -> list[float]:
        """The share of each token's cell that the row's boxes cover after `move` (`cell_coverage`); a tile
        without objects is all 0."""
        width, height = row["width"], row["height"]
        boxes = [transform_box(box, width, height, move) for box in corner_boxes(row)]
        return cell_coverage(boxes, *transformed_size(width, height, move), grid)

    token_scores = True  # its boxes are scored from the generated tokens' probabilities (`scored_objects`)

    def read(self, text: str, width: float, height: float, tokens: list | None = None) -> dict:
        """The raw text and its boxes in the image's pixels (0.1 px); with the generated `tokens` ((text,
        probability) pairs), each box with its score (`scored_objects`)."""
        if tokens is not None:
            return {"text": text, "boxes": scored_objects(tokens, width, height, self.classes)}
        parsed = parse_objects(text, width, height, classes=self.classes)
        boxes = [
            {"label": label, "box": [round(value, 1) for value in box]}
            for box, label in zip(parsed.boxes, parsed.labels)
        ]
        return {"text": text, "boxes": boxes}

    def record(self, row, text: str, tokens: list | None = None) -> dict:
        """One line of predictions.jsonl: the raw text, the boxes read from it (scored when the generated `tokens`
        are given) in the image's pixels and the image's reference boxes; a tile's record names its `tile`."""
        tile = tuple(row.get("tile") or ())
        width, height = (tile[2] - tile[0], tile[3] - tile[1]) if tile else (row["width"], row["height"])
        parsed = parse_objects(text, width, height, classes=self.classes)
        if tokens is not None:
            boxes = scored_objects(tokens, width, height, self.classes)
        else:
            boxes = [{"label": label, "box": list(box)} for box, label in zip(parsed.boxes, parsed.labels)]
        record = {
            "image": row["filename"],
            "source": row["source"],
            "task": self.name,
            "prediction": text,
            "boxes": [{**item, "box": to_image_box(item["box"], tile)} for item in boxes] if tile else boxes,
            "dropped": parsed.dropped,
            "width": row["width"],
            "height": row["height"],
            "references": [
                {"label": self.classes[index], "box": list(box)}
                for box, index in zip(corner_boxes(row), row["objects"]["category"])
            ],
        }
        return {**record, "tile": list(tile)} if tile else record

    def image_records(self, records: list[dict]) -> list[dict]:
        """Tile records merged into one record per image, in order: every tile's boxes (already in the image's
        pixels) merged as a scene's are (`merge_boxes`), the texts joined by ` | `, the drops summed."""
        if not any("tile" in record for record in records):
            return records
        groups: dict[str, list[dict]] = {}
        for record in records:
            groups.setdefault(record["image"], []).append(record)
        merged = []
        for parts in groups.values():
            dropped: dict[str, int] = {}
            for part in parts:
                for reason, count in part["dropped"].items():
                    dropped[reason] = dropped.get(reason, 0) + count
            first = {key: value for key, value in parts[0].items() if key not in ("tile", "boxes", "dropped")}
            boxes = merge_boxes(
                [item for part in parts for item in part["boxes"]],
                tiles=[tuple(part["tile"]) for part in parts for _ in part["boxes"]],
            )
            prediction = " | ".join(part["prediction"] for part in parts)
            merged.append({**first, "prediction": prediction, "tiles": len(parts), "boxes": boxes, "dropped": dropped})
        return merged

    def score(self, records: list[dict]) -> dict:
        return detection_metrics(self.image_records(records), self.classes)

    def grid_entry(self, record: dict, image: Image.Image) -> tuple[Image.Image, str]:
        return grid_entry(record, image)

    def draw(self, result: dict, image: Image.Image) -> tuple[Image.Image, str]:
        """Its boxes drawn."""
        return draw_objects(image, result["boxes"]), f"{len(result['boxes'])} boxes"

    def merge_tiles(self, tiles: list[tuple[list[float], dict]]) -> list[dict]:
        """Every tile's boxes moved to scene pixels, then the duplicates that overlapping tiles see merged
        (`merge_boxes`)."""
        return merge_boxes(
            [{**item, "box": to_image_box(item["box"], box)} for box, result in tiles for item in result["boxes"]],
            tiles=[box for box, result in tiles for _ in result["boxes"]],
        )

    def merged_result(self, features: list[dict]) -> dict:
        return {"text": f"{len(features)} boxes", "boxes": features}

    def text_rows(self, result: dict) -> list[list]:
        """One line per box: its label and [x1, y1, x2, y2] (`-` for an image without one)."""
        return [[item["label"], item["box"]] for item in result["boxes"]] or [["-"]]

    def to_record(self) -> dict:
        record = {"prompt": self.prompt, "classes": list(self.classes), "generation": dict(self.generation)}
        if not self.tile_size:
            return record
        overlap = {"tile_overlap": self.tile_overlap} if self.tile_overlap is not None else {}
        return {**record, "tile_size": self.tile_size, **overlap}

    @classmethod
    def from_record(cls, record: dict, options: dict) -> "DetectTask":
        """The classes the user asks for (`options["classes"]`), else every class the model knows."""
        known = record.get("classes") or (prompt_classes(record["prompt"]) if record.get("prompt") else [])
        wanted = split_classes(options.get("classes")) or known
        warn_untrained(cls.name, wanted, known)
        if not wanted:
            raise ValueError("--task detect needs the classes to find: --classes 'airplane ; ship'.")
        return cls(wanted, record.get("generation"), record.get("tile_size"), record.get("tile_overlap"))

    @classmethod
    def for_prompt(cls, prompt: str) -> "DetectTask | None":
        return cls(prompt_classes(prompt)) if prompt.startswith("detect ") else None

    # --- the model card ----------------------------------------------------------------------------------------
    @classmethod
    def card_title(cls) -> str:
        return "An aerial object detector"

    @classmethod
    def prompt_text(cls, view: dict) -> str:
        """The prefix the model was scored with: every class, in the dataset's order."""
        return "detect " + " ; ".join(view["results"]["test"].get("groups") or {})

    @classmethod
    def model_index(cls, view: dict) -> list[tuple[str, str, dict]]:
        """All classes (AP, AP50, AP75, count MAE), then each class (AP, AP50)."""
        test, dataset = view["results"]["test"], cls.card_dataset(view)
        overall = {key: test["overall"].get(key) for key in cls.summary_metrics}
        sets = [("all", f"{dataset} (all classes)", overall)]
        sets += [
            (name.replace(" ", "-"), f"{dataset} {name}", {key: scores.get(key) for key in ("ap", "ap50")})
            for name, scores in (test.get("groups") or {}).items()
        ]
        return sets

    @classmethod
    def card_row(cls, view: dict) -> list[str]:
        test = view["results"]["test"]["overall"]
        score = f"AP {number(test.get('ap'))}, AP50 {number(test.get('ap50'))}"
        return [f"`{cls.prompt_text(view)}`", score, "no boxes: AP 0"]

    @classmethod
    def card_values(cls, view: dict, card: dict) -> dict:
        return {
            "prompt": cls.prompt_text(view),
            "detection_header": DETECTION_HEADER,
            "detection_rows": detection_rows(view["results"]),
            "detection_examples": detection_examples(view["predictions"]),
            "tile_size": (view.get("record") or {}).get("tile_size"),
        }


def grid_rows(rows, tile_size: int, overlap: int | None = None):
    """Each row repeated once per tile of its image's grid (`tile_boxes`, overlap `overlap`, default
    `default_overlap`), with the tile in a `tile` column; no image is decoded."""
    overlap = default_overlap(tile_size) if overlap is None else overlap
    sizes = rows.select_columns(["width", "height"])
    indices, tiles = [], []
    for index, (width, height) in enumerate(zip(sizes["width"], sizes["height"])):
        for tile in tile_boxes(width, height, tile_size, overlap):
            indices.append(index)
            tiles.append([float(value) for value in tile])
    return rows.select(indices).add_column("tile", tiles)


def scored_objects(tokens: list[tuple[str, float]], width: float, height: float, classes) -> list[dict]:
    """Boxes read from generated tokens, each with a score: the mean probability of its four `<loc>` tokens and its
    label's tokens (separators and spaces left out), so a box the model was sure of scores near 1 and COCO AP and
    NMS can rank boxes. An object starts at a `<loc>` token that follows text, or after a `;`; an object that is not
    one readable box (`parse_objects`) is dropped, as in the text path.

    >>> scored_objects([("<loc0000>", .9), ("<loc0000>", .9), ("<loc1023>", .6), ("<loc1023>", .6), (" ship", .5)],
    ...                10, 10, ["ship"])
    [{'label': 'ship', 'box': [0.0, 0.0, 10.0, 10.0], 'score': 0.7}]
    """
    objects, pieces = [], []

    def close() -> None:
        parsed = parse_objects("".join(piece for piece, _ in pieces), width, height, classes=classes)
        probabilities = [probability for piece, probability in pieces if piece.strip(" ;")]
        if len(parsed.boxes) == 1 and probabilities:
            box = [round(value, 1) for value in parsed.boxes[0]]
            score = round(sum(probabilities) / len(probabilities), 4)
            objects.append({"label": parsed.labels[0], "box": box, "score": score})
        pieces.clear()

    for piece, probability in tokens:
        if ";" in piece or (piece.startswith("<loc") and pieces and not pieces[-1][0].startswith("<loc")):
            close()
        if ";" not in piece:
            pieces.append((piece, probability))
    close()
    return objects


def longest_suffix(task, rows, processor) -> int:
    """Tokens of the task's longest training target: how much room generation needs (every box of the busiest
    image)."""
    columns = rows.select_columns([column for column in task.row_columns if column in rows.column_names])
    lengths = [len(processor.tokenizer(task.suffix(row), add_special_tokens=False).input_ids) for row in columns]
    return max(lengths, default=1)


def _row(label: str, images, scores: dict) -> list[str]:
    """One detection table row; AP75 is "-" where it is not scored (per class)."""
    values = [number(scores.get(key)) if key in scores else "-" for key in DetectTask.summary_metrics]
    return [label, str(images or "-"), str(scores.get("boxes", "-")), *values]


def detection_rows(results: dict) -> list[list[str]]:
    """Test overall, then each class (AP, AP50, count MAE; AP75 overall only); val overall last."""
    test, val = results["test"], results.get("val")
    rows = [_row("**test, all classes**", test.get("num_samples"), test["overall"])]
    rows += [_row(cell(name), test.get("num_samples"), scores) for name, scores in (test.get("groups") or {}).items()]
    if isinstance(val, dict) and isinstance(val.get("overall"), dict):
        rows.append(_row("val, all classes", val.get("num_samples"), val["overall"]))
    return rows


def detection_examples(predictions: list[dict]) -> list[tuple[str, ...]]:
    """The first test images: boxes found per class against the references."""
    rows = []
    for record in predictions[:4]:
        found = ", ".join(f"{n} {label}" for label, n in label_counts(record.get("boxes") or []).items()) or "none"
        truth = ", ".join(f"{n} {label}" for label, n in label_counts(record.get("references") or []).items())
        image = str(record.get("image", "-")).rsplit("/", 1)[-1]
        rows.append(tuple(cell(v) for v in (image, found, truth or "none")))
    return rows


def draw_objects(image: Image.Image, objects: list[dict], color: str = "red", width: int | None = None) -> Image.Image:
    """A copy of `image` with each {"label", "box": [x1, y1, x2, y2]} drawn as a labelled rectangle (pixels of the
    image); lines about 1/250 of the image's longer side wide by default, visible once the grid shrinks it."""
    image = image.convert("RGB")
    width = width or max(1, round(max(image.size) / 250))
    draw = ImageDraw.Draw(image)
    for item in objects:
        x1, y1, x2, y2 = item["box"]
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        draw.text((x1 + 2, max(y1 - 11, 0)), item["label"], fill=color)
    return image


def grid_entry(record: dict, image: Image.Image) -> tuple[Image.Image, str]:
    """(picture, text) of one record in samples.png: predicted boxes in red, reference boxes in green."""
    drawn = draw_objects(draw_objects(image, record["references"], color="lime"), record["boxes"])
    text = f"{len(record['boxes'])} boxes (red), {len(record['references'])} references (green)"
    return drawn, text


def _coco_boxes(objects: list[dict]) -> list[list[float]]:
    return [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in (item["box"] for item in objects)]


def coco_eval(records: list[dict], classes: list[str]):
    """COCOeval ('bbox') of the records' boxes against their references; every predicted box has score 1."""
    from pycocotools.coco import COCO  # scoring only: the app and its Space never score
    from pycocotools.cocoeval import COCOeval

    category = {name: index + 1 for index, name in enumerate(classes)}
    images, truths, detections = [], [], []
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, "width": record["width"], "height": record["height"]})
        for box, item in zip(_coco_boxes(record["references"]), record["references"]):
            truths.append(
                {
                    "id": len(truths) + 1,
                    "image_id": image_id,
                    "category_id": category[item["label"]],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
        for box, item in zip(_coco_boxes(record["boxes"]), record["boxes"]):
            score = item.get("score", 1.0)
            detections.append({"image_id": image_id, "category_id": category[item["label"]], "bbox": box})
            detections[-1]["score"] = score
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports progress on stdout
        truth = COCO()
        truth.dataset = {"images": images, "annotations": truths, "categories": [{"id": i} for i in category.values()]}
        truth.createIndex()
        found = truth.loadRes(detections) if detections else COCO()
        if not detections:
            found.dataset = {"images": images, "annotations": [], "categories": truth.dataset["categories"]}
            found.createIndex()
        evaluation = COCOeval(truth, found, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def _mean_precision(precision: np.ndarray) -> float | None:
    """COCO's average of the valid (> -1) precision entries; None when the class has no reference box."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def detection_metrics(records: list[dict], classes: list[str]) -> dict:
    """{"overall": {ap, ap50, ap75, count_mae, boxes, predicted_boxes, dropped}, "groups": {class: {ap, ap50,
    count_mae, boxes}}}: AP@[.5:.95], AP50 and AP75 are COCOeval's (area all, 100 detections per image); count_mae is
    the mean absolute error of the per-image box count, per class over every image and overall over every
    (image, class) pair; `dropped` counts the generated objects that could not be read."""
    evaluation = coco_eval(records, classes)
    precision = evaluation.eval["precision"]  # (IoU thresholds, recall points, classes, areas, max dets)
    groups = {}
    errors = np.zeros((len(records), len(classes)))
    for row, record in enumerate(records):
        for column, name in enumerate(classes):
            predicted = sum(item["label"] == name for item in record["boxes"])
            errors[row, column] = abs(predicted - sum(item["label"] == name for item in record["references"]))
    for index, name in enumerate(classes):
        boxes = sum(item["label"] == name for record in records for item in record["references"])
        groups[name] = {
            "ap": _mean_precision(precision[:, :, index, 0, -1]),
            "ap50": _mean_precision(precision[0, :, index, 0, -1]),
            "count_mae": float(errors[:, index].mean()) if records else None,
            "boxes": boxes,
        }
    dropped = {}
    for record in records:
        for reason, count in record.get("dropped", {}).items():
            dropped[reason] = dropped.get(reason, 0) + count
    stats = [None if value < 0 else float(value) for value in evaluation.stats]  # -1: no reference box at all
    overall = {
        "ap": stats[0],
        "ap50": stats[1],
        "ap75": stats[2],
        "count_mae": float(errors.mean()) if records else None,
        "boxes": sum(len(record["references"]) for record in records),
        "predicted_boxes": sum(len(record["boxes"]) for record in records),
        "dropped": sum(dropped.values()),
    }
    return {"overall": overall, "groups": groups}
