"""tasks/loc_codec.py and tasks/detect.py: the `<loc>` codec against hand-computed tokens, malformed model output,
box transforms against PIL's own transposes, and the scorer against COCOeval run by hand."""

import contextlib
import copy
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tasks.detect import DetectTask, detection_metrics, transform_box, transformed_size
from tasks.loc_codec import detect_prompt, encode_objects, parse_objects, prompt_classes

CLASSES = ["airplane", "ship", "storage tank"]


def test_encode_gives_paligemma_tokens_computed_by_hand():
    # 640 x 480 image; bins = round(v * 1023) with v = pixel / side: y 48/480 = 0.1 -> 102.3 -> 102,
    # x 64/640 -> 102, y 240/480 = 0.5 -> 511.5 -> 512 (half to even, as tf.round), x 608/640 = 0.95 -> 971.85 -> 972.
    text = encode_objects([(64, 48, 608, 240), (0, 0, 640, 480)], ["airplane", "storage tank"], 640, 480)
    assert text == "<loc0102><loc0102><loc0512><loc0972> airplane ; <loc0000><loc0000><loc1023><loc1023> storage tank"
    assert encode_objects([], [], 640, 480) == ""


def test_decode_gives_back_the_pixels_within_half_a_bin():
    parsed = parse_objects("<loc0102><loc0102><loc0512><loc0972> airplane", 640, 480, classes=CLASSES)
    assert parsed.labels == ["airplane"] and parsed.dropped == {}
    expected = (102 / 1023 * 640, 102 / 1023 * 480, 972 / 1023 * 640, 512 / 1023 * 480)
    assert parsed.boxes[0] == pytest.approx(expected)
    rng = random.Random(0)
    for _ in range(200):  # any box survives a round trip to within half a bin per side
        width, height = rng.randint(50, 2000), rng.randint(50, 2000)
        x1, x2 = sorted(rng.uniform(0, width) for _ in range(2))
        y1, y2 = sorted(rng.uniform(0, height) for _ in range(2))
        if x2 - x1 < width / 500 or y2 - y1 < height / 500:
            continue
        back = parse_objects(encode_objects([(x1, y1, x2, y2)], ["ship"], width, height), width, height).boxes[0]
        tolerance = np.array([width, height, width, height]) / 1023 / 2 + 1e-9
        assert np.all(np.abs(np.array(back) - (x1, y1, x2, y2)) <= tolerance)


def test_malformed_output_is_dropped_and_counted_never_raised():
    text = (
        "<loc0100><loc0100><loc0200><loc0200> airplane ; "  # kept
        "<loc0001><loc0002> ship ; "  # two locs only: malformed
        "<loc0100><loc0100><loc0300><loc0300> spaceship ; "  # not a class: unknown_label
        "<loc0100><loc0500><loc0100><loc0600> ship ; "  # y_max == y_min: zero_area
        "<loc0300><loc0300><loc0400><loc0400> ship"  # kept, even without the separator before the next one
        "<loc0500><loc0500><loc0600><loc0600> storage tank ; garbage ;"  # kept; then one malformed piece
    )
    parsed = parse_objects(text, 1023, 1023, classes=CLASSES)
    assert parsed.labels == ["airplane", "ship", "storage tank"]
    assert parsed.boxes[0] == pytest.approx((100, 100, 200, 200))
    assert parsed.dropped == {"malformed": 2, "unknown_label": 1, "zero_area": 1}
    assert parse_objects("", 10, 10).boxes == [] and parse_objects("", 10, 10).dropped == {}
    assert parse_objects("<loc9999", 10, 10).dropped == {"malformed": 1}


def test_detect_prompt_round_trip_and_bad_names():
    assert detect_prompt(CLASSES) == "detect airplane ; ship ; storage tank"
    assert prompt_classes("detect airplane ; ship ; storage tank") == CLASSES
    with pytest.raises(ValueError, match="without ';'"):
        detect_prompt(["a;b"])
    with pytest.raises(ValueError, match="not a detection prompt"):
        prompt_classes("caption en")


@pytest.mark.parametrize("move", [None, *Image.Transpose])
def test_transform_box_follows_pil_transpose(move):
    width, height, box = 11, 7, (2, 1, 6, 4)  # pixel columns 2..5, rows 1..3
    pixels = np.zeros((height, width), dtype=np.uint8)
    pixels[box[1] : box[3], box[0] : box[2]] = 255
    image = Image.fromarray(pixels)
    moved = np.asarray(image if move is None else image.transpose(move))
    rows, columns = np.nonzero(moved)
    assert transform_box(box, width, height, move) == (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)
    assert transformed_size(width, height, move) == (moved.shape[1], moved.shape[0])


