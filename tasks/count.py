"""Counting questions: `answer en how many airplanes are there?` -> the number of that class's boxes, in digits;
scored by exact-match accuracy and mean absolute error, beside the baseline that always answers the training
split's median count of the class asked about.

Rows are detection rows (`dataset_builder.detection`), one per (image, class present in it): `label` names the
class asked about and the answer is how many of the image's boxes carry it (`count_rows`). Questions are asked
about the classes an image shows, as counting benchmarks do; the model is not taught to answer 0.
"""

import re
import statistics

from .answers import QuestionTask, normalize_answer
from .base import BOXES_FORMAT
from .registry import register_task
from .rows import box_classes, distinct_rows, split_classes, warn_untrained

COUNT_QUESTION = re.compile(r"^answer en how many (.+) are there\?$")


def plural(name: str) -> str:
    """The English plural of a class name's last word: `storage tank` -> `storage tanks`, `harbor` -> `harbors`."""
    if re.search(r"(s|x|z|ch|sh)$", name):
        return name + "es"
    if re.search(r"[^aeiou]y$", name):
        return name[:-1] + "ies"
    return name + "s"


COUNT_TEMPLATE = "answer en how many {} are there?"  # {}: the plural of the class asked about


def count_question(name: str) -> str:
    return COUNT_TEMPLATE.format(plural(name))


def read_count(text: str) -> int | None:
    """The first whole number in the answer, or None when it holds none."""
    match = re.search(r"\d+", normalize_answer(text))
    return int(match.group()) if match else None


def count_rows(split, classes: list[str]):
    """One row per (image, class present in it) of a detection `datasets.Dataset`: the image's row with `label` =
    the class's name (no image is decoded)."""
    categories = split.select_columns(["objects"])["objects"]
    indices, labels = [], []
    for index, objects in enumerate(categories):
        for category in sorted(set(objects["category"])):
            indices.append(index)
            labels.append(classes[category])
    return split.select(indices).add_column("label", labels)


def boxes_of_label(row, classes: list[str]) -> int:
    """How many of the row's boxes carry the class its question asks about (`label`)."""
    return sum(classes[category] == row["label"] for category in row["objects"]["category"])


CARD_VALUES = {
    "answer_note": "; the count is the first number in it, and the mean absolute error of that number, an answer "
    "without one counting as 0",
    "baseline_text": "the training split's median count of the class asked about",
}


