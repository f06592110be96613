"""Rendering of the statistics that `dataset_builder.stats.compute_stats` returns: PNG plots and a terminal table.

Kept apart from the computation so that reading the numbers never needs matplotlib.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def write_plots(stats: dict, output_dir: str | os.PathLike) -> list[Path]:
    """PNG plots of `stats`. Returns the files written.

    matplotlib's object API (Figure renders with Agg by itself): no pyplot state and no global backend switch, so
    importing this module changes nothing for a caller that uses matplotlib interactively.
    """
    from matplotlib.figure import Figure

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []

    @contextmanager
    def axes(name: str, figsize: tuple[int, int]):
        """The axes of a new figure, saved as `output_dir/name` at the end of the block."""
        fig = Figure(figsize=figsize)
        yield fig.add_subplot()
        fig.tight_layout()
        fig.savefig(output_dir / name, dpi=100)
        written.append(output_dir / name)

    splits = list(stats["counts"]["by_split_source"])
    with axes("split_source_counts.png", (6, 4)) as ax:  # images per split, stacked by source
        bottom = [0] * len(splits)
        for source in stats["counts"]["by_source"]:
            values = [stats["counts"]["by_split_source"][split].get(source, 0) for split in splits]
            ax.bar(splits, values, bottom=bottom, label=source)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylabel("images")
        ax.set_title("Images per split and source")
        ax.legend()

    with axes("caption_length_hist.png", (7, 4)) as ax:
        histogram = stats["caption_length"]["histogram"]
        ax.bar(histogram["lengths"], histogram["counts"], width=0.9)
        ax.set_xlabel("caption length (words)")
        ax.set_ylabel("captions")
        ax.set_title(f"Caption length (mean {stats['caption_length'].get('mean', 0):.1f} words)")

    with axes("top_words.png", (6, 6)) as ax:
        top = stats["vocabulary"]["top_words"][:20][::-1]
        ax.barh([word for word, _ in top], [count for _, count in top])
        ax.set_xlabel("occurrences")
        ax.set_title(f"Top words (vocabulary {stats['vocabulary']['size']})")

    with axes("category_coverage.png", (7, 4)) as ax:
        names = list(stats["categories"])
        ax.bar(names, [100 * stats["categories"][name]["image_fraction"] for name in names])
        ax.set_ylabel("% of images")
        ax.set_title("Content-category coverage (any caption mentions a keyword)")
        ax.tick_params(axis="x", rotation=30)
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
