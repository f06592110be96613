"""Export a loaded RISC `DatasetDict` as Parquet shards with a dataset card, or push it to the Hub.

Local layout (one copy of the data, every config selects files by glob)::

    OUT/README.md                                   card: YAML configs + splits/sources table + citations
    OUT/data/<source>/<split>-00000-of-00001.parquet

so `load_dataset("OUT")` (or `load_dataset("user/risc")` once the folder is uploaded) gives all sources and
`load_dataset("OUT", "ucm")` only UCM. The image bytes are embedded in the Parquet files.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from pathlib import Path

import datasets
import yaml

from .builder import CITATION
from .layout import KNOWN_SOURCES, ordered_splits

logger = logging.getLogger(__name__)

SOURCE_INFO = {
    "NWPU": ("NWPU-Captions", "Cheng et al., 2022", "https://github.com/HaiyanHuang98/NWPU-Captions"),
    "RSICD": ("RSICD", "Lu et al., 2018; arXiv 2017", "https://github.com/201528014227051/RSICD_optimal"),
    "UCM": ("UCM-Captions", "Qu et al., 2016", "http://weegee.vision.ucmerced.edu/datasets/landuse.html"),
    "SYDNEY": ("Sydney-Captions", "Qu et al., 2016", ""),
}


def _sources(split_data: datasets.Dataset) -> list[str]:
    return split_data["source"][:]  # one list in one call (iterating the Column reads row by row)


def counts(dataset: datasets.DatasetDict) -> dict[str, dict[str, int]]:
    """split -> source -> number of images."""
    return {split: dict(Counter(_sources(dataset[split]))) for split in ordered_splits(dataset) if len(dataset[split])}


def _size_category(total: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if total < limit:
            return name
    return "n>1M"


def _parquet_configs(table: dict[str, dict[str, int]], sources: list[str]) -> list[dict]:
    """`all` (the default) globs every source folder; each source config globs its own folder, listing only the
    splits it has rows in (a glob that matches nothing makes `load_dataset` fail)."""
    configs = [
        {
            "config_name": "all",
            "default": True,
            "data_files": [{"split": split, "path": f"data/*/{split}-*.parquet"} for split in table],
        }
    ]
    for source in sources:
        files = [
            {"split": split, "path": f"data/{source.lower()}/{split}-*.parquet"}
            for split, row in table.items()
            if row.get(source)
        ]
        configs.append({"config_name": source.lower(), "data_files": files})
    return configs


def _counts_markdown(table: dict[str, dict[str, int]], sources: list[str], total: int) -> list[str]:
    """The split x source table of the card as Markdown lines, with a total row and column."""
    header = "| split | " + " | ".join(sources) + " | total |"
    lines = [header, "|" + " --- |" * (len(sources) + 2)]
    for split, row in table.items():
        lines.append(f"| {split} | " + " | ".join(str(row.get(s, 0)) for s in sources) + f" | {sum(row.values())} |")
    per_source = [sum(row.get(s, 0) for row in table.values()) for s in sources]
    lines.append("| **total** | " + " | ".join(map(str, per_source)) + f" | {total} |")
    return lines


def _card_body(table: dict[str, dict[str, int]], sources: list[str], total: int, repo_id: str | None) -> str:
    """The card's Markdown text; its one-source load example uses UCM when present, else the first source."""
    name = repo_id or "PATH_OR_REPO"
    example = "ucm" if "UCM" in sources else (sources[0].lower() if sources else "all")
    lines = _counts_markdown(table, sources, total)
    source_lines = [
        f"- **{s}**: {SOURCE_INFO[s][0]} ({SOURCE_INFO[s][1]})"
        + (f", {SOURCE_INFO[s][2]}" if SOURCE_INFO[s][2] else "")
        for s in sources
    ]
    return f"""
# RISC: remote-sensing image captioning

Aerial and satellite images, each with five English captions written by people, from
{", ".join(SOURCE_INFO[s][0] for s in sources)}; the train/val/test split is the one of the source
`captions.csv`. Built with `python -m dataset_builder export` (TSN-PaliGemma).

## Splits and sources

{chr(10).join(lines)}

## Fields

- `image`: the image (JPEG bytes, decoded to a PIL image).
- `captions`: the five reference captions (list of 5 strings, source spelling and spacing kept).
- `source`: {", ".join(sources)}.
- `filename`: the image's file name in the RISC folder.

## Load

```python
from datasets import load_dataset

ds = load_dataset("{name}")            # all sources
{example} = load_dataset("{name}", "{example}")  # one source
```

## Sources and licenses

{chr(10).join(source_lines)}

The captions and images keep the terms of their original datasets (research use); check each source before
redistribution or commercial use.

## Citation

```bibtex
{CITATION.strip()}
```
"""


