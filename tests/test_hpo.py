"""The HPO search builds every trial model with the configured gradient checkpointing (the Trainer's own flag is
switched off only so that it does not enable it a second time)."""

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from test_detection_training import _coco_folder

import finetune
import finetuning.model_setup as model_setup
import finetuning.trainer as trainer_module
from finetuning.arguments import parse_finetune_args
from finetuning.hpo import run_search, search_objective
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = str(REPO_ROOT / "configs" / "demo.yaml")
SAMPLE = str(REPO_ROOT / "dataset_builder" / "sample")


class FirstChoiceTrial:
    """An Optuna-like trial that always suggests the first choice / the low end."""

    def __init__(self, number: int):
        self.number, self.params = number, {}

    def suggest_float(self, name, low, high, log=False):
        return self.params.setdefault(name, low)

    def suggest_categorical(self, name, choices):
        return self.params.setdefault(name, choices[0])


def test_every_trial_model_is_built_with_gradient_checkpointing(tiny_checkpoint, monkeypatch, tmp_path):
    folder = str(tiny_checkpoint())
    built = []

    def record(model_args, tsn_options, training_args, quantization, strategy):
        built.append(training_args.activation_checkpointing)
        return TSNPaliGemmaForConditionalGeneration.from_pretrained(folder)

    class SearchOnlyTrainer:
        def __init__(self, model_init):
            self.model_init = model_init
            self.data_collator = SimpleNamespace(processor=None)  # trials re-point it at their processor

        def hyperparameter_search(self, hp_space, compute_objective, n_trials, direction, backend):
            trials = [FirstChoiceTrial(number) for number in range(n_trials)]
            for trial in trials:
                self.model_init(trial)
                hp_space(trial)
            return SimpleNamespace(run_id="0", objective=0.5, hyperparameters=trials[-1].params)

        def is_world_process_zero(self):
            return True

    monkeypatch.setattr(model_setup, "load_training_model", record)
    monkeypatch.setattr(
        trainer_module, "build_trainer", lambda *a, model_init=None, **k: SearchOnlyTrainer(model_init)
    )
    argv = [
        DEMO,
        "--model_name_or_path",
        folder,
        "--dataset_dir",
        SAMPLE,
        "--output_dir",
        str(tmp_path),
        "--hpo_trials",
        "3",
        "--quantization",
        "none",
        "--tsn_integration",
        "direct",
    ]
    args = parse_finetune_args(argv)
    assert args.training.activation_checkpointing
    result = run_search(args, {"train": None, "val": None}, "none")
    assert built == [True] * 4  # the first model, then one per trial
    assert result["best_run"] == "0" and (tmp_path / "best_config.yaml").is_file()
    assert "activation_checkpointing: true" in (tmp_path / "best_config.yaml").read_text()


def test_search_objective_is_the_runs_best_metric():
    cases = [
        (SimpleNamespace(metric_for_best_model="ap", greater_is_better=True), "eval_ap", "maximize"),
        (SimpleNamespace(metric_for_best_model="eval_boxes_ap", greater_is_better=None), "eval_boxes_ap", "maximize"),
        (
            SimpleNamespace(metric_for_best_model="caption_cider", greater_is_better=True),
            "eval_caption_cider",
            "maximize",
        ),
        (SimpleNamespace(metric_for_best_model="count_mae", greater_is_better=False), "eval_count_mae", "minimize"),
        (SimpleNamespace(metric_for_best_model=None, greater_is_better=None), "eval_loss", "minimize"),
    ]
    for training, key, expected in cases:
        name, direction, compute_objective = search_objective(training)
        assert direction == expected and compute_objective({key: 0.25, "eval_loss_other": 1.0}) == 0.25, training
    _, _, compute_objective = search_objective(cases[0][0])
    with pytest.raises(KeyError, match=r"metric_for_best_model='ap' \('eval_ap'\).*\['eval_cider', 'eval_loss'\]"):
        compute_objective({"eval_loss": 1.0, "eval_cider": 0.5})


@pytest.mark.parametrize(
    ("metric", "extra", "pick"),
    [
        ("ap", [], max),  # a detection run's own best metric (checks.check_datasets)
        ("loss", ["--metric_for_best_model", "loss", "--greater_is_better", "false"], min),  # differs per trial
    ],
)
def test_a_detection_search_optimizes_the_runs_best_metric(
    metric, extra, pick, tiny_checkpoint, tmp_path, monkeypatch, caplog
):
    """Two real Optuna trials of a tiny detection run: the search's objective is the best trial's val score of the
    metric the run picks its best checkpoint by (AP; a detection run has no CIDEr), in that metric's direction."""
    boxes = _coco_folder(tmp_path / "coco", 4)
    args = parse_finetune_args(
        [
            "--model_name_or_path",
            str(tiny_checkpoint("direct")),
            "--tsn_integration",
            "direct",  # the search varies the learning rate and LoRA only
            "--quantization",
            "none",
            "--task",
            "detect",
            "--dataset_dir",
            str(boxes),
            "--output_dir",
            str(tmp_path / "run"),
            "--use_cpu",
            "true",
            "--seed",
            "0",
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "2",
            "--per_device_eval_batch_size",
            "4",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
            "--hpo_trials",
            "2",
            "--report_to",
            "none",
            *extra,
        ]
    )
    assert args.training.metric_for_best_model == metric
    evaluations = []  # what each trial's evaluation reported, in trial order
    evaluate = trainer_module.TSNPaliGemmaTrainer.evaluate

    def recorded(self, *a, **k):
        metrics = evaluate(self, *a, **k)
        evaluations.append(metrics)
        return metrics

    monkeypatch.setattr(trainer_module.TSNPaliGemmaTrainer, "evaluate", recorded)
    with caplog.at_level(logging.INFO, logger="finetuning.hpo"):
        result = finetune.run(args)
    key = f"eval_{metric}"
    assert len(evaluations) == 2 and all(key in metrics and "eval_ap" in metrics for metrics in evaluations)
    scores = [metrics[key] for metrics in evaluations]
    assert result["objective"] == scores[int(result["best_run"])] == pick(scores), (result, scores)
    config = yaml.safe_load((tmp_path / "run" / "best_config.yaml").read_text())
    assert config["learning_rate"] == result["hyperparameters"]["learning_rate"] and config["task"] == "detect"
    assert f"(val {metric} {result['objective']:.4f})" in caplog.text
