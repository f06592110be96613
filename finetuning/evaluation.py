"""The evaluation stage of finetune.py: the published model read back from disk (after training), or the model as
it is (zero-shot), scored on val and test; samples.png and characteristics.json from the published model."""

import json
from pathlib import Path

import torch

from .checks import on_cuda
from .data import distinct_rows, split_by_task
from .model_setup import merged_dtype
from .outputs import write_json, write_sample_grid
from .trainer import build_trainer


def predict_each_task(trainer, split, metric_key_prefix: str = "test") -> None:
    """Trainer.predict of a split, once per task of a mixture (`{prefix}_{task}`)."""
    parts = split_by_task(split)
    if not isinstance(parts, dict):
        trainer.predict(parts, metric_key_prefix=metric_key_prefix)
        return
    for name, part in parts.items():
        trainer.predict(part, metric_key_prefix=f"{metric_key_prefix}_{name}")


def evaluate_published(args, merged_dir: Path, processor, splits, summary: dict):
    """Final val/test scores come from the merged model read back from disk: the numbers belong to what is
    published, and predictions.jsonl is what that model reproduces. Returns the evaluating trainer."""
    from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration

    cuda = on_cuda(args.training)
    dtype = merged_dtype(args.model, args.training) if cuda else torch.float32  # CPU: fp32 kernels, exact
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(merged_dir, dtype=dtype)
    model = model.to("cuda" if cuda else "cpu").eval()
    trainer = build_trainer(args, model, processor, splits, trains=False)
    if args.training.do_eval:
        trainer.evaluate(split_by_task(splits["val"]))
    if args.training.do_predict:
        predict_each_task(trainer, splits["test"])
        if trainer.is_world_process_zero():
            write_published_outputs(args, model, processor, splits["test"], summary, trainer.tasks)
    return trainer


def _only_task(tasks: dict | None):
    """The run's one task (None: captions, the collators' own task)."""
    return next(iter(tasks.values())) if tasks and len(tasks) == 1 else None


def evaluate_as_is(args, trainer, splits):
    """Zero-shot / as-is evaluation of any model, scored exactly like a fine-tuned one."""
    if args.training.do_eval:
        trainer.evaluate(split_by_task(splits["val"]))
    if args.training.do_predict:
        predict_each_task(trainer, splits["test"])
    return trainer


def write_published_outputs(args, model, processor, test_split, summary: dict, tasks: dict | None = None) -> None:
    """samples.png (what predictions.jsonl holds, per task for a mixture: samples_<task>.png), the task's own
    figures (scene classes: confusion.png) and characteristics.json (the cost of the first task's outputs) from the
    published model."""
    from model_cost import measure_characteristics

    output_dir = Path(args.training.output_dir)
    parts = split_by_task(test_split)
    mixture = isinstance(parts, dict)
    parts = parts if mixture else {None: parts}
    measured = None
    for name, rows in parts.items():
        task = (tasks or {}).get(name) or _only_task(tasks)
        stem = f"_{name}" if mixture else ""
        with open(output_dir / f"predictions{stem}.jsonl") as handle:
            records = [json.loads(line) for line in handle]
        if len(records) < len(rows):  # scored per image from several rows each (tiles): one row per image
            rows = distinct_rows(rows, ("filename",))
        count = min(args.run.grid_images, len(rows))
        images = [row["image"].convert("RGB") for row in rows.select(range(count))]
        write_sample_grid(records[:count], images, output_dir / f"samples{stem}.png", task=task)
        if hasattr(task, "write_figures"):  # e.g. scene classes: the confusion matrix
            task.write_figures(records, output_dir, stem)
        measured = measured or (task, images, count)
    task, images, count = measured
    generation = getattr(task, "generation", {}) if task is not None else {}
    characteristics = measure_characteristics(
        model,
        processor,
        images,
        prompt=task.prompt if task is not None else args.data.prompt,
        num_beams=generation.get("num_beams", args.generation.num_beams),
        max_new_tokens=generation.get("max_new_tokens", args.generation.max_new_tokens),
        num_images=count,
    )
    characteristics["trainable_parameters"] = summary.get("trainable_parameters")
    write_json(characteristics, output_dir / "characteristics.json")
