"""Statistics of a RISC folder: counts, caption lengths, vocabulary, content categories, image summary.

    >>> from dataset_builder.stats import compute_stats
    >>> stats = compute_stats("dataset_builder/sample")
    >>> stats["num_images"], stats["counts"]["by_split"]["train"]
    (50, 30)

Words are lower-cased runs of letters/digits (apostrophes kept inside words): `"Many buildings ."` has 2 words.
Statistics read `captions.csv` and the image headers as they are, so they also work on folders that do not
validate (missing/unreadable images are counted, not fatal).
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .layout import SPLITS, find_image_dir, read_captions_csv

logger = logging.getLogger(__name__)

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
TOP_WORDS = 30
# Content categories: an image is covered when any of its captions contains any keyword of the group.
CATEGORIES = {
    "vegetation": [
        "tree",
        "trees",
        "grass",
        "grassland",
        "lawn",
        "lawns",
        "forest",
        "forests",
        "vegetation",
        "plants",
        "meadow",
        "meadows",
        "bushes",
        "shrubs",
        "woods",
        "greenbelt",
    ],
    "agriculture": [
        "farmland",
        "farmlands",
        "cropland",
        "croplands",
        "crops",
        "field",
        "fields",
        "terrace",
        "terraces",
        "agricultural",
        "orchard",
    ],
    "urban": [
        "building",
        "buildings",
        "house",
        "houses",
        "residential",
        "city",
        "urban",
        "commercial",
        "apartment",
        "apartments",
        "church",
        "school",
        "downtown",
        "roof",
        "roofs",
        "dense",
        "block",
        "blocks",
    ],
    "water": [
        "water",
        "river",
        "rivers",
        "lake",
        "lakes",
        "sea",
        "ocean",
        "pond",
        "ponds",
        "pool",
        "pools",
        "beach",
        "coast",
        "harbor",
        "harbour",
        "port",
        "bay",
        "wave",
        "waves",
        "island",
        "wetland",
    ],
    "transport": [
        "road",
        "roads",
        "street",
        "streets",
        "highway",
        "highways",
        "car",
        "cars",
        "vehicle",
        "vehicles",
        "parking",
        "airport",
        "runway",
        "runways",
        "plane",
        "planes",
        "airplane",
        "airplanes",
        "aircraft",
        "railway",
        "railways",
        "train",
        "trains",
        "bridge",
        "bridges",
        "viaduct",
        "intersection",
        "overpass",
        "ship",
        "ships",
        "boat",
        "boats",
        "station",
    ],
    "sports": [
        "playground",
        "stadium",
        "court",
        "courts",
        "tennis",
        "baseball",
        "basketball",
        "golf",
        "football",
        "soccer",
        "track",
        "diamond",
    ],
    "industrial": [
        "factory",
        "factories",
        "industrial",
        "storage",
        "tank",
        "tanks",
        "warehouse",
        "warehouses",
        "container",
        "containers",
        "plant",
        "chimney",
    ],
    "bare_land": [
        "desert",
        "sand",
        "bare",
        "barren",
        "mountain",
        "mountains",
        "hill",
        "hills",
        "rock",
        "rocks",
        "soil",
        "snow",
        "ice",
        "cloud",
        "clouds",
    ],
}


def tokenize(caption: str) -> list[str]:
    """Lower-cased words of a caption: `tokenize("Many buildings .") == ["many", "buildings"]`."""
    return WORD_RE.findall(caption.lower())


def _summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {
        "count": len(values),
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(statistics.fmean(values), 4),
        "median": statistics.median(values),
        "p05": percentile(0.05),
        "p95": percentile(0.95),
    }


def _image_info(path: Path) -> dict:
    """Header-only read (no decoding): size, mode, format, file size; `error` when missing/unreadable."""
    try:
        file_size = path.stat().st_size
    except OSError:
        return {"error": "missing"}
    try:
        with Image.open(path) as image:
            return {
                "width": image.width,
                "height": image.height,
                "mode": image.mode,
                "format": image.format,
                "file_size": file_size,
            }
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return {"error": "unreadable", "file_size": file_size}


def compute_stats(data_dir: str | os.PathLike, top_words: int = TOP_WORDS, num_threads: int | None = None) -> dict:
    """All statistics of the RISC folder `data_dir` as a JSON-ready dict (see `docs/dataset.md` for the keys)."""
    data_dir = Path(data_dir)
    rows = read_captions_csv(data_dir)
    image_dir = find_image_dir(data_dir)

    by_split = Counter(row.split for row in rows)
    by_source = Counter(row.source for row in rows)
    by_split_source: dict[str, dict[str, int]] = {}
    for row in rows:
        by_split_source.setdefault(row.split, {}).setdefault(row.source, 0)
        by_split_source[row.split][row.source] += 1
    split_order = [s for s in SPLITS if s in by_split] + sorted(s for s in by_split if s not in SPLITS)

    words = Counter()
    lengths: list[int] = []
    lengths_by_source: dict[str, list[int]] = {}
    captions_total = 0
    distinct = set()
    category_images = Counter()
    category_captions = Counter()
    keyword_sets = {name: set(keywords) for name, keywords in CATEGORIES.items()}
    for row in rows:
        image_words: set[str] = set()
        for caption in row.captions:
            if not caption:
                continue
            tokens = tokenize(caption)
            captions_total += 1
            distinct.add(caption.lower())
            words.update(tokens)
            lengths.append(len(tokens))
            lengths_by_source.setdefault(row.source, []).append(len(tokens))
            token_set = set(tokens)
            image_words |= token_set
            for name, keywords in keyword_sets.items():
                if token_set & keywords:
                    category_captions[name] += 1
        for name, keywords in keyword_sets.items():
            if image_words & keywords:
                category_images[name] += 1

    max_length = max(lengths, default=0)
    histogram = Counter(lengths)

    paths = [image_dir / row.image for row in rows]
    with ThreadPoolExecutor(max_workers=num_threads or min(8, (os.cpu_count() or 1) + 1)) as pool:
        infos = list(pool.map(_image_info, paths))
    readable = [info for info in infos if "error" not in info]
    file_sizes = [info["file_size"] for info in infos if "file_size" in info]

    num_images = len(rows)
    return {
        "data_dir": str(data_dir),
        "num_images": num_images,
        "num_captions": captions_total,
        "num_distinct_captions": len(distinct),
        "counts": {
            "by_split": {split: by_split[split] for split in split_order},
            "by_source": dict(sorted(by_source.items())),
            "by_split_source": {split: dict(sorted(by_split_source[split].items())) for split in split_order},
        },
        "caption_length": {
            "unit": "words",
            **_summary(lengths),
            "histogram": {
                "lengths": list(range(max_length + 1)),
                "counts": [histogram[i] for i in range(max_length + 1)],
            },
            "mean_by_source": {
                source: round(statistics.fmean(v), 4) for source, v in sorted(lengths_by_source.items())
            },
        },
        "vocabulary": {
            "size": len(words),
            "size_min_count_5": sum(1 for count in words.values() if count >= 5),
            "num_words": sum(words.values()),
            "top_words": [[word, count] for word, count in words.most_common(top_words)],
        },
        "categories": {
            name: {
                "keywords": CATEGORIES[name],
                "images": category_images[name],
                "image_fraction": round(category_images[name] / num_images, 4) if num_images else 0.0,
                "captions": category_captions[name],
            }
            for name in CATEGORIES
        },
        "images": {
            "image_dir": image_dir.name,
            "readable": len(readable),
            "missing": sum(1 for info in infos if info.get("error") == "missing"),
            "unreadable": sum(1 for info in infos if info.get("error") == "unreadable"),
            "sizes": dict(Counter(f"{info['width']}x{info['height']}" for info in readable).most_common()),
            "modes": dict(Counter(info["mode"] for info in readable).most_common()),
            "formats": dict(Counter(info["format"] for info in readable).most_common()),
            "file_size_bytes": {**_summary(file_sizes), "total": sum(file_sizes)},
        },
    }


def write_plots(stats: dict, output_dir: str | os.PathLike) -> list[Path]:
    """PNG plots of `stats`. Returns the files written.

    matplotlib's object API (Figure renders with Agg by itself): no pyplot state and no global backend switch, so
    importing this module changes nothing for a caller that uses matplotlib interactively.
    """
    from matplotlib.figure import Figure

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def subplots(figsize):
        fig = Figure(figsize=figsize)
        return fig, fig.add_subplot()

    def save(fig, name: str):
        fig.tight_layout()
        path = output_dir / name
        fig.savefig(path, dpi=100)
        written.append(path)

    # images per split, stacked by source
    splits = list(stats["counts"]["by_split_source"])
    sources = list(stats["counts"]["by_source"])
    fig, ax = subplots(figsize=(6, 4))
    bottom = [0] * len(splits)
    for source in sources:
        values = [stats["counts"]["by_split_source"][split].get(source, 0) for split in splits]
        ax.bar(splits, values, bottom=bottom, label=source)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("images")
    ax.set_title("Images per split and source")
    ax.legend()
    save(fig, "split_source_counts.png")

    fig, ax = subplots(figsize=(7, 4))
    histogram = stats["caption_length"]["histogram"]
    ax.bar(histogram["lengths"], histogram["counts"], width=0.9)
    ax.set_xlabel("caption length (words)")
    ax.set_ylabel("captions")
    ax.set_title(f"Caption length (mean {stats['caption_length'].get('mean', 0):.1f} words)")
    save(fig, "caption_length_hist.png")

    top = stats["vocabulary"]["top_words"][:20][::-1]
    fig, ax = subplots(figsize=(6, 6))
    ax.barh([word for word, _ in top], [count for _, count in top])
    ax.set_xlabel("occurrences")
    ax.set_title(f"Top words (vocabulary {stats['vocabulary']['size']})")
    save(fig, "top_words.png")

    names = list(stats["categories"])
    fig, ax = subplots(figsize=(7, 4))
    ax.bar(names, [100 * stats["categories"][name]["image_fraction"] for name in names])
    ax.set_ylabel("% of images")
    ax.set_title("Content-category coverage (any caption mentions a keyword)")
    ax.tick_params(axis="x", rotation=30)
    save(fig, "category_coverage.png")

    return written


def format_table(stats: dict) -> str:
    """A short plain-text summary for the terminal."""
    counts = stats["counts"]
    sources = list(counts["by_source"])
    header = f"{'split':<8}" + "".join(f"{source:>9}" for source in sources) + f"{'total':>9}"
    lines = [header, "-" * len(header)]
    for split, per_source in counts["by_split_source"].items():
        cells = "".join(f"{per_source.get(source, 0):>9}" for source in sources)
        lines.append(f"{split:<8}{cells}{counts['by_split'][split]:>9}")
    totals = "".join(f"{counts['by_source'][source]:>9}" for source in sources)
    lines.append(f"{'total':<8}{totals}{stats['num_images']:>9}")
    length = stats["caption_length"]
    images = stats["images"]
    vocabulary = stats["vocabulary"]
    lines += [
        "",
        f"captions: {stats['num_captions']} ({stats['num_distinct_captions']} distinct), "
        f"length mean {length.get('mean', 0):.2f} words (min {length.get('min', 0)}, max {length.get('max', 0)})",
        f"vocabulary: {vocabulary['size']} words ({vocabulary['size_min_count_5']} seen >= 5 times); "
        f"top: {', '.join(word for word, _ in vocabulary['top_words'][:8])}",
        "categories: "
        + ", ".join(f"{name} {100 * c['image_fraction']:.0f}%" for name, c in stats["categories"].items()),
        f"images: {images['readable']} readable, {images['missing']} missing, {images['unreadable']} unreadable; "
        f"sizes {images['sizes']}; modes {images['modes']}; "
        f"mean file {images['file_size_bytes'].get('mean', 0) / 1024:.1f} KiB",
    ]
    return "\n".join(lines)


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
