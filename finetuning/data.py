"""RISC splits for training and evaluation: subsets, the `all` caption expansion and row indices for scoring."""

import logging

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


class CaptionCollator:
    """One collator for the Trainer: evaluation rows (they carry `row_index`) get the prompt-only `gen_*` tensors
    and caption 1 for the loss; training rows get one caption chosen by `caption_choice`."""

    def __init__(self, train_collator, eval_collator):
        self.train_collator = train_collator
        self.eval_collator = eval_collator

    @classmethod
    def build(
        cls, processor, prompt: str, caption_choice: str, max_length: int | None, augment: bool = False
    ) -> "CaptionCollator":
        from processing import TSNPaliGemmaEvalCollator, TSNPaliGemmaTrainCollator

        # "all" rows already carry their own `caption`; the choice then does not matter.
        choice = "first" if caption_choice == "all" else caption_choice
        return cls(
            TSNPaliGemmaTrainCollator(
                processor, prompt=prompt, caption_choice=choice, max_length=max_length, augment=augment
            ),
            TSNPaliGemmaEvalCollator(processor, prompt=prompt, max_length=max_length),
        )

    @property
    def processor(self):
        return self.train_collator.processor

    @processor.setter
    def processor(self, processor) -> None:  # HPO trials may change the image token count (scales)
        self.train_collator.processor = processor
        self.eval_collator.processor = processor

    def __call__(self, rows: list[dict]):
        return self.eval_collator(rows) if "row_index" in rows[0] else self.train_collator(rows)
