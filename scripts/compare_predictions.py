"""Two captioners on the same images: their CIDEr-D difference with a paired bootstrap over the images. Prints one
JSON object: each model's CIDEr, the difference (A - B), its 95% interval and how often a resample reverses it.
Answers with one reference each (scene classes: `predictions_scenes.jsonl`) are compared by accuracy the same way
(`accuracy_a`, `accuracy_b`, `accuracy_difference`).

    python -m scripts.compare_predictions A/predictions.jsonl B/predictions.jsonl [--resamples 10000] [--seed 0]
    python -m scripts.compare_predictions A1/predictions.jsonl,A2/...,A5/... B1/...,B5/... [--per_class]  # seeds

Each image's CIDEr-D comes from pycocoevalcap (document frequencies from all the references, held fixed), so the
means are exactly the corpus CIDEr that finetune.py reports. The paired bootstrap covers the choice of images, not
the training seed. Several runs of one model (comma separated: its seeds) are pooled by averaging each image's
CIDEr over the runs, and, with two or more runs per arm, the seed enters the analysis
(`metrics.arm_comparison`): each arm's mean and standard deviation over its runs, a two-level bootstrap over images
and seeds (`seed_aware`), Welch's t over the runs' CIDEr (`welch`), the smallest difference this many runs detect
(`detectable_difference`, 80% power at level 0.05) and, with as many runs in each arm, the paired bootstrap of each
pair of runs (`per_run_pair`: run i of A against run i of B). `--per_class` adds the same per scene class, the class
read from each image's file name (`airport_12.jpg` -> airport). `--class_groups` compares groups of classes named
in advance (e.g. classes defined by small objects against plain scenes): each group's seed-aware difference and,
for two groups, the contrast (A's lead on the first group minus its lead on the second) with its two-level
bootstrap and Welch's t over the runs.
"""

import json
import sys
from dataclasses import dataclass, field

import numpy as np
from pycocoevalcap.cider.cider import Cider

from command_line import parse_command_line
from metrics._tokenize import ptb_tokenize_streams, regroup
from metrics.arm_comparison import (
    arm_summary,
    detectable_difference,
    paired_bootstrap,
    seed_bootstrap,
    welch_interval,
)
from tasks.classify import scene_of


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
    per_class: bool = field(default=False, metadata={"help": "Also compare per scene class (from the file names)."})
    class_groups: str | None = field(
        default=None,
        metadata={
            "help": "Also compare groups of scene classes, given as JSON {group: [class, ...]} (e.g. "
            '\'{"small objects": ["storage tanks", "parking"], "plain": ["desert", "beach"]}\'): each group\'s '
            "difference and, for two groups, how much more A leads on the first than on the second."
        },
    )


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


def per_image_scores(runs: list[list[dict]]) -> tuple[str, list[np.ndarray]]:
    """("cider", each run's per-image CIDEr-D) for captions (records with `references`); ("accuracy", 1 or 0 per
    image) for answers compared with one `reference` (scene classes, counts)."""
    if "references" in runs[0][0]:
        references = [record["references"] for record in runs[0]]
        # The mean of per-image scores is the corpus CIDEr (fixed document frequencies), so averaging per image
        # over runs gives exactly the mean of the runs' CIDEr.
        return "cider", per_image_cider(references, *[[record["prediction"] for record in run] for run in runs])
    return "accuracy", [
        np.asarray([str(record["prediction"]) == str(record["reference"]) for record in run], dtype=float)
        for run in runs
    ]


def seed_analysis(a_runs: np.ndarray, b_runs: np.ndarray, resamples: int, seed: int) -> dict:
    """The seed-aware comparison of two arms' (runs, images) CIDEr (each arm two or more runs)."""
    result = {
        "arm_a": arm_summary(a_runs),
        "arm_b": arm_summary(b_runs),
        "seed_aware": seed_bootstrap(a_runs, b_runs, resamples, seed),
        "welch": welch_interval(a_runs.mean(axis=1), b_runs.mean(axis=1)),
        "detectable_difference": detectable_difference(a_runs.mean(axis=1), b_runs.mean(axis=1)),
    }
    if len(a_runs) == len(b_runs):
        result["per_run_pair"] = [paired_bootstrap(a, b, resamples, seed) for a, b in zip(a_runs, b_runs)]
    return result


