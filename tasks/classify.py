"""Scene classification: `answer en what is the scene?` -> the scene class in plain words (`dense residential`);
scored by top-1 accuracy overall and per class, beside the majority-class baseline, with a confusion matrix.

Rows are caption rows (a RISC folder) whose scene is read from the file name: `RSICD_airport_12.jpg` and
`airport_12.jpg` are `airport`; RSICD's numbered images (`RSICD_00012.jpg`) name no scene and are skipped
(`scene_of`). The class a row is trained on is its `label` column.
"""

import logging
import re
from collections import Counter

from .answers import QuestionTask, normalize_answer
from .base import CAPTIONS_FORMAT
from .registry import register_task
from .rows import distinct_rows

logger = logging.getLogger(__name__)

PROMPT = "answer en what is the scene?"

# `<optional source prefix>_<scene>_<number>.<ext>`: RSICD, UCM and NWPU-RESISC45 name their scene images so.
SCENE_PATTERN = r"^(?:[A-Za-z]+_)?([a-z]+)_\d+\.\w+$"

# File names write a scene as one word; the model learns (and users read) the words.
SCENE_WORDS = {
    "bareland": "bare land",
    "baseballfield": "baseball field",
    "denseresidential": "dense residential",
    "mediumresidential": "medium residential",
    "railwaystation": "railway station",
    "sparseresidential": "sparse residential",
    "storagetanks": "storage tanks",
}


def scene_of(filename: str, pattern: str = SCENE_PATTERN) -> str | None:
    """The scene class in plain words that `filename` names (its regex group 1), or None when it names none."""
    match = re.match(pattern, filename)
    if match is None:
        return None
    name = match.group(1).lower()
    return SCENE_WORDS.get(name, name.replace("_", " ").replace("-", " "))


CARD_VALUES = {
    "answer_note": "",
    "baseline_text": "the training split's most frequent scene",
}


@register_task
class ClassifyTask(QuestionTask):
    """Closed-set scene classification over `classes`; `majority` is the training split's most frequent class, the
    baseline that always answers it. With `classes` known, evaluation and inference answer by ranking them
    (`tasks.likelihood.likeliest_answers`), so every answer is a class; without, by generating (`generation`)."""

    name = "classify"
    data_format = CAPTIONS_FORMAT
    default_prompt = PROMPT
    row_columns = ("filename", "source", "label")
    best_metric = "accuracy"
    summary_metrics = ("accuracy", "majority_accuracy")
    headline_metrics = ("accuracy", "majority_accuracy")
    metric_names = {"accuracy": "accuracy", "majority_accuracy": "majority-class accuracy"}
    generation = {"num_beams": 1, "max_new_tokens": 8}  # a class is a few words
    card_noun = "scene classifier"
    hub_task = ("image-classification", "Scene classification")
    hub_tags = ("image-classification",)
    hub_metrics = ("accuracy",)
    scoring_text = "scene answers rank the known classes and are scored by top-1 accuracy"
    class_map = True
    answer_label = "scene"
    questions_key = "images"
    baseline_name = "majority class"
    baseline_keys = ("majority_accuracy", None)
    card_text = CARD_VALUES

    def __init__(self, classes=(), majority: str | None = None, prompt: str | None = None):
        super().__init__(prompt)
        self.classes = list(classes)
        self.majority = majority

    @classmethod
    def task_rows(cls, splits: dict, data_args, dataset_dir: str) -> dict:
        if "label" in splits["train"].column_names and any(splits["train"]["label"]):  # classes given by the data
            return {name: rows.filter(bool, input_columns="label") for name, rows in splits.items()}
        pattern = data_args.scene_pattern or SCENE_PATTERN
        return {name: scene_rows(rows, pattern, dataset_dir) for name, rows in splits.items()}

    @classmethod
    def for_run(cls, rows, run) -> "ClassifyTask":
        labels = distinct_rows(rows, ("filename",)).select_columns(["label"])["label"]
        return cls(sorted(set(labels)), majority=majority_class(labels))

    @property
    def answers(self) -> list[str]:
        """The closed set answers are ranked among (empty: generate freely)."""
        return self.classes

    def suffix(self, row, move=None) -> str:
        """A scene does not change when the image is rotated or flipped."""
        return row["label"]

    def read(self, text: str, width: float, height: float) -> dict:
        return {"text": normalize_answer(text)}

    def record(self, row, text: str) -> dict:
        return {
            "image": row["filename"],
            "source": row["source"],
            "task": self.name,
            "prediction": normalize_answer(text),
            "reference": row["label"],
        }

    def score(self, records: list[dict]) -> dict:
        return classification_metrics(records, self.majority)

    def write_figures(self, records: list[dict], output_dir, stem: str = "") -> None:
        """confusion{stem}.png beside the sample grid."""
        write_confusion_matrix(records, f"{output_dir}/confusion{stem}.png")

    def grid_entry(self, record: dict, image) -> tuple:
        mark = "right" if record["prediction"] == record["reference"] else "wrong"
        return image, f"{record['prediction']} ({mark})\n[ref] {record['reference']}"

    def to_record(self) -> dict:
        return {"prompt": self.prompt, "classes": list(self.classes)}

    @classmethod
    def from_record(cls, record: dict, options: dict) -> "ClassifyTask":
        return cls(record.get("classes", []), prompt=record.get("prompt"))

    @classmethod
    def for_prompt(cls, prompt: str) -> "ClassifyTask | None":
        return cls() if prompt == PROMPT else None


