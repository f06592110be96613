"""Captioning: `caption en` -> one of the image's reference captions; scored by the coco-caption metrics against all
of them, overall and per source (`metrics.caption_metrics`)."""

import random

from processing import DEFAULT_PROMPT, postprocess_caption

NAME = "caption"
SUMMARY_METRICS = ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider")
ROW_COLUMNS = ("filename", "source", "captions")
CAPTION_CHOICES = ("random", "first")


class CaptionTask:
    """caption_choice: "random" draws one of the row's captions each time the row is seen (python's `random`,
    whose state the Trainer checkpoints, so a resumed run draws the same captions); "first" always uses caption 1.
    Rows that carry their own `caption` (caption_choice "all" expands each image into five rows) use it."""

    name = NAME
    row_columns = ROW_COLUMNS
    summary_metrics = SUMMARY_METRICS

    def __init__(self, prompt: str = DEFAULT_PROMPT, caption_choice: str = "random", sbert_model: str | None = None):
        if caption_choice not in CAPTION_CHOICES:
            raise ValueError(f"caption_choice={caption_choice!r} is invalid here; use 'random' or 'first'.")
        self.prompt = prompt
        self.caption_choice = caption_choice
        self.sbert_model = sbert_model  # also score SBERT similarity with this sentence-transformers model

    def prefix(self, row) -> str:
        return self.prompt

    def suffix(self, row, move=None) -> str:
        """A caption does not change when the image is rotated or flipped."""
        if "caption" in row:
            return row["caption"]
        captions = row["captions"]
        return captions[0] if self.caption_choice == "first" else random.choice(captions)

    def read(self, text: str, width: float, height: float) -> dict:
        """What inference writes for one image: the cleaned caption."""
        return {"caption": postprocess_caption(text, self.prompt)}

    def record(self, row, text: str) -> dict:
        return {
            "image": row["filename"],
            "source": row["source"],
            "prediction": postprocess_caption(text, self.prompt),
            "references": list(row["captions"]),
        }

    def draw(self, read: dict, image) -> tuple:
        """(picture, text) of one inference result in --grid: the image under its caption."""
        return image, read["caption"]

    def grid_entry(self, record: dict, image) -> tuple:
        """(picture, text) of one record in samples.png: the generated caption and the first reference."""
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