def dataset_card(dataset: datasets.DatasetDict, repo_id: str | None = None, parquet_configs: bool = True) -> str:
    """README.md text for the exported dataset: YAML metadata (with the local `configs` when
    `parquet_configs`), a split x source table, fields, how to load, sources/licenses and citations."""
    table = counts(dataset)
    sources = [s for s in KNOWN_SOURCES if any(s in row for row in table.values())]
    total = sum(sum(row.values()) for row in table.values())
    metadata: dict = {
        "pretty_name": "RISC (remote-sensing image captioning)",
        "language": ["en"],
        "license": "other",
        "task_categories": ["image-to-text"],
        "tags": ["remote-sensing", "image-captioning", "aerial-imagery"],
        "size_categories": [_size_category(total)],
    }
    if parquet_configs:  # only for a local export: the Hub push writes its own `configs`
        metadata["configs"] = _parquet_configs(table, sources)
    body = _card_body(table, sources, total, repo_id)
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n" + body


def export_parquet(
    dataset: datasets.DatasetDict,
    output_dir: str | os.PathLike,
    max_shard_size: int = 500 * 2**20,
    repo_id: str | None = None,
) -> list[Path]:
    """Write `dataset` as `output_dir/data/<source>/<split>-XXXXX-of-YYYYY.parquet` plus `README.md`.

    Each (source, split) is cut into ceil(bytes / max_shard_size) shards. Returns the files written.
    """
    output_dir = Path(output_dir)
    written: list[Path] = []
    for split in ordered_splits(dataset):
        split_data = dataset[split]
        source_column = _sources(split_data)
        for source in sorted(set(source_column)):
            indices = [i for i, value in enumerate(source_column) if value == source]
            subset = split_data.select(indices)
            nbytes = split_data.data.nbytes * len(indices) / max(1, len(split_data))
            num_shards = max(1, math.ceil(nbytes / max_shard_size))
            folder = output_dir / "data" / source.lower()
            folder.mkdir(parents=True, exist_ok=True)
            for shard_index in range(num_shards):
                path = folder / f"{split}-{shard_index:05d}-of-{num_shards:05d}.parquet"
                subset.shard(num_shards, shard_index, contiguous=True).to_parquet(str(path))
                written.append(path)
    card = output_dir / "README.md"
    card.write_text(dataset_card(dataset, repo_id=repo_id), encoding="utf-8")
    written.append(card)
    logger.info("Exported %d Parquet files and a dataset card to %s", len(written) - 1, output_dir)
    return written


def select_config(dataset: datasets.DatasetDict, config: str) -> datasets.DatasetDict:
    """The rows of one config (`all` or a lower-cased source name); splits without rows are left out."""
    if config == "all":
        return dataset
    source = config.upper()
    selected = {}
    for split in ordered_splits(dataset):
        indices = [i for i, value in enumerate(_sources(dataset[split])) if value == source]
        if indices:
            selected[split] = dataset[split].select(indices)
    return datasets.DatasetDict(selected)


def push_to_hub(
    dataset: datasets.DatasetDict,
    repo_id: str,
    configs: tuple[str, ...] = ("all",),
    private: bool | None = None,
    token: str | None = None,
    max_shard_size: str | int | None = None,
) -> None:
    """Upload the dataset card, then push each config with datasets' own `DatasetDict.push_to_hub` (which writes its
    own YAML `configs`/`dataset_info` into the card and keeps the card's text).

    `all` becomes the default config (`load_dataset(repo_id)`); other configs (`nwpu`, `rsicd`, `ucm`) are
    pushed as their own folders when listed in `configs`.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    card = dataset_card(dataset, repo_id=repo_id, parquet_configs=False)
    api.upload_file(
        path_or_fileobj=card.encode("utf-8"),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Add RISC dataset card",
    )
    for config in configs:
        subset = select_config(dataset, config)
        if not subset:
            logger.warning("config %s has no rows; not pushed", config)
            continue
        subset.push_to_hub(
            repo_id,
            config_name=config,
            set_default=config == "all",
            private=private,
            token=token,
            max_shard_size=max_shard_size,
        )
