"""`--hpo_trials N`: Trainer.hyperparameter_search with Optuna over the learning rate, LoRA rank/alpha, fusion and
ratios, backbone and scales, on a training subset; the best trial becomes `best_config.yaml`, a finetune.py config.

Model options cannot be Trainer arguments, so the search space suggests every value on the Optuna trial and
`model_init(trial)` reads the model ones back from `trial.params`; only `learning_rate` goes through the Trainer.
"""

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from transformers import PretrainedConfig

from collators import processor_for_config

from .checks import parse_scales, resolve_strategy
from .run_config import resolved_config, write_config

logger = logging.getLogger(__name__)

LORA_RANKS = (8, 16, 32, 64)
ALPHA_MULTIPLIERS = (1, 2)


def suggest(trial, args) -> dict:
    """All searched values for one trial (also recorded in `trial.params`)."""
    learning_rate = args.training.learning_rate
    params = {
        "learning_rate": trial.suggest_float("learning_rate", learning_rate / 5, learning_rate * 5, log=True),
        "lora_r": trial.suggest_categorical("lora_r", LORA_RANKS),
        "lora_alpha_multiplier": trial.suggest_categorical("lora_alpha_multiplier", ALPHA_MULTIPLIERS),
    }
    if (args.tsn.tsn_integration or "enhanced") == "direct":
        return params  # no segment encoder: nothing TSN to search
    params["tsn_backbone"] = trial.suggest_categorical("tsn_backbone", args.run.hpo_backbones.split(","))
    params["tsn_segment_scales"] = trial.suggest_categorical("tsn_segment_scales", args.run.hpo_scales.split(";"))
    if (args.tsn.tsn_integration or "enhanced") == "enhanced":
        params["tsn_fusion"] = trial.suggest_categorical("tsn_fusion", ("gated", "ratio"))
        if params["tsn_fusion"] == "ratio":
            params["tsn_ratio"] = trial.suggest_float("tsn_ratio", 0.1, 0.5)
    return params


def trial_options(params: dict, args, base_crop_size: int | None = None) -> tuple[dict, dict]:
    """(tsn options, LoRA options) of a trial. `base_crop_size`: the checkpoint's tsn_crop_size, if it has one."""
    tsn = {**args.tsn.overrides(), **{key: value for key, value in params.items() if key.startswith("tsn_")}}
    if "tsn_segment_scales" in params:
        tsn["tsn_segment_scales"] = parse_scales(params["tsn_segment_scales"])
    if "tsn_ratio" in params:
        tsn["tsn_original_ratio"] = 1.0 - params["tsn_ratio"]
    crop_size = tsn.get("tsn_crop_size", base_crop_size)
    if tsn.get("tsn_backbone") == "inception_v3" and crop_size is not None and crop_size < 75:
        tsn["tsn_crop_size"] = 75  # InceptionV3's smallest input (a ResNet18 checkpoint may use smaller crops)
    lora = {"lora_r": params["lora_r"], "lora_alpha": params["lora_r"] * params["lora_alpha_multiplier"]}
    return tsn, lora


def best_config(args, params: dict, output_dir: Path, base_crop_size: int | None) -> dict:
    tsn, lora = trial_options(params, args, base_crop_size)
    return resolved_config(  # segment scales go back to their '1x1,2x2' text form there
        args, **tsn, **lora, learning_rate=params["learning_rate"], hpo_trials=0, output_dir=str(output_dir / "best")
    )


def search_objective(training) -> tuple[str, str, Callable[[dict], float]]:
    """(metric name, Optuna direction, compute_objective): the metric the Trainer picks its best checkpoint by
    (`metric_for_best_model`, read under its `eval_` prefix), maximized unless `greater_is_better` is False."""
    name = training.metric_for_best_model or "loss"
    key = name if name.startswith("eval_") else f"eval_{name}"
    greater = not name.endswith("loss") if training.greater_is_better is None else training.greater_is_better

    def compute_objective(metrics: dict) -> float:
        if key not in metrics:
            raise KeyError(
                f"the HPO objective metric_for_best_model={name!r} ({key!r}) is not among the evaluation metrics "
                f"{sorted(metrics)}. Fix: set --metric_for_best_model to one of them."
            )
        return metrics[key]

    return name, "maximize" if greater else "minimize", compute_objective


def run_search(args, splits, quantization: str) -> dict:
    """Run `args.run.hpo_trials` trials, write output_dir/best_config.yaml, return the best run."""
    from .model_setup import load_processor, load_training_model, unwrapped_model
    from .trainer import build_trainer

    strategy = resolve_strategy(args.model.train_strategy, quantization)
    training = dataclasses.replace(
        args.training, save_strategy="no", load_best_model_at_end=False, eval_strategy="no", push_to_hub=False
    )  # each trial trains, then is scored once on val; no checkpoints
    args = args._replace(training=training)
    if args.run.hpo_max_train_samples:
        splits["train"] = splits["train"].select(range(min(args.run.hpo_max_train_samples, len(splits["train"]))))
    state = {}
    # Every trial model is built with the configured gradient checkpointing (load_training_model turns it on); the
    # Trainer's own copy of the flag is switched off below so that it does not enable it a second time.
    checkpointing = training.activation_checkpointing
    model_training = dataclasses.replace(training, activation_checkpointing=checkpointing)
    config_dict, _ = PretrainedConfig.get_config_dict(args.model.model_name_or_path, revision=args.model.revision)
    base_crop_size = config_dict.get("tsn_crop_size")

    def model_init(trial=None):
        # The Trainer calls model_init(trial) BEFORE hp_space(trial): suggest here (Optuna returns the same value
        # when hp_space suggests the same name again).
        params = suggest(trial, args) if trial is not None else {}
        tsn, lora = trial_options(params, args, base_crop_size) if params else (args.tsn.overrides(), {})
        model_args = dataclasses.replace(args.model, **lora)
        model = load_training_model(model_args, tsn, model_training, quantization, strategy)
        config = unwrapped_model(model).config
        processor = load_processor(args.model, config)
        if "trainer" in state:  # scales change the image token count of adapter/replace: re-tokenize to match
            state["trainer"].data_collator.processor = processor_for_config(processor, config)
        logger.info("HPO trial %s: %s", getattr(trial, "number", "-"), params)
        return model

    def hp_space(trial):
        return {"learning_rate": suggest(trial, args)["learning_rate"]}

    first = model_init()
    processor = load_processor(args.model, unwrapped_model(first).config)
    trainer = build_trainer(args, first, processor, splits, model_init=model_init)
    state["trainer"] = trainer
    metric, direction, compute_objective = search_objective(training)
    training.activation_checkpointing = False  # the Trainer's flag only: trial models already have it
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=compute_objective,
        n_trials=args.run.hpo_trials,
        direction=direction,
        backend="optuna",
    )
    output_dir = Path(training.output_dir)
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        values = best_config(args, best.hyperparameters, output_dir, base_crop_size)
        values["activation_checkpointing"] = bool(checkpointing)
        path = output_dir / "best_config.yaml"
        write_config(values, path)
        logger.info("Best trial %s (val %s %.4f): %s", best.run_id, metric, best.objective, path)
    return {"best_run": best.run_id, "objective": best.objective, "hyperparameters": best.hyperparameters}
