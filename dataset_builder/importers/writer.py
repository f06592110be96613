"""Write a RISC folder (captions.csv + resized/*.jpg) from parsed annotation records.

Every image is converted to 8-bit RGB by `images.to_rgb`, the conversion inference and evaluation use too
(16/32-bit stretched from its own min..max, transparency composited on white, palette/CMYK/grayscale converted),
resized to `size` x `size` with Lanczos and saved as JPEG quality 95. A file that is already an RGB JPEG of the
right size is copied byte for byte (no generation loss).
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from images import IMAGE_ERRORS, IMAGE_EXTENSIONS, to_rgb

from ..layout import CAPTIONS_FILE, KNOWN_SOURCES, NUM_CAPTIONS, REQUIRED_COLUMNS, SPLITS

logger = logging.getLogger(__name__)

REPORT_FILE = "import_report.csv"
JPEG_QUALITY = 95

IMPORT_FIXES = {
    "missing_image": "put the image under --images (any sub-folder; matched by path, then by file name, then stem)",
    "ambiguous_image": "several files match this name: point --images at the folder of this dataset only",
    "unreadable_image": "replace the file with a valid image or drop the entry",
    "too_few_captions": f"each image needs at least {NUM_CAPTIONS} captions",
    "empty_caption": "fill in the empty caption or drop the entry",
    "duplicate_image": "two entries give the same output name: rename one image or drop the duplicate entry",
    "unknown_split": f"use one of {', '.join(SPLITS)} (pass --split to set it for the whole file)",
    "unknown_source": f"use one of {', '.join(KNOWN_SOURCES)} (--source)",
}


@dataclass
class ImportRecord:
    """One image of an annotation file: where it came from and its captions."""

    source: str
    split: str
    image_ref: str  # the image as the annotation file names it, e.g. "NWPU_images/airport/airport_1.jpg"
    captions: list[str]
    origin: str  # where in the annotation file, for messages, e.g. "dataset_rsicd.json images[12]"

    @property
    def output_name(self) -> str:
        """RISC-style file name: SOURCE_<stem>.jpg (no double prefix for names that already carry it)."""
        stem = Path(self.image_ref.replace("\\", "/").rsplit("/", 1)[-1].strip()).stem
        stem = re.sub(r"\s+", "_", stem)
        if stem.upper().startswith(f"{self.source}_"):
            return f"{stem}.jpg"
        return f"{self.source}_{stem}.jpg"


@dataclass(frozen=True)
class ImportProblem:
    origin: str
    image: str
    reason: str
    detail: str

    @property
    def fix(self) -> str:
        return IMPORT_FIXES[self.reason]

    def format(self) -> str:
        return f"  {self.origin} ({self.image}): {self.reason}: {self.detail}. Fix: {self.fix}."


class RISCImportError(ValueError):
    """Raised when an import finds problems and skip_invalid is False; the message lists every one."""

    def __init__(self, problems: list[ImportProblem], total: int):
        self.problems = problems
        counts = ", ".join(f"{reason} {count}" for reason, count in Counter(p.reason for p in problems).items())
        lines = [f"{len({(p.origin, p.image) for p in problems})} of {total} entries cannot be imported ({counts}):"]
        lines += [problem.format() for problem in problems]
        lines.append("Fix them, or pass skip_invalid=True (--skip_invalid) to skip them and write a report.")
        super().__init__("\n".join(lines))


@dataclass
class ImportSummary:
    output_dir: Path
    num_written: int
    counts: dict[str, dict[str, int]]  # split -> source -> images
    skipped: list[ImportProblem] = field(default_factory=list)
    report_path: Path | None = None


class ImageIndex:
    """Finds the file an annotation means, in any layout under `root`.

    Lookup order: the annotation's path (or its longest suffix) relative to `root`, then the file name alone,
    then the stem alone (annotation says `1.tif`, the folder has `1.png`). Matching is case-insensitive.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"images={str(root)!r} is not a folder. Fix: pass --images pointing at the folder holding the images."
            )
        self.by_relpath: dict[str, Path] = {}
        self.by_name: dict[str, list[Path]] = defaultdict(list)
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for filename in filenames:
                path = Path(dirpath, filename)
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                self.by_relpath[path.relative_to(self.root).as_posix().lower()] = path
                self.by_name[filename.lower()].append(path)
                self.by_stem[path.stem.lower()].append(path)

    def resolve(self, ref: str) -> tuple[Path | None, str | None]:
        """(path, None) when found, (None, (reason, detail)) otherwise."""
        parts = [part for part in ref.strip().replace("\\", "/").split("/") if part not in ("", ".")]
        if not parts:
            return None, ("missing_image", "the entry names no image")
        for start in range(len(parts) - 1):
            path = self.by_relpath.get("/".join(parts[start:]).lower())
            if path is not None:
                return path, None
        for table, key in ((self.by_name, parts[-1].lower()), (self.by_stem, Path(parts[-1]).stem.lower())):
            matches = table.get(key, [])
            if len(matches) == 1:
                return matches[0], None
            if len(matches) > 1:
                shown = ", ".join(str(m.relative_to(self.root)) for m in matches[:3])
                return None, ("ambiguous_image", f"{len(matches)} files match {parts[-1]!r} ({shown})")
        return None, ("missing_image", f"no file for {ref!r} under {self.root}")


