"""RISC splits for training and evaluation: subsets, the `all` caption expansion and row indices for scoring."""

import logging
from collections import Counter

import datasets

from dataset_builder import load_risc

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


def load_splits(data_args) -> datasets.DatasetDict:
    """train / val / test as the Trainer needs them; val and test carry `row_index` so each generated caption is
    matched back to its image, source and 5 references, also after a distributed gather."""
    dataset = load_risc(
        data_args.dataset_dir,
        config=data_args.dataset_config,
        skip_invalid=data_args.skip_invalid,
        cache_dir=data_args.dataset_cache_dir,
    )
    missing = [split for split in SPLITS if split not in dataset]
    if missing:
        raise ValueError(f"{data_args.dataset_dir}: captions.csv has no {missing} rows (split column).")
    splits = {"train": _first(dataset["train"], data_args.max_train_samples)}
    if data_args.caption_choice == "all":
        splits["train"] = expand_captions(splits["train"])
    for split, count in (("val", data_args.max_eval_samples), ("test", data_args.max_test_samples)):
        subset = _first(dataset[split], count)
        splits[split] = subset.add_column("row_index", list(range(len(subset))))
    logger.info("RISC splits: %s", {split: len(rows) for split, rows in splits.items()})
    return datasets.DatasetDict(splits)


def images_per_source(split: datasets.Dataset) -> dict[str, int]:
    """{source: distinct images} of a split (caption_choice "all" repeats each image five times)."""
    columns = split.select_columns(["filename", "source"])
    source_of = dict(zip(columns["filename"], columns["source"]))  # one entry per image
    return dict(sorted(Counter(source_of.values()).items()))


def build_collators(processor, data_args, train_objective: str = "xent") -> tuple:
    """(training collator, evaluation collator) of a run: one caption per image by `caption_choice` (and the
    augmentation) for cross-entropy training, the prompt alone and every reference for SCST; caption 1 for the loss
    plus the prompt alone for generation for evaluation."""
    from processing import TSNPaliGemmaEvalCollator, TSNPaliGemmaSCSTCollator, TSNPaliGemmaTrainCollator

    evaluation = TSNPaliGemmaEvalCollator(processor, prompt=data_args.prompt, max_length=data_args.max_length)
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
    )
    return train, evaluation
