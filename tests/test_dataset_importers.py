"""dataset_builder.importers: real annotation files -> RISC folder -> load_risc gives the same captions back."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_builder import SAMPLE_DIR, load_risc, validate_risc
from dataset_builder.__main__ import main as cli_main
from dataset_builder.importers import (
    RISCImportError,
    convert_image,
    import_annotations,
    read_annotations,
    to_rgb,
)

LIMIT = 12  # images per annotation file: enough for every split/mode case, fast on 2 cores
MODES = ("RGB", "L", "RGBA", "P", "CMYK", "I;16", "LA")


def synthetic_image(path: Path, index: int) -> None:
    """A small image in one of MODES and one of a few sizes, saved in the format its name asks for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(index)
    side = (256, 180, 300, 224)[index % 4]
    rgb = Image.fromarray(rng.integers(0, 255, (side, side + index % 3, 3), dtype=np.uint8))
    mode = MODES[index % len(MODES)]
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 4096, (side, side), dtype=np.uint16))  # 12-bit sensor data
    else:
        image = rgb.convert(mode)
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg") and mode not in ("RGB", "L", "CMYK"):
        path = path.with_suffix(".png")  # JPEG cannot hold this mode; the importer finds the file by stem
    image.save(path)


def make_images(records, images_dir: Path, nested: bool = False) -> None:
    for index, record in enumerate(records):
        ref = record.image_ref.replace("\\", "/")
        relative = ref if nested else ref.rsplit("/", 1)[-1]
        synthetic_image(images_dir / relative, index)


def assert_round_trip(records, output_dir: Path, cache_dir: Path):
    ds = load_risc(output_dir, cache_dir=cache_dir)
    loaded = {
        name: (split, source, captions)
        for split in ds
        for name, source, captions in zip(ds[split]["filename"], ds[split]["source"], ds[split]["captions"])
    }
    assert len(loaded) == len(records)
    for record in records:
        split, source, captions = loaded[record.output_name]
        assert captions == [caption.strip() for caption in record.captions[:5]]
        assert (split, source) == (record.split, record.source)
    for split in ds:
        image = ds[split][0]["image"]
        assert image.size == (224, 224) and image.mode == "RGB"
    return ds


REAL_FILES = [
    # (format, annotation path under annotations/, kwargs, images nested like the annotation path?)
    ("karpathy", "Jbarata98+remote-sensing-image-captioning/dataset_sydney_modified.json", {}, False),
    ("coco", "xiaoyuan1996+RemoteSensingCaptions/data_train_UCM.json", {}, False),
    ("coco", "jwdevx+RSICD_multimodal_image_captioning/captions_test2017.json", {"source": "RSICD"}, False),
    ("nwpu_lines", "lowlorenz+remote-sensing-image-captioning", {}, True),
    ("jsonl", "arampacha+CLIP-rsicd/textaug_valid_rsicd.jsonl", {}, False),
]


@pytest.mark.parametrize(
    "fmt,relative,kwargs,nested", REAL_FILES, ids=[f"{f}-{r.split('/')[-1]}" for f, r, *_ in REAL_FILES]
)
def test_real_annotations_round_trip(shared_data, tmp_path, fmt, relative, kwargs, nested):
    path = shared_data / "annotations" / relative
    records = read_annotations(fmt, [path], limit=LIMIT, **kwargs)
    assert len(records) == LIMIT
    make_images(records, tmp_path / "images", nested=nested)
    summary = import_annotations(fmt, [path], tmp_path / "images", tmp_path / "risc", limit=LIMIT, **kwargs)
    assert summary.num_written == LIMIT and not summary.skipped
    assert validate_risc(tmp_path / "risc").ok
    assert_round_trip(records, tmp_path / "risc", tmp_path / "cache")


