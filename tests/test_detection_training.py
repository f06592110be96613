"""Detection through finetune.py: task-tagged rows through the collators, mixture sampling by weight, and a tiny
model that learns the boxes of four real NWPU VHR-10 images."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from safetensors import safe_open
from transformers import AutoProcessor

import finetune
from collators import TSNPaliGemmaEvalCollator, TSNPaliGemmaTrainCollator
from finetuning.arguments import parse_finetune_args
from finetuning.cell_loss import CELL_HEAD
from finetuning.data import build_tasks, load_splits, split_by_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _coco_folder(root: Path, count: int) -> Path:
    """A COCO folder of `count` small real-file images per split, each with one or two boxes."""
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val", "test"):
        images = root / "images" / split
        images.mkdir(parents=True)
        coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "ship"}, {"id": 2, "name": "car"}]}
        for index in range(count):
            Image.new("RGB", (40, 30), (index * 5 % 255, 90, 160)).save(images / f"{index}.jpg")
            coco["images"].append({"id": index, "file_name": f"{index}.jpg", "width": 40, "height": 30})
            for box, category in [([2, 3, 10, 8], 1), ([20, 10, 12, 15], 2)][: 1 + index % 2]:
                annotation = {"id": len(coco["annotations"]) + 1, "image_id": index, "category_id": category}
                coco["annotations"].append({**annotation, "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


def _risc_folder(root: Path, count: int) -> Path:
    """A RISC folder of `count` small images per split."""
    (root / "resized").mkdir(parents=True)
    with open(root / "captions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "split", "image", *(f"caption_{i}" for i in range(1, 6))])
        for split in ("train", "val", "test"):
            for index in range(count):
                name = f"{split}_{index}.jpg"
                Image.new("RGB", (32, 32), (index % 255, 40, 40)).save(root / "resized" / name)
                writer.writerow(["RSICD", split, name, *(f"a picture number {index} ." for _ in range(5))])
    return root


def _args(tmp_path, base, *extra):
    return parse_finetune_args(
        [
            "--model_name_or_path",
            str(base),
            "--output_dir",
            str(tmp_path / "run"),
            "--use_cpu",
            "true",
            "--report_to",
            "none",
            *extra,
        ]
    )


def test_mixture_samples_by_weight_and_evaluates_each_dataset_alone(tmp_path, tiny_checkpoint):
    captions, boxes = _risc_folder(tmp_path / "risc", 200), _coco_folder(tmp_path / "coco", 50)
    mixture = [
        {"task": "caption", "dataset_dir": str(captions), "weight": 1},
        {"task": "detect", "dataset_dir": str(boxes), "weight": 3, "name": "boxes"},
    ]
    args = _args(tmp_path, tiny_checkpoint("direct"), "--mixture", json.dumps(mixture))
    assert args.training.metric_for_best_model == "caption_cider"  # the best checkpoint follows the captions
    splits = load_splits(args.data, seed=0)
    tasks = splits["train"]["task"]
    share = tasks.count("boxes") / len(tasks)
    assert abs(share - 0.75) < 0.05, share  # weights 1 : 3
    # "all_exhausted": every row of both datasets is seen in an epoch
    assert len(set(splits["train"].select([i for i, t in enumerate(tasks) if t == "caption"])["filename"])) == 200
    parts = split_by_task(splits["val"])
    assert {name: len(rows) for name, rows in parts.items()} == {"caption": 200, "boxes": 50}
    assert parts["boxes"]["row_index"] == list(range(50))

    processor = AutoProcessor.from_pretrained(tiny_checkpoint("direct"))
    built = build_tasks(args.data, splits, processor)
    assert built["boxes"].prompt == "detect ship ; car" and built["caption"].prompt == "caption en"
    rows = [parts["boxes"][1], parts["caption"][0]]
    batch = TSNPaliGemmaTrainCollator(processor, tasks=built)(rows)
    for labels, row in zip(batch["labels"], rows):
        text = processor.tokenizer.decode(labels[labels != -100], skip_special_tokens=True)
        assert text == built[row["task"]].suffix(row)
    # 40 x 30 image; ship (2, 3, 12, 11), car (20, 10, 32, 25): bins round(v * 1023), halves to even
    # (x 20/40 -> 511.5 -> 512, y 25/30 -> 852.5 -> 852), top-to-bottom order
    assert processor.tokenizer.decode(batch["labels"][0][batch["labels"][0] != -100], skip_special_tokens=True) == (
        "<loc0102><loc0051><loc0375><loc0307> ship ; <loc0341><loc0512><loc0852><loc0818> car"
    )
    evaluation = TSNPaliGemmaEvalCollator(processor, tasks=built)(rows)
    prompt = processor.tokenizer.decode(evaluation["gen_input_ids"][0], skip_special_tokens=True)
    assert prompt.strip() == "detect ship ; car"


def test_a_run_with_the_cell_loss_logs_it_keeps_the_head_in_checkpoints_and_never_ships_it(tmp_path, tiny_checkpoint):
    data = _coco_folder(tmp_path / "coco", 8)
    argv = ["--model_name_or_path", str(tiny_checkpoint("direct")), "--task", "detect", "--dataset_dir", str(data)]
    argv += ["--output_dir", str(tmp_path / "run"), "--use_cpu", "true", "--train_strategy", "full"]
    argv += ["--quantization", "none", "--max_steps", "2", "--per_device_train_batch_size", "4", "--do_eval", "false"]
    argv += ["--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1"]
    argv += ["--load_best_model_at_end", "false", "--report_to", "none", "--cell_loss_weight", "1"]
    assert finetune.main(argv) == 0
    run = tmp_path / "run"
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [entry["cell_loss"] for entry in state["log_history"] if "cell_loss" in entry]
    assert len(logged) == 2 and all(0 < value < 2 for value in logged)
    with safe_open(run / "checkpoint-2" / "model.safetensors", "pt") as weights:
        assert {key for key in weights.keys() if key.startswith(CELL_HEAD)} == {
            "cell_head.1.weight",
            "cell_head.1.bias",
        }
    with safe_open(run / "merged" / "model.safetensors", "pt") as weights:
        assert not [key for key in weights.keys() if CELL_HEAD in key]
    assert json.loads((run / "eval_results.json").read_text())["objective"]["cell_loss_weight"] == 1.0
    # The published model's cost is measured without the head: the parameters the run started from.
    started = json.loads((run / "training_summary.json").read_text())["total_parameters"]
    assert json.loads((run / "characteristics.json").read_text())["total_parameters"] == started


def test_mixture_errors_name_the_entry(tmp_path, tiny_checkpoint):
    from finetuning.arguments import ConfigError

    base = tiny_checkpoint("direct")
    with pytest.raises(ConfigError, match="mixture entry 0 .*give task, dataset_dir"):
        _args(tmp_path, base, "--mixture", json.dumps([{"task": "caption"}]))
    with pytest.raises(ConfigError, match="mixture entry 0: task 'segment'"):
        _args(tmp_path, base, "--mixture", json.dumps([{"task": "segment", "dataset_dir": "x"}]))
    with pytest.raises(ConfigError, match="lacks a detection split"):
        _args(tmp_path, base, "--task", "detect", "--dataset_dir", str(tmp_path))


def _four_image_folder(source: Path, data: Path) -> Path:
    """Four NWPU VHR-10 training images (seven boxes) as train, val and test of a COCO folder (images linked)."""
    coco = json.loads((source / "annotations" / "instances_train.json").read_text())
    keep = {1, 5, 60, 62}
    subset = {
        "images": [image for image in coco["images"] if image["id"] in keep],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
        "categories": coco["categories"],
    }
    (data / "annotations").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (data / "annotations" / f"instances_{split}.json").write_text(json.dumps(subset))
        (data / "images" / split).mkdir(parents=True)
        for image in subset["images"]:  # links: the images stay where they are
            (data / "images" / split / image["file_name"]).symlink_to(source / "images" / "train" / image["file_name"])
    return data


def _overfit(tmp_path: Path, data: Path, base: Path, steps: int, *extra: str) -> Path:
    """finetune.py's output folder after overfitting `base` to the COCO folder `data` (train = val = test)."""
    status = finetune.main(
        [
            "--model_name_or_path",
            str(base),
            "--train_strategy",
            "full",
            "--quantization",
            "none",
            "--task",
            "detect",
            "--dataset_dir",
            str(data),
            "--output_dir",
            str(tmp_path / "run"),
            "--use_cpu",
            "true",
            "--seed",
            "0",
            "--max_steps",
            str(steps),
            "--per_device_train_batch_size",
            "4",
            "--learning_rate",
            "0.003",
            "--lr_scheduler_type",
            "constant_with_warmup",
            "--warmup_steps",
            "10",
            "--weight_decay",
            "0",
            "--label_smoothing_factor",
            "0",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
            "--do_eval",
            "false",
            "--grid_images",
            "4",
            "--report_to",
            "none",
            *extra,
        ]
    )
    assert status == 0
    return tmp_path / "run"


