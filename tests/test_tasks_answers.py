"""tasks/classify.py and tasks/count.py: scene classes from real RSICD file names, counting rows against the boxes
of the real NWPU VHR-10 file, both scorers and their baselines on hand-made cases, and both tasks through
finetune.py."""

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from PIL import Image
from transformers import AutoProcessor

import finetune
from collators import TSNPaliGemmaEvalCollator, TSNPaliGemmaTrainCollator
from finetuning.arguments import parse_finetune_args
from finetuning.data import build_tasks, load_splits, split_by_task
from tasks import task_for_prompt
from tasks.classify import ClassifyTask, classification_metrics, confusion_counts, majority_class, scene_of
from tasks.count import CountTask, count_metrics, count_question, count_rows, median_counts, plural, read_count

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "dataset_builder" / "sample"


def test_scene_names_come_from_the_file_name_in_plain_words():
    assert scene_of("RSICD_airport_12.jpg") == "airport"
    assert scene_of("airport_12.jpg") == "airport"
    assert scene_of("RSICD_denseresidential_3.jpg") == "dense residential"
    assert scene_of("RSICD_storagetanks_313.jpg") == "storage tanks"
    assert scene_of("NWPU_stadium_644.jpg") == "stadium"
    for numbered in ("RSICD_00012.jpg", "UCM_1.jpg", "UCM_xy1.jpg", "00012.jpg"):
        assert scene_of(numbered) is None, numbered
    assert scene_of("tile-farm land-7.png", r"^tile-(.+)-\d+\.png$") == "farm land"


def test_rsicd_has_thirty_scene_classes_and_numbered_images_name_none(shared_data):
    with open(shared_data / "rsicd" / "captions.csv", newline="") as handle:
        names = [row["image"] for row in csv.DictReader(handle)]
    scenes = Counter(scene_of(name) for name in names)
    numbered = sum(name.removeprefix("RSICD_").split(".")[0].isdigit() for name in names)
    assert scenes.pop(None) == numbered > 0  # exactly the numbered images have no class
    assert len(scenes) == 30
    assert {"dense residential", "baseball field", "railway station", "bare land", "airport", "viaduct"} <= set(scenes)
    assert all(" " not in name or name in scenes for name in scenes)  # compound names are split into words


