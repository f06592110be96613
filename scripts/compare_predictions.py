"""Two captioners on the same images: their CIDEr-D difference with a paired bootstrap over the images. Prints one
JSON object: each model's CIDEr, the difference (A - B), its 95% interval and how often a resample reverses it.

    python -m scripts.compare_predictions A/predictions.jsonl B/predictions.jsonl [--resamples 10000] [--seed 0]
    python -m scripts.compare_predictions A1/predictions.jsonl,A2/predictions.jsonl B1/...,B2/...   # runs pooled

Each image's CIDEr-D comes from pycocoevalcap (document frequencies from all the references, held fixed), so the
means are exactly the corpus CIDEr that finetune.py reports. The interval covers the choice of images, not the
training seed: one run per model says nothing about seed-to-seed variation. Several runs of one model (comma
separated, e.g. its seeds) are pooled by averaging each image's CIDEr over the runs, so the difference is that of
the seed means and each run's own CIDEr is listed too (`runs_a`, `runs_b`).
"""

import json
import sys
from dataclasses import dataclass, field

import numpy as np
from pycocoevalcap.cider.cider import Cider

from command_line import parse_command_line
from metrics._tokenize import ptb_tokenize_streams, regroup


@dataclass
class CompareArguments:
    predictions_a: str = field(
        metadata={
            "help": "predictions.jsonl of model A (finetune.py's test predictions); several runs comma separated."
        }
    )
    predictions_b: str = field(metadata={"help": "predictions.jsonl of model B, on the same images; likewise."})
    resamples: int = field(default=10000, metadata={"help": "Bootstrap resamples of the images."})
    seed: int = field(default=0, metadata={"help": "Seed of the resampling."})


def read_predictions(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def per_image_cider(references: list[list[str]], *predictions: list[str]) -> list[np.ndarray]:
    """CIDEr-D of every image, for each list of predictions (PTB-tokenized like coco-caption)."""
    flat = [reference for image in references for reference in image]
    tokenized = ptb_tokenize_streams([flat, *predictions])
    gts = dict(enumerate(regroup(tokenized[0], [len(image) for image in references])))
    scores = []
    for hypotheses in tokenized[1:]:
        _, per_image = Cider().compute_score(gts, {index: [text] for index, text in enumerate(hypotheses)})
        scores.append(np.asarray(per_image))
    return scores


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(resamples, len(a)))
    differences = (a[picks] - b[picks]).mean(axis=1)
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "cider_difference": float(a.mean() - b.mean()),
        "interval_95": [float(low), float(high)],
        "share_of_resamples_reversed": float(np.mean(np.sign(differences) != np.sign(a.mean() - b.mean()))),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(CompareArguments, argv, positional=("predictions_a", "predictions_b"))
    paths_a, paths_b = args.predictions_a.split(","), args.predictions_b.split(",")
    runs = [read_predictions(path) for path in paths_a + paths_b]
    images = [record["image"] for record in runs[0]]
    for path, records in zip(paths_a + paths_b, runs):
        if [record["image"] for record in records] != images:
            raise SystemExit(
                f"compare_predictions: {path} does not list the images of {paths_a[0]} in the same order; "
                "compare predictions of the same split and test subset."
            )
    references = [record["references"] for record in runs[0]]
    scores = per_image_cider(references, *[[record["prediction"] for record in records] for records in runs])
    # The mean of per-image scores is the corpus CIDEr (fixed document frequencies), so averaging per image over
    # runs gives exactly the mean of the runs' CIDEr.
    a, b = np.mean(scores[: len(paths_a)], axis=0), np.mean(scores[len(paths_a) :], axis=0)
    result = {"images": len(a), "cider_a": float(a.mean()), "cider_b": float(b.mean())}
    if len(paths_a) > 1 or len(paths_b) > 1:
        result["runs_a"] = [float(run.mean()) for run in scores[: len(paths_a)]]
        result["runs_b"] = [float(run.mean()) for run in scores[len(paths_a) :]]
    print(json.dumps({**result, **paired_bootstrap(a, b, args.resamples, args.seed)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
