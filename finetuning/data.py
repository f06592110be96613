"""The splits of a run: one dataset of one task (its rows from the folder of the task's `data_format`: a RISC-style
captions folder, or a COCO / PaliGemma JSONL boxes folder) or a mixture of several, with subsets, each task's own
rows (`Task.task_rows`) and row indices for scoring.

A mixture (`mixture:` in the config, a list of `{task, dataset_dir, weight[, name]}`) trains on the datasets
interleaved with sampling probabilities proportional to the weights (`datasets.interleave_datasets`, until every
dataset has been seen once: "all_exhausted") and evaluates each on its own val/test rows. Rows then share one
layout (`TASK_ROW_FEATURES`) and carry their dataset's name in `task`.
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets

from dataset_builder import load_risc
from dataset_builder.detection import detection_classes, load_detection
from dataset_builder.user_data import dataset_label, is_risc_folder, load_user_data
from tasks import RunContext, get_task, task_names
from tasks.base import BOXES_FORMAT
from tasks.rows import distinct_rows  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def _first(dataset: datasets.Dataset, count: int | None) -> datasets.Dataset:
    return dataset if count is None or count >= len(dataset) else dataset.select(range(count))


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of a run: its name (the rows' `task`), its task's name, its folder and its sampling weight."""

    name: str
    task: str
    dataset_dir: str
    weight: float = 1.0


def dataset_entries(data_args) -> list[DatasetEntry]:
    """The run's datasets: `mixture` when given (a list of dicts, or its JSON text from the CLI), else the one
    `dataset_dir` of `task`."""
    mixture = data_args.mixture
    if mixture is None:
        return [DatasetEntry(data_args.task, data_args.task, data_args.dataset_dir)]
    if isinstance(mixture, str):
        try:
            mixture = json.loads(mixture)
        except json.JSONDecodeError as error:
            raise ValueError(f"--mixture {mixture!r} is not a JSON list ({error}); see --help.") from error
    if not isinstance(mixture, list) or not mixture:
        raise ValueError(f"mixture={mixture!r}: give a list of {{task, dataset_dir, weight}} entries.")
    entries = []
    for index, item in enumerate(mixture):
        unknown = sorted(set(item) - {"task", "dataset_dir", "weight", "name"}) if isinstance(item, dict) else None
        if unknown is None or unknown or "task" not in item or "dataset_dir" not in item:
            raise ValueError(
                f"mixture entry {index} ({item!r}): give task, dataset_dir and optionally weight and name"
                + (f"; {unknown} are not entry keys" if unknown else "")
                + "."
            )
        if item["task"] not in task_names():
            raise ValueError(f"mixture entry {index}: task {item['task']!r} is not one of {task_names()}.")
        weight = float(item.get("weight", 1.0))
        if weight <= 0:
            raise ValueError(f"mixture entry {index}: weight {weight} must be > 0 (a sampling weight).")
        entries.append(DatasetEntry(str(item.get("name", item["task"])), item["task"], item["dataset_dir"], weight))
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"mixture names {names} repeat: give entries of the same task distinct `name`s.")
    if len({entry.dataset_dir for entry in entries if data_format(entry) == BOXES_FORMAT}) > 1:
        raise ValueError(
            "a mixture holds one boxes dataset (for every task whose rows come from boxes): merge the others into "
            "its annotations first."
        )
    return entries


def data_format(entry: DatasetEntry) -> str:
    return get_task(entry.task).data_format


def _load_entry(entry: DatasetEntry, data_args) -> datasets.DatasetDict:
    if data_format(entry) == BOXES_FORMAT:
        return load_detection(entry.dataset_dir, skip_invalid=data_args.skip_invalid)
    if not is_risc_folder(Path(entry.dataset_dir)):  # captions or classes as users hold them
        fractions = {"val_fraction": data_args.val_fraction, "test_fraction": data_args.test_fraction}
        return load_user_data(entry.dataset_dir, skip_invalid=data_args.skip_invalid, **fractions)
    return load_risc(
        entry.dataset_dir,
        config=data_args.dataset_config,
        skip_invalid=data_args.skip_invalid,
        cache_dir=data_args.dataset_cache_dir,
    )


