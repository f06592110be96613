"""What finetune.py leaves in output_dir besides checkpoints: the picture grid, characteristics.json,
training_summary.json, and the summary table printed at the end."""

import json
import logging
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from tasks import get_task

logger = logging.getLogger(__name__)


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` that was written to the end (a run killed while saving leaves one without
    trainer_state.json, the Trainer's last file; resuming from it would fail or lose the optimizer state)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    complete = []
    for folder in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = folder.name.rsplit("-", 1)[-1]
        if not step.isdigit():
            continue
        if (folder / "trainer_state.json").is_file():
            complete.append((int(step), folder))
        else:
            logger.warning(
                "Ignoring incomplete checkpoint %s (no trainer_state.json: the run stopped while saving).", folder
            )
    return str(max(complete)[1]) if complete else None


def write_sample_grid(records: list[dict], images: list, path: str | Path, task) -> Path:
    """samples.png: each test image with what the task makes of its record (`Task.grid_entry`: a caption and its
    first reference, the boxes drawn on the image, ...)."""
    from images import render_grid

    pictures, texts = zip(*(task.grid_entry(record, image) for record, image in zip(records, images)))
    return render_grid(list(pictures), list(texts), path, columns=4, wrap=36)


def training_losses(log_history: list[dict]) -> tuple[float | None, float | None]:
    """(first, last) logged training loss."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return (losses[0], losses[-1]) if losses else (None, None)


def write_json(data: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def summary_table(output_dir: str | Path, summary: dict) -> str:
    """The short text table `make demo` ends with: loss and test metrics before/after (per task for a mixture), and
    where the outputs are."""
    output_dir = Path(output_dir)
    results_path = output_dir / "eval_results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    lines = ["", f"{'':<22}{'before':>10}{'after':>10}"]
    first, last = summary.get("first_train_loss"), summary.get("last_train_loss")
    # The first and the last logged training loss (not measured on the same rows): the test loss rows compare.
    lines.append(f"{'train loss first/last':<22}{_number(first):>10}{_number(last):>10}")
    for label, before, after in _test_sections(results):
        lines.append(f"{label + 'loss':<22}{_number(before.get('loss')):>10}{_number(after.get('loss')):>10}")
        names = _summary_names(after)
        for name in names:
            values = (_number(part.get("overall", {}).get(name)) for part in (before, after))
            lines.append(f"{label + name:<22}" + "".join(f"{value:>10}" for value in values))
    lines.append("")
    for name in ("merged", "adapter", "eval_results.json", "predictions.jsonl", "samples.png", "finetune_config.yaml"):
        if (output_dir / name).exists():
            lines.append(f"{name:<22}{output_dir / name}")
    return "\n".join(lines)


def _summary_names(scores: dict) -> tuple[str, ...]:
    """The summary rows of one task's scores: the metrics its task (named in the scores) lists."""
    return get_task(scores["task"]).summary_metrics if "task" in scores else ()


def _test_sections(results: dict):
    """(row label prefix, before, after) per task: one "test " section, or "test <task> " per mixture task."""
    before, after = results.get("baseline_test", {}), results.get("test", {})
    if not after or "task" in after:
        return [("test ", before, after)]
    return [(f"test {name} ", before.get(name, {}), part) for name, part in after.items()]


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def objective_settings(objective) -> dict:
    """The training objective and, for SCST, its sampling settings: what the card and eval_results.json state."""
    values = {"train_objective": objective.train_objective}
    if objective.loss_weighting != "token":  # the default stays unsaid: records without the key read as token
        values["loss_weighting"] = objective.loss_weighting
    if objective.loc_sigma:
        values["loc_sigma"] = objective.loc_sigma
    if objective.cell_loss_weight:
        values["cell_loss_weight"] = objective.cell_loss_weight
    if objective.train_objective == "scst":
        values.update({name: getattr(objective, name) for name in vars(objective) if name.startswith("scst_")})
    return values


def write_run_config(args, plan, summary: dict, model_config) -> None:
    """output_dir/finetune_config.yaml: the resolved arguments (finetune.py accepts the file back as is), the TSN
    settings the model actually got, and a first comment line with the strategy and the trainable count."""
    from .model_setup import tsn_settings
    from .run_config import resolved_config, write_config

    training = args.training
    if training.process_index != 0:
        return
    output_dir = Path(training.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    values = resolved_config(
        args,
        train_strategy=plan.strategy,
        quantization=plan.quantization,
        activation_checkpointing=bool(training.activation_checkpointing),
        **tsn_settings(model_config),
        **objective_settings(args.objective),
    )
    total, trainable = summary["total_parameters"], summary["trainable_parameters"]
    header = f"train_strategy {plan.strategy}: {trainable:,} of {total:,} parameters train"
    if not training.do_train:  # the training settings below are inert: this run only evaluated the model
        header = f"do_train false: evaluation only, none of the {total:,} parameters trained"
    write_config(values, output_dir / "finetune_config.yaml", header=header)


def publish_outputs(output_dir: Path, training, token: str | None) -> bool:
    """Publish the merged model with the publishing package; a failure keeps the outputs and says how to retry."""
    from publishing import PublishError, publish

    try:
        publish(output_dir, repo_id=training.hub_model_id, token=token, private=bool(training.hub_private_repo))
    except PublishError as error:
        logger.error(
            "%s\nThe outputs are kept; retry with: python push_to_hub.py %s --repo_id %s",
            error,
            output_dir,
            training.hub_model_id,
        )
        return False
    return True
