"""finetune.py's fail-fast checks: everything that can be verified before a model or the data is loaded, each
error one line naming the argument, the value and the fix; and the resolution of `auto` strategy / quantization."""

import importlib
import importlib.util
import re
from pathlib import Path

from qlora import QUANTIZATION_CHOICES
from tasks.base import BOXES_FORMAT

TRAIN_STRATEGIES = ("qlora", "lora", "full", "freeze")
OBJECTIVES = ("xent", "scst")
SCST_BASELINES = ("mean", "greedy")
LOSS_WEIGHTINGS = ("token", "row")
SCALE_PATTERN = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


class ConfigError(ValueError):
    """A bad argument or config file; raised before any model or data is loaded."""


def parse_scales(text: str) -> list[list[int]]:
    """'1x1,2x2' -> [[1, 1], [2, 2]].

    >>> parse_scales("1x1, 2x2")
    [[1, 1], [2, 2]]
    """
    scales = []
    for part in str(text).split(","):
        match = SCALE_PATTERN.match(part)
        if not match:
            raise ConfigError(f"tsn_segment_scales={text!r} is invalid: {part!r} is not ROWSxCOLS. Fix: '1x1,2x2'.")
        scales.append([int(match.group(1)), int(match.group(2))])
    return scales


def bitsandbytes_available() -> bool:
    try:
        importlib.import_module("bitsandbytes")
    except ImportError:
        return False
    return True


def resolve_quantization(quantization: str, cuda: bool, train_strategy: str = "auto") -> str:
    """`auto`: 4-bit for qlora (and for `auto` strategy on a GPU), none otherwise; anything else as given."""
    if quantization == "auto":
        return "4bit" if train_strategy == "qlora" or (train_strategy == "auto" and cuda) else "none"
    return quantization


def resolve_strategy(train_strategy: str, quantization: str) -> str:
    """`auto`: qlora on a quantized base, lora on a full-precision one; anything else as given."""
    if train_strategy == "auto":
        return "lora" if quantization == "none" else "qlora"
    return train_strategy


def check_strategy(model_args, quantization: str) -> None:
    """Contradictory strategy / quantization pairs, and a freeze regex that does not compile."""
    strategy = model_args.train_strategy
    if strategy not in (*TRAIN_STRATEGIES, "auto"):
        raise ConfigError(f"train_strategy={strategy!r} is invalid. Fix: use auto, {', '.join(TRAIN_STRATEGIES)}.")
    if strategy in ("lora", "full", "freeze") and quantization != "none":
        raise ConfigError(
            f"train_strategy={strategy!r} contradicts quantization={quantization!r}: only qlora trains on a quantized "
            f"base. Fix: --quantization none (or auto), or --train_strategy qlora."
        )
    if strategy == "qlora" and quantization == "none":
        raise ConfigError(
            "train_strategy='qlora' contradicts quantization='none': QLoRA needs a 4-bit (or 8-bit) base. "
            "Fix: --quantization 4bit (or auto), or --train_strategy lora."
        )
    if strategy == "freeze":
        try:
            re.compile(model_args.trainable_modules)
        except re.error as error:
            raise ConfigError(
                f"trainable_modules={model_args.trainable_modules!r} is not a valid regex ({error}). "
                "Fix: e.g. --trainable_modules self_attn"
            ) from error


TILE_POSITIONS = ("random", "grid")  # where training tiles are cut
OBJECT_ORDERS = ("sorted", "random")  # of the objects in a detection target
CAPTION_CHOICES = ("random", "all", "first")  # all: one row per caption (a captions dataset's rows)


def check_dataset_dir(data_format: str, data_dir: Path) -> None:
    """The folder exists and holds data of its format (fail fast, before a model is loaded)."""
    from dataset_builder.detection import SPLIT_ALIASES, split_files

    captions = data_format != BOXES_FORMAT
    if not data_dir.exists():
        kind = "a captions or classes file or folder" if captions else "a COCO, PaliGemma JSONL or YOLO folder"
        raise ConfigError(f"dataset_dir={str(data_dir)!r} does not exist. Fix: point --dataset_dir at {kind}.")
    if captions and data_dir.is_file() and data_dir.suffix.lower() not in (".csv", ".jsonl", ".json"):
        raise ConfigError(
            f"dataset_dir={str(data_dir)!r} is a {data_dir.suffix or 'suffix-less'} file. Fix: give a CSV "
            "(image,caption or image,label), a JSONL or a COCO captions JSON file, or a folder (docs/dataset.md)."
        )
    if not captions and any(split_files(data_dir, split) is None for split in SPLIT_ALIASES):
        raise ConfigError(
            f"dataset_dir={str(data_dir)!r} lacks a detection split: train, val and test each need "
            "annotations/instances_{split}.json (COCO), {split}.jsonl (PaliGemma JSONL) or labels/{split}/ (YOLO) "
            "(docs/dataset.md)."
        )