def _entry_splits(entry: DatasetEntry, data_args) -> dict[str, datasets.Dataset]:
    dataset = _load_entry(entry, data_args)
    missing = [split for split in SPLITS if split not in dataset]
    if missing:
        raise ValueError(f"{entry.dataset_dir}: no {missing} split ({entry.task} data needs train, val and test).")
    splits = {"train": _first(dataset["train"], data_args.max_train_samples)}
    for split, count in (("val", data_args.max_eval_samples), ("test", data_args.max_test_samples)):
        splits[split] = _first(dataset[split], count)
    return get_task(entry.task).task_rows(splits, data_args, entry.dataset_dir)


def task_row_features(classes: list[str]) -> datasets.Features:
    """The one layout of a task-tagged run's rows: captions (empty for detection rows), objects (empty for caption
    rows), an evaluated tile (empty for whole images) and label (a scene class or the class a count asks about;
    empty otherwise) side by side."""
    return datasets.Features(
        {
            "image": datasets.Image(),
            "filename": datasets.Value("string"),
            "source": datasets.Value("string"),
            "task": datasets.Value("string"),
            "label": datasets.Value("string"),
            "captions": datasets.List(datasets.Value("string")),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "tile": datasets.List(datasets.Value("float64")),  # an evaluated tile's [x1, y1, x2, y2]; [] whole
            "objects": {
                "bbox": datasets.List(datasets.List(datasets.Value("float64"), length=4)),
                "category": datasets.List(datasets.ClassLabel(names=classes)),
            },
        }
    )


def _as_task_rows(split: datasets.Dataset, entry: DatasetEntry, features: datasets.Features) -> datasets.Dataset:
    """The split in `features`' layout, each row tagged with the entry's name (constant columns added, no image
    decoded)."""
    count = len(split)
    missing = {
        "task": [entry.name] * count,
        "label": [""] * count,
        "captions": [[] for _ in range(count)],
        "width": [0] * count,
        "height": [0] * count,
        "tile": [[] for _ in range(count)],
        "objects": [{"bbox": [], "category": []} for _ in range(count)],
    }
    for column, values in missing.items():
        if column not in split.column_names:
            split = split.add_column(column, values, feature=features[column])
    split = split.remove_columns([column for column in split.column_names if column not in features])
    return split.select_columns(list(features)).cast(features)


def load_splits(data_args, seed: int = 0) -> datasets.DatasetDict:
    """train / val / test as the Trainer needs them; val and test carry `row_index` so each generated output is
    matched back to its image and references, also after a distributed gather.

    A run of one captions dataset keeps its rows as they are; boxes datasets and mixtures get task-tagged rows.
    """
    entries = dataset_entries(data_args)
    if data_args.caption_choice == "all" and len(entries) > 1:
        raise ValueError("caption_choice 'all' cannot mix with other datasets; use 'random' in a mixture.")
    per_entry = {entry.name: _entry_splits(entry, data_args) for entry in entries}
    if len(entries) == 1 and data_format(entries[0]) != BOXES_FORMAT:
        splits = dict(per_entry[entries[0].name])
    else:
        boxes = [entry for entry in entries if data_format(entry) == BOXES_FORMAT]
        classes = detection_classes(per_entry[boxes[0].name]["train"]) if boxes else []
        features = task_row_features(classes)
        tagged = {
            entry.name: {split: _as_task_rows(rows, entry, features) for split, rows in per_entry[entry.name].items()}
            for entry in entries
        }
        weights = [entry.weight for entry in entries]
        trains = [tagged[entry.name]["train"] for entry in entries]
        splits = {
            "train": trains[0]
            if len(trains) == 1
            else datasets.interleave_datasets(
                trains,
                probabilities=[weight / sum(weights) for weight in weights],
                seed=seed,
                stopping_strategy="all_exhausted",
            )
        }
        for split in ("val", "test"):
            splits[split] = datasets.concatenate_datasets([tagged[entry.name][split] for entry in entries])
    for split in ("val", "test"):
        splits[split] = splits[split].add_column("row_index", list(range(len(splits[split]))))
    logger.info("splits: %s", {split: len(rows) for split, rows in splits.items()})
    return datasets.DatasetDict(splits)


