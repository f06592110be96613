"""dataset_builder/user_data.py and YOLO folders: captions and classes as users hold them (one caption per image in a
CSV, 1 to 5 captions in an imagefolder metadata.csv, PaliGemma and captions JSONL, COCO captions JSON, a folder per
class, YOLO labels), made from real RSICD and NWPU VHR-10 images, read into RISC's columns and through finetune.py to
a scored run; the card of such a run names that data."""

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

import finetune
from dataset_builder.detection import load_detection
from dataset_builder.user_data import UserDataError, hashed_split, load_user_data
from tasks.classify import scene_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCENES = ("airport", "beach", "bridge", "forest")


def rsicd_rows(shared_data: Path, per_scene: int = 10) -> list[dict]:
    """`per_scene` training rows of RSICD for each of SCENES (real images, five human captions each)."""
    with open(shared_data / "rsicd" / "captions.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "train"]
    return [row for scene in SCENES for row in [r for r in rows if scene_of(r["image"]) == scene][:per_scene]]


def link_images(shared_data: Path, folder: Path) -> Path:
    """`folder/images` -> RSICD's image folder (the data stays where it is)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(shared_data / "rsicd" / "resized", folder / "images")
    return folder / "images"


def train(tmp_path: Path, base: Path, **settings) -> Path:
    config = {
        "model_name_or_path": str(base),
        "train_strategy": "full",
        "quantization": "none",
        "output_dir": str(tmp_path / "run"),
        "use_cpu": True,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "num_beams": 1,
        "max_new_tokens": 5,
        "eval_strategy": "no",
        "save_strategy": "no",
        "grid_images": 2,
        "evaluate_before_training": True,
        "report_to": "none",
        **settings,
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert finetune.main([str(tmp_path / "run.yaml")]) == 0
    return tmp_path / "run"


def test_the_hashed_split_is_stated_and_stable():
    names = [f"RSICD_airport_{i}.jpg" for i in range(2000)]
    splits = [hashed_split(name, 0.1, 0.2) for name in names]
    assert splits == [hashed_split(name, 0.1, 0.2) for name in names]  # the same on every call and machine
    assert abs(splits.count("test") / 2000 - 0.2) < 0.03 and abs(splits.count("val") / 2000 - 0.1) < 0.03
    assert hashed_split("RSICD_airport_1.jpg", 0.1, 0.2) == "train"  # sha256 of the name, pinned


def test_one_caption_per_image_in_a_csv_trains_and_is_scored_against_that_one(shared_data, tmp_path, tiny_checkpoint):
    rows = rsicd_rows(shared_data)
    link_images(shared_data, tmp_path / "mine")
    csv_path = tmp_path / "mine" / "my_captions.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        writer.writerows([f"images/{row['image']}", row["caption_1"]] for row in rows)
    splits = load_user_data(csv_path, val_fraction=0.2, test_fraction=0.2)
    assert sum(map(len, splits.values())) == 40 and set(splits["train"]["source"]) == {"my_captions"}
    for split, data in splits.items():
        assert all(hashed_split(name, 0.2, 0.2) == split for name in data["filename"])
    run = train(tmp_path, tiny_checkpoint("direct"), dataset_dir=str(csv_path), val_fraction=0.2, test_fraction=0.2)
    results = json.loads((run / "eval_results.json").read_text())
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert results["test"]["task"] == "caption" and results["test"]["num_samples"] == len(splits["test"]) > 0
    first = {row["image"].split("/")[-1]: row["caption_1"] for row in rows}
    assert all(record["references"] == [first[record["image"].split("/")[-1]]] for record in records)
    assert set(results["test"]["groups"]) == {"my_captions"} and results["test"]["overall"]["cider"] >= 0

    from huggingface_hub import ModelCard

    from publishing import publish

    exported = publish(run, "user/my-captioner", dry_run=tmp_path / "export")
    card = (tmp_path / "export" / "README.md").read_text()
    assert "README.md" in exported and ModelCard(card).data.datasets == ["my_captions"]
    assert "RISC" not in card and "five captions each" not in card
    before, after = results["baseline_test"]["loss"], results["test"]["loss"]
    assert f"| test loss, before -> after this training | {before:.4f} -> {after:.4f} |" in card
    assert "| schedule as run | 2 steps," in card and "| max steps |" not in card


def test_an_image_folder_with_one_to_five_captions_per_image(shared_data, tmp_path):
    rows = rsicd_rows(shared_data, per_scene=5)
    link_images(shared_data, tmp_path / "folder")
    with (tmp_path / "folder" / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text"])
        for index, row in enumerate(rows):
            writer.writerows([f"images/{row['image']}", row[f"caption_{i}"]] for i in range(1, 2 + index % 5))
    splits = load_user_data(tmp_path / "folder")
    counts = {
        name: len(captions)
        for split in splits.values()
        for name, captions in zip(split["filename"], split["captions"])
    }
    assert counts == {f"images/{row['image']}": 1 + index % 5 for index, row in enumerate(rows)}
    assert splits["train"].features["captions"].length == -1  # any number, not RISC's five


def test_paligemma_and_captions_jsonl_and_coco_captions_read_the_same_captions(shared_data, tmp_path):
    rows = rsicd_rows(shared_data, per_scene=2)
    link_images(shared_data, tmp_path)
    paligemma = [
        {"image": f"images/{row['image']}", "prefix": "caption en", "suffix": row[f"caption_{i}"], "split": "train"}
        for row in rows
        for i in (1, 2)
    ]
    (tmp_path / "pg.jsonl").write_text("".join(json.dumps(line) + "\n" for line in paligemma))
    lists = [{"image": f"images/{row['image']}", "captions": [row["caption_1"], row["caption_2"]]} for row in rows]
    (tmp_path / "lists.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lists))
    coco = {
        "images": [{"id": index, "file_name": f"images/{row['image']}"} for index, row in enumerate(rows)],
        "annotations": [
            {"id": 2 * index + i, "image_id": index, "caption": row[f"caption_{i}"]}
            for index, row in enumerate(rows)
            for i in (1, 2)
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))

    def captions(path) -> dict:
        splits = load_user_data(path)
        return {name: list(c) for split in splits.values() for name, c in zip(split["filename"], split["captions"])}

    expected = {f"images/{row['image']}": [row["caption_1"], row["caption_2"]] for row in rows}
    assert captions(tmp_path / "pg.jsonl") == captions(tmp_path / "lists.jsonl") == captions(tmp_path / "coco.json")
    assert captions(tmp_path / "pg.jsonl") == expected
    assert len(load_user_data(tmp_path / "pg.jsonl")["train"]) == len(rows)  # the split column is honoured


def test_bad_rows_are_named_with_their_file_row_and_fix(shared_data, tmp_path):
    link_images(shared_data, tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "image,caption,split\nimages/RSICD_airport_1.jpg,a plane .,train\nimages/nope.jpg,a ship .,train\n"
        "images/RSICD_airport_10.jpg,,train\nimages/RSICD_airport_100.jpg,x .,holdout\n"
    )
    with pytest.raises(UserDataError) as error:
        load_user_data(bad)
    text = str(error.value)
    assert f"{bad}, row 4 (images/RSICD_airport_10.jpg): no_text:" in text
    assert f"{bad}, row 5 (images/RSICD_airport_100.jpg): unknown_split: split 'holdout'" in text
    assert f"{bad}, image (images/nope.jpg): missing_file:" in text and "Fix: " in text
    kept = load_user_data(bad, skip_invalid=True)
    assert [name for split in kept.values() for name in split["filename"]] == ["images/RSICD_airport_1.jpg"]


def test_an_imagefolder_of_classes_trains_scene_classification(shared_data, tmp_path, tiny_checkpoint):
    rows = rsicd_rows(shared_data, per_scene=8)
    root = tmp_path / "classes"
    for index, row in enumerate(rows):
        split = ("train", "train", "train", "train", "train", "train", "val", "test")[index % 8]
        target = root / split / scene_of(row["image"]) / row["image"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(shared_data / "rsicd" / "resized" / row["image"], target)
    splits = load_user_data(root)
    assert {split: len(data) for split, data in splits.items()} == {"train": 24, "val": 4, "test": 4}
    assert sorted(set(splits["train"]["label"])) == list(SCENES) and not any(splits["train"]["captions"])
    run = train(tmp_path, tiny_checkpoint("direct"), task="classify", dataset_dir=str(root))
    results = json.loads((run / "eval_results.json").read_text())["test"]
    records = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert results["task"] == "classify" and results["overall"]["images"] == 4
    assert {record["reference"] for record in records} == set(SCENES)
    assert {record["prediction"] for record in records} <= set(SCENES)  # ranked among the folder classes


def test_yolo_labels_give_the_boxes_of_the_coco_json(shared_data, tmp_path):
    coco_dir = shared_data / "nwpu-vhr10"
    root = tmp_path / "yolo"
    for split in ("train", "val", "test"):
        coco = json.loads((coco_dir / "annotations" / f"instances_{split}.json").read_text())
        (root / "labels" / split).mkdir(parents=True)
        (root / "images").mkdir(exist_ok=True)
        os.symlink(coco_dir / "images" / split, root / "images" / split)
        sizes = {image["id"]: (image["file_name"], image["width"], image["height"]) for image in coco["images"]}
        lines = {name: [] for name, _, _ in sizes.values()}
        for note in coco["annotations"]:
            name, width, height = sizes[note["image_id"]]
            x, y, w, h = note["bbox"]
            values = ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)
            lines[name].append(f"{note['category_id'] - 1} " + " ".join(f"{value:.10f}" for value in values))
        for name, label in lines.items():
            if label:  # an image without boxes has no label file
                (root / "labels" / split / f"{Path(name).stem}.txt").write_text("\n".join(label) + "\n")
    names = [category["name"] for category in sorted(coco["categories"], key=lambda category: category["id"])]
    (root / "data.yaml").write_text(yaml.safe_dump({"names": names}))
    from_coco, from_yolo = load_detection(coco_dir), load_detection(root)
    for split in ("train", "val", "test"):
        coco_rows = {
            row["filename"]: row["objects"] for row in from_coco[split].select_columns(["filename", "objects"])
        }
        yolo_rows = {
            row["filename"]: row["objects"] for row in from_yolo[split].select_columns(["filename", "objects"])
        }
        assert coco_rows.keys() == yolo_rows.keys()
        for name, objects in coco_rows.items():
            assert yolo_rows[name]["category"] == objects["category"]  # both in the annotation order
            assert len(yolo_rows[name]["bbox"]) == len(objects["bbox"])
            for got, want in zip(yolo_rows[name]["bbox"], objects["bbox"]):
                assert got == pytest.approx(want, abs=1e-5)
    assert from_yolo["train"].features["objects"]["category"].feature.names == names


def test_a_csv_of_image_and_label_reads_scene_classes(shared_data, tmp_path):
    rows = rsicd_rows(shared_data, per_scene=3)
    link_images(shared_data, tmp_path)
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "split"])
        writer.writerows([f"images/{row['image']}", scene_of(row["image"]), "train"] for row in rows)
    splits = load_user_data(tmp_path / "labels.csv")
    assert len(splits["train"]) == len(rows) and len(splits["val"]) == len(splits["test"]) == 0
    assert splits["train"]["label"] == [scene_of(row["image"]) for row in rows]
    assert not any(splits["train"]["captions"])