def convert_image(source: Path, destination: Path, size: int | None = 224) -> None:
    """Write `source` as an RGB JPEG of `size` x `size` (size None/0: keep the size) to `destination`."""
    with Image.open(source) as image:
        target = (size, size) if size else image.size
        if image.format == "JPEG" and image.mode == "RGB" and image.size == target:
            shutil.copyfile(source, destination)
            return
        if image.format == "JPEG" and size:
            image.draft("RGB", target)  # decode big JPEGs at a reduced DCT scale >= target: faster, same quality
        rgb = to_rgb(image)
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        rgb.save(destination, format="JPEG", quality=JPEG_QUALITY)


def _check_records(records: list[ImportRecord], index: ImageIndex, taken: dict[str, str]):
    """Cheap checks (no decoding): the problems, the positions of bad records, and each record's image path."""
    problems: list[ImportProblem] = []
    bad: set[int] = set()
    sources: dict[int, Path] = {}
    more_than_five = 0
    for position, record in enumerate(records):
        name = record.output_name

        def add(reason: str, detail: str, record=record, name=name, position=position):
            problems.append(ImportProblem(record.origin, name, reason, detail))
            bad.add(position)

        if record.split not in SPLITS:
            add("unknown_split", f"split {record.split!r}")
        if record.source not in KNOWN_SOURCES:
            add("unknown_source", f"source {record.source!r}")
        empties = [i + 1 for i, caption in enumerate(record.captions) if not caption.strip()]
        if empties:
            add("empty_caption", f"caption(s) {empties} are empty")
        if len(record.captions) < NUM_CAPTIONS:
            add("too_few_captions", f"{len(record.captions)} caption(s)")
        elif len(record.captions) > NUM_CAPTIONS:
            more_than_five += 1
        if name.lower() in taken:
            add("duplicate_image", f"{name} is also produced by {taken[name.lower()]}")
        else:
            taken[name.lower()] = record.origin
        path, problem = index.resolve(record.image_ref)
        if problem is not None:
            add(*problem)
        else:
            sources[position] = path
    if more_than_five:
        logger.info(
            "%d images have more than %d captions; the first %d were kept", more_than_five, NUM_CAPTIONS, NUM_CAPTIONS
        )
    return problems, bad, sources


def _read_existing(output_dir: Path) -> list[list[str]]:
    path = output_dir / CAPTIONS_FILE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    header = [column.strip().lower() for column in rows[0]] if rows else []
    if header[: len(REQUIRED_COLUMNS)] != list(REQUIRED_COLUMNS):
        raise ValueError(f"append=True but {path} does not start with the columns {','.join(REQUIRED_COLUMNS)}.")
    return rows[1:]


