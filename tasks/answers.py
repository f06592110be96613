"""What the question-answering tasks (`answer en ...`: scenes, counts, your own) share: how an answer is compared,
and their card: one row per task in an answers table, beside its trivial baseline, and accuracy per class in the
metadata."""

import re
from typing import ClassVar

from .base import Task
from .card_text import number

ANSWER_HEADER = ["task", "prompt", "test questions", "accuracy", "MAE", "trivial baseline", "its accuracy", "its MAE"]
ANSWER_CARD_TEMPLATE = """
Questions, test split: exact-match accuracy of the answer (lower case, punctuation removed{{ answer_note }}), beside
the trivial baseline that answers without looking: {{ baseline_text }}. Per-class scores are in `eval_results.json`
and in the metadata.
{{ table(answer_header, answer_rows) }}"""


def normalize_answer(text: str) -> str:
    """An answer as it is compared: lower case, special tokens, punctuation and extra spaces removed."""
    text = re.sub(r"<[^>]*>", " ", text.lower())
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


class QuestionTask(Task):
    """A task whose answer is compared as a label (`normalize_answer`), scored by accuracy (and MAE where it has
    one) beside a trivial baseline; subclasses name the table's columns."""

    card_template = ANSWER_CARD_TEMPLATE
    answer_label: ClassVar[str]  # the answers table's "task" column
    questions_key: ClassVar[str] = "questions"  # the overall score counting the scored questions
    baseline_name: ClassVar[str]  # "majority class"
    baseline_keys: ClassVar[tuple[str, str | None]]  # the baseline's accuracy and MAE scores
    card_text: ClassVar[dict[str, str]]  # answer_note, baseline_text of the section's paragraph

    @classmethod
    def model_index(cls, view: dict) -> list[tuple[str, str, dict]]:
        """Its overall scores and the baseline's, then accuracy per class."""
        test, dataset = view["results"]["test"], cls.card_dataset(view)
        sets = [("all", f"{dataset} (all classes)", {key: test["overall"].get(key) for key in cls.headline_metrics})]
        sets += [
            (name.replace(" ", "-"), f"{dataset} {name}", {"accuracy": scores.get("accuracy")})
            for name, scores in (test.get("groups") or {}).items()
        ]
        return sets

    @classmethod
    def answer_row(cls, view: dict) -> list[str]:
        overall = view["results"]["test"]["overall"]
        baseline = [overall.get(key) if key else None for key in cls.baseline_keys]
        row = [cls.answer_label, f"`{cls.prompt_text(view)}`", overall.get(cls.questions_key)]
        return [
            number(value)
            for value in [*row, overall.get("accuracy"), overall.get("mae"), cls.baseline_name, *baseline]
        ]

    @classmethod
    def card_row(cls, view: dict) -> list[str]:
        _, prompt, _, accuracy, mae, baseline, its_accuracy, its_mae = cls.answer_row(view)
        score = f"accuracy {accuracy}" + (f", MAE {mae}" if mae != "-" else "")
        return [prompt, score, f"{baseline}: accuracy {its_accuracy}" + (f", MAE {its_mae}" if its_mae != "-" else "")]

    @classmethod
    def card_values(cls, view: dict, card: dict) -> dict:
        return {**cls.card_text, "answer_header": ANSWER_HEADER, "answer_rows": [cls.answer_row(view)]}
