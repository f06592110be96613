"""dataset_builder.validation: one bad row per problem kind; strict raises once, skip_invalid keeps the rest."""

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_builder import SAMPLE_DIR, RISCValidationError, load_risc, validate_risc
from dataset_builder.__main__ import main as cli_main
from dataset_builder.validation import check_image, read_problems_csv

HEADER = ["source", "split", "image", *(f"caption_{i}" for i in range(1, 6))]
CAPTIONS = [f"a caption number {i} about trees and roads ." for i in range(1, 6)]
GOOD = ["RSICD_good1.jpg", "RSICD_good2.jpg", "UCM_good3.jpg", "NWPU_good4.jpg"]


def make_bad_folder(root: Path) -> tuple[Path, dict[int, str]]:
    """A RISC folder with 4 good rows and one row per bad case. Returns it and {csv line: expected reason}."""
    data = root / "bad"
    images = data / "resized"
    images.mkdir(parents=True)
    real = sorted((SAMPLE_DIR / "resized").glob("*.jpg"))
    for index, name in enumerate(
        GOOD + ["RSICD_x1.jpg", "RSICD_x2.jpg", "RSICD_x3.jpg", "RSICD_x4.jpg", "UCM_x5.jpg"]
    ):
        shutil.copyfile(real[index], images / name)
    rgb = Image.open(real[10]).convert("RGB")
    rgb.convert("L").save(images / "UCM_gray.jpg")
    rgb.convert("LA").save(images / "UCM_la.png")
    rgb.convert("P").save(images / "UCM_palette.png")
    rgb.convert("RGBA").save(images / "UCM_rgba.png")
    rgb.convert("CMYK").save(images / "UCM_cmyk.jpg")
    Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).save(images / "UCM_16bit.png")
    (images / "RSICD_garbage.jpg").write_bytes(b"this is not an image at all")
    jpeg = real[11].read_bytes()
    (images / "RSICD_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])

    rows = [
        (["RSICD", "train", GOOD[0], *CAPTIONS], None),
        (["RSICD", "val", "RSICD_missing.jpg", *CAPTIONS], "missing_file"),
        (["RSICD", "train", "RSICD_garbage.jpg", *CAPTIONS], "unreadable_image"),
        (["RSICD", "train", "RSICD_truncated.jpg", *CAPTIONS], "truncated_image"),
        (["RSICD", "test", GOOD[1], *CAPTIONS], None),
        (["UCM", "train", "UCM_gray.jpg", *CAPTIONS], "non_rgb_mode"),
        (["UCM", "train", "UCM_la.png", *CAPTIONS], "non_rgb_mode"),
        (["UCM", "train", "UCM_palette.png", *CAPTIONS], "non_rgb_mode"),
        (["UCM", "train", "UCM_rgba.png", *CAPTIONS], "non_rgb_mode"),
        (["UCM", "train", "UCM_cmyk.jpg", *CAPTIONS], "non_rgb_mode"),
        (["UCM", "train", "UCM_16bit.png", *CAPTIONS], "non_rgb_mode"),
        (
            ["RSICD", "train", "RSICD_x1.jpg", CAPTIONS[0], CAPTIONS[1], "  ", CAPTIONS[3], CAPTIONS[4]],
            "empty_caption",
        ),
        (["RSICD", "train", "RSICD_x2.jpg", CAPTIONS[0], "NaN", *CAPTIONS[2:]], "empty_caption"),
        (["RSICD", "train", "RSICD_x3.jpg", *CAPTIONS[:3]], "too_few_captions"),
        (["UCM", "test", GOOD[2], *CAPTIONS], None),
        (["RSICD", "train", GOOD[0], *CAPTIONS], "duplicate_image"),
        (["RSICD", "training", "RSICD_x4.jpg", *CAPTIONS], "unknown_split"),
        (["AID", "train", "UCM_x5.jpg", *CAPTIONS], "unknown_source"),
        (["NWPU", "train", GOOD[3], *CAPTIONS], None),
    ]
    with open(data / "captions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(row for row, _ in rows)
    expected = {line: reason for line, (_, reason) in enumerate(rows, start=2) if reason}
    return data, expected


@pytest.fixture
def bad_folder(tmp_path):
    return make_bad_folder(tmp_path)


def test_check_image_kinds(bad_folder):
    data, _ = bad_folder
    images = data / "resized"
    assert check_image(images / GOOD[0]) is None
    assert check_image(images / "RSICD_truncated.jpg")[0] == "truncated_image"
    assert check_image(images / "RSICD_garbage.jpg")[0] == "unreadable_image"
    assert "16-bit" in check_image(images / "UCM_16bit.png")[1]
    for name, mode in (
        ("UCM_gray.jpg", "L"),
        ("UCM_la.png", "LA"),
        ("UCM_palette.png", "P"),
        ("UCM_rgba.png", "RGBA"),
        ("UCM_cmyk.jpg", "CMYK"),
    ):
        assert check_image(images / name) == ("non_rgb_mode", f"{name} has mode {mode}, not RGB")


def test_report_lists_every_bad_row(bad_folder):
    data, expected = bad_folder
    report = validate_risc(data)
    assert {problem.line: problem.reason for problem in report.problems} == expected
    assert len(report.good_rows) == 4
    assert report.counts_by_reason() == {
        "missing_file": 1,
        "unreadable_image": 1,
        "truncated_image": 1,
        "non_rgb_mode": 6,
        "empty_caption": 2,
        "too_few_captions": 1,
        "duplicate_image": 1,
        "unknown_split": 1,
        "unknown_source": 1,
    }


def test_strict_load_raises_one_error_naming_every_row(bad_folder, tmp_path):
    data, expected = bad_folder
    with pytest.raises(RISCValidationError) as caught:
        load_risc(data, cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith(f"{len(expected)} of {len(expected) + 4} rows")
    for line, reason in expected.items():
        matching = [text for text in message.splitlines() if text.strip().startswith(f"line {line} ")]
        assert len(matching) == 1 and reason in matching[0] and "Fix:" in matching[0], (line, reason, message)
    assert "skip_invalid=True" in message
    assert "line 17 (RSICD_good1.jpg): duplicate_image: RSICD_good1.jpg is already used on line 2" in message


def test_skip_invalid_keeps_exactly_the_good_rows(bad_folder, tmp_path, caplog):
    data, expected = bad_folder
    report_path = tmp_path / "report.csv"
    with caplog.at_level(logging.WARNING, logger="dataset_builder"):
        ds = load_risc(data, skip_invalid=True, cache_dir=tmp_path / "cache", report_path=report_path)
    kept = sorted(name for split in ds for name in ds[split]["filename"])
    assert kept == sorted(GOOD)
    assert {split: len(ds[split]) for split in ds} == {"train": 2, "test": 2}
    problems = read_problems_csv(report_path)
    assert {int(p["line"]): p["reason"] for p in problems} == expected
    assert all(p["fix"] for p in problems)
    assert "Skipped 15 invalid rows" in caplog.text and "non_rgb_mode: 6" in caplog.text

    caplog.clear()  # a cached load reports the skipped rows again
    with caplog.at_level(logging.WARNING, logger="dataset_builder"):
        again = load_risc(data, skip_invalid=True, cache_dir=tmp_path / "cache")
    assert len(again["train"]) == 2
    assert "Skipped 15 invalid rows" in caplog.text and "missing_file: 1" in caplog.text


def test_config_reports_its_rows_and_unknown_sources(bad_folder, tmp_path):
    data, expected = bad_folder
    nwpu = validate_risc(data, sources=("NWPU",))
    assert {p.reason for p in nwpu.problems} == {"unknown_source"}  # AID belongs to no config: every config says so
    ds = load_risc(data, config="nwpu", skip_invalid=True, cache_dir=tmp_path)
    assert ds["train"]["filename"] == ["NWPU_good4.jpg"]


def test_validation_cache_avoids_decoding_twice(bad_folder, tmp_path, monkeypatch):
    data, expected = bad_folder
    first = validate_risc(data, cache_dir=tmp_path)
    monkeypatch.setattr("dataset_builder.validation.check_image", lambda path: pytest.fail("decoded again"))
    second = validate_risc(data, cache_dir=tmp_path)
    assert second.problems == first.problems


def test_cli_validate_lists_problems(bad_folder, tmp_path, capsys):
    data, expected = bad_folder
    assert cli_main(["validate", str(data), "--report", str(tmp_path / "r.csv")]) == 1
    assert "unknown_source" in capsys.readouterr().err
    assert len(read_problems_csv(tmp_path / "r.csv")) == len(expected)
