"""Detection on tiles: the grid of an image, boxes clipped into a tile (computed by hand on a real NWPU VHR-10 image),
boxes mapped back to the image, random training tiles, and tile records merged into one record per image."""

import json
import random

import pytest
from PIL import Image

from tasks import get_task
from tasks.tiling import (
    OBJECT_TILE_SHARE,
    chosen_overlap,
    clip_boxes,
    default_overlap,
    random_tile,
    tile_boxes,
    to_image_box,
)

# NWPU VHR-10 test image 359.jpg (768 x 467): six basketball courts, COCO [x, y, w, h]
COURTS = [
    [252.1, 239.7, 51.6, 58.3],
    [324.5, 226.4, 47.4, 61.6],
    [368.6, 218.1, 49.1, 60.8],
    [421.9, 206.4, 49.9, 58.3],
    [467.6, 198.1, 50.8, 57.5],
    [269.6, 323.8, 46.6, 65.0],
]


def _corners(boxes):
    return [(x, y, x + w, y + h) for x, y, w, h in boxes]


def test_the_grid_of_a_real_image_ends_at_its_edges():
    # 768 x 467 in 256-px tiles overlapping by 32: columns at 0, 224, 448 and 512 (moved back to end at 768), rows
    # at 0 and 211 (467 - 256)
    tiles = tile_boxes(768, 467, 256, 32)
    assert sorted({tile[0] for tile in tiles}) == [0, 224, 448, 512]
    assert sorted({tile[1] for tile in tiles}) == [0, 211]
    assert len(tiles) == 8 and all(x2 - x1 == 256 and y2 - y1 == 256 for x1, y1, x2, y2 in tiles)
    assert tile_boxes(200, 100, 256, 32) == [(0, 0, 200, 100)]  # smaller than a tile: whole
    with pytest.raises(ValueError, match="overlap 256"):
        tile_boxes(768, 467, 256, 256)


def test_boxes_clipped_into_a_tile_by_hand():
    """Tile (224, 0, 480, 256) of 359.jpg. Kept share of each court's area, by hand:
    court 1: rows 239.7-256 of 239.7-298.0 = 16.3 / 58.3 = 28% -> dropped;
    court 2: 29.6 / 61.6 = 48% -> dropped (under half);
    court 3: 37.9 / 60.8 = 62% -> kept, (368.6-224, 218.1, 417.7-224, 256) = (144.6, 218.1, 193.7, 256);
    court 4: 49.6 / 58.3 = 85% -> kept, (197.9, 206.4, 247.8, 256);
    court 5: columns 467.6-480 of 467.6-518.4 = 24% -> dropped; court 6 lies below the tile."""
    clipped, kept = clip_boxes(_corners(COURTS), (224, 0, 480, 256))
    assert kept == [2, 3]
    assert [list(box) for box in clipped] == [
        pytest.approx([144.6, 218.1, 193.7, 256]),
        pytest.approx([197.9, 206.4, 247.8, 256]),
    ]


def test_a_tile_row_through_the_task_and_back_to_the_image(shared_data):
    """The detection task cuts the row's tile and clips its boxes (what the collator trains on); the boxes that lie
    whole in the tile, moved back to the image, are the original boxes."""
    image_path = shared_data / "nwpu-vhr10" / "images" / "test" / "359.jpg"
    image = Image.open(image_path).convert("RGB")
    task = get_task("detect")(["basketball court"], tile_size=256)
    row = {
        "filename": "359.jpg",
        "source": "NWPU",
        "width": 768,
        "height": 467,
        "objects": {"bbox": COURTS, "category": [0] * 6},
        "tile": [224.0, 211.0, 480.0, 467.0],
    }
    tile_image, tile_row = task.tile_view(row, image)
    assert tile_image.size == (256, 256) and (tile_row["width"], tile_row["height"]) == (256, 256)
    assert list(tile_image.getdata())[:50] == list(image.crop((224, 211, 480, 467)).getdata())[:50]
    # courts 1, 2, 3 and 6 lie whole in the tile; court 4 loses 4.6 of its 58.3 rows (92% kept); court 5 is cut
    # to 12.4 of its 50.8 columns (24%) and dropped
    assert len(tile_row["objects"]["bbox"]) == 5
    back = [to_image_box((x, y, x + w, y + h), row["tile"]) for x, y, w, h in tile_row["objects"]["bbox"]]
    whole = [back[0], back[1], back[2], back[4]]
    assert whole == [pytest.approx(list(box)) for box in _corners([COURTS[i] for i in (0, 1, 2, 5)])]
    assert back[3] == pytest.approx([421.9, 211.0, 471.8, 264.7])
    # the training target is written for the tile: five objects, each four locs and the label
    assert task.suffix(tile_row).count("basketball court") == 5


def test_random_training_tiles_lie_inside_the_image_and_cover_a_box_when_placed_over_one():
    rng = random.Random(0)
    boxes = _corners(COURTS)
    over_a_box = 0
    for _ in range(400):
        x1, y1, x2, y2 = random_tile(768, 467, 256, boxes, rng)
        assert 0 <= x1 and x2 <= 768 and 0 <= y1 and y2 <= 467 and (x2 - x1, y2 - y1) == (256, 256)
        over_a_box += any(x1 <= (a + c) / 2 < x2 and y1 <= (b + d) / 2 < y2 for a, b, c, d in boxes)
    assert over_a_box / 400 >= OBJECT_TILE_SHARE - 0.05  # at least the share placed over a box (and some others)
    assert random_tile(200, 100, 256, boxes, rng) == (0, 0, 200, 100)  # smaller than a tile: whole
    assert random_tile(768, 467, 256, [], rng)[2] <= 768  # no box: anywhere


