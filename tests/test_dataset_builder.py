"""dataset_builder: load_risc / RISC builder on the bundled sample and on the real shared data."""

import csv
import shutil
from pathlib import Path

import datasets
import pytest

from dataset_builder import RISC, SAMPLE_DIR, load_risc, read_captions_csv, validate_risc
from dataset_builder.__main__ import main as cli_main
from dataset_builder.layout import find_image_dir, normalize_image_name


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def expected_splits(data_dir: Path, source: str | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in read_csv(data_dir / "captions.csv"):
        if source is None or row["source"] == source:
            counts[row["split"]] = counts.get(row["split"], 0) + 1
    return counts


def check_dataset(ds: datasets.DatasetDict, data_dir: Path, source: str | None = None, rows_to_decode: int = 3):
    assert {split: len(ds[split]) for split in ds} == expected_splits(data_dir, source)
    expected = {row["image"]: row for row in read_csv(data_dir / "captions.csv")}
    for split in ds:
        table = ds[split]
        assert list(table.features) == ["image", "captions", "source", "filename"]
        assert table.features["captions"].length == 5
        for filename, captions, row_source in zip(table["filename"], table["captions"], table["source"]):
            row = expected[filename]
            assert captions == [row[f"caption_{i}"].strip() for i in range(1, 6)]
            assert row_source == row["source"]
            assert row["split"] == split
        if source is not None:
            assert set(table["source"]) == {source}
        for index in range(min(rows_to_decode, len(table))):
            image = table[index]["image"]
            assert image.size == (224, 224) and image.mode == "RGB"


def test_sample_is_small_real_and_complete():
    rows = read_csv(SAMPLE_DIR / "captions.csv")
    assert 40 <= len(rows) <= 60
    assert {row["source"] for row in rows} == {"NWPU", "RSICD", "UCM"}
    assert {row["source"] for row in rows if row["split"] == "test"} == {"NWPU", "RSICD", "UCM"}
    assert all(any(row["split"] == split for row in rows) for split in ("train", "val", "test"))
    size = sum(path.stat().st_size for path in SAMPLE_DIR.rglob("*") if path.is_file())
    assert size <= 3 * 2**20
    assert (SAMPLE_DIR / "README.md").read_text().count("License") >= 1
    assert validate_risc(SAMPLE_DIR).ok


def test_load_sample_all_and_configs(tmp_path):
    ds = load_risc(SAMPLE_DIR, cache_dir=tmp_path)
    assert list(ds) == ["train", "val", "test"]
    check_dataset(ds, SAMPLE_DIR, rows_to_decode=len(ds["test"]))
    for config, source in (("nwpu", "NWPU"), ("rsicd", "RSICD"), ("ucm", "UCM")):
        check_dataset(load_risc(SAMPLE_DIR, config=config, cache_dir=tmp_path), SAMPLE_DIR, source, rows_to_decode=1)


def test_second_load_uses_the_cache(tmp_path, monkeypatch):
    load_risc(SAMPLE_DIR, config="ucm", cache_dir=tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("a cached load must not generate examples or validate again")

    monkeypatch.setattr(RISC, "_generate_examples", fail)
    monkeypatch.setattr("dataset_builder.builder.validate_risc", fail)
    ds = load_risc(SAMPLE_DIR, config="ucm", cache_dir=tmp_path)
    assert len(ds["train"]) == 5


def test_cache_is_invalidated_when_captions_change(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DIR, data)
    first = load_risc(data, config="ucm", cache_dir=tmp_path / "cache")
    assert first["train"][0]["captions"][0] != "edited caption"
    text = (data / "captions.csv").read_text(encoding="utf-8")
    old = read_csv(data / "captions.csv")[[r["source"] for r in read_csv(data / "captions.csv")].index("UCM")]
    (data / "captions.csv").write_text(text.replace(old["caption_1"], "edited caption", 1), encoding="utf-8")
    second = load_risc(data, config="ucm", cache_dir=tmp_path / "cache")
    assert second["train"][0]["captions"][0] == "edited caption"


def test_windows_names_whitespace_and_imgs_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(SAMPLE_DIR / "resized", data / "imgs")
    rows = read_csv(SAMPLE_DIR / "captions.csv")
    with open(data / "captions.csv", "w", newline="", encoding="utf-8-sig") as handle:  # BOM, as Excel writes
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for index, row in enumerate(rows):
            row = dict(row)
            row["image"] = f"  dataset\\resized\\{row['image']} " if index % 2 else f" {row['image']}\t"
            row["source"] = f" {row['source'].lower()} "
            row["caption_1"] = f"  {row['caption_1']}  "
            writer.writerow(row)
    assert find_image_dir(data).name == "imgs"
    ds = load_risc(data, cache_dir=tmp_path / "cache")
    check_dataset(ds, SAMPLE_DIR, rows_to_decode=1)


def test_normalize_image_name():
    assert normalize_image_name("  dataset/resized\\NWPU_27985.jpg ") == "NWPU_27985.jpg"
    assert normalize_image_name("C:\\data\\RISC\\resized\\UCM_1.jpg") == "UCM_1.jpg"
    assert normalize_image_name(None) == ""


def test_builder_used_directly(tmp_path):
    builder = RISC(config_name="rsicd", data_dir=str(SAMPLE_DIR), cache_dir=str(tmp_path))
    builder.download_and_prepare()
    ds = builder.as_dataset()
    assert {split: len(ds[split]) for split in ds} == expected_splits(SAMPLE_DIR, "RSICD")
    assert builder.info.citation.count("@") == 3


def test_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="config='aid'"):
        load_risc(SAMPLE_DIR, config="aid", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="captions.csv"):
        load_risc(tmp_path, cache_dir=tmp_path)
    data = tmp_path / "no_sydney"
    shutil.copytree(SAMPLE_DIR, data)
    with pytest.raises(ValueError, match="selects no valid row"):
        load_risc(data, config="sydney", cache_dir=tmp_path / "cache")


def test_cli_validate(tmp_path, capsys):
    assert cli_main(["validate", str(SAMPLE_DIR)]) == 0
    assert "50 rows" in capsys.readouterr().out


def test_risc_mini(shared_data, tmp_path):
    data = shared_data / "risc-mini"
    ds = load_risc(data, cache_dir=tmp_path)
    assert {split: len(ds[split]) for split in ds} == {"train": 10, "val": 2, "test": 3}
    check_dataset(ds, data, rows_to_decode=3)
    assert sorted(set(ds["train"]["source"]) | set(ds["test"]["source"])) == ["NWPU", "RSICD", "UCM"]
    ucm = load_risc(data, config="ucm", cache_dir=tmp_path)
    assert sum(len(ucm[split]) for split in ucm) == 6
    nwpu = load_risc(data, config="nwpu", cache_dir=tmp_path)
    assert list(nwpu) == ["train"] and nwpu["train"]["filename"] == ["NWPU_stadium_644.jpg"]
    assert len(read_captions_csv(data)) == 15


def test_rsicd_1k(shared_data, tmp_path):
    data = shared_data / "rsicd-1k"
    ds = load_risc(data, config="rsicd", cache_dir=tmp_path)
    assert {split: len(ds[split]) for split in ds} == {"train": 700, "val": 150, "test": 150}
    check_dataset(ds, data, source="RSICD", rows_to_decode=20)
    with pytest.raises(ValueError, match="selects no valid row"):
        load_risc(data, config="ucm", cache_dir=tmp_path)