@register_task
class CountTask(QuestionTask):
    """Counting over `classes` (the dataset's ClassLabel names); `medians` maps a class to its training median count
    (the baseline's answer)."""

    name = "count"
    data_format = BOXES_FORMAT
    default_prompt = COUNT_TEMPLATE
    row_columns = ("filename", "source", "label", "objects")
    best_metric = "accuracy"
    summary_metrics = ("accuracy", "mae", "median_accuracy", "median_mae")
    headline_metrics = ("accuracy", "mae", "median_accuracy", "median_mae")
    metric_names = {
        "accuracy": "accuracy",
        "mae": "MAE",
        "median_accuracy": "median-count accuracy",
        "median_mae": "median-count MAE",
    }
    generation = {"num_beams": 1, "max_new_tokens": 4}  # a number
    card_noun = "object counter"
    hub_task = ("visual-question-answering", "Counting")
    hub_tags = ("visual-question-answering",)
    hub_metrics = ("accuracy", "mae")
    scoring_text = "count answers are scored by exact match and mean absolute error"
    answer_label = "count"
    baseline_name = "median count per class"
    baseline_keys = ("median_accuracy", "median_mae")
    card_text = CARD_VALUES

    def __init__(self, classes, medians: dict[str, int] | None = None, question: str | None = None):
        self.classes = list(classes)
        self.medians = dict(medians or {})
        # Rows ask about their own class (`prefix`); `prompt` is the one question of inference, else the first class's.
        super().__init__(question or count_question(self.classes[0] if self.classes else "object"))

    @classmethod
    def task_rows(cls, splits: dict, data_args, dataset_dir: str) -> dict:
        classes = box_classes(splits["train"])
        return {name: count_rows(rows, classes) for name, rows in splits.items()}

    @classmethod
    def for_run(cls, rows, run) -> "CountTask":
        rows = distinct_rows(rows, ("filename", "label")).select_columns(["label", "objects"])
        return cls(run.classes, medians=median_counts(rows, run.classes))

    def prefix(self, row) -> str:
        return count_question(row["label"])

    def answer(self, row) -> int:
        return boxes_of_label(row, self.classes)

    def suffix(self, row, move=None) -> str:
        """A count does not change when the image is rotated or flipped."""
        return str(self.answer(row))

    def read(self, text: str, width: float, height: float) -> dict:
        """The answer, cleaned, and the number read from it (None: none)."""
        return {"text": normalize_answer(text), "count": read_count(text)}

    def record(self, row, text: str) -> dict:
        return {
            "image": row["filename"],
            "source": row["source"],
            "task": self.name,
            "label": row["label"],
            "prediction": normalize_answer(text),
            "count": read_count(text),
            "reference": self.answer(row),
        }

    def score(self, records: list[dict]) -> dict:
        return count_metrics(records, self.medians)

    def draw(self, result: dict, image) -> tuple:
        return image, f"{result['count']}"

    def grid_entry(self, record: dict, image) -> tuple:
        return image, f"{record['label']}: {record['count']}\n[ref] {record['reference']}"

    def to_record(self) -> dict:
        return {"prompt": COUNT_TEMPLATE, "classes": list(self.classes)}

    @classmethod
    def from_record(cls, record: dict, options: dict) -> "CountTask":
        """`options["question"]`: a question of the user's own; else `options["classes"]` names the one class to
        count (or the model knows only one)."""
        known = list(record.get("classes", []))
        question = options.get("question")
        if question:
            return cls(known, question=question if question.startswith("answer ") else f"answer en {question}")
        wanted = split_classes(options.get("classes"))
        if len(wanted) != 1 and len(known) != 1:
            hint = f" (this model counts {' ; '.join(known)})" if known else ""
            raise ValueError(f"--task count needs one class to count: --classes NAME or --question TEXT{hint}.")
        warn_untrained(cls.name, wanted, known)
        name = (wanted or known)[0]
        task = cls(known or [name], question=record.get("prompt", COUNT_TEMPLATE).format(plural(name)))
        task.asked = name  # the one class a scene's count detects
        return task

    def scene_task(self, records: dict):
        """A scene is counted from its merged boxes, not by summing tiles' answers (overlapping tiles would count
        the objects they share twice): its tiles are detected, for the class asked, as the model recorded
        detection (decoding, tile size and overlap); `scene_summary` counts what the merge keeps. A question of the
        user's own is asked per tile."""
        from .detect import DetectTask

        if not getattr(self, "asked", None):
            return self
        detect = records.get("detect") or {}
        return DetectTask([self.asked], detect.get("generation"), detect.get("tile_size"), detect.get("tile_overlap"))

    def scene_summary(self, features: list[dict]) -> dict:
        return {"count": len(features)} if getattr(self, "asked", None) else {}

    @classmethod
    def for_prompt(cls, prompt: str) -> "CountTask | None":
        return cls([], question=prompt) if COUNT_QUESTION.match(prompt) else None

    @classmethod
    def prompt_text(cls, view: dict) -> str:
        return COUNT_TEMPLATE.format("<classes>")


def median_counts(rows, classes: list[str]) -> dict[str, int]:
    """{class: the median of its counts over the rows that ask about it} (the lower median: always a count that
    occurs)."""
    per_class = {}
    for row in rows:
        per_class.setdefault(row["label"], []).append(boxes_of_label(row, classes))
    return {name: statistics.median_low(counts) for name, counts in sorted(per_class.items())}


def _scores(records: list[dict], answers: list[int | None]) -> dict:
    """accuracy and mae of `answers` against the records' references; an answer without a number counts as wrong
    and as 0 for the error."""
    if not records:
        return {"accuracy": None, "mae": None}
    right = sum(answer == record["reference"] for answer, record in zip(answers, records))
    errors = [abs((answer or 0) - record["reference"]) for answer, record in zip(answers, records)]
    return {"accuracy": right / len(records), "mae": sum(errors) / len(records)}


def count_metrics(records: list[dict], medians: dict[str, int] | None = None) -> dict:
    """{"overall": {accuracy, mae, median_accuracy, median_mae, questions, unread}, "groups": {class: the same
    without unread}}: exact-match accuracy and mean absolute error of the answered counts, and of the median
    baseline (None for a class without a training median)."""
    medians = medians or {}

    def block(part: list[dict]) -> dict:
        scores = _scores(part, [record["count"] for record in part])
        known = all(record["label"] in medians for record in part)
        baseline = _scores(part, [medians.get(record["label"]) for record in part]) if known else {}
        return {
            **scores,
            "median_accuracy": baseline.get("accuracy"),
            "median_mae": baseline.get("mae"),
            "questions": len(part),
        }

    groups = {}
    for name in sorted({record["label"] for record in records}):
        groups[name] = block([record for record in records if record["label"] == name])
    overall = {**block(records), "unread": sum(record["count"] is None for record in records)}
    return {"overall": overall, "groups": groups}
