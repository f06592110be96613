"""Captioning: `caption en` -> one of the image's reference captions; scored by the coco-caption metrics against all
of them, overall and per source (`metrics.caption_metrics`), beside the model before this training when the run
scored it (`--evaluate_before_training`).

Rows come from a captions folder (`captions`: the image's references, `source`, `filename`); with
`caption_choice: all` each image becomes one row per caption (its `caption` column).
"""

import random
import re

from .base import CAPTIONS_FORMAT, Task
from .card_text import FEW_IMAGES, SOURCE_NAMES, cell, number
from .registry import register_task

PROMPT = "caption en"
CAPTION_CHOICES = ("random", "first")
METRIC_NAMES = {
    "bleu_1": "BLEU-1",
    "bleu_2": "BLEU-2",
    "bleu_3": "BLEU-3",
    "bleu_4": "BLEU-4",
    "meteor": "METEOR",
    "rouge_l": "ROUGE-L",
    "cider": "CIDEr",
    "sbert_sim": "SBERT sim",
}


def postprocess_caption(text: str, prompt: str | None = PROMPT) -> str:
    """Clean one decoded caption: drop an echoed prompt, leftover special tokens and extra whitespace.

    >>> postprocess_caption("caption en\\n many  green trees <eos>")
    'many green trees'
    """
    text = re.sub(r"<(?:image|bos|eos|pad|unk|loc\d{4}|seg\d{3})>", " ", text)
    text = text.strip()
    if prompt and text.startswith(prompt):
        text = text[len(prompt) :]
    return " ".join(text.split())


def expand_captions(dataset):
    """caption_choice "all": one row per (image, caption), the caption in a `caption` column (5 rows per image)."""

    def explode(batch):
        rows = {key: [] for key in (*batch.keys(), "caption")}
        for index, captions in enumerate(batch["captions"]):
            for caption in captions:
                for key in batch:
                    rows[key].append(batch[key][index])
                rows["caption"].append(caption)
        return rows

    return dataset.map(explode, batched=True, batch_size=64, desc="one row per caption")


def with_captions(rows, dataset_dir: str):
    """`rows` without the images that carry no caption (e.g. class-only rows); an error when none has one."""
    counts = [len(captions) for captions in rows.select_columns(["captions"])["captions"]]
    if rows.num_rows and not any(counts):
        raise ValueError(f"{dataset_dir}: no image has a caption. Fix: give captions, or use --task classify.")
    return rows if all(counts) else rows.select([index for index, count in enumerate(counts) if count])


# The baseline row is "zero-shot" only for a base never trained on captions (the run records what its base knew).
BASELINE_LABELS = {False: "zero-shot base", True: "before this training"}
BASELINE_NOTES = {
    False: '"zero-shot base" rows: the same architecture before fine-tuning, evaluated the same way.',
    True: '"before this training" rows: the base model, already trained on captions, evaluated the same way.',
}
NO_BASELINE = "No zero-shot baseline was provided for this release."


CARD_TEMPLATE = """
Test split, coco-caption scores (BLEU, METEOR and ROUGE-L in [0, 1], CIDEr-D in [0, 10]); each source is scored as
if evaluated alone. {{ baseline_note }} The same numbers, unrounded, are in `eval_results.json` and in this card's
metadata (`model-index`).
{{ table(results_header, results_rows) }}
{%- if has_few_images %}

Rows marked "(few)" score fewer than {{ few_images }} images: CIDEr's document frequencies and every n-gram count
come from those images alone, so these scores swing from one image to the next. Read them as indicative only.
{%- endif %}
{%- if example_rows %}

{{ table(["image", "source", "generated", "a reference"], example_rows) }}
{%- endif %}"""