def check_datasets(args) -> None:
    """Every dataset of the run (one, or a mixture's), what the objective needs, and the best-checkpoint metric:
    the first dataset's task's `best_metric` unless `metric_for_best_model` was given."""
    from tasks import get_task, task_names

    from .data import dataset_entries

    if args.data.task not in task_names():
        raise ConfigError(f"task={args.data.task!r} is invalid. Fix: use one of {task_names()}.")
    try:
        entries = dataset_entries(args.data)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    for entry in entries:
        check_dataset_dir(get_task(entry.task).data_format, Path(entry.dataset_dir))
    first = get_task(entries[0].task)
    if args.objective.train_objective == "scst" and (len(entries) > 1 or not first.sequence_reward):
        rewarded = [name for name in task_names() if get_task(name).sequence_reward]
        raise ConfigError(
            f"train_objective=scst trains one dataset of a task with a sequence reward ({rewarded}). "
            "Fix: drop --mixture / use --task with one of them."
        )
    if "metric_for_best_model" in args.explicit:
        return
    metric = first.best_metric
    args.training.metric_for_best_model = metric if len(entries) == 1 else f"{entries[0].name}_{metric}"
    args.training.greater_is_better = first.greater_is_better


def check_arguments(args) -> None:
    """Everything that can be checked without loading a model; each error says which argument and how to fix it."""
    from configuration_tsn_paligemma import TSNPaliGemmaConfig

    if args.model.quantization not in (*QUANTIZATION_CHOICES, "auto"):
        raise ConfigError(f"quantization={args.model.quantization!r} is invalid. Fix: use auto, 4bit, 8bit or none.")
    if args.model.merged_dtype not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"merged_dtype={args.model.merged_dtype!r} is invalid. Fix: use auto, float32 or bfloat16.")
    if args.data.caption_choice not in CAPTION_CHOICES:
        raise ConfigError(f"caption_choice={args.data.caption_choice!r} is invalid. Fix: use {CAPTION_CHOICES}.")
    if args.data.tile_positions not in TILE_POSITIONS:
        raise ConfigError(f"tile_positions={args.data.tile_positions!r} is invalid. Fix: use {TILE_POSITIONS}.")
    if args.data.object_order not in OBJECT_ORDERS:
        raise ConfigError(f"object_order={args.data.object_order!r} is invalid. Fix: use {OBJECT_ORDERS}.")
    if args.data.tile_size is not None and args.data.tile_size < 8:
        raise ConfigError(f"tile_size={args.data.tile_size} is invalid. Fix: a tile side in source pixels, e.g. 256.")
    check_tile_options(args.data)
    try:  # the config class validates every TSN field (names the field and the fix)
        TSNPaliGemmaConfig(**args.tsn.overrides())
    except ValueError as error:
        raise ConfigError(str(error)) from error
    for item in args.run.hpo_scales.split(";"):
        parse_scales(item)
    training = args.training
    if training.do_train or training.do_eval or training.do_predict or args.run.hpo_trials:
        check_datasets(args)
    check_model_path(args.model)
    check_report_to(training)
    quantization = resolve_quantization(args.model.quantization, on_cuda(training), args.model.train_strategy)
    check_strategy(args.model, quantization)
    check_precision(training)
    check_objective(args)
    if quantization in ("4bit", "8bit") and not bitsandbytes_available():
        raise ConfigError(
            f"quantization={quantization!r} needs bitsandbytes, which is not installed. Fix: pip install "
            "bitsandbytes, or run with --quantization none."
        )
    if training.push_to_hub:
        check_hub_token(training)
    if args.run.hpo_trials and not training.do_train:
        raise ConfigError("hpo_trials needs do_train. Fix: drop --do_train false or set --hpo_trials 0.")
    if args.run.hpo_trials and importlib.util.find_spec("optuna") is None:
        raise ConfigError("hpo_trials needs optuna. Fix: pip install -e '.[hpo]' (or pip install optuna).")


def check_model_path(model_args) -> None:
    """A model that is neither a saved model folder nor (plausibly) reachable on the Hub stops here, not in a
    traceback about internet connections or repo id formats."""
    from inference_core import ModelNotFoundError, check_model_location

    try:
        check_model_location(model_args.model_name_or_path, revision=model_args.revision)
    except ModelNotFoundError as error:
        raise ConfigError(f"model_name_or_path={error}") from error


# report_to integration -> the modules that provide it (any one will do)
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
    "comet_ml": ("comet_ml",),
    "trackio": ("trackio",),
}


def check_report_to(training) -> None:
    """A tracker that is not installed would crash the run after the model is loaded; stop before instead."""
    for tracker in training.report_to or []:
        modules = TRACKERS.get(tracker)
        if modules and not any(importlib.util.find_spec(module) for module in modules):
            raise ConfigError(
                f"report_to={tracker!r} needs the {modules[0]} package, which is not installed. Fix: pip install -e "
                f"'.[tracking]' (or pip install {modules[0]}), or --report_to none."
            )


