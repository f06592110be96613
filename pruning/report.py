"""The pruning table: for each k, the pruned model's size, cost and test scores before and after healing.

Each pruned model is scored and healed by finetune.py itself (a subprocess per run, the recipe `heal_config`), so
the numbers are the ones a user gets from the same commands.
"""

import json
import logging
import subprocess
import sys
from pathlib import Path

from inference_core import load_model

from .remove import choose_layers, remove_layers

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCORES = ("bleu_4", "meteor", "rouge_l", "cider")


def run_finetune(config: str, model_dir: Path, output_dir: Path, dataset_dir: str, train: bool) -> dict:
    """finetune.py on `model_dir` (train=False: score it as is); returns its eval_results.json["test"]["overall"].

    A finished run is not repeated: a report that was stopped resumes where it was (delete `output_dir` to redo).
    """
    results = output_dir / "eval_results.json"
    finished = json.loads(results.read_text()) if results.is_file() else {}
    if "test" in finished:
        logger.info("Reusing the finished run in %s", output_dir)
        return finished["test"]["overall"]
    command = [sys.executable, str(REPO_ROOT / "finetune.py"), config, "--model_name_or_path", str(model_dir)]
    command += ["--output_dir", str(output_dir), "--dataset_dir", dataset_dir, "--do_train", str(train).lower()]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    return json.loads((output_dir / "eval_results.json").read_text())["test"]["overall"]


def markdown_table(rows: list[dict]) -> str:
    header = ["k", "removed layers", "parameters (M)", "GFLOPs / caption", "latency (ms)"]
    header += [f"{name} before" for name in SCORES] + [f"{name} healed" for name in SCORES]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [
            str(row["k"]),
            ", ".join(map(str, row["removed"])) or "-",
            f"{row['parameters'] / 1e6:.2f}",
            f"{row['gflops_per_caption']:.3f}",
            f"{row['latency_ms_mean']:.1f}",
        ]
        for stage in ("before", "healed"):
            cells += [f"{row[stage][name]:.4f}" if row.get(stage) else "-" for name in SCORES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.6), layout="constrained")
    axes = figure.add_subplot()
    ks = [row["k"] for row in rows]
    for stage, style in (("before", "o--"), ("healed", "o-")):
        values = [row[stage]["cider"] if row.get(stage) else float("nan") for row in rows]
        axes.plot(ks, values, style, label=f"test CIDEr, {stage}")
    axes.set_xlabel("language-model layers removed (k)")
    axes.set_ylabel("CIDEr")
    axes.set_xticks(ks)
    axes.legend()
    figure.savefig(path, dpi=120, facecolor="white")


def write_report(args, model, processor, scores: dict) -> list[dict]:
    """Prune `args.model_name_or_path` by k for every k of `args.report_k`, score before/after healing, and write
    pruning_report.{json,md,png} into `args.output_dir`."""
    from dataset_builder import load_risc
    from model_cost import measure_characteristics

    output_dir = Path(args.output_dir)
    ks = [int(k) for k in str(args.report_k).split(",")]
    for k in ks:
        choose_layers(scores["text"], k, "--report_k")  # every k is valid before hours of work
    images = [row["image"].convert("RGB") for row in load_risc(args.dataset_dir)["test"].select(range(4))]
    rows = []
    for k in ks:
        model, processor = load_model(args.model_name_or_path)
        removed = choose_layers(scores["text"], k, "--report_k")
        remove_layers(model, text=removed)
        model_dir = output_dir / f"k{k}" / "model"
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
        # Every model writes exactly max_new_tokens tokens: a pruned model's captions can be longer or shorter, and
        # the cost of a caption must not depend on that.
        cost = measure_characteristics(
            model, processor, images, prompt=args.prompt, num_images=len(images), fixed_length=True
        )
        row = {"k": k, "removed": removed, "parameters": cost["total_parameters"]}
        row |= {key: cost[key] for key in ("gflops_per_caption", "latency_ms_mean")}
        # k = 0 heals too: the same extra training on the unpruned model is the control that separates what
        # pruning costs from what the healing recipe itself does.
        for stage, train in (("before", False), ("healed", True)):
            row[stage] = run_finetune(
                args.heal_config, model_dir, output_dir / f"k{k}" / stage, args.dataset_dir, train=train
            )
        rows.append(row)
        logger.info("k=%d: %s", k, row)
    (output_dir / "pruning_report.json").write_text(json.dumps({"block_influence": scores, "rows": rows}, indent=2))
    (output_dir / "pruning_report.md").write_text(markdown_table(rows))
    plot(rows, output_dir / "pruning_report.png")
    return rows