def test_real_annotation_values(shared_data):
    annotations = shared_data / "annotations"
    sydney = read_annotations(
        "karpathy", annotations / "Jbarata98+remote-sensing-image-captioning/dataset_sydney_modified.json"
    )
    assert len(sydney) == 613 and {r.source for r in sydney} == {"SYDNEY"}
    assert {r.split for r in sydney} == {"train", "val", "test"}
    assert sydney[0].captions[0] == "A residential area with houses arranged neatly ."
    nwpu = read_annotations("nwpu_lines", annotations / "lowlorenz+remote-sensing-image-captioning")
    assert len(nwpu) == 3150 and nwpu[0].output_name == "NWPU_airport_631.jpg"  # val has no image list: warned
    assert nwpu[2673].output_name == "NWPU_stadium_644.jpg"
    ucm = read_annotations("coco", annotations / "xiaoyuan1996+RemoteSensingCaptions/data_test_UCM.json")
    assert len(ucm) == 210 and {r.split for r in ucm} == {"test"} and {len(r.captions) for r in ucm} == {5}


def test_one_caption_per_row_csv_is_reported(shared_data, tmp_path):
    """BilgeKaganOzkan's processed RISC CSV has ONE caption per image: strict fails, skip reports every image."""
    path = shared_data / "annotations" / "BilgeKaganOzkan+DI725_FINAL_PROJECT" / "val.csv"
    records = read_annotations("csv", path, limit=5)
    assert [r.output_name for r in records][:2] == ["NWPU_7597.jpg", "NWPU_4083.jpg"]
    make_images(records, tmp_path / "images")
    with pytest.raises(RISCImportError) as caught:
        import_annotations("csv", path, tmp_path / "images", tmp_path / "risc", limit=5)
    assert str(caught.value).count("too_few_captions: 1 caption(s)") == 5
    assert not (tmp_path / "risc" / "captions.csv").exists()  # nothing written before the check


def test_missing_images_strict_and_skip(tmp_path):
    records_file = tmp_path / "dataset_ucm.json"
    images = [
        {
            "filename": f"{i}.tif",
            "split": ("train", "restval", "val", "test")[i % 4],
            "sentences": [{"raw": f" caption {j} of image {i} . "} for j in range(5)],
        }
        for i in range(6)
    ]
    records_file.write_text(json.dumps({"dataset": "ucm", "images": images}))
    for i in range(4):  # images 4 and 5 are missing
        synthetic_image(tmp_path / "images" / f"{i}.tif", i)
    with pytest.raises(RISCImportError, match="2 of 6 entries") as caught:
        import_annotations("karpathy", records_file, tmp_path / "images", tmp_path / "strict")
    assert "images[4]" in str(caught.value) and "images[5]" in str(caught.value)
    summary = import_annotations("karpathy", records_file, tmp_path / "images", tmp_path / "risc", skip_invalid=True)
    assert summary.num_written == 4 and summary.counts == {"train": {"UCM": 2}, "val": {"UCM": 1}, "test": {"UCM": 1}}
    with open(summary.report_path, newline="") as handle:
        assert [row["reason"] for row in csv.DictReader(handle)] == ["missing_image", "missing_image"]
    ds = load_risc(tmp_path / "risc", cache_dir=tmp_path / "cache")
    assert ds["train"]["captions"][0][0] == "caption 0 of image 0 ."


def test_flickr8k_both_variants(tmp_path):
    token = tmp_path / "Flickr8k.token.txt"
    token.write_text("".join(f"img{i}.jpg#{j}\tcaption {j} of {i}\n" for i in range(3) for j in range(5)))
    kaggle = tmp_path / "captions.txt"
    kaggle.write_text(
        "image,caption\n" + "".join(f'img{i}.jpg,"caption {j}, of {i}"\n' for i in range(3) for j in range(5))
    )
    for i in range(3):
        synthetic_image(tmp_path / "images" / f"img{i}.jpg", i)
    records = read_annotations("flickr8k", token, source="RSICD")
    assert [r.captions[4] for r in records] == ["caption 4 of 0", "caption 4 of 1", "caption 4 of 2"]
    kaggle_records = read_annotations("flickr8k", kaggle, source="rsicd", split="test")
    assert kaggle_records[1].captions[0] == "caption 0, of 1" and kaggle_records[1].split == "test"
    with pytest.raises(ValueError, match="--source"):
        read_annotations("flickr8k", kaggle)
    summary = import_annotations("flickr8k", kaggle, tmp_path / "images", tmp_path / "risc", source="RSICD")
    assert summary.counts == {"train": {"RSICD": 3}}
    assert_round_trip(read_annotations("flickr8k", kaggle, source="RSICD"), tmp_path / "risc", tmp_path / "cache")


