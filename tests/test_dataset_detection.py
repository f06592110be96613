"""dataset_builder/detection.py: COCO detection JSON and PaliGemma JSONL into one `datasets` layout; every bad
annotation named with its file, entry, image and fix."""

import json
from pathlib import Path

import pytest
from PIL import Image

from dataset_builder.detection import DetectionValidationError, detection_classes, load_detection
from tasks.loc_codec import encode_objects


def _coco_folder(root: Path) -> Path:
    """A two-image COCO folder (train only) with real files: 200x100 and 64x64."""
    images = root / "images" / "train"
    images.mkdir(parents=True)
    Image.new("RGB", (200, 100), "gray").save(images / "a.jpg")
    Image.new("RGB", (64, 64), "gray").save(images / "b.jpg")
    coco = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "b.jpg", "width": 64, "height": 64},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 20, 30, 40], "area": 1200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [150, 60, 50.5, 40], "area": 2020, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 64, 64], "area": 4096, "iscrowd": 0},
        ],
        "categories": [{"id": 2, "name": "ship"}, {"id": 1, "name": "airplane"}],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train.json").write_text(json.dumps(coco))
    return root


def _write_coco(root: Path, change) -> Path:
    path = root / "annotations" / "instances_train.json"
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))
    return path


def test_coco_folder_loads_in_the_detection_layout(tmp_path):
    splits = load_detection(_coco_folder(tmp_path))
    train = splits["train"]
    assert list(splits) == ["train"] and len(train) == 2
    assert detection_classes(train) == ["airplane", "ship"]  # category id order
    first = train[0]
    assert (first["filename"], first["source"], first["width"], first["height"]) == ("a.jpg", tmp_path.name, 200, 100)
    assert first["image"].size == (200, 100)
    # the 0.5 px overhang is within the tolerance and clipped to the image
    assert first["objects"] == {"bbox": [[10, 20, 30, 40], [150, 60, 50, 40]], "category": [1, 0]}


@pytest.mark.parametrize(
    "change, reason, where, image",
    [
        (lambda c: c["annotations"][0].update(bbox=[190, 20, 30, 40]), "box_outside_image", "annotation 1", "a.jpg"),
        (lambda c: c["annotations"][1].update(category_id=7), "unknown_category", "annotation 2", "a.jpg"),
        (lambda c: c["annotations"][2].update(bbox=[3, 3, 0, 5]), "zero_area_box", "annotation 3", "b.jpg"),
        (lambda c: c["images"][1].update(file_name="gone.jpg"), "missing_file", "image 2", "gone.jpg"),
        (lambda c: c["images"][0].update(width=400), "size_mismatch", "image 1", "a.jpg"),
        (lambda c: c["annotations"][2].update(image_id=9), "unknown_image", "annotation 3", "<no image>"),
    ],
)
def test_broken_coco_names_file_entry_image_and_fix(tmp_path, change, reason, where, image):
    path = _write_coco(_coco_folder(tmp_path), change)
    with pytest.raises(DetectionValidationError) as raised:
        load_detection(tmp_path)
    message = str(raised.value)
    assert f"{path}, {where} ({image}): {reason}:" in message
    assert "Fix:" in message and "skip_invalid" in message
    assert [problem.reason for problem in raised.value.problems] == [reason]


def test_skip_invalid_drops_the_image_and_keeps_the_rest(tmp_path):
    _write_coco(_coco_folder(tmp_path), lambda c: c["annotations"][2].update(category_id=7))
    train = load_detection(tmp_path, skip_invalid=True)["train"]
    assert train["filename"] == ["a.jpg"]


def test_paligemma_jsonl_loads_into_the_same_layout(tmp_path):
    Image.new("RGB", (200, 100)).save(tmp_path / "a.jpg")
    Image.new("RGB", (50, 50)).save(tmp_path / "b.jpg")
    lines = [
        {
            "image": "a.jpg",
            "prefix": "detect ship ; airplane",
            "suffix": encode_objects([(10, 20, 40, 60)], ["ship"], 200, 100),
        },
        {
            "image": "b.jpg",
            "prefix": "detect airplane",
            "suffix": encode_objects([(5, 5, 45, 25)], ["airplane"], 50, 50),
        },
    ]
    (tmp_path / "_annotations.valid.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    val = load_detection(tmp_path, source="roboflow")["val"]  # roboflow's "valid" is the val split
    assert detection_classes(val) == ["airplane", "ship"]
    assert val["source"] == ["roboflow", "roboflow"] and val["width"] == [200, 50]
    x, y, w, h = val[0]["objects"]["bbox"][0]
    assert val[0]["objects"]["category"] == [1]
    assert (x, y, x + w, y + h) == pytest.approx((10, 20, 40, 60), abs=0.11)  # within half a bin


def test_paligemma_jsonl_errors_name_the_line(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "a.jpg")
    lines = [
        '{"image": "a.jpg", "prefix": "detect ship", "suffix": "<loc0001><loc0002> ship"}',
        '{"image": "a.jpg", "prefix": "caption en", "suffix": "a ship ."}',
        "not json",
        '{"image": "z.jpg", "prefix": "detect ship", "suffix": ""}',
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(lines))
    with pytest.raises(DetectionValidationError) as raised:
        load_detection(tmp_path)
    reasons = [(problem.where, problem.reason) for problem in raised.value.problems]
    assert reasons == [
        ("line 1", "malformed_suffix"),
        ("line 2", "unsupported_prefix"),
        ("line 3", "malformed_line"),
        ("line 4", "missing_file"),
    ]


def test_a_folder_without_annotations_says_what_it_expects(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_train.json"):
        load_detection(tmp_path)


def test_nwpu_vhr10_loads_with_every_box(shared_data):
    nwpu = shared_data / "nwpu-vhr10"
    splits = load_detection(nwpu)
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 363, "val": 45, "test": 46}
    classes = detection_classes(splits["train"])
    assert classes[:3] == ["airplane", "ship", "storage tank"] and len(classes) == 10
    boxes = {split: sum(len(objects["bbox"]) for objects in rows["objects"]) for split, rows in splits.items()}
    assert boxes == {"train": 2338, "val": 231, "test": 221}
    coco = json.loads((nwpu / "annotations" / "instances_train.json").read_text())
    first = next(a for a in coco["annotations"] if a["image_id"] == coco["images"][0]["id"])
    row = splits["train"][0]
    assert row["filename"] == coco["images"][0]["file_name"]
    assert row["objects"]["bbox"][0] == first["bbox"] and row["objects"]["category"][0] == first["category_id"] - 1