@register_task
class CaptionTask(Task):
    """caption_choice: "random" draws one of the row's captions each time the row is seen (python's `random`,
    whose state the Trainer checkpoints, so a resumed run draws the same captions); "first" always uses caption 1.
    Rows that carry their own `caption` (caption_choice "all") use it."""

    name = "caption"
    data_format = CAPTIONS_FORMAT
    default_prompt = PROMPT
    row_columns = ("filename", "source", "captions")
    best_metric = "cider"
    summary_metrics = ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider")
    headline_metrics = ("bleu_4", "meteor", "rouge_l", "cider")
    metric_names = METRIC_NAMES
    sequence_reward = True
    card_noun = "captioner"
    hub_task = ("image-text-to-text", "Image captioning")
    hub_tags = ("image-captioning",)
    hub_metrics = ("bleu", "meteor", "rouge", "cider")
    scoring_text = (
        "captions are scored against all their reference captions with coco-caption's BLEU-1..4, METEOR 1.5, "
        "ROUGE-L and CIDEr-D (pycocoevalcap's numbers), overall and per source"
    )
    card_template = CARD_TEMPLATE

    def __init__(self, prompt: str | None = None, caption_choice: str = "random", sbert_model: str | None = None):
        super().__init__(prompt)
        if caption_choice not in CAPTION_CHOICES:
            raise ValueError(f"caption_choice={caption_choice!r} is invalid here; use 'random' or 'first'.")
        self.caption_choice = caption_choice
        self.sbert_model = sbert_model  # also score SBERT similarity with this sentence-transformers model

    @classmethod
    def task_rows(cls, splits: dict, data_args, dataset_dir: str) -> dict:
        """The images with at least one caption (one or more: scored against as many references as they have)."""
        splits = {name: with_captions(rows, dataset_dir) for name, rows in splits.items()}
        if data_args.caption_choice == "all":
            splits = {**splits, "train": expand_captions(splits["train"])}
        return splits

    @classmethod
    def for_run(cls, rows, run) -> "CaptionTask":
        choice = "first" if run.data_args.caption_choice == "all" else run.data_args.caption_choice
        return cls(run.data_args.prompt, choice, sbert_model=run.sbert_model)

    def evaluation_copy(self) -> "CaptionTask":
        """Caption 1 always: a random draw would make the evaluation loss change between evaluations."""
        return self if self.caption_choice == "first" else CaptionTask(self.prompt, "first", self.sbert_model)

    def suffix(self, row, move=None) -> str:
        """A caption does not change when the image is rotated or flipped."""
        if "caption" in row:
            return row["caption"]
        captions = row["captions"]
        return captions[0] if self.caption_choice == "first" else random.choice(captions)

    def read(self, text: str, width: float, height: float) -> dict:
        return {"text": postprocess_caption(text, self.prompt)}

    def record(self, row, text: str) -> dict:
        return {
            "image": row["filename"],
            "source": row["source"],
            "task": self.name,
            "prediction": postprocess_caption(text, self.prompt),
            "references": list(row["captions"]),
        }

    def grid_entry(self, record: dict, image) -> tuple:
        """The generated caption and the first reference."""
        return image, f"{record['prediction']}\n[ref] {record['references'][0]}"

    def score(self, records: list[dict]) -> dict:
        from metrics import caption_metrics  # scoring only: the app and its Space never score

        predictions = [record["prediction"] for record in records]
        references = [record["references"] for record in records]
        groups = [record["source"] for record in records]
        scores = caption_metrics(predictions, references, groups=groups)
        if self.sbert_model and records:
            from metrics import sbert_similarity

            per_caption = sbert_similarity(predictions, references, model=self.sbert_model)["per_caption"]
            scores["overall"]["sbert_sim"] = sum(per_caption) / len(per_caption)
            for group, values in scores["groups"].items():
                mine = [value for value, name in zip(per_caption, groups) if name == group]
                values["sbert_sim"] = sum(mine) / len(mine)
        return scores

    # --- the model card ----------------------------------------------------------------------------------------
    @classmethod
    def card_dataset(cls, view: dict) -> str:
        """Captions are named by the run's dataset (their sources are its parts)."""
        return view["run_dataset"]

    @classmethod
    def model_index(cls, view: dict) -> list[tuple[str, str, dict]]:
        """Every metric, all sources, then each source."""
        test, dataset = view["results"]["test"], cls.card_dataset(view)
        sets = [("all", f"{dataset} (all sources)", test["overall"])]
        sets += [
            (group.lower(), f"{dataset} {SOURCE_NAMES.get(group, group)}", scores)
            for group, scores in (test.get("groups") or {}).items()
        ]
        return sets

    @classmethod
    def card_row(cls, view: dict) -> list[str]:
        before = ((view.get("baseline") or {}).get("overall") or {}).get("cider")
        cider = view["results"]["test"]["overall"].get("cider")
        baseline = "-" if before is None else f"before this training: CIDEr {number(before)}"
        return [f"`{cls.prompt_text(view)}`", f"CIDEr {number(cider)}", baseline]

    @classmethod
    def card_values(cls, view: dict, card: dict) -> dict:
        overall = view["results"]["test"]["overall"]
        keys = metric_keys(overall)
        label = BASELINE_LABELS[view.get("base_trained", False)]
        rows = results_rows(view["results"], view.get("baseline"), source_counts(view["predictions"]), keys, label)
        return {
            "baseline_note": BASELINE_NOTES[view.get("base_trained", False)] if view.get("baseline") else NO_BASELINE,
            "results_header": ["set", "images", *(METRIC_NAMES.get(key, key) for key in keys)],
            "results_rows": rows,
            "has_few_images": any(row[1].endswith("(few)") for row in rows),
            "few_images": FEW_IMAGES,
            "example_rows": example_rows(view["predictions"]),
        }


def metric_keys(overall: dict) -> list[str]:
    return [key for key in METRIC_NAMES if key in overall] + [key for key in overall if key not in METRIC_NAMES]


def source_counts(predictions: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in predictions:
        counts[record.get("source", "-")] = counts.get(record.get("source", "-"), 0) + 1
    return counts


def results_rows(results: dict, baseline: dict | None, counts: dict, keys: list, label: str) -> list[list[str]]:
    """Test overall, then each source, each followed by its baseline row (`label`); val overall last."""
    test, baseline = results["test"], baseline or {}
    rows = []

    def add(label: str, scores: dict | None, images) -> None:
        if scores:
            few = isinstance(images, int) and images < FEW_IMAGES
            rows.append([label, f"{images} (few)" if few else str(images), *(number(scores.get(key)) for key in keys)])

    overall_count = test.get("num_samples") or sum(counts.values()) or "-"
    add("**test, all sources**", test["overall"], overall_count)
    add(label, baseline.get("overall"), baseline.get("num_samples") or overall_count)
    for group, scores in (test.get("groups") or {}).items():
        add(f"**test, {SOURCE_NAMES.get(group, group)}**", scores, counts.get(group, "-"))
        add(label, (baseline.get("groups") or {}).get(group), counts.get(group, "-"))
    val = results.get("val")
    if isinstance(val, dict):
        add("val, all sources", val.get("overall"), val.get("num_samples") or "-")
    return rows


def example_rows(predictions: list[dict]) -> list[tuple[str, ...]]:
    """The first test images: generated caption and the first reference."""
    rows = []
    for record in predictions[:4]:
        image = str(record.get("image", "-")).rsplit("/", 1)[-1]
        reference = (record.get("references") or ["-"])[0]
        rows.append(
            tuple(cell(v) for v in (image, record.get("source", "-"), record.get("prediction", ""), reference))
        )
    return rows