def _sample_rows() -> list[dict]:
    with open(SAMPLE_DIR / "captions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _args(tmp_path, base, *extra):
    return parse_finetune_args(
        ["--model_name_or_path", str(base), "--output_dir", str(tmp_path / "run"), "--use_cpu", "true", *extra]
    )


def test_classification_rows_of_the_sample_skip_its_numbered_images(tmp_path, tiny_checkpoint):
    args = _args(tmp_path, tiny_checkpoint("direct"), "--task", "classify", "--dataset_dir", str(SAMPLE_DIR))
    assert args.training.metric_for_best_model == "accuracy"
    splits = load_splits(args.data)
    rows = _sample_rows()
    expected = {
        split: [
            (row["image"], scene_of(row["image"])) for row in rows if row["split"] == split and scene_of(row["image"])
        ]
        for split in ("train", "val", "test")
    }
    for split, pairs in expected.items():
        assert list(zip(splits[split]["filename"], splits[split]["label"])) == pairs, split
    task = build_tasks(args.data, splits, AutoProcessor.from_pretrained(tiny_checkpoint("direct")))["classify"]
    train_labels = [label for _, label in expected["train"]]
    assert task.majority == Counter(train_labels).most_common(1)[0][0] and task.classes == sorted(set(train_labels))


def test_a_file_pattern_that_matches_nothing_names_the_fix(tmp_path, tiny_checkpoint):
    args = _args(
        tmp_path,
        tiny_checkpoint("direct"),
        "--task",
        "classify",
        "--dataset_dir",
        str(SAMPLE_DIR),
        "--scene_pattern",
        r"^scene-(\w+)\.png$",
    )
    with pytest.raises(ValueError, match=r"no file name matches scene_pattern .*Fix: give --scene_pattern"):
        load_splits(args.data)


def test_classification_scores_and_the_majority_baseline_by_hand():
    records = [
        {"prediction": "airport", "reference": "airport"},
        {"prediction": "airport", "reference": "port"},
        {"prediction": "port", "reference": "port"},
        {"prediction": "harbour", "reference": "port"},
        {"prediction": "river", "reference": "river"},
    ]
    scores = classification_metrics(records, majority="port")
    assert scores["overall"] == {"accuracy": 3 / 5, "majority_accuracy": 3 / 5, "images": 5, "outside_classes": 1}
    assert scores["groups"] == {
        "airport": {"accuracy": 1.0, "images": 1},
        "port": {"accuracy": 1 / 3, "images": 3},
        "river": {"accuracy": 1.0, "images": 1},
    }
    classes, counts = confusion_counts(records)
    assert classes == ["airport", "port", "river"]
    assert counts == [[1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 1, 0]]  # the last column: answers outside the classes
    assert majority_class(["b", "a", "b", "a", "c"]) == "a"  # a tie goes to the first in sorted order


def test_the_answer_is_read_like_a_label():
    task = ClassifyTask(["dense residential"], majority="dense residential")
    record = task.record({"filename": "x.jpg", "source": "RSICD", "label": "dense residential"}, " Dense residential.")
    assert record["prediction"] == "dense residential"
    assert task.read("<eos>bare land", 10, 10) == {"text": "bare land"}


def test_counting_rows_equal_the_box_counts_of_the_real_file(shared_data):
    from dataset_builder.detection import detection_classes, load_detection

    root = shared_data / "nwpu-vhr10"
    coco = json.loads((root / "annotations" / "instances_train.json").read_text())
    names = {category["id"]: category["name"] for category in coco["categories"]}
    file_of = {image["id"]: image["file_name"] for image in coco["images"]}
    truth = Counter((file_of[a["image_id"]], names[a["category_id"]]) for a in coco["annotations"])

    train = load_detection(root)["train"]
    classes = detection_classes(train)
    rows = count_rows(train, classes)
    task = CountTask(classes)
    found = {
        (row["filename"], row["label"]): int(task.suffix(row))
        for row in rows.select_columns(["filename", "label", "objects"])
    }
    assert found == dict(truth)  # one row per (image, class present), its answer that class's box count
    assert len(rows) == len(truth) and sum(found.values()) == len(coco["annotations"]) == 2338
    assert task.prefix(rows[0]) == count_question(rows[0]["label"])


def test_count_questions_and_answers():
    assert [plural(name) for name in ("storage tank", "harbor", "bus", "ferry", "bridge")] == [
        "storage tanks",
        "harbors",
        "buses",
        "ferries",
        "bridges",
    ]
    assert count_question("ground track field") == "answer en how many ground track fields are there?"
    assert [read_count(text) for text in ("12", " 3 <eos>", "three", "about 4 or 5")] == [12, 3, None, 4]


def test_count_scores_and_the_median_baseline_by_hand():
    classes = ["ship", "car"]
    rows = [
        {"label": "ship", "objects": {"category": [0, 0, 1]}},  # 2 ships
        {"label": "ship", "objects": {"category": [0]}},  # 1
        {"label": "ship", "objects": {"category": [0, 0, 0, 0]}},  # 4
        {"label": "ship", "objects": {"category": [0, 0, 0]}},  # 3
        {"label": "car", "objects": {"category": [1, 1, 1, 1, 1]}},  # 5
    ]
    medians = median_counts(rows, classes)
    assert medians == {"car": 5, "ship": 2}  # ship: counts 1, 2, 3, 4 -> the lower median 2
    records = [
        {"label": "ship", "count": 2, "reference": 2},
        {"label": "ship", "count": 5, "reference": 3},
        {"label": "ship", "count": None, "reference": 1},  # no number: wrong, and 0 for the error
        {"label": "car", "count": 7, "reference": 7},
    ]
    scores = count_metrics(records, medians)
    assert scores["overall"] == {
        "accuracy": 2 / 4,
        "mae": (0 + 2 + 1 + 0) / 4,
        "median_accuracy": 1 / 4,  # answers 2, 2, 2, 5
        "median_mae": (0 + 1 + 1 + 2) / 4,
        "questions": 4,
        "unread": 1,
    }
    assert scores["groups"]["ship"]["accuracy"] == 1 / 3 and scores["groups"]["ship"]["median_mae"] == 2 / 3
    assert scores["groups"]["car"] == {
        "accuracy": 1.0,
        "mae": 0.0,
        "median_accuracy": 0.0,
        "median_mae": 2.0,
        "questions": 1,
    }


def test_inference_prompts_pick_the_task():
    assert isinstance(task_for_prompt("answer en what is the scene?"), ClassifyTask)
    counting = task_for_prompt("<image>answer en how many storage tanks are there?")
    assert isinstance(counting, CountTask) and counting.prompt == "answer en how many storage tanks are there?"
    assert counting.read("17", 100, 100) == {"text": "17", "count": 17}
    assert task_for_prompt("answer en what is in the image?").name == "caption"


def _coco_folder(root: Path, count: int) -> Path:
    """A COCO folder of `count` small images per split with one to three boxes of two classes."""
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True)
        coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "ship"}, {"id": 2, "name": "car"}]}
        for index in range(count):
            Image.new("RGB", (40, 30), (index * 5 % 255, 90, 160)).save(root / "images" / split / f"{index}.jpg")
            coco["images"].append({"id": index, "file_name": f"{index}.jpg", "width": 40, "height": 30})
            for box, category in [([2, 3, 10, 8], 1), ([20, 10, 12, 15], 2), ([25, 2, 6, 6], 2)][: 1 + index % 3]:
                annotation = {"id": len(coco["annotations"]) + 1, "image_id": index, "category_id": category}
                coco["annotations"].append({**annotation, "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


def test_baselines_count_each_training_row_once_however_often_a_mixture_repeats_it():
    import datasets

    from finetuning.data import distinct_rows

    # Image a (a port) repeated three times by a mixture's oversampling; b and c are beaches.
    rows = datasets.Dataset.from_dict(
        {"filename": ["a", "b", "a", "c", "a"], "label": ["port", "beach", "port", "beach", "port"]}
    )
    assert majority_class(rows["label"]) == "port"  # what the repetition would make the baseline answer
    unique = distinct_rows(rows, ("filename",))
    assert unique["filename"] == ["a", "b", "c"] and majority_class(unique["label"]) == "beach"
    questions = datasets.Dataset.from_dict({"filename": ["a", "a", "a"], "label": ["ship", "car", "ship"]})
    assert distinct_rows(questions, ("filename", "label"))["label"] == ["ship", "car"]


def test_count_and_scene_rows_through_the_collators(tmp_path, tiny_checkpoint):
    boxes = _coco_folder(tmp_path / "coco", 6)
    mixture = [
        {"task": "classify", "dataset_dir": str(SAMPLE_DIR), "name": "scene"},
        {"task": "count", "dataset_dir": str(boxes)},
    ]
    args = _args(tmp_path, tiny_checkpoint("direct"), "--mixture", json.dumps(mixture))
    assert args.training.metric_for_best_model == "scene_accuracy"
    splits = load_splits(args.data)
    parts = split_by_task(splits["val"])
    # images 0..5 hold 1, 2, 3, 1, 2, 3 boxes: ship only, then ship + 1 car, then ship + 2 cars
    assert len(parts["count"]) == 6 + 4
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("direct"))
    built = build_tasks(args.data, splits, processor)
    assert built["count"].medians == {"car": 1, "ship": 1}  # cars: 1, 2, 1, 2 -> lower median 1
    train_scenes = [scene_of(row["image"]) for row in _sample_rows() if row["split"] == "train"]
    assert built["scene"].majority == majority_class([scene for scene in train_scenes if scene])
    rows = [parts["count"][2], parts["scene"][0]]  # image 1's car question, a scene
    assert rows[0]["label"] == "car"
    batch = TSNPaliGemmaTrainCollator(processor, tasks=built)(rows)
    texts = [
        processor.tokenizer.decode(labels[labels != -100], skip_special_tokens=True) for labels in batch["labels"]
    ]
    assert texts == ["1", rows[1]["label"]]
    evaluation = TSNPaliGemmaEvalCollator(processor, tasks=built)(rows)
    prompts = [
        processor.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in evaluation["gen_input_ids"]
    ]
    assert prompts == ["answer en how many cars are there?", "answer en what is the scene?"]


def _train(tmp_path, base, mixture, **settings) -> None:
    """finetune.py on `mixture` for a few steps, evaluating only at the end (the test split)."""
    config = {
        "model_name_or_path": str(base),
        "train_strategy": "full",
        "quantization": "none",
        "mixture": mixture,
        "output_dir": str(tmp_path / "run"),
        "use_cpu": True,
        "per_device_train_batch_size": 4,
        "eval_strategy": "no",
        "save_strategy": "no",
        "load_best_model_at_end": False,
        "report_to": "none",
        **settings,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert finetune.main([str(path)]) == 0


def test_scene_and_count_training_runs_score_each_task(tmp_path, tiny_checkpoint):
    boxes = _coco_folder(tmp_path / "coco", 6)
    mixture = [{"task": "classify", "dataset_dir": str(SAMPLE_DIR)}, {"task": "count", "dataset_dir": str(boxes)}]
    _train(tmp_path, tiny_checkpoint("direct"), mixture, max_steps=2, per_device_eval_batch_size=8, grid_images=2)
    run = tmp_path / "run"
    results = json.loads((run / "eval_results.json").read_text())["test"]
    test_scenes = [row for row in _sample_rows() if row["split"] == "test" and scene_of(row["image"])]
    assert results["classify"]["overall"]["images"] == len(test_scenes) == 5
    assert results["count"]["overall"]["questions"] == 10
    # The random model's scene answers are still classes: evaluation ranks the known ones, it does not generate.
    train_scenes = {scene_of(row["image"]) for row in _sample_rows() if row["split"] == "train"} - {None}
    scene_records = [json.loads(line) for line in open(run / "predictions_classify.jsonl")]
    assert {record["prediction"] for record in scene_records} <= train_scenes
    assert results["classify"]["overall"]["outside_classes"] == 0
    records = [json.loads(line) for line in open(run / "predictions_count.jsonl")]
    assert results["count"]["overall"]["accuracy"] == sum(r["count"] == r["reference"] for r in records) / 10
    for name in ("samples_classify.png", "samples_count.png", "confusion_classify.png"):
        assert (run / name).is_file(), name

    from huggingface_hub import ModelCard

    from publishing import render_model_card

    text = render_model_card(run, "user/rs", base_model="google/paligemma-3b-pt-224")
    entries = ModelCard(text).data.eval_results
    assert {entry.task_type for entry in entries} == {"image-classification", "visual-question-answering"}
    overall = {(e.task_type, e.metric_type): e.metric_value for e in entries if e.dataset_config == "all"}
    assert (
        overall[("image-classification", "majority_accuracy")] == results["classify"]["overall"]["majority_accuracy"]
    )
    assert overall[("visual-question-answering", "median_mae")] == results["count"]["overall"]["median_mae"]
    scene = results["classify"]["overall"]
    assert f"| scene | `answer en what is the scene?` | 5 | {scene['accuracy']:.4f} | - | majority class |" in text
    assert text.startswith("---") and "An aerial-image scene classifier and object counter" in text


def test_the_model_records_its_tasks_and_inference_uses_them(
    tmp_path, tiny_checkpoint, sample_image_paths, capsys, monkeypatch
):
    import inference
    from tasks import task_from_records

    boxes = _coco_folder(tmp_path / "coco", 6)
    mixture = [
        {"task": "caption", "dataset_dir": str(SAMPLE_DIR)},
        {"task": "classify", "dataset_dir": str(SAMPLE_DIR)},
        {"task": "count", "dataset_dir": str(boxes)},
        {"task": "detect", "dataset_dir": str(boxes)},
    ]
    _train(
        tmp_path,
        tiny_checkpoint("direct"),
        mixture,
        max_steps=1,
        num_beams=1,
        max_new_tokens=4,
        do_eval=False,
        do_predict=False,
    )
    merged = tmp_path / "run" / "merged"
    recorded = json.loads((merged / "config.json").read_text())["trained_tasks"]
    scenes = sorted({scene_of(r["image"]) for r in _sample_rows() if r["split"] == "train" and scene_of(r["image"])})
    assert recorded == {
        "caption": {"prompt": "caption en"},
        "classify": {"prompt": "answer en what is the scene?", "classes": scenes},
        "count": {"prompt": "answer en how many {} are there?", "classes": ["ship", "car"]},
        "detect": {
            "prompt": "detect ship ; car",
            "classes": ["ship", "car"],
            "generation": {"num_beams": 1, "max_new_tokens": recorded["detect"]["generation"]["max_new_tokens"]},
        },
    }
    assert task_from_records("count", recorded, classes="car").prompt == "answer en how many cars are there?"
    assert task_from_records("detect", recorded, classes="car").prompt == "detect car"
    with pytest.raises(ValueError, match="--task count needs one class to count.*counts ship ; car"):
        task_from_records("count", recorded)

    image = str(sample_image_paths[0])
    prompts = []

    def recording(original):
        def record(model, processor, images, prompt, *args, **kwargs):
            prompts.append((original.__name__, prompt))
            return original(model, processor, images, prompt, *args, **kwargs)

        return record

    import inference_core

    monkeypatch.setattr(inference_core, "generate_texts", recording(inference_core.generate_texts))
    monkeypatch.setattr(inference_core, "generate_scored", recording(inference_core.generate_scored))
    monkeypatch.setattr(inference_core, "choose_answers", recording(inference_core.choose_answers))
    for extra in (["--task", "classify"], ["--task", "count", "--classes", "ship"], ["--task", "detect"]):
        assert inference.main([image, "--model", str(merged), "--format", "jsonl", *extra]) == 0
    assert prompts == [
        ("choose_answers", "answer en what is the scene?"),  # ranked among the recorded classes
        ("generate_texts", "answer en how many ships are there?"),
        ("generate_scored", "detect ship ; car"),  # boxes are scored from their tokens
    ]
    out = capsys.readouterr().out.splitlines()
    lines = [json.loads(line) for line in out if line.startswith('{"file"')]  # the training logs stdout too
    assert len(lines) == 3 and lines[0]["text"] in scenes
    assert 1 / len(scenes) <= lines[0]["score"] <= 1  # the chosen class's probability among the candidates
    assert set(lines[1]) == {"file", "task", "text", "count"} and "boxes" in lines[2]