def test_whole_objects_only_keeps_no_cut_box_and_places_each_random_tile_over_a_whole_box():
    """keep_area 1.0: of tile (224, 0, 480, 256) of 359.jpg no court is whole (courts 3 and 4, kept at 0.5, are
    cut by the bottom edge); of tile (224, 211, 480, 467) courts 1, 2, 3 and 6 are (court 4 keeps 92%)."""
    boxes = _corners(COURTS)
    assert clip_boxes(boxes, (224, 0, 480, 256), keep_area=1.0) == ([], [])
    assert clip_boxes(boxes, (224, 211, 480, 467), keep_area=1.0)[1] == [0, 1, 2, 5]
    # one court (51.6 x 58.3 px) and tiles placed over it 3 times in 4: with `whole`, every such tile holds it
    # whole (300 of 400, and a few random ones); with the court's centre inside a tile, only about 0.86 x 0.80 of
    # them do (y from 14 to 211 of which 42 to 211 hold it, x from 23 to 278 of which 48 to 252), about 205
    court = [boxes[0]]

    def whole_in(whole: bool) -> int:
        rng = random.Random(1)
        tiles = [random_tile(768, 467, 256, court, rng, whole=whole) for _ in range(400)]
        return sum(len(clip_boxes(court, tile, keep_area=1.0)[0]) for tile in tiles)

    assert whole_in(True) >= 400 * OBJECT_TILE_SHARE - 20
    assert whole_in(False) <= 400 * OBJECT_TILE_SHARE * 0.7 + 40


def test_whole_object_targets_rarely_start_at_the_tile_corner():
    """Why whole objects: cut boxes put a tile edge in the target (`<loc0000>`, the most frequent first loc by
    far); with keep_area 1.0 hardly any training target of a crowded image starts there."""
    classes = ["storage tank"]
    # a 12 x 12 grid of 40-px tanks every 64 px, none at the image edge: most random tiles cut some of them
    objects = {
        "bbox": [[x, y, 40.0, 40.0] for x in range(12, 768, 64) for y in range(12, 768, 64)],
        "category": [0] * 144,
    }
    row = {"filename": "tanks.jpg", "source": "synthetic", "width": 768, "height": 768, "objects": objects}
    image = Image.new("RGB", (768, 768))
    starts = {}
    for keep_area in (0.5, 1.0):
        task = get_task("detect")(classes, tile_size=256, keep_area=keep_area)
        random.seed(0)
        suffixes = [task.suffix(task.tile_view(row, image)[1]) for _ in range(200)]
        assert all(suffix.count("storage tank") >= 9 for suffix in suffixes)  # 4 x 4 per tile, at least 3 x 3 whole
        starts[keep_area] = sum(suffix.startswith("<loc0000>") for suffix in suffixes)
    # whole boxes start at the corner only when a tile happens to start at a tank's top-left pixel row or column
    assert starts[1.0] <= 5 and starts[0.5] > 40, starts


def test_the_grid_overlap_the_model_was_evaluated_with_is_its_default_at_that_tile_size():
    task = get_task("detect")(["ship"], tile_size=256, tile_overlap=128)
    recorded = task.to_record()
    assert recorded["tile_overlap"] == 128
    again = type(task).from_record(recorded, {})
    assert (again.tile_size, again.tile_overlap) == (256, 128)
    assert chosen_overlap(again, 256) == 128  # trained at 256: its overlap
    assert chosen_overlap(again, 256, asked=0) == 0  # the user's
    assert chosen_overlap(again, 512) == default_overlap(512) == 64  # another tile size: 1/8 of it
    assert chosen_overlap(get_task("detect")(["ship"], tile_size=256), 256) == 32
    assert "tile_overlap" not in get_task("detect")(["ship"], tile_size=256).to_record()


def test_two_overlapping_tiles_that_see_one_object_give_one_record_with_one_box():
    task = get_task("detect")(["ship"], tile_size=256)
    row = {
        "filename": "a.jpg",
        "source": "NWPU",
        "width": 480,
        "height": 256,
        "objects": {"bbox": [[230.0, 100.0, 20.0, 20.0]], "category": [0]},
    }
    # the ship at x 230-250 lies in both tiles: at 230-250 of the first and at 6-26 of the second (starting at 224)
    first = task.record({**row, "tile": [0.0, 0.0, 256.0, 256.0]}, "", tokens=_tokens((230, 100, 250, 120), 0.9))
    second = task.record({**row, "tile": [224.0, 0.0, 480.0, 256.0]}, "", tokens=_tokens((6, 100, 26, 120), 0.6))
    assert first["boxes"][0]["box"] == pytest.approx([230.0, 100.0, 250.0, 120.0], abs=0.2)
    assert second["boxes"][0]["box"] == pytest.approx([230.0, 100.0, 250.0, 120.0], abs=0.2)  # in image pixels
    (merged,) = task.image_records([first, second])
    assert merged["tiles"] == 2 and len(merged["boxes"]) == 1 and merged["boxes"][0]["score"] == 0.9
    assert merged["references"] == [{"label": "ship", "box": [230.0, 100.0, 250.0, 120.0]}]
    json.dumps(merged)  # a predictions.jsonl line
    scores = task.score([first, second])
    assert scores["overall"]["ap50"] == pytest.approx(1.0) and scores["overall"]["predicted_boxes"] == 1


def _tokens(box, probability):
    """Generated (token, probability) pairs of one ship box in a 256-px tile (y1, x1, y2, x2 bins)."""
    x1, y1, x2, y2 = (round(value / 256 * 1023) for value in box)
    locs = [f"<loc{value:04d}>" for value in (y1, x1, y2, x2)]
    return [(loc, probability) for loc in locs] + [(" ship", probability)]
