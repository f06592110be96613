"""tasks/registry.py: a task is one module. A fifth task defined in a module of its own (tests/is_there_task.py,
`answer en is there a <class>?` -> yes / no, rows from boxes) trains and is scored through finetune.py alone and in a
mixture, inference.py answers it, the app lists and runs it and the card shows its table, with nothing else of the
project naming it."""

import json
from pathlib import Path

import is_there_task
import pytest
import yaml
from huggingface_hub import ModelCard
from PIL import Image

import finetune
import inference
from tasks import get_task, task_for_prompt, task_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "dataset_builder" / "sample"
CLASSES = ("ship", "car")


def boxes_folder(root: Path, sample_image_paths) -> Path:
    """A COCO folder of real aerial images (the bundled sample), four per split, with made-up boxes: image i holds a
    ship when i is even and a car when i is a multiple of three, so both answers occur for both classes."""
    (root / "annotations").mkdir(parents=True)
    paths = iter(sample_image_paths)
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True)
        categories = [{"id": index + 1, "name": name} for index, name in enumerate(CLASSES)]
        coco = {"images": [], "annotations": [], "categories": categories}
        for index in range(4):
            image = Image.open(next(paths)).convert("RGB")
            image.save(root / "images" / split / f"{index}.jpg")
            coco["images"].append(
                {"id": index, "file_name": f"{index}.jpg", "width": image.width, "height": image.height}
            )
            present = [1] * (index % 2 == 0) + [2] * (index % 3 == 0)
            for category in present:
                box = [10.0 * category, 12.0, 40.0, 30.0]
                annotation = {"id": len(coco["annotations"]) + 1, "image_id": index, "category_id": category}
                coco["annotations"].append({**annotation, "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


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
        "max_new_tokens": 6,
        "eval_strategy": "no",
        "save_strategy": "no",
        "grid_images": 2,
        "report_to": "none",
        **settings,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert finetune.main([str(path)]) == 0
    return tmp_path / "run"


@pytest.fixture(scope="module")
def boxes(tmp_path_factory, sample_image_paths) -> Path:
    return boxes_folder(tmp_path_factory.mktemp("boxes") / "coco", sample_image_paths)


@pytest.fixture(scope="module")
def is_there_run(tmp_path_factory, tiny_checkpoint, boxes) -> Path:
    return train(tmp_path_factory.mktemp("alone"), tiny_checkpoint("direct"), task="is_there", dataset_dir=str(boxes))


def test_the_fifth_task_registers_from_its_own_module_and_answers_its_prompts():
    assert task_names()[-1] == "is_there" and get_task("is_there") is is_there_task.IsThereTask
    task = task_for_prompt("answer en is there a ship?")
    assert isinstance(task, is_there_task.IsThereTask) and task.answers == ["yes", "no"]
    assert type(task_for_prompt("answer en how many ships are there?")).__name__ == "CountTask"
    rows = [{"label": "ship", "objects": {"category": [0, 1]}}, {"label": "car", "objects": {"category": [0]}}]
    assert [is_there_task.IsThereTask(CLASSES).suffix(row) for row in rows] == ["yes", "no"]


def test_no_code_of_the_project_names_the_fifth_task():
    named = [
        str(path.relative_to(REPO_ROOT))
        for pattern in ("*.py", "*/*.py", "*/*/*.py", "configs/**/*.yaml", "publishing/templates/*")
        for path in REPO_ROOT.glob(pattern)
        if not path.relative_to(REPO_ROOT).parts[0].startswith(("tests", ".")) and "is_there" in path.read_text()
    ]
    assert named == []


def test_finetune_trains_and_scores_the_fifth_task_alone(is_there_run):
    results = json.loads((is_there_run / "eval_results.json").read_text())
    test = results["test"]
    assert test["task"] == "is_there" and test["num_samples"] == 4 * len(CLASSES)
    records = [json.loads(line) for line in (is_there_run / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 8 and {record["prediction"] for record in records} <= {"yes", "no"}  # ranked, never free
    assert test["overall"]["accuracy"] == sum(r["prediction"] == r["reference"] for r in records) / 8
    # Training rows: images 0..3 x (ship, car); ship in 0 and 2, car in 0 and 3: "no" 4 times, "yes" 4 times -> "no".
    assert test["overall"]["majority_accuracy"] == sum(r["reference"] == "no" for r in records) / 8
    config = json.loads((is_there_run / "merged" / "config.json").read_text())
    assert config["trained_tasks"] == {"is_there": {"prompt": "answer en is there a {}?", "classes": list(CLASSES)}}
    assert (is_there_run / "samples.png").is_file()


def test_the_fifth_task_in_a_mixture_is_scored_on_its_own(tmp_path, tiny_checkpoint, boxes):
    mixture = [{"task": "caption", "dataset_dir": str(SAMPLE_DIR)}, {"task": "is_there", "dataset_dir": str(boxes)}]
    run = train(tmp_path, tiny_checkpoint("direct"), mixture=mixture, max_test_samples=4, max_eval_samples=4)
    results = json.loads((run / "eval_results.json").read_text())
    assert {name: entry["task"] for name, entry in results["test"].items()} == {
        "caption": "caption",
        "is_there": "is_there",
    }
    assert "cider" in results["test"]["caption"]["overall"] and "accuracy" in results["test"]["is_there"]["overall"]
    records = [json.loads(line) for line in (run / "predictions_is_there.jsonl").read_text().splitlines()]
    assert len(records) == 4 * len(CLASSES) and {record["prediction"] for record in records} <= {"yes", "no"}


def test_inference_answers_the_fifth_task_as_the_model_recorded_it(is_there_run, boxes, capsys):
    image = str(boxes / "images" / "test" / "0.jpg")
    model = str(is_there_run / "merged")
    assert (
        inference.main([image, "--model", model, "--task", "is_there", "--classes", "car", "--format", "jsonl"]) == 0
    )
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record["task"] == "is_there" and record["text"] in ("yes", "no")
    assert inference.main([image, "--model", model, "--task", "is_there"]) == 2  # which class? one line says so
    assert "needs one class to look for" in capsys.readouterr().err


def test_the_app_lists_and_runs_the_fifth_task(is_there_run, boxes):
    import gradio as gr

    import app

    model = str(is_there_run / "merged")
    demo = app.build_demo(model)
    radios = [block for block in demo.blocks.values() if isinstance(block, gr.Radio)]
    assert [choice[0] for choice in radios[0].choices] == task_names() and "is_there" in task_names()
    models = {model: app.load_model(model)}
    images = [str(boxes / "images" / "test" / name) for name in ("0.jpg", "1.jpg")]
    _, lines, message = app.answer(models, images, "is_there", "ship", "", 0, 0)
    answers = [line.split("\t") for line in lines.splitlines()]
    assert [name for name, _ in answers] == ["0.jpg", "1.jpg"] and {a for _, a in answers} <= {"yes", "no"}
    assert message == ""


def test_the_card_shows_the_fifth_tasks_table_and_metadata(is_there_run):
    from publishing import render_model_card

    text = render_model_card(is_there_run, "user/is-there", base_model="google/paligemma-3b-pt-224")
    test = json.loads((is_there_run / "eval_results.json").read_text())["test"]
    overall = test["overall"]
    row = f"| is_there | `answer en is there a <class>?` | 8 | {overall['accuracy']:.4f} | - | most frequent answer |"
    assert row in text and "An aerial-image object finder" in text
    entries = ModelCard(text).data.eval_results
    got = {(e.dataset_config, e.metric_type): e.metric_value for e in entries}
    assert got[("all", "accuracy")] == overall["accuracy"]
    assert got[("all", "majority_accuracy")] == overall["majority_accuracy"]
    assert {e.task_type for e in entries} == {"visual-question-answering"}
