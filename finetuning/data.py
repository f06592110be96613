"""The splits of a run: one dataset of one task (a RISC folder for captions and scene classes, a COCO / PaliGemma
JSONL folder for detection and counting) or a mixture of several, with subsets, the `all` caption expansion and row
indices for scoring.

A mixture (`mixture:` in the config, a list of `{task, dataset_dir, weight[, name]}`) trains on the datasets
interleaved with sampling probabilities proportional to the weights (`datasets.interleave_datasets`, until every
dataset has been seen once: "all_exhausted") and evaluates each on its own val/test rows. Rows then share one
layout (`TASK_ROW_FEATURES`) and carry their dataset's name in `task`.
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass

import datasets

from dataset_builder import load_risc
from dataset_builder.detection import detection_classes, load_detection
from tasks.count import count_rows

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def _first(dataset: datasets.Dataset, count: int | None) -> datasets.Dataset:
    return dataset if count is None or count >= len(dataset) else dataset.select(range(count))


def expand_captions(dataset: datasets.Dataset) -> datasets.Dataset:
    """caption_choice "all": one row per (image, caption), the caption in a `caption` column (5 rows per image)."""

    def explode(batch):
        rows = {key: [] for key in (*batch.keys(), "caption")}
        for index, captions in enumerate(batch["captions"]):
            for caption in captions:
                for key in batch:
                    rows[key].append(batch[key][index])
                rows["caption"].append(caption)
        return rows

    return dataset.map(explode, batched=True, batch_size=64, desc="one row per caption")


TASK_KINDS = ("caption", "detect", "classify", "count")
BOX_TASKS = ("detect", "count")  # the tasks whose rows are a detection dataset's


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of a run: its name (the rows' `task`), its task kind, its folder and its sampling weight."""

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
        if item["task"] not in TASK_KINDS:
            raise ValueError(f"mixture entry {index}: task {item['task']!r} is not one of {TASK_KINDS}.")
        weight = float(item.get("weight", 1.0))
        if weight <= 0:
            raise ValueError(f"mixture entry {index}: weight {weight} must be > 0 (a sampling weight).")
        entries.append(DatasetEntry(str(item.get("name", item["task"])), item["task"], item["dataset_dir"], weight))
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"mixture names {names} repeat: give entries of the same task distinct `name`s.")
    if len({entry.dataset_dir for entry in entries if entry.task in BOX_TASKS}) > 1:
        raise ValueError(
            "a mixture holds one detection dataset (for detect and count alike): merge the others into its "
            "annotations first."
        )
    return entries


def _load_entry(entry: DatasetEntry, data_args) -> datasets.DatasetDict:
    if entry.task in BOX_TASKS:
        return load_detection(entry.dataset_dir, skip_invalid=data_args.skip_invalid)
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
    if entry.task == "caption" and data_args.caption_choice == "all":
        splits["train"] = expand_captions(splits["train"])
    for split, count in (("val", data_args.max_eval_samples), ("test", data_args.max_test_samples)):
        splits[split] = _first(dataset[split], count)
    if entry.task == "classify":
        splits = {
            split: scene_rows(rows, data_args.scene_pattern, entry.dataset_dir) for split, rows in splits.items()
        }
    if entry.task == "count":
        classes = detection_classes(splits["train"])
        splits = {split: count_rows(rows, classes) for split, rows in splits.items()}
    return splits


def scene_rows(split: datasets.Dataset, pattern: str, dataset_dir: str) -> datasets.Dataset:
    """The caption rows whose file name names a scene (`tasks.classify.scene_of`), with that scene as `label`;
    the others (RSICD's numbered images) are left out."""
    from tasks.classify import scene_of

    scenes = [scene_of(name, pattern) for name in split.select_columns(["filename"])["filename"]]
    kept = [index for index, scene in enumerate(scenes) if scene is not None]
    if split.num_rows and not kept:
        raise ValueError(
            f"{dataset_dir}: no file name matches scene_pattern {pattern!r} (e.g. {split[0]['filename']!r}). "
            "Fix: give --scene_pattern a regex whose group 1 is the scene, e.g. '^([a-z]+)_\\d+\\.jpg$'."
        )
    logger.info("%s: %d of %d images name a scene", dataset_dir, len(kept), split.num_rows)
    return split.select(kept).add_column("label", [scenes[index] for index in kept])


def task_row_features(classes: list[str]) -> datasets.Features:
    """The one layout of a task-tagged run's rows: captions (empty for detection rows), objects (empty for caption
    rows) and label (a scene class or the class a count asks about; empty otherwise) side by side."""
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
        "objects": [{"bbox": [], "category": []} for _ in range(count)],
    }
    for column, values in missing.items():
        if column not in split.column_names:
            split = split.add_column(column, values, feature=features[column])
    drop = [column for column in split.column_names if column not in features and column != "caption"]
    split = split.remove_columns(drop)
    if "caption" in split.column_names:  # caption_choice "all": each row's own caption stays
        features = datasets.Features({**features, "caption": datasets.Value("string")})
    return split.select_columns(list(features)).cast(features)