@pytest.fixture(scope="module")
def four_image_detector(tmp_path_factory, tiny_checkpoint, shared_data) -> Path:
    """finetune.py's output folder after overfitting a tiny model to four NWPU VHR-10 images (seven boxes)."""
    tmp_path = tmp_path_factory.mktemp("detector")
    data = _four_image_folder(shared_data / "nwpu-vhr10", tmp_path / "four")
    return _overfit(tmp_path, data, tiny_checkpoint("direct"), 80)


@pytest.fixture(scope="module")
def four_image_tiled_detector(tmp_path_factory, tiny_checkpoint, shared_data) -> Path:
    """The same four images trained and scored in 512-px tiles (2 x 2 per image: at 768 x 599-670 px any overlap
    from 0 to 255 gives the same grid; 200 is asked for and recorded): training on each image's grid of tiles,
    evaluation on the same grid, merged per image."""
    tmp_path = tmp_path_factory.mktemp("tiled-detector")
    data = _four_image_folder(shared_data / "nwpu-vhr10", tmp_path / "four")
    extra = ("--tile_size", "512", "--tile_positions", "grid", "--tile_overlap", "200")
    return _overfit(tmp_path, data, tiny_checkpoint("direct"), 400, *extra)


def test_a_tiny_model_learns_the_boxes_of_four_real_images(four_image_detector):
    """train = val = test, so AP50 measures memorisation: the proof that boxes go in and come back out through
    codec, collator, generation and scorer."""
    run = four_image_detector
    results = json.loads((run / "eval_results.json").read_text())["test"]
    assert results["overall"]["boxes"] == 7
    assert results["overall"]["ap50"] >= 0.9, results["overall"]
    records = [json.loads(line) for line in (run / "predictions.jsonl").open()]
    assert [record["image"] for record in records] == ["001.jpg", "005.jpg", "060.jpg", "062.jpg"]
    for record in records:  # boxes in the original image's pixels
        assert all(0 <= b["box"][0] < b["box"][2] <= record["width"] for b in record["boxes"])
        assert all(0 <= b["box"][1] < b["box"][3] <= record["height"] for b in record["boxes"])
    assert (run / "samples.png").is_file()