def split_by_task(split: datasets.Dataset) -> dict[str, datasets.Dataset] | datasets.Dataset:
    """{task name: its rows, each numbered from 0 in `row_index`} of a mixture's split; a one-task split as is."""
    if "task" not in getattr(split, "column_names", ()):  # also plain lists of rows
        return split
    tasks = split.select_columns(["task"])["task"]  # read once for every task
    names = list(dict.fromkeys(tasks))
    if len(names) == 1:
        return split
    parts = {}
    for name in names:
        part = rows_of(split, name, tasks)
        parts[name] = part.remove_columns("row_index").add_column("row_index", list(range(len(part))))
    return parts


def rows_of(split: datasets.Dataset, name: str, tasks: list[str] | None = None) -> datasets.Dataset:
    """The rows of one task of a task-tagged split (`tasks`: its task column, when already read)."""
    tasks = split.select_columns(["task"])["task"] if tasks is None else tasks
    return split.select([index for index, task in enumerate(tasks) if task == name])


def build_tasks(data_args, splits, processor, sbert_model: str | None = None) -> dict:
    """{dataset name: its task object}, each built from its own training rows (`Task.for_run`)."""
    train = splits.get("train")
    columns = getattr(train, "column_names", ())  # none: a trainer built only to evaluate
    run = RunContext(data_args, processor, detection_classes(train) if "objects" in columns else [], sbert_model)
    return {
        entry.name: get_task(entry.task).for_run(rows_of(train, entry.name) if "task" in columns else train, run)
        for entry in dataset_entries(data_args)
    }


def dataset_names(data_args) -> dict[str, str]:
    """{dataset name in the run: what the card calls its data} (`dataset_label`: RISC only for a RISC folder)."""
    return {entry.name: dataset_label(entry.dataset_dir) for entry in dataset_entries(data_args)}


def images_per_source(split: datasets.Dataset) -> dict[str, int]:
    """{source: distinct images} of a split (caption_choice "all" repeats each image five times)."""
    columns = split.select_columns(["filename", "source"])
    source_of = dict(zip(columns["filename"], columns["source"]))  # one entry per image
    return dict(sorted(Counter(source_of.values()).items()))


def build_collators(processor, data_args, train_objective: str, tasks: dict, cell_grid: int = 0) -> tuple:
    """(training collator, evaluation collator) of a run: each row's task writes its prefix and suffix (a caption
    task: one caption per image by `caption_choice`, and the augmentation) for cross-entropy training, the prompt
    alone and every reference for SCST; a fixed suffix for the loss plus the prompt alone for generation for
    evaluation. `cell_grid` > 0: training batches carry the image-token targets of `finetuning.cell_loss`."""
    from collators import TSNPaliGemmaEvalCollator, TSNPaliGemmaSCSTCollator, TSNPaliGemmaTrainCollator

    first = next(iter(tasks.values()))  # the task of rows without a `task` column (a run of one dataset)
    evaluation = TSNPaliGemmaEvalCollator(processor, task=first, max_length=data_args.max_length, tasks=tasks)
    if train_objective == "scst":
        return TSNPaliGemmaSCSTCollator(processor, task=first, augment=data_args.augment), evaluation
    train = TSNPaliGemmaTrainCollator(
        processor,
        task=first,
        max_length=data_args.max_length,
        augment=data_args.augment,
        tasks=tasks,
        cell_grid=cell_grid,
    )
    return train, evaluation
