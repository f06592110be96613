"""Boxes of overlapping tiles merged: NMS for an object seen whole twice, IoS merging for an object cut by an edge."""

import random

import pytest

from tasks import get_task
from tasks.box_merging import MERGE_IOS, merge_boxes, merge_parts

LEFT, RIGHT = (0, 0, 128, 128), (112, 0, 240, 128)  # two tiles of a 128-px grid with 16 px of overlap


def ship(box, score):
    return {"label": "ship", "box": list(box), "score": score}


def test_an_object_cut_by_a_tile_edge_becomes_one_box_its_union():
    # A ship at x 100-160 under tiles [0, 128] and [112, 240]: each writes its part, IoU 0.27 (NMS keeps both), IoS
    # 16 x 30 / (28 x 30) = 0.57 >= MERGE_IOS.
    parts = [ship((100, 10, 128, 40), 0.9), ship((112, 10, 160, 40), 0.6)]
    assert len(merge_boxes(parts)) == 2  # NMS alone: one ship counted twice
    assert merge_boxes(parts, tiles=[LEFT, RIGHT]) == [ship((100, 10, 160, 40), 0.9)]


def test_a_box_inside_its_tile_is_never_merged_so_a_wrong_part_cannot_spoil_it():
    # The right box lies inside its tile; a wrong part cut by the other tile's edge overlaps it by IoS 0.57: joined,
    # their union would replace the right box. Left alone, NMS's two boxes stay (the wrong one a false positive).
    right_box, wrong_part = ship((112, 10, 160, 40), 0.9), ship((100, 10, 128, 40), 0.95)
    assert merge_boxes([right_box, wrong_part], tiles=[(100, 0, 228, 128), LEFT]) == [right_box, wrong_part]


def test_a_corner_object_in_four_tiles_and_a_part_inside_a_whole_box():
    # A ship at (100, 100)-(150, 150) under four tiles meeting at 128 (overlap 16 from 112): four parts.
    parts = [
        ship((100, 100, 128, 128), 0.5),
        ship((112, 100, 150, 128), 0.7),
        ship((100, 112, 128, 150), 0.6),
        ship((112, 112, 150, 150), 0.8),
    ]
    corners = [(0, 0, 128, 128), (112, 0, 240, 128), (0, 112, 128, 240), (112, 112, 240, 240)]
    assert merge_boxes(parts, tiles=corners) == [ship((100, 100, 150, 150), 0.8)]
    # A part that keeps at least half of the object (what training keeps) has IoU >= 0.5 with the whole: NMS.
    whole_and_part = [ship((100, 10, 160, 40), 0.4), ship((112, 10, 160, 40), 0.9)]
    assert merge_boxes(whole_and_part, tiles=[(60, 0, 188, 128), RIGHT]) == [ship((112, 10, 160, 40), 0.9)]


def test_boxes_of_one_tile_or_of_two_classes_are_never_merged():
    # Two ships of one tile that overlap (IoS 500 / 900 = 0.56, IoU 500 / 1400 = 0.36): the model wrote two objects.
    moored = [ship((0, 0, 50, 20), 0.9), ship((25, 0, 70, 20), 0.8)]
    assert merge_boxes(moored, tiles=[LEFT, LEFT]) == moored
    mixed = [ship((100, 10, 128, 40), 0.9), {"label": "harbor", "box": [112, 10, 160, 40], "score": 0.6}]
    assert merge_boxes(mixed, tiles=[LEFT, RIGHT]) == mixed
    far = [ship((100, 10, 128, 40), 0.9), ship((200, 10, 240, 40), 0.6)]
    assert merge_boxes(far, tiles=[LEFT, RIGHT]) == far