def image_class(image: str) -> str:
    return scene_of(image.rsplit("/", 1)[-1]) or "(numbered, no class)"


def per_class(classes: list[str], a_runs: np.ndarray, b_runs: np.ndarray, resamples: int, seed: int) -> dict:
    """{scene class: images, each arm's CIDEr, the difference and its seed-aware interval}, classes by size."""
    result = {}
    for name in sorted(set(classes), key=lambda name: (-classes.count(name), name)):
        columns = [index for index, value in enumerate(classes) if value == name]
        a, b = a_runs[:, columns], b_runs[:, columns]
        comparison = seed_bootstrap(a, b, resamples, seed)
        result[name] = {"images": len(columns), "cider_a": float(a.mean()), "cider_b": float(b.mean()), **comparison}
    return result


def parse_class_groups(text: str, classes: list[str]) -> dict[str, list[int]]:
    """{group: the columns of its images} from `--class_groups` JSON, every class checked against the file names."""
    try:
        groups = json.loads(text)
    except json.JSONDecodeError as error:
        raise SystemExit(
            f"compare_predictions: --class_groups is not JSON ({error}); give {{group: [class, ...]}}."
        ) from None
    if not isinstance(groups, dict) or not all(isinstance(names, list) and names for names in groups.values()):
        raise SystemExit("compare_predictions: --class_groups must map each group to a non-empty list of classes.")
    columns = {}
    for group, names in groups.items():
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise SystemExit(
                f"compare_predictions: --class_groups group {group!r} names {unknown}, which no image's file name "
                f"gives; the classes are {sorted(set(classes))}."
            )
        columns[group] = [index for index, value in enumerate(classes) if value in names]
    return columns


def class_group_analysis(columns: dict[str, list[int]], a_runs: np.ndarray, b_runs: np.ndarray, args) -> dict:
    """Each group's seed-aware difference and, with two groups, their contrast (bootstrap and Welch over runs)."""
    result = {"groups": {}}
    for group, indices in columns.items():
        a, b = a_runs[:, indices], b_runs[:, indices]
        comparison = seed_bootstrap(a, b, args.resamples, args.seed)
        result["groups"][group] = {"images": len(indices), "cider_a": float(a.mean()), "cider_b": float(b.mean())}
        result["groups"][group].update(comparison)
    if len(columns) == 2:
        first, second = columns.values()
        contrast = seed_bootstrap(a_runs, b_runs, args.resamples, args.seed, contrast=(first, second))
        result["contrast"] = {"of": list(columns), **contrast}
        if len(a_runs) > 1 and len(b_runs) > 1:
            # Each run's lead of the first group over the second, the runs as the unit.
            a_leads = a_runs[:, first].mean(axis=1) - a_runs[:, second].mean(axis=1)
            b_leads = b_runs[:, first].mean(axis=1) - b_runs[:, second].mean(axis=1)
            result["contrast"]["welch"] = welch_interval(a_leads, b_leads)
    return result


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
    metric, scores = per_image_scores(runs)
    a_runs, b_runs = np.asarray(scores[: len(paths_a)]), np.asarray(scores[len(paths_a) :])
    a, b = a_runs.mean(axis=0), b_runs.mean(axis=0)
    result = {"images": len(a), f"{metric}_a": float(a.mean()), f"{metric}_b": float(b.mean())}
    if len(paths_a) > 1 or len(paths_b) > 1:
        result["runs_a"] = [float(run.mean()) for run in a_runs]
        result["runs_b"] = [float(run.mean()) for run in b_runs]
    pooled = paired_bootstrap(a, b, args.resamples, args.seed)
    result.update({f"{metric}_difference": pooled.pop("difference"), **pooled})
    if len(paths_a) > 1 and len(paths_b) > 1:
        result.update(seed_analysis(a_runs, b_runs, args.resamples, args.seed))
    classes = [image_class(image) for image in images]
    if args.per_class:
        result["per_class"] = per_class(classes, a_runs, b_runs, args.resamples, args.seed)
    if args.class_groups:
        columns = parse_class_groups(args.class_groups, classes)
        result["class_groups"] = class_group_analysis(columns, a_runs, b_runs, args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