def _convert_images(
    todo: list[tuple[int, ImportRecord]],
    sources: dict[int, Path],
    image_out: Path,
    size: int | None,
    num_threads: int | None,
) -> dict[int, ImportProblem]:
    """Convert every image of `todo` into `image_out`, in threads (Pillow releases the GIL while decoding).

    Returns the images that could not be read, by record position; a file can pass the name lookup and still
    turn out not to be an image, which only decoding shows.
    """

    def convert(item):
        position, record = item
        try:
            convert_image(sources[position], image_out / record.output_name, size)
        except IMAGE_ERRORS as error:
            detail = f"{sources[position]}: {error}"
            return position, ImportProblem(record.origin, record.output_name, "unreadable_image", detail)
        return position, None

    with ThreadPoolExecutor(max_workers=num_threads or min(8, (os.cpu_count() or 1) + 1)) as pool:
        return {position: problem for position, problem in pool.map(convert, todo) if problem is not None}


def _write_captions_csv(output_dir: Path, existing: list[list[str]], todo: list[tuple[int, ImportRecord]]) -> None:
    """Write captions.csv: the rows already there (append) followed by the imported records.

    Written last and atomically (temporary file, then rename): an interrupted import never leaves a half-valid
    folder.
    """
    tmp = output_dir / f".{CAPTIONS_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REQUIRED_COLUMNS)
        writer.writerows(existing)
        for _, record in todo:
            writer.writerow([record.source, record.split, record.output_name, *record.captions[:NUM_CAPTIONS]])
    os.replace(tmp, output_dir / CAPTIONS_FILE)


def _count_written(todo: list[tuple[int, ImportRecord]]) -> dict[str, dict[str, int]]:
    """split -> source -> images written, for the summary."""
    counts: dict[str, dict[str, int]] = {}
    for _, record in todo:
        counts.setdefault(record.split, {}).setdefault(record.source, 0)
        counts[record.split][record.source] += 1
    return counts


def _write_report(output_dir: Path, problems: list[ImportProblem], total: int) -> Path:
    """Write every skipped entry to `import_report.csv` and log the count per reason, so none is lost silently."""
    report_path = output_dir / REPORT_FILE
    with open(report_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["origin", "image", "reason", "detail", "fix"])
        writer.writerows([p.origin, p.image, p.reason, p.detail, p.fix] for p in problems)
    logger.warning(
        "Skipped %d of %d entries (%s); every skipped entry is listed in %s",
        len({(p.origin, p.image) for p in problems}),
        total,
        ", ".join(f"{reason}: {count}" for reason, count in Counter(p.reason for p in problems).items()),
        report_path,
    )
    return report_path


def write_risc(
    records: list[ImportRecord],
    images_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    size: int | None = 224,
    skip_invalid: bool = False,
    append: bool = False,
    num_threads: int | None = None,
) -> ImportSummary:
    """Write `records` as a RISC folder at `output_dir`.

    Problems (missing/ambiguous/unreadable image, fewer than 5 or empty captions, duplicate output name, unknown
    split/source) raise ONE `RISCImportError` listing all of them before anything is written, or, with
    `skip_invalid=True`, are skipped, logged per reason and written to `output_dir/import_report.csv`.
    `append=True` adds to an existing RISC folder (names must stay unique).
    """
    output_dir = Path(output_dir)
    existing = _read_existing(output_dir) if append else []
    taken = {row[2].strip().lower(): f"{CAPTIONS_FILE} of {output_dir}" for row in existing if len(row) > 2}
    index = ImageIndex(images_dir)
    problems, bad, sources = _check_records(records, index, taken)
    if problems and not skip_invalid:
        raise RISCImportError(problems, len(records))

    image_out = output_dir / "resized"
    image_out.mkdir(parents=True, exist_ok=True)
    todo = [(i, r) for i, r in enumerate(records) if i not in bad]
    failures = _convert_images(todo, sources, image_out, size, num_threads)
    if failures:
        problems += list(failures.values())
        if not skip_invalid:
            raise RISCImportError(problems, len(records))
        todo = [(i, r) for i, r in todo if i not in failures]

    _write_captions_csv(output_dir, existing, todo)
    counts = _count_written(todo)
    report_path = _write_report(output_dir, problems, len(records)) if problems else None
    return ImportSummary(output_dir, len(todo), counts, problems, report_path)
