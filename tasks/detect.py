"""Object detection: `detect a ; b` -> `<loc>` x 4 + label per object; scored by pycocotools' COCOeval.

Rows are those of `dataset_builder.detection` (`objects.bbox` = [x, y, w, h] pixels, `objects.category` class
indices, `width`, `height`). The prompt lists every class of the dataset, always in the same order, so the model
learns one closed-set detector; objects are written top to bottom, then left to right (a fixed order is easier to
learn than a random one).
"""

import contextlib
import io

import numpy as np
from PIL import Image, ImageDraw

from .loc_codec import detect_prompt, encode_objects, parse_objects

NAME = "detect"
SUMMARY_METRICS = ("ap", "ap50", "ap75", "count_mae")
ROW_COLUMNS = ("filename", "source", "width", "height", "objects")


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


class DetectTask:
    """Closed-set detection over `classes` (the dataset's ClassLabel names)."""

    name = NAME
    row_columns = ROW_COLUMNS

    def __init__(self, classes):
        self.classes = list(classes)
        self.prompt = detect_prompt(self.classes)

    def prefix(self, row) -> str:
        return self.prompt

    def suffix(self, row, move=None) -> str:
        """The training target of the row's image after `move` (the collator's augmentation)."""
        width, height = row["width"], row["height"]
        boxes = [transform_box(box, width, height, move) for box in corner_boxes(row)]
        labels = [self.classes[index] for index in row["objects"]["category"]]
        order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0], labels[i]))
        return encode_objects(
            [boxes[i] for i in order], [labels[i] for i in order], *transformed_size(width, height, move)
        )

    generation = {"num_beams": 1, "max_new_tokens": 256}  # greedy; finetune.py sizes it to its busiest image

    def read(self, text: str, width: float, height: float) -> dict:
        """What inference writes for one image: the raw text and its boxes in the image's pixels (0.1 px)."""
        parsed = parse_objects(text, width, height, classes=self.classes)
        boxes = [
            {"label": label, "box": [round(value, 1) for value in box]}
            for box, label in zip(parsed.boxes, parsed.labels)
        ]
        return {"caption": text, "boxes": boxes}

    def record(self, row, text: str) -> dict:
        """One line of predictions.jsonl: the raw text, the boxes read from it and the reference boxes."""
        parsed = parse_objects(text, row["width"], row["height"], classes=self.classes)
        return {
            "image": row["filename"],
            "source": row["source"],
            "task": NAME,
            "prediction": text,
            "boxes": [{"label": label, "box": list(box)} for box, label in zip(parsed.boxes, parsed.labels)],
            "dropped": parsed.dropped,
            "width": row["width"],
            "height": row["height"],
            "references": [
                {"label": self.classes[index], "box": list(box)}
                for box, index in zip(corner_boxes(row), row["objects"]["category"])
            ],
        }

    def score(self, records: list[dict]) -> dict:
        return detection_metrics(records, self.classes)

    summary_metrics = SUMMARY_METRICS

    def grid_entry(self, record: dict, image: Image.Image) -> tuple[Image.Image, str]:
        return grid_entry(record, image)

    def draw(self, read: dict, image: Image.Image) -> tuple[Image.Image, str]:
        """(picture, text) of one inference result in --grid: its boxes drawn."""
        return draw_objects(image, read["boxes"]), f"{len(read['boxes'])} boxes"


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
