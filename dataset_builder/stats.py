"""Statistics of a RISC folder: counts, caption lengths, vocabulary, content categories, image summary.

    >>> from dataset_builder.stats import compute_stats
    >>> stats = compute_stats("dataset_builder/sample")
    >>> stats["num_images"], stats["counts"]["by_split"]["train"]
    (50, 30)

Words are lower-cased runs of letters/digits (apostrophes kept inside words): `"Many buildings ."` has 2 words.
Statistics read `captions.csv` and the image headers as they are, so they also work on folders that do not
validate (missing/unreadable images are counted, not fatal). The plots and the terminal table are drawn in
`stats_report.py`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .layout import RISCRow, find_image_dir, ordered_splits, read_captions_csv
from .stats_report import write_plots

logger = logging.getLogger(__name__)

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
TOP_WORDS = 30
# Content categories: an image is covered when any of its captions contains any keyword of the group.
CATEGORIES = {
    "vegetation": (
        "tree trees grass grassland lawn lawns forest forests vegetation plants meadow meadows bushes shrubs "
        "woods greenbelt"
    ).split(),
    "agriculture": (
        "farmland farmlands cropland croplands crops field fields terrace terraces agricultural orchard"
    ).split(),
    "urban": (
        "building buildings house houses residential city urban commercial apartment apartments church school "
        "downtown roof roofs dense block blocks"
    ).split(),
    "water": (
        "water river rivers lake lakes sea ocean pond ponds pool pools beach coast harbor harbour port bay "
        "wave waves island wetland"
    ).split(),
    "transport": (
        "road roads street streets highway highways car cars vehicle vehicles parking airport runway runways "
        "plane planes airplane airplanes aircraft railway railways train trains bridge bridges viaduct "
        "intersection overpass ship ships boat boats station"
    ).split(),
    "sports": "playground stadium court courts tennis baseball basketball golf football soccer track diamond".split(),
    "industrial": (
        "factory factories industrial storage tank tanks warehouse warehouses container containers plant chimney"
    ).split(),
    "bare_land": "desert sand bare barren mountain mountains hill hills rock rocks soil snow ice cloud clouds".split(),
}


def tokenize(caption: str) -> list[str]:
    """Lower-cased words of a caption: `tokenize("Many buildings .") == ["many", "buildings"]`."""
    return WORD_RE.findall(caption.lower())


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered, last = sorted(values), len(values) - 1
    return {
        "n": len(values),
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(statistics.fmean(values), 4),
        "median": statistics.median(values),
        "p05": ordered[round(0.05 * last)],  # nearest rank
        "p95": ordered[round(0.95 * last)],
    }


def _image_info(path: Path) -> dict:
    """Header-only read (no decoding): size, mode, format, file size; `error` when missing/unreadable."""
    try:
        file_size = path.stat().st_size
    except OSError:
        return {"error": "missing"}
    try:
        with Image.open(path) as image:
            return dict(
                width=image.width, height=image.height, mode=image.mode, format=image.format, file_size=file_size
            )
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return {"error": "unreadable", "file_size": file_size}


@dataclass
class _CaptionTally:
    """Everything compute_stats needs from the captions, gathered in one pass so each caption is tokenized once."""

    words: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=list)
    lengths_by_source: dict[str, list[int]] = field(default_factory=dict)
    distinct: set[str] = field(default_factory=set)
    category_images: Counter = field(default_factory=Counter)
    category_captions: Counter = field(default_factory=Counter)


def _tally_captions(rows: list[RISCRow]) -> _CaptionTally:
    """Word counts, lengths and category hits of every non-empty caption (empty ones are skipped, not counted)."""
    tally = _CaptionTally()
    keyword_sets = {name: set(keywords) for name, keywords in CATEGORIES.items()}
    for row in rows:
        image_words: set[str] = set()
        for caption in filter(None, row.captions):
            tokens = tokenize(caption)
            tally.distinct.add(caption.lower())
            tally.words.update(tokens)
            tally.lengths.append(len(tokens))
            tally.lengths_by_source.setdefault(row.source, []).append(len(tokens))
            token_set = set(tokens)
            image_words |= token_set
            tally.category_captions.update(name for name, keywords in keyword_sets.items() if token_set & keywords)
        tally.category_images.update(name for name, keywords in keyword_sets.items() if image_words & keywords)
    return tally


def _split_source_counts(rows: list[RISCRow]) -> dict:
    """Images per split, per source and per (split, source); splits in the usual order, unknown ones last."""
    by_split = Counter(row.split for row in rows)
    pairs = sorted(Counter((row.split, row.source) for row in rows).items())
    split_order = ordered_splits(by_split)
    return {
        "by_split": {split: by_split[split] for split in split_order},
        "by_source": dict(sorted(Counter(row.source for row in rows).items())),
        "by_split_source": {split: {source: n for (s, source), n in pairs if s == split} for split in split_order},
    }


def _caption_length_stats(tally: _CaptionTally) -> dict:
    """Length summary plus a histogram with one bin per length from 0, so plots need no binning of their own."""
    max_length = max(tally.lengths, default=0)
    histogram = Counter(tally.lengths)
    return {
        "unit": "words",
        **_summary(tally.lengths),
        "histogram": {
            "lengths": list(range(max_length + 1)),
            "counts": [histogram[i] for i in range(max_length + 1)],
        },
        "mean_by_source": {
            source: round(statistics.fmean(v), 4) for source, v in sorted(tally.lengths_by_source.items())
        },
    }


def _image_stats(image_dir: Path, rows: list[RISCRow], num_threads: int | None) -> dict:
    """Sizes, modes, formats and file sizes of the images, read from their headers in threads (I/O bound)."""
    paths = [image_dir / row.image for row in rows]
    with ThreadPoolExecutor(max_workers=num_threads or min(8, (os.cpu_count() or 1) + 1)) as pool:
        infos = list(pool.map(_image_info, paths))
    readable = [info for info in infos if "error" not in info]
    file_sizes = [info["file_size"] for info in infos if "file_size" in info]
    return {
        "image_dir": image_dir.name,
        "readable": len(readable),
        "missing": sum(1 for info in infos if info.get("error") == "missing"),
        "unreadable": sum(1 for info in infos if info.get("error") == "unreadable"),
        "sizes": dict(Counter(f"{info['width']}x{info['height']}" for info in readable).most_common()),
        "modes": dict(Counter(info["mode"] for info in readable).most_common()),
        "formats": dict(Counter(info["format"] for info in readable).most_common()),
        "file_size_bytes": {**_summary(file_sizes), "total": sum(file_sizes)},
    }


def compute_stats(data_dir: str | os.PathLike, top_words: int = TOP_WORDS, num_threads: int | None = None) -> dict:
    """All statistics of the RISC folder `data_dir` as a JSON-ready dict (see `docs/dataset.md` for the keys).

    The vocabulary size is also given counting only words seen 5+ times (typos and rare names inflate the raw size);
    each category lists its keywords, so that its numbers can be read without the code.
    """
    data_dir = Path(data_dir)
    rows = read_captions_csv(data_dir)
    image_dir = find_image_dir(data_dir)
    tally = _tally_captions(rows)
    words = tally.words
    return {
        "data_dir": str(data_dir),
        "num_images": len(rows),
        "num_captions": len(tally.lengths),
        "num_distinct_captions": len(tally.distinct),
        "counts": _split_source_counts(rows),
        "caption_length": _caption_length_stats(tally),
        "vocabulary": {
            "size": len(words),
            "size_min_count_5": sum(1 for count in words.values() if count >= 5),
            "num_words": sum(words.values()),
            "top_words": [[word, count] for word, count in words.most_common(top_words)],
        },
        "categories": {
            name: {
                "keywords": keywords,
                "images": tally.category_images[name],
                "image_fraction": round(tally.category_images[name] / len(rows), 4) if rows else 0.0,
                "captions": tally.category_captions[name],
            }
            for name, keywords in CATEGORIES.items()
        },
        "images": _image_stats(image_dir, rows, num_threads),
    }


def write_stats(
    data_dir: str | os.PathLike, output_dir: str | os.PathLike, plots: bool = True
) -> tuple[dict, list[Path]]:
    """Compute the statistics of `data_dir`, write `output_dir/stats.json` (and PNG plots). Returns both."""
    stats = compute_stats(data_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "stats.json"
    path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    written = [path] + (write_plots(stats, output_dir) if plots else [])
    logger.info("Wrote %s", ", ".join(str(p) for p in written))
    return stats, written
