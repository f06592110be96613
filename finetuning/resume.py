"""May a run continue what its output_dir already holds? Only when it trains with the settings that trained it.

Every run records the settings that decide its weights in `output_dir/training_settings.json` before training. A
rerun into the same output_dir compares its own settings with that record before anything is loaded: equal, it
resumes from the last complete checkpoint (a killed run continues); different, it stops with one line naming the
keys that differ and the three ways on. Evaluation-only settings (beams, test subsets, logging, saving) may change
freely: they do not change what was trained.
"""

import json
import logging
import shutil
from dataclasses import fields
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .checks import ConfigError

logger = logging.getLogger(__name__)

SETTINGS_FILE = "training_settings.json"
# The TrainingArguments that change the trained weights (the rest: logging, saving, evaluation, hub, dataloader).
TRAINING_KEYS = (
    "learning_rate",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "optim",
    "optim_args",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "label_smoothing_factor",
    "seed",
    "data_seed",
    "full_determinism",
    "bf16",
    "fp16",
    "use_cpu",
    "activation_checkpointing",
)
# Fields of the model / TSN / data groups that only matter after training (publishing, scoring, caching).
NOT_TRAINING = ("merged_dtype", "max_eval_samples", "max_test_samples", "dataset_cache_dir")
# What a finished run leaves besides its checkpoints: cleared by --overwrite_output_dir with them.
RUN_OUTPUTS = (
    SETTINGS_FILE,
    "finetune_config.yaml",
    "eval_results.json",
    "predictions.jsonl",
    "val_predictions.jsonl",
    "baseline_test_predictions.jsonl",
    "samples.png",
    "characteristics.json",
    "training_summary.json",
    "merged",
    "adapter",
)


def resolved_tsn_options(args) -> dict:
    """Every tsn_* option the model gets: the base folder's config.json (TSN defaults for a plain PaliGemma or a Hub
    id) with the run's explicit options on top. `--tsn_fusion gated` on a gated base is then no change."""
    from configuration_tsn_paligemma import TSNPaliGemmaConfig

    config_path = Path(args.model.model_name_or_path).expanduser() / "config.json"
    base = json.loads(config_path.read_text()) if config_path.is_file() else {}
    options = {key: value for key, value in base.items() if key.startswith("tsn_")}
    config = TSNPaliGemmaConfig(**{**options, **args.tsn.overrides()})
    return {key: value for key, value in config.to_dict().items() if key.startswith("tsn_")}


def training_settings(args) -> dict:
    """{name: value} of every argument that decides the trained weights, as plain JSON values."""
    from .run_config import _plain

    settings = {}
    for group in (args.model, args.data, args.objective):
        for item in fields(group):
            if item.name not in NOT_TRAINING:
                settings[item.name] = _plain(getattr(group, item.name))
    if args.objective.train_objective != "scst":  # the sampling settings train nothing under cross-entropy
        settings = {key: value for key, value in settings.items() if not key.startswith("scst_")}
    # tsn_pretrained_backbone only decides how a new encoder starts, and from_base_pretrained records it as used
    tsn = {key: value for key, value in resolved_tsn_options(args).items() if key != "tsn_pretrained_backbone"}
    settings.update({key: _plain(value) for key, value in tsn.items()})
    for name in TRAINING_KEYS:
        if hasattr(args.training, name):
            settings[name] = _plain(getattr(args.training, name))
    return json.loads(json.dumps(settings))  # tuples -> lists, as they read back from the file


def differing_settings(recorded: dict, current: dict) -> dict[str, tuple]:
    """{key: (recorded value, current value)} for every key both know and that differs."""
    return {key: (recorded[key], current[key]) for key in current if key in recorded and recorded[key] != current[key]}


def _previous_run(output_dir: Path) -> tuple[str | None, dict | None]:
    from .outputs import last_complete_checkpoint

    checkpoint = last_complete_checkpoint(output_dir)
    path = output_dir / SETTINGS_FILE
    return checkpoint, json.loads(path.read_text()) if path.is_file() else None


def check_resume(args) -> None:
    """Stop (ConfigError, before any loading) when output_dir holds a run trained with other settings."""
    training = args.training
    if not training.do_train or args.run.hpo_trials or training.resume_from_checkpoint:
        return  # an explicit checkpoint continues on purpose, whatever the settings
    if training.overwrite_output_dir:
        return
    output_dir = Path(training.output_dir)
    checkpoint, recorded = _previous_run(output_dir)
    fixes = (
        "Fix: --overwrite_output_dir true to start again, a new --output_dir, or --resume_from_checkpoint "
        f"{checkpoint or output_dir / 'checkpoint-N'} to continue it on purpose with these settings."
    )
    if recorded is None:
        if checkpoint:
            raise ConfigError(
                f"output_dir={str(output_dir)!r} holds {Path(checkpoint).name} but no {SETTINGS_FILE}, so its "
                f"training settings cannot be compared with this run's. {fixes}"
            )
        return
    differ = differing_settings(recorded, training_settings(args))
    if differ:
        changes = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in differ.items())
        what = Path(checkpoint).name if checkpoint else "the outputs"
        raise ConfigError(
            f"output_dir={str(output_dir)!r} holds {what} of a run trained with other settings ({changes}). {fixes}"
        )


def prepare_output_dir(args) -> None:
    """Before training: --overwrite_output_dir clears the previous run (its checkpoints would otherwise be rotated
    against the new ones, and its results would describe a run that did not happen); then the main process records
    this run's settings."""
    training = args.training
    output_dir = Path(training.output_dir)
    if training.process_index != 0:
        return
    if training.overwrite_output_dir and output_dir.is_dir():
        stale = [*output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"), *(output_dir / name for name in RUN_OUTPUTS)]
        for path in (path for path in stale if path.exists()):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        logger.info("overwrite_output_dir: cleared the previous run in %s", output_dir)
    settings = training_settings(args)
    if training.resume_from_checkpoint:
        _, recorded = _previous_run(output_dir)
        differ = differing_settings(recorded or {}, settings)
        if differ:
            logger.warning("Continuing %s with changed settings: %s", training.resume_from_checkpoint, differ)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