def scene_rows(split, pattern: str, dataset_dir: str):
    """The caption rows whose file name names a scene (`scene_of`), with that scene as `label`; the others
    (RSICD's numbered images) are left out."""
    scenes = [scene_of(name.rsplit("/", 1)[-1], pattern) for name in split.select_columns(["filename"])["filename"]]
    kept = [index for index, scene in enumerate(scenes) if scene is not None]
    if split.num_rows and not kept:
        raise ValueError(
            f"{dataset_dir}: no file name matches scene_pattern {pattern!r} (e.g. {split[0]['filename']!r}). "
            "Fix: give --scene_pattern a regex whose group 1 is the scene, e.g. '^([a-z]+)_\\d+\\.jpg$'."
        )
    logger.info("%s: %d of %d images name a scene", dataset_dir, len(kept), split.num_rows)
    split = split.remove_columns([name for name in ("label",) if name in split.column_names])
    return split.select(kept).add_column("label", [scenes[index] for index in kept])


def classification_metrics(records: list[dict], majority: str | None = None) -> dict:
    """{"overall": {accuracy, majority_accuracy, images, outside_classes}, "groups": {class: {accuracy, images}}}:
    top-1 accuracy of the normalised answer against the reference class; `majority_accuracy` is that of always
    answering `majority` (None without one); `outside_classes` counts answers that are no reference class at all."""
    classes = sorted({record["reference"] for record in records})
    right = [record["prediction"] == record["reference"] for record in records]
    groups = {}
    for name in classes:
        mine = [hit for hit, record in zip(right, records) if record["reference"] == name]
        groups[name] = {"accuracy": sum(mine) / len(mine), "images": len(mine)}
    known = set(classes) | ({majority} if majority else set())
    overall = {
        "accuracy": sum(right) / len(records) if records else None,
        "majority_accuracy": (
            sum(record["reference"] == majority for record in records) / len(records) if records and majority else None
        ),
        "images": len(records),
        "outside_classes": sum(record["prediction"] not in known for record in records),
    }
    return {"overall": overall, "groups": groups}


def confusion_counts(records: list[dict]) -> tuple[list[str], list[list[int]]]:
    """(classes, counts): counts[i][j] = images of reference class i answered as class j; answers that are no
    reference class are the last column, `other`."""
    classes = sorted({record["reference"] for record in records})
    column = {name: index for index, name in enumerate(classes)}
    counts = [[0] * (len(classes) + 1) for _ in classes]
    for record in records:
        counts[column[record["reference"]]][column.get(record["prediction"], len(classes))] += 1
    return classes, counts


def write_confusion_matrix(records: list[dict], path) -> None:
    """The confusion matrix as a PNG: rows are reference classes, columns answers (the last: other); a cell's
    colour is its share of its row, its number the image count."""
    from matplotlib.figure import Figure  # object API: no pyplot state, renders with Agg

    classes, counts = confusion_counts(records)
    side = 2.5 + 0.32 * len(classes)
    figure = Figure(figsize=(side + 0.3, side))
    axes = figure.add_subplot()
    shares = [[count / max(sum(row), 1) for count in row] for row in counts]
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row, values in enumerate(counts):
        for col, count in enumerate(values):
            if count:
                color = "white" if shares[row][col] > 0.5 else "black"
                axes.text(col, row, str(count), ha="center", va="center", fontsize=6, color=color)
    axes.set_xticks(range(len(classes) + 1), [*classes, "other"], rotation=90, fontsize=7)
    axes.set_yticks(range(len(classes)), classes, fontsize=7)
    axes.set_xlabel("answer")
    axes.set_ylabel("reference")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def majority_class(labels) -> str | None:
    """The most frequent label (ties: the first in sorted order), the majority baseline's answer."""
    counts = Counter(labels)
    return min(counts, key=lambda name: (-counts[name], name)) if counts else None