def test_nwpu_json_and_append(tmp_path):
    nwpu = {
        "airport": [
            {
                "filename": f"airport_{i}.jpg",
                "split": "train",
                "raw": "a",
                "raw_1": "b",
                "raw_2": "c",
                "raw_3": "d",
                "raw_4": "e",
                "imgid": i,
            }
            for i in range(1, 3)
        ]
    }
    (tmp_path / "dataset_nwpu.json").write_text(json.dumps(nwpu))
    for i in range(1, 3):
        synthetic_image(tmp_path / "images" / "airport" / f"airport_{i}.jpg", i)
    records = read_annotations("karpathy", tmp_path / "dataset_nwpu.json")
    assert [r.output_name for r in records] == ["NWPU_airport_1.jpg", "NWPU_airport_2.jpg"]
    assert records[0].captions == ["a", "b", "c", "d", "e"] and records[0].image_ref == "airport/airport_1.jpg"
    out = tmp_path / "risc"
    import_annotations("csv", SAMPLE_DIR / "captions.csv", SAMPLE_DIR / "resized", out)  # re-import the sample
    assert (out / "resized" / "RSICD_00001.jpg").read_bytes() == (
        SAMPLE_DIR / "resized" / "RSICD_00001.jpg"
    ).read_bytes()
    import_annotations("karpathy", tmp_path / "dataset_nwpu.json", tmp_path / "images", out, append=True)
    ds = load_risc(out, config="nwpu", cache_dir=tmp_path / "cache")
    assert sorted(ds["train"]["filename"]) == ["NWPU_airport_1.jpg", "NWPU_airport_2.jpg"]
    assert sum(len(split) for split in load_risc(out, cache_dir=tmp_path / "cache").values()) == 52
    with pytest.raises(RISCImportError, match="duplicate_image"):
        import_annotations("karpathy", tmp_path / "dataset_nwpu.json", tmp_path / "images", out, append=True)


def test_to_rgb_and_convert(tmp_path):
    sixteen = Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    assert np.asarray(to_rgb(sixteen))[:, :, 0].tolist() == [[0, 64], [128, 255]]  # stretched from min..max
    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white background, as inference
    assert to_rgb(Image.new("L", (2, 2), 7)).getpixel((1, 1)) == (7, 7, 7)
    for index, mode in enumerate(MODES):
        source = tmp_path / f"in{index}.tif"
        synthetic_image(source, MODES.index(mode))
        convert_image(source, tmp_path / f"out{index}.jpg", size=224)
        with Image.open(tmp_path / f"out{index}.jpg") as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (224, 224))
    convert_image(tmp_path / "in0.tif", tmp_path / "keep.jpg", size=None)
    assert Image.open(tmp_path / "keep.jpg").size == Image.open(tmp_path / "in0.tif").size


def test_cli_import(tmp_path, capsys):
    code = cli_main(
        [
            "import",
            "csv",
            str(SAMPLE_DIR / "captions.csv"),
            "--images",
            str(SAMPLE_DIR / "resized"),
            "--output_dir",
            str(tmp_path / "risc"),
            "--limit",
            "7",
            "--size",
            "64",
        ]
    )
    assert code == 0 and "wrote 7 images" in capsys.readouterr().out
    assert Image.open(next((tmp_path / "risc" / "resized").glob("*.jpg"))).size == (64, 64)
    assert (
        cli_main(
            [
                "import",
                "coco",
                str(tmp_path / "nope.json"),
                "--images",
                str(tmp_path),
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )
        == 1
    )