def test_inference_detects_on_images_the_model_never_saw(four_image_detector, shared_data, tmp_path, capsys):
    import inference

    images = sorted((shared_data / "nwpu-vhr10" / "images" / "test").glob("*.jpg"))[:3]
    prompt = "detect airplane ; ship ; storage tank ; baseball diamond ; tennis court ; basketball court ; "
    prompt += "ground track field ; harbor ; bridge ; vehicle"
    model = str(four_image_detector / "merged")
    grid = tmp_path / "grid.png"
    argv = [*map(str, images), "--model", model, "--prompt", prompt, "--format", "jsonl", "--grid", str(grid)]
    assert inference.main(argv) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["file"] for record in records] == [str(path) for path in images]
    assert sum(len(record["boxes"]) for record in records) > 0
    for record, path in zip(records, images):
        width, height = Image.open(path).size
        assert "<loc" in record["text"]  # the raw generated text
        for item in record["boxes"]:
            x1, y1, x2, y2 = item["box"]
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, (item, width, height)
    assert grid.is_file()
    assert inference.main([str(images[0]), "--model", model, "--prompt", prompt]) == 0
    lines = capsys.readouterr().out.splitlines()  # text: one line per box
    assert lines and all(line.startswith(f"{images[0]}\t") for line in lines)
    assert len(lines) == max(1, len(records[0]["boxes"]))


def test_the_card_states_the_detection_scores(four_image_detector):
    from huggingface_hub import ModelCard

    from publishing import render_model_card

    text = render_model_card(four_image_detector, "user/detector", base_model="google/paligemma-3b-pt-224")
    results = json.loads((four_image_detector / "eval_results.json").read_text())["test"]
    entries = ModelCard(text).data.eval_results
    overall = {e.metric_type: e.metric_value for e in entries if e.dataset_config == "all"}
    assert overall == {key: results["overall"][key] for key in ("ap", "ap50", "ap75", "count_mae")}
    assert {e.task_type for e in entries} == {"object-detection"}
    assert "An aerial object detector" in text and "| **test, all classes** | 4 | 7 |" in text
    assert "`detect airplane ; ship ; storage tank ; baseball diamond" in text and "image-captioning" not in text


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory, tiny_checkpoint, shared_data) -> Path:
    """A few steps of finetune.py on a mixture: the bundled RISC sample's captions and four NWPU VHR-10 images."""
    tmp_path = tmp_path_factory.mktemp("mixture")
    boxes = _four_image_folder(shared_data / "nwpu-vhr10", tmp_path / "four")
    config = {
        "model_name_or_path": str(tiny_checkpoint("direct")),
        "train_strategy": "full",
        "quantization": "none",
        "mixture": [
            {
                "task": "caption",
                "dataset_dir": str(Path(__file__).resolve().parents[1] / "dataset_builder" / "sample"),
            },
            {"task": "detect", "dataset_dir": str(boxes), "weight": 2},
        ],
        "output_dir": str(tmp_path / "run"),
        "use_cpu": True,
        "max_steps": 6,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "num_beams": 1,
        "max_new_tokens": 8,
        "eval_strategy": "steps",
        "eval_steps": 3,
        "save_strategy": "steps",
        "save_steps": 3,
        "grid_images": 2,
        "evaluate_before_training": True,
        "report_to": "none",
    }
    path = tmp_path / "mixture.yaml"
    path.write_text(yaml.safe_dump(config))
    assert finetune.main([str(path)]) == 0
    return tmp_path / "run"


