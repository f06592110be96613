"""Row-by-row validation of a RISC folder, run before any example is written.

Every row of `captions.csv` is checked; each problem names the csv line, the file, what is wrong and how to
fix it. Strict loads raise ONE `RISCValidationError` listing all problems; `skip_invalid=True` loads drop the
bad rows, log how many per reason and write them to a CSV report. No row is dropped without being reported.

Decoding every image is the expensive part (about 1-2 ms per 224 px JPEG). Its results are cached in
`CACHE_ROOT/risc_validation/<fingerprint>.json`, keyed by `layout.fingerprint` (captions.csv bytes plus each
image's name, size and mtime), so re-validating an unchanged folder, or loading another config of it, does not
decode anything again.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .layout import (
    CAPTION_COLUMNS,
    KNOWN_SOURCES,
    NUM_CAPTIONS,
    SPLITS,
    RISCRow,
    find_image_dir,
    fingerprint,
    read_captions_csv,
)

logger = logging.getLogger(__name__)

VALIDATION_VERSION = "1"
NAN_LIKE = {"", "nan", "none", "null", "n/a"}

# reason -> how to fix it (shown next to every problem of that kind)
FIXES = {
    "missing_file": "add the image to the image folder or remove the row",
    "unreadable_image": "replace the file with a valid image (re-export it) or remove the row",
    "truncated_image": "the file is cut short (interrupted copy/download): copy it again or remove the row",
    "non_rgb_mode": "convert to 8-bit RGB, e.g. `python -m dataset_builder import csv DATA_DIR/captions.csv "
    "--images DATA_DIR/resized --output_dir FIXED_DIR`, or Image.open(p).convert('RGB').save(p)",
    "empty_caption": "write the missing caption or drop the row",
    "too_few_captions": f"give the row all {NUM_CAPTIONS} caption columns (quote captions that contain commas)",
    "malformed_row": "the row has more fields than the header: quote captions that contain commas",
    "duplicate_image": "keep one row per image: remove the duplicate row or rename one of the images",
    "unknown_split": f"use one of {', '.join(SPLITS)}",
    "unknown_source": f"use one of {', '.join(KNOWN_SOURCES)}",
}
REASONS = tuple(FIXES)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row."""

    line: int
    image: str
    reason: str
    detail: str

    @property
    def fix(self) -> str:
        return FIXES[self.reason]

    def format(self) -> str:
        image = self.image or "<no image name>"
        return f"  line {self.line} ({image}): {self.reason}: {self.detail}. Fix: {self.fix}."


@dataclass
class ValidationReport:
    """The rows of a RISC folder and every problem found in them."""

    data_dir: str
    rows: list[RISCRow]
    problems: list[Problem] = field(default_factory=list)

    @property
    def bad_lines(self) -> set[int]:
        return {problem.line for problem in self.problems}

    @property
    def good_rows(self) -> list[RISCRow]:
        bad = self.bad_lines
        return [row for row in self.rows if row.line not in bad]

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts_by_reason(self) -> dict[str, int]:
        """Number of rows with each kind of problem (a row with two problems counts under both)."""
        counts = Counter(reason for reason, _line in {(problem.reason, problem.line) for problem in self.problems})
        return {reason: counts[reason] for reason in REASONS if counts[reason]}

    def restrict(self, sources: tuple[str, ...] | None) -> ValidationReport:
        """The report for the rows a config loads: rows of `sources`, plus rows whose source is unknown
        (a mistyped source belongs to no config, so every config reports it rather than silently losing it)."""
        if sources is None:
            return self
        rows = [row for row in self.rows if row.source in sources or row.source not in KNOWN_SOURCES]
        lines = {row.line for row in rows}
        return ValidationReport(self.data_dir, rows, [p for p in self.problems if p.line in lines])

    def format(self) -> str:
        counts = ", ".join(f"{reason} {count}" for reason, count in self.counts_by_reason().items())
        lines = [
            f"{len(self.bad_lines)} of {len(self.rows)} rows of {Path(self.data_dir) / 'captions.csv'} are invalid "
            f"({counts}):"
        ]
        lines += [problem.format() for problem in sorted(self.problems, key=lambda p: (p.line, p.reason))]
        lines.append(
            "Fix the rows above, or load with skip_invalid=True (CLI: --skip_invalid) to skip them; "
            "skipped rows are logged per reason and written to a report file."
        )
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write one line per problem: line, image, source, split, reason, detail, fix."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows_by_line = {row.line: row for row in self.rows}
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "image", "source", "split", "reason", "detail", "fix"])
            for problem in sorted(self.problems, key=lambda p: (p.line, p.reason)):
                row = rows_by_line.get(problem.line)
                source, split = (row.source, row.split) if row else ("", "")
                writer.writerow(
                    [problem.line, problem.image, source, split, problem.reason, problem.detail, problem.fix]
                )
        return path


