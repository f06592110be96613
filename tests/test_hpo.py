"""The HPO search builds every trial model with the configured gradient checkpointing (the Trainer's own flag is
switched off only so that it does not enable it a second time)."""

from pathlib import Path
from types import SimpleNamespace

import finetuning.model_setup as model_setup
import finetuning.trainer as trainer_module
from finetuning.arguments import parse_finetune_args
from finetuning.hpo import run_search
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