def test_tile_records_of_a_cut_object_score_as_one_detected_object():
    task = get_task("detect")(["ship"], tile_size=128)
    row = {
        "filename": "a.jpg",
        "source": "NWPU",
        "width": 240,
        "height": 128,
        "objects": {"bbox": [[100.0, 10.0, 60.0, 30.0]], "category": [0]},
    }
    # Each tile's record holds its part in the image's pixels (what `record` writes from the generated text).
    seen = {
        (0.0, 0.0, 128.0, 128.0): ship((100, 10, 128, 40), 0.9),
        (112.0, 0.0, 240.0, 128.0): ship((112, 10, 160, 40), 0.6),
    }
    records = [{**task.record({**row, "tile": list(tile)}, ""), "boxes": [part]} for tile, part in seen.items()]
    (merged,) = task.image_records(records)
    assert merged["tiles"] == 2 and merged["boxes"] == [ship((100, 10, 160, 40), 0.9)]
    # NMS alone keeps both parts: the left one (IoU 0.47) is a false positive ranked first, and AP50 is 0.5.
    assert task.score(records)["overall"]["ap50"] == pytest.approx(1.0)
    # A scene's tiles answer in their own pixels: the same part seen from the second tile starts at x = 0.
    in_tiles = [(list(tile), {"boxes": [part]}) for tile, part in seen.items()]
    in_tiles[1][1]["boxes"] = [ship((0, 10, 48, 40), 0.6)]
    assert task.merge_tiles(in_tiles) == [ship((100, 10, 160, 40), 0.9)]


def reference_merge(boxes, tiles):
    """The rule of `merge_parts` written plainly (one box at a time, no numpy), for random cases."""

    def cut(box, tile):
        return min(box[0] - tile[0], tile[2] - box[2]) <= 0.01 * (tile[2] - tile[0]) or min(
            box[1] - tile[1], tile[3] - box[3]
        ) <= 0.01 * (tile[3] - tile[1])

    order = sorted(range(len(boxes)), key=lambda index: -boxes[index]["score"])
    groups = []
    for index in order:
        item, tile = boxes[index], tiles[index]
        for group in groups:
            a, b = group["box"], item["box"]
            width = min(a[2], b[2]) - max(a[0], b[0])
            height = min(a[3], b[3]) - max(a[1], b[1])
            smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            ios = max(width, 0) * max(height, 0) / smaller
            same = group["label"] == item["label"] and tile not in group["tiles"]
            if same and ios >= MERGE_IOS and group["cut"] and cut(b, tile):
                group["box"] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                group["tiles"].add(tile)
                break
        else:
            first = {"first": index, "label": item["label"], "box": list(item["box"]), "tiles": {tile}}
            groups.append({**first, "cut": cut(item["box"], tile)})
    return [{**boxes[g["first"]], "box": g["box"]} for g in sorted(groups, key=lambda g: g["first"])]


def test_many_random_boxes_merge_as_the_plain_rule_does():
    rng, merged_any = random.Random(0), False
    grid = [(x, y, x + 128, y + 128) for x in (0, 112, 224) for y in (0, 112, 224)]
    for _ in range(40):
        boxes, tiles = [], []
        for _ in range(rng.randint(1, 60)):
            tile = rng.choice(grid)
            x1, y1 = rng.uniform(tile[0], tile[2] - 10), rng.uniform(tile[1], tile[3] - 10)
            # half the boxes run to the tile's edge, as the parts of cut objects do
            x2 = tile[2] if rng.random() < 0.5 else rng.uniform(x1 + 5, tile[2])
            y2 = rng.uniform(y1 + 5, tile[3])
            boxes.append({"label": rng.choice(["ship", "car"]), "box": [x1, y1, x2, y2], "score": rng.random()})
            tiles.append(tile)
        merged, expected = merge_parts(boxes, tiles), reference_merge(boxes, tiles)
        assert [(item["label"], item["score"]) for item in merged] == [(e["label"], e["score"]) for e in expected]
        for item, wanted in zip(merged, expected):
            assert item["box"] == pytest.approx(wanted["box"], abs=1e-9)
        merged_any = merged_any or len(merged) < len(boxes)
    assert merged_any  # the random cases do merge boxes