def on_cuda(training) -> bool:
    """Whether this run trains on a GPU: one is there and `use_cpu` is off."""
    import torch

    return torch.cuda.is_available() and not training.use_cpu


def check_cell_loss(args) -> None:
    """The auxiliary image-token loss needs cross-entropy training and a head that checkpoints keep (the model's
    own weights: full or freeze, not a LoRA adapter)."""
    weight = args.objective.cell_loss_weight
    if weight == 0:
        return
    if not 0 < weight <= 100:
        raise ConfigError(f"cell_loss_weight={weight} is out of range. Fix: 0 (off) or a weight such as 1.")
    if args.objective.train_objective != "xent":
        raise ConfigError("cell_loss_weight is a cross-entropy option. Fix: --train_objective xent, or 0.")
    if args.run.hpo_trials:
        raise ConfigError("cell_loss_weight is not searched: hpo_trials builds its own models. Fix: one of them 0.")
    if args.model.train_strategy not in ("full", "freeze"):
        raise ConfigError(
            f"cell_loss_weight needs --train_strategy full or freeze (got {args.model.train_strategy!r}): its head "
            "trains beside the model's own weights, which a LoRA checkpoint does not keep. Fix: --train_strategy "
            "full, or --cell_loss_weight 0."
        )


def check_objective(args) -> None:
    """The objective's settings (SCST's among them): each error names the argument and the fix."""
    objective = args.objective
    if objective.train_objective not in OBJECTIVES:
        raise ConfigError(f"train_objective={objective.train_objective!r} is invalid. Fix: use xent or scst.")
    if objective.loss_weighting not in LOSS_WEIGHTINGS:
        raise ConfigError(f"loss_weighting={objective.loss_weighting!r} is invalid. Fix: use token or row.")
    if not 0 <= objective.loc_sigma <= 64:
        raise ConfigError(
            f"loc_sigma={objective.loc_sigma} is out of range: it is a width in <loc> bins (1024 per side). "
            "Fix: 0 (one-hot targets) or a width of a few percent of the side, e.g. --loc_sigma 16."
        )
    check_cell_loss(args)
    if objective.train_objective != "scst":
        return
    if objective.scst_baseline not in SCST_BASELINES:
        raise ConfigError(f"scst_baseline={objective.scst_baseline!r} is invalid. Fix: use mean or greedy.")
    if objective.scst_samples < (2 if objective.scst_baseline == "mean" else 1):
        raise ConfigError(
            f"scst_samples={objective.scst_samples} is too few: the mean baseline of a sample is the other samples' "
            "mean reward. Fix: --scst_samples 5 (or --scst_baseline greedy)."
        )
    if objective.scst_temperature <= 0 or objective.scst_top_k < 0:
        raise ConfigError(
            f"scst_temperature={objective.scst_temperature} / scst_top_k={objective.scst_top_k} are invalid. "
            "Fix: a temperature > 0 and a top-k >= 0 (0 = no top-k)."
        )
    if args.data.caption_choice == "all":
        raise ConfigError(
            "train_objective='scst' scores each image's samples against all its references: caption_choice='all' "
            "(five rows per image) would train every image five times per epoch. Fix: --caption_choice random."
        )


def check_precision(training) -> None:
    """bf16 / fp16 mixed precision is a GPU feature here: the CPU (and bitsandbytes' CPU kernels) train in float32."""
    for name in ("bf16", "fp16"):
        if getattr(training, name) and not on_cuda(training):
            where = "use_cpu is set" if training.use_cpu else "no CUDA GPU is visible"
            raise ConfigError(
                f"{name}=True needs a CUDA GPU, but {where}: on the CPU this project trains in float32. "
                f"Fix: --{name} false (or run on a GPU without --use_cpu)."
            )


def check_hub_token(training) -> None:
    """What publishing at the end needs (a valid repo id, online mode, a token), checked before training starts."""
    from publishing import PublishError, preflight

    try:
        preflight(training.hub_model_id, training.hub_token)
    except PublishError as error:
        raise ConfigError(f"push_to_hub is set, but: {error}") from error


def check_tile_options(data) -> None:
    """--tile_keep_area and --tile_overlap: a share of a box's area, and an overlap below the tile."""
    if not 0 < data.tile_keep_area <= 1:
        raise ConfigError(
            f"tile_keep_area={data.tile_keep_area} is invalid. Fix: a share of a box's area in (0, 1], e.g. 0.5, "
            "or 1.0 for whole objects only."
        )
    if data.tile_overlap is None:
        return
    if not data.tile_size:
        raise ConfigError("tile_overlap is set without tile_size. Fix: add --tile_size (e.g. 256), or drop it.")
    if not 0 <= data.tile_overlap < data.tile_size:
        raise ConfigError(
            f"tile_overlap={data.tile_overlap} is invalid for tile_size={data.tile_size}. Fix: an overlap in "
            f"source pixels from 0 to {data.tile_size - 1}, e.g. {data.tile_size // 2}."
        )
