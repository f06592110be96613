"""How the model card writes a value: numbers to four decimals, Markdown cells escaped; shared by every task's
card section and by `publishing`."""

from typing import Any

# RISC's sources as their datasets are named in print
SOURCE_NAMES = {"NWPU": "NWPU-Captions", "RSICD": "RSICD", "UCM": "UCM-Captions", "SYDNEY": "Sydney-Captions"}
FEW_IMAGES = 30  # a score over fewer images is marked: its n-gram statistics come from those images alone


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def label_counts(objects: list[dict]) -> dict[str, int]:
    """{label: how many of `objects` ({"label", ...}) carry it}, in first-seen order."""
    counts: dict[str, int] = {}
    for item in objects:
        counts[item["label"]] = counts.get(item["label"], 0) + 1
    return counts