class RISCValidationError(ValueError):
    """Raised by strict loads; `.report` holds every problem, the message lists them all."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.format())


def read_problems_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a report written by `ValidationReport.write_csv`."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def log_skipped_csv(path: str | os.PathLike, data_dir: str | os.PathLike, shown_path: str | os.PathLike) -> None:
    """`log_skipped` for a report read back from its CSV (cached loads)."""
    lines_by_reason: dict[str, set[str]] = {}
    for problem in read_problems_csv(path):
        lines_by_reason.setdefault(problem["reason"], set()).add(problem["line"])
    num_rows = len(set().union(*lines_by_reason.values())) if lines_by_reason else 0
    counts = ", ".join(f"{reason}: {len(lines)}" for reason, lines in lines_by_reason.items())
    logger.warning(
        "Skipped %d invalid rows of %s (%s); every skipped row is listed in %s", num_rows, data_dir, counts, shown_path
    )


def check_row(row: RISCRow) -> list[Problem]:
    """The checks that need no image: split, source, captions, field count."""
    problems = []

    def add(reason: str, detail: str):
        problems.append(Problem(row.line, row.image, reason, detail))

    if row.split not in SPLITS:
        add("unknown_split", f"split {row.split!r} is not one of {', '.join(SPLITS)}")
    if row.source not in KNOWN_SOURCES:
        add("unknown_source", f"source {row.source!r} is not one of {', '.join(KNOWN_SOURCES)}")
    present = [caption for caption in row.captions if caption is not None]
    if len(present) < NUM_CAPTIONS:
        add("too_few_captions", f"the row has {len(present)} of {NUM_CAPTIONS} caption fields")
    for column, caption in zip(CAPTION_COLUMNS, row.captions):
        if caption is not None and caption.lower() in NAN_LIKE:
            add("empty_caption", f"{column} is {'empty' if not caption else repr(caption)}")
    if row.num_fields > row.num_columns:
        add("malformed_row", f"the row has {row.num_fields} fields but the header has {row.num_columns}")
    return problems


def check_image(path: Path) -> tuple[str, str] | None:
    """(reason, detail) when the image at `path` is unusable, None when it is a decodable RGB image.

    The image is fully decoded (`load()`), which is what catches truncated files: Pillow raises
    "image file is truncated" unless `ImageFile.LOAD_TRUNCATED_IMAGES` was switched on globally.
    """
    try:
        with Image.open(path) as image:
            mode = image.mode
            image.load()
    except UnidentifiedImageError:
        return "unreadable_image", f"{path.name} is not an image Pillow can read"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        message = str(error) or type(error).__name__
        if "truncat" in message.lower():
            return "truncated_image", f"{path.name} is truncated ({message})"
        return "unreadable_image", f"{path.name} cannot be decoded ({message})"
    if mode != "RGB":
        kind = " (16-bit)" if mode.startswith("I;16") or mode in ("I", "F") else ""
        return "non_rgb_mode", f"{path.name} has mode {mode}{kind}, not RGB"
    return None


def _check_rows(rows: list[RISCRow], image_dir: Path) -> tuple[list[Problem], dict[str, int], dict[str, Path]]:
    """The checks that need no decoding, in csv order.

    Returns the problems, the line of the first row naming each image (lower-cased name), and the images that
    exist on disk, which are the only ones worth decoding.
    """
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    to_check: dict[str, Path] = {}
    for row in rows:
        problems += check_row(row)
        if not row.image:
            problems.append(Problem(row.line, row.image, "missing_file", "the image column is empty"))
            continue
        key = row.image.lower()  # case-insensitive: the names must also be distinct on Windows/macOS
        if key in seen:
            problems.append(
                Problem(row.line, row.image, "duplicate_image", f"{row.image} is already used on line {seen[key]}")
            )
            continue
        seen[key] = row.line
        path = image_dir / row.image
        if path.is_file():
            to_check[row.image] = path
        else:
            problems.append(
                Problem(row.line, row.image, "missing_file", f"{image_dir.name}/{row.image} does not exist")
            )
    return problems, seen, to_check


def _image_results(
    data_dir: Path,
    to_check: dict[str, Path],
    cache_dir: str | os.PathLike | None,
    num_threads: int | None,
) -> dict[str, tuple[str, str] | None]:
    """`check_image` of every image in `to_check`, read from the cache when this exact folder was checked before.

    The cache file is written to a temporary name and renamed, so a concurrent load never reads half of it.
    """
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / "risc_validation" / f"{fingerprint(data_dir)}-v{VALIDATION_VERSION}.json"
        if cache_file.is_file():
            return {
                name: tuple(value) if value else None for name, value in json.loads(cache_file.read_text()).items()
            }
    # Pillow releases the GIL while decoding, so threads overlap the decodes.
    with ThreadPoolExecutor(max_workers=num_threads or min(8, (os.cpu_count() or 1) + 1)) as pool:
        results = dict(zip(to_check, pool.map(check_image, to_check.values())))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(results))
        os.replace(tmp, cache_file)
    return results


def validate_risc(
    data_dir: str | os.PathLike,
    sources: tuple[str, ...] | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_threads: int | None = None,
) -> ValidationReport:
    """Check every row of the RISC folder `data_dir`.

    Args:
        data_dir: folder with `captions.csv` and `resized/` (or `imgs/`, `images/`).
        sources: restrict the report to these sources (plus rows with an unknown source); None = all rows.
        cache_dir: where to cache image-check results (keyed by the folder fingerprint); None = no cache.
        num_threads: threads decoding images (default: CPU count + 1, at most 8).

    Example:
        >>> report = validate_risc("dataset_builder/sample")
        >>> report.ok, len(report.rows)
        (True, 50)
    """
    data_dir = Path(data_dir)
    rows = read_captions_csv(data_dir)
    image_dir = find_image_dir(data_dir)
    problems, seen, to_check = _check_rows(rows, image_dir)
    results = _image_results(data_dir, to_check, cache_dir, num_threads)
    # only the first row naming an image gets its image problems; later ones are duplicates already
    first_rows = [row for row in rows if seen.get(row.image.lower()) == row.line]
    problems += [Problem(row.line, row.image, *results[row.image]) for row in first_rows if results.get(row.image)]
    report = ValidationReport(str(data_dir), rows, problems)
    return report.restrict(sources)


def log_skipped(report: ValidationReport, report_path: str | os.PathLike | None, what: str = "rows") -> None:
    """Log, per reason, the rows a skip_invalid load leaves out, and where the full report is."""
    if report.ok:
        return
    counts = ", ".join(f"{reason}: {count}" for reason, count in report.counts_by_reason().items())
    where = f"; every skipped row is listed in {report_path}" if report_path else ""
    logger.warning("Skipped %d invalid %s of %s (%s)%s", len(report.bad_lines), what, report.data_dir, counts, where)