def test_a_mixture_run_scores_and_publishes_each_task(mixture_run):
    from huggingface_hub import ModelCard

    from publishing import render_model_card

    results = json.loads((mixture_run / "eval_results.json").read_text())
    for split in ("val", "test", "baseline_test"):
        assert set(results[split]) == {"caption", "detect"}, split
    assert "cider" in results["test"]["caption"]["overall"] and "ap50" in results["test"]["detect"]["overall"]
    assert results["test"]["detect"]["num_samples"] == 4 and results["test"]["caption"]["num_samples"] == 12
    for name in ("predictions_caption.jsonl", "predictions_detect.jsonl", "samples_caption.png", "samples_detect.png"):
        assert (mixture_run / name).is_file(), name
    text = render_model_card(mixture_run, "user/mixture", base_model="google/paligemma-3b-pt-224")
    tasks = {entry.task_type for entry in ModelCard(text).data.eval_results}
    assert tasks == {"image-text-to-text", "object-detection"}
    assert "An aerial-image captioner and object detector" in text and "| **test, all classes** | 4 | 7 |" in text


def test_a_tiny_model_learns_the_boxes_of_four_real_images_through_tiles(four_image_tiled_detector):
    """Through the tiled path: rows of tiles, boxes clipped into them, each image's tiles merged back (scores from
    the tokens, NMS), the model recording the tile size it was trained at."""
    run = four_image_tiled_detector
    results = json.loads((run / "eval_results.json").read_text())["test"]
    assert results["overall"]["boxes"] == 7 and results["num_samples"] == 4  # scored per image, not per tile
    assert results["overall"]["ap50"] >= 0.9, results["overall"]
    records = [json.loads(line) for line in (run / "predictions.jsonl").open()]
    assert [record["tiles"] for record in records] == [4, 4, 4, 4]
    for record in records:  # merged boxes in the image's pixels, each with its score
        assert all(0 <= b["box"][0] < b["box"][2] <= record["width"] for b in record["boxes"])
        assert all(0 < b["score"] <= 1 for b in record["boxes"])
    config = json.loads((run / "merged" / "config.json").read_text())
    assert config["trained_tasks"]["detect"]["tile_size"] == 512
    assert config["trained_tasks"]["detect"]["tile_overlap"] == 200


def test_detection_scores_through_inference_equal_the_runs_own_tiled_test_scores(four_image_tiled_detector, capsys):
    """scripts.detection_scores answers each test image through inference's path (the recorded 512-px tiles,
    merged): the same AP as finetune.py's tiled evaluation of the same model; whole images (--tile_size 0) score
    on their own."""
    from scripts import detection_scores

    run = four_image_tiled_detector
    data = run.parent / "four"
    assert detection_scores.main([str(run / "merged"), str(data), "--split", "test"]) == 0
    sliced = json.loads(capsys.readouterr().out)
    results = json.loads((run / "eval_results.json").read_text())["test"]["overall"]
    assert sliced["tile_size"] == 512 and sliced["overlap"] == 200  # the recorded overlap
    assert sliced["images"] == 4 and sliced["boxes"] == 7
    assert sliced["ap50"] == pytest.approx(results["ap50"]) and sliced["ap"] == pytest.approx(results["ap"])
    assert sliced["predicted_boxes"] == results["predicted_boxes"]
    # the count questions: each image's airplanes (its one class), merged boxes against references
    records = [json.loads(line) for line in (run / "predictions.jsonl").open()]
    errors = [abs(len(record["boxes"]) - len(record["references"])) for record in records]
    assert sliced["count_mae_of_present_classes"] == pytest.approx(sum(errors) / 4)
    assert detection_scores.main([str(run / "merged"), str(data), "--tile_size", "0"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["tile_size"] is None and whole["images"] == 4 and whole["boxes"] == 7
    # every class of the folder is listed; only airplanes have reference boxes to score against
    assert [name for name, ap50 in whole["ap50_per_class"].items() if ap50 is not None] == ["airplane"]