def test_detect_task_suffix_sorts_objects_and_follows_the_augmentation():
    task = DetectTask(CLASSES)
    row = {
        "filename": "a.jpg",
        "source": "test",
        "width": 200,
        "height": 100,
        "objects": {"bbox": [[100, 50, 50, 25], [10, 10, 20, 20]], "category": [1, 0]},
    }
    assert task.prefix(row) == "detect airplane ; ship ; storage tank"
    assert task.suffix(row) == encode_objects([(10, 10, 30, 30), (100, 50, 150, 75)], ["airplane", "ship"], 200, 100)
    flipped = task.suffix(row, Image.Transpose.FLIP_LEFT_RIGHT)
    assert flipped == encode_objects([(170, 10, 190, 30), (50, 50, 100, 75)], ["airplane", "ship"], 200, 100)
    record = task.record(row, task.suffix(row))
    assert [item["label"] for item in record["boxes"]] == ["airplane", "ship"]
    assert task.score([record])["overall"]["ap"] == pytest.approx(1.0)


def test_random_object_order_draws_each_order_and_evaluation_keeps_the_sorted_one():
    row = {
        "filename": "a.jpg",
        "source": "test",
        "width": 200,
        "height": 100,
        "objects": {"bbox": [[100, 50, 50, 25], [10, 10, 20, 20], [150, 5, 10, 10]], "category": [1, 0, 2]},
    }
    boxes = {"airplane": (10, 10, 30, 30), "ship": (100, 50, 150, 75), "storage tank": (150, 5, 160, 15)}
    random.seed(0)
    task = DetectTask(CLASSES, object_order="random")
    drawn = {task.suffix(row) for _ in range(200)}
    orders = [
        ("storage tank", "airplane", "ship"),  # the sorted one: top edges at 5, 10, 50
        ("storage tank", "ship", "airplane"),
        ("airplane", "storage tank", "ship"),
        ("airplane", "ship", "storage tank"),
        ("ship", "storage tank", "airplane"),
        ("ship", "airplane", "storage tank"),
    ]
    expected = {encode_objects([boxes[name] for name in order], list(order), 200, 100) for order in orders}
    assert drawn == expected  # all 6 orders of the same three objects, nothing else
    evaluated = task.evaluation_copy()
    assert evaluated.object_order == "sorted" and DetectTask(CLASSES).evaluation_copy().object_order == "sorted"
    sorted_order = orders[0]
    sorted_text = encode_objects([boxes[name] for name in sorted_order], list(sorted_order), 200, 100)
    assert {evaluated.suffix(row) for _ in range(20)} == {sorted_text}


def _jittered_records(truth_file: Path, classes: list[str], seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Records as DetectTask.record writes them (reference boxes from the file) with imperfect predictions, and
    the same predictions as COCO results in the file's image ids."""
    coco = json.loads(truth_file.read_text())
    rng = random.Random(seed)
    records, results = [], []
    for image in coco["images"]:
        references, boxes = [], []
        for annotation in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = annotation["bbox"]
            label = classes[annotation["category_id"] - 1]
            references.append({"label": label, "box": [x, y, x + w, y + h]})
            if rng.random() < 0.2:  # missed
                continue
            shift = rng.uniform(-0.3, 0.3)
            x, y = x + shift * w, y + rng.uniform(-0.3, 0.3) * h
            if rng.random() < 0.1:  # wrong class
                label = classes[rng.randrange(len(classes))]
            boxes.append({"label": label, "box": [x, y, x + w, y + h]})
        if rng.random() < 0.5:  # a false positive
            boxes.append({"label": classes[rng.randrange(len(classes))], "box": [5.0, 5.0, 60.0, 60.0]})
        records.append({"width": image["width"], "height": image["height"], "references": references, "boxes": boxes})
        for item in boxes:
            x1, y1, x2, y2 = item["box"]
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": classes.index(item["label"]) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": 1.0,
                }
            )
    return records, results