def load_splits(data_args, seed: int = 0) -> datasets.DatasetDict:
    """train / val / test as the Trainer needs them; val and test carry `row_index` so each generated output is
    matched back to its image and references, also after a distributed gather.

    A run of one caption dataset keeps the RISC rows as they are; detection and mixtures get task-tagged rows.
    """
    entries = dataset_entries(data_args)
    per_entry = {entry.name: _entry_splits(entry, data_args) for entry in entries}
    if len(entries) == 1 and entries[0].task == "caption":
        splits = dict(per_entry[entries[0].name])
    else:
        detect = [entry for entry in entries if entry.task in BOX_TASKS]
        classes = detection_classes(per_entry[detect[0].name]["train"]) if detect else []
        features = task_row_features(classes)
        tagged = {
            entry.name: {split: _as_task_rows(rows, entry, features) for split, rows in per_entry[entry.name].items()}
            for entry in entries
        }
        if "caption" in {entry.task for entry in entries} and data_args.caption_choice == "all" and len(entries) > 1:
            raise ValueError("caption_choice 'all' cannot mix with other datasets; use 'random' in a mixture.")
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


def distinct_rows(rows: datasets.Dataset, columns: tuple[str, ...]) -> datasets.Dataset:
    """`rows` with each value of `columns` kept once, at its first row. A mixture's training split repeats the rows
    of its smaller datasets (interleave_datasets, all_exhausted) as often as the weights ask; a baseline is a
    statistic of the training data, which that repetition must not change."""
    keys = zip(*(rows.select_columns([column])[column] for column in columns))
    seen, keep = set(), []
    for index, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return rows if len(keep) == len(rows) else rows.select(keep)


def build_tasks(data_args, splits, processor, sbert_model: str | None = None) -> dict:
    """name -> task object of a task-tagged run ({} for captions alone: the collators' own caption task)."""
    from tasks import CaptionTask, ClassifyTask, CountTask, DetectTask
    from tasks.classify import majority_class
    from tasks.count import median_counts

    entries = dataset_entries(data_args)
    if len(entries) == 1 and entries[0].task == "caption":
        return {}
    choice = "first" if data_args.caption_choice == "all" else data_args.caption_choice
    tasks = {}
    for entry in entries:
        if entry.task == "caption":
            tasks[entry.name] = CaptionTask(data_args.prompt, choice, sbert_model=sbert_model)
            continue
        if entry.task == "classify":
            rows = distinct_rows(rows_of(splits["train"], entry.name), ("filename",))
            labels = rows.select_columns(["label"])["label"]
            tasks[entry.name] = ClassifyTask(sorted(set(labels)), majority=majority_class(labels))
            continue
        if entry.task == "count":
            rows = distinct_rows(rows_of(splits["train"], entry.name), ("filename", "label"))
            rows = rows.select_columns(["label", "objects"])
            classes = detection_classes(splits["train"])
            tasks[entry.name] = CountTask(classes, medians=median_counts(rows, classes))
            continue
        task = DetectTask(detection_classes(splits["train"]))
        longest = longest_suffix(task, rows_of(splits["train"], entry.name), processor)
        task.generation = {"num_beams": 1, "max_new_tokens": longest + 8}  # greedy, room for the busiest image
        tasks[entry.name] = task
    return tasks


def longest_suffix(task, rows: datasets.Dataset, processor) -> int:
    """Tokens of the task's longest training target: how much room generation needs (every box of the busiest
    image)."""
    columns = rows.select_columns([column for column in task.row_columns if column in rows.column_names])
    lengths = [len(processor.tokenizer(task.suffix(row), add_special_tokens=False).input_ids) for row in columns]
    return max(lengths, default=1)


def images_per_source(split: datasets.Dataset) -> dict[str, int]:
    """{source: distinct images} of a split (caption_choice "all" repeats each image five times)."""
    columns = split.select_columns(["filename", "source"])
    source_of = dict(zip(columns["filename"], columns["source"]))  # one entry per image
    return dict(sorted(Counter(source_of.values()).items()))


def build_collators(processor, data_args, train_objective: str = "xent", tasks: dict | None = None) -> tuple:
    """(training collator, evaluation collator) of a run: one caption per image by `caption_choice` (and the
    augmentation) for cross-entropy training, the prompt alone and every reference for SCST; caption 1 for the loss
    plus the prompt alone for generation for evaluation."""
    from processing import TSNPaliGemmaEvalCollator, TSNPaliGemmaSCSTCollator, TSNPaliGemmaTrainCollator

    evaluation = TSNPaliGemmaEvalCollator(
        processor, prompt=data_args.prompt, max_length=data_args.max_length, tasks=tasks
    )
    if train_objective == "scst":
        return TSNPaliGemmaSCSTCollator(processor, prompt=data_args.prompt, augment=data_args.augment), evaluation

    # "all" rows already carry their own `caption`; the choice then does not matter.
    choice = "first" if data_args.caption_choice == "all" else data_args.caption_choice
    train = TSNPaliGemmaTrainCollator(
        processor,
        prompt=data_args.prompt,
        caption_choice=choice,
        max_length=data_args.max_length,
        augment=data_args.augment,
        tasks=tasks,
    )
    return train, evaluation
