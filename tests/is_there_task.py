"""A fifth task defined outside the project, in this one module: `answer en is there a <class>?` -> `yes` / `no`,
its rows from a boxes dataset (one question per image and class of the dataset, so both answers occur), answered by
ranking the two answers, scored by accuracy beside the training split's most frequent answer. Importing the module
registers it; nothing else of the project names it."""

import re
from collections import Counter

from tasks import register_task
from tasks.answers import QuestionTask, normalize_answer
from tasks.base import BOXES_FORMAT
from tasks.rows import box_classes, distinct_rows, split_classes

QUESTION = "answer en is there a {}?"
PATTERN = re.compile(r"^answer en is there an? (.+)\?$")
ANSWERS = ["yes", "no"]


def question_rows(split, classes: list[str]):
    """One row per (image, class of the dataset): `label` = the class asked about (no image decoded)."""
    indices = [index for index in range(len(split)) for _ in classes]
    return split.select(indices).add_column("label", [name for _ in range(len(split)) for name in classes])


def presence_metrics(records: list[dict], majority: str | None) -> dict:
    """{"overall": {accuracy, majority_accuracy, questions}, "groups": {class: {accuracy, questions}}}."""
    right = [record["prediction"] == record["reference"] for record in records]
    groups = {}
    for name in sorted({record["label"] for record in records}):
        mine = [hit for hit, record in zip(right, records) if record["label"] == name]
        groups[name] = {"accuracy": sum(mine) / len(mine), "questions": len(mine)}
    baseline = sum(record["reference"] == majority for record in records) / len(records) if records else None
    overall = {"accuracy": sum(right) / len(records) if records else None, "majority_accuracy": baseline}
    return {"overall": {**overall, "questions": len(records)}, "groups": groups}


@register_task
class IsThereTask(QuestionTask):
    name = "is_there"
    data_format = BOXES_FORMAT
    default_prompt = QUESTION.format("object")
    row_columns = ("filename", "source", "label", "objects")
    best_metric = "accuracy"
    summary_metrics = ("accuracy", "majority_accuracy")
    headline_metrics = ("accuracy", "majority_accuracy")
    card_noun = "object finder"
    hub_task = ("visual-question-answering", "Object presence")
    hub_tags = ("visual-question-answering",)
    answer_label = "is_there"
    baseline_name = "most frequent answer"
    baseline_keys = ("majority_accuracy", None)
    card_text = {"answer_note": "", "baseline_text": "the training split's most frequent answer"}

    def __init__(self, classes=(), majority: str | None = None, question: str | None = None):
        self.classes, self.majority = list(classes), majority
        super().__init__(question)

    @classmethod
    def task_rows(cls, splits: dict, data_args, dataset_dir: str) -> dict:
        classes = box_classes(splits["train"])
        return {name: question_rows(rows, classes) for name, rows in splits.items()}

    @classmethod
    def for_run(cls, rows, run) -> "IsThereTask":
        rows = distinct_rows(rows, ("filename", "label"))
        task = cls(run.classes)
        answers = Counter(task.suffix(row) for row in rows.select_columns(["label", "objects"]))
        task.majority = min(answers, key=lambda answer: (-answers[answer], answer))
        return task

    @property
    def answers(self) -> list[str]:
        return ANSWERS

    def prefix(self, row) -> str:
        return QUESTION.format(row["label"])

    def suffix(self, row, move=None) -> str:
        present = any(self.classes[category] == row["label"] for category in row["objects"]["category"])
        return "yes" if present else "no"

    def read(self, text: str, width: float, height: float) -> dict:
        return {"text": normalize_answer(text)}

    def record(self, row, text: str) -> dict:
        return {
            "image": row["filename"],
            "source": row["source"],
            "task": self.name,
            "label": row["label"],
            "prediction": normalize_answer(text),
            "reference": self.suffix(row),
        }

    def score(self, records: list[dict]) -> dict:
        return presence_metrics(records, self.majority)

    def to_record(self) -> dict:
        return {"prompt": QUESTION, "classes": self.classes}

    @classmethod
    def from_record(cls, record: dict, options: dict) -> "IsThereTask":
        wanted = split_classes(options.get("classes"))
        if len(wanted) != 1:
            raise ValueError("--task is_there needs one class to look for: --classes NAME.")
        return cls(record.get("classes", wanted), question=record.get("prompt", QUESTION).format(wanted[0]))

    @classmethod
    def for_prompt(cls, prompt: str) -> "IsThereTask | None":
        return cls(question=prompt) if PATTERN.match(prompt) else None

    @classmethod
    def prompt_text(cls, view: dict) -> str:
        return QUESTION.format("<class>")