def _by_hand(truth_file: Path, results: list[dict], category_ids=None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(truth_file))
        evaluation = COCOeval(truth, truth.loadRes(copy.deepcopy(results)), "bbox")
        if category_ids is not None:
            evaluation.params.catIds = category_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def test_detection_metrics_equal_cocoeval_by_hand_on_nwpu_test(shared_data):
    truth_file = shared_data / "nwpu-vhr10" / "annotations" / "instances_test.json"
    classes = [c["name"] for c in sorted(json.loads(truth_file.read_text())["categories"], key=lambda c: c["id"])]
    records, results = _jittered_records(truth_file, classes)
    scores = detection_metrics(records, classes)
    stats = _by_hand(truth_file, results)
    assert 0.05 < stats[0] < 0.95  # imperfect predictions: a real, non-trivial AP
    assert scores["overall"]["ap"] == pytest.approx(stats[0], abs=1e-12)
    assert scores["overall"]["ap50"] == pytest.approx(stats[1], abs=1e-12)
    assert scores["overall"]["ap75"] == pytest.approx(stats[2], abs=1e-12)
    for index in (0, 4, 9):  # airplane, tennis court, vehicle: one class at a time, by hand
        one = _by_hand(truth_file, results, category_ids=[index + 1])
        assert scores["groups"][classes[index]]["ap"] == pytest.approx(one[0], abs=1e-12)
        assert scores["groups"][classes[index]]["ap50"] == pytest.approx(one[1], abs=1e-12)
    assert scores["overall"]["boxes"] == 221
    perfect = [{**record, "boxes": record["references"]} for record in records]
    assert detection_metrics(perfect, classes)["overall"]["ap"] == pytest.approx(1.0)


def test_count_error_and_empty_predictions():
    records = [
        {
            "width": 100,
            "height": 100,
            "references": [{"label": "ship", "box": [0, 0, 10, 10]}, {"label": "ship", "box": [20, 20, 30, 30]}],
            "boxes": [{"label": "ship", "box": [0, 0, 10, 10]}, {"label": "airplane", "box": [50, 50, 60, 60]}],
        },
        {"width": 100, "height": 100, "references": [{"label": "airplane", "box": [0, 0, 50, 50]}], "boxes": []},
    ]
    scores = detection_metrics(records, CLASSES)
    # ship: |1 - 2| and |0 - 0|; airplane: |1 - 0| and |0 - 1|; storage tank: 0 and 0
    assert scores["groups"]["ship"]["count_mae"] == 0.5
    assert scores["groups"]["airplane"]["count_mae"] == 1.0
    assert scores["overall"]["count_mae"] == pytest.approx(3 / 6)
    assert scores["groups"]["storage tank"]["ap"] is None  # no reference box: undefined, not zero
    nothing = detection_metrics([{**record, "boxes": []} for record in records], CLASSES)
    assert nothing["overall"]["ap"] == 0.0 and nothing["overall"]["predicted_boxes"] == 0


def test_asking_for_a_class_the_model_never_learned_warns_in_one_line(caplog):
    from tasks import task_from_records

    records = {"detect": {"prompt": "detect airplane ; ship", "classes": ["airplane", "ship"]}}
    with caplog.at_level("WARNING"):
        task = task_from_records("detect", records, classes="solar panel ; ship")
    assert task.prompt == "detect solar panel ; ship"
    assert [record.getMessage() for record in caplog.records] == [
        "--task detect --classes solar panel: not among the classes this model was trained on (airplane ; ship); "
        "its answers about them are untested."
    ]
    caplog.clear()
    task_from_records("detect", records, classes="ship")
    assert caplog.records == []


def test_a_box_scores_the_mean_probability_of_its_loc_and_label_tokens():
    from tasks.detect import scored_objects

    tokens = [
        *[(f"<loc{bin:04d}>", probability) for bin, probability in ((0, 0.9), (0, 0.8), (511, 0.7), (511, 0.6))],
        (" storage", 0.5),
        (" tank", 0.4),
        (" ;", 0.99),  # a separator counts for no object
        *[(f"<loc{bin:04d}>", 0.2) for bin in (512, 512, 1023, 1023)],
        (" ship", 0.1),
        *[(f"<loc{bin:04d}>", 1.0) for bin in (10, 10, 5)],  # three locs and no label: not a box, dropped
    ]
    objects = scored_objects(tokens, 1023, 1023, ["storage tank", "ship"])
    assert [(item["label"], item["box"], item["score"]) for item in objects] == [
        ("storage tank", [0.0, 0.0, 511.0, 511.0], round((0.9 + 0.8 + 0.7 + 0.6 + 0.5 + 0.4) / 6, 4)),
        ("ship", [512.0, 512.0, 1023.0, 1023.0], round((0.2 * 4 + 0.1) / 5, 4)),
    ]
    assert all(0 <= item["score"] <= 1 for item in objects) and objects[0]["score"] > objects[1]["score"]
