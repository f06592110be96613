"""scripts/probe_image_tokens.py: tiles and cell targets by hand, probes that tell local from global tokens, and the
command on a tiny model."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts import probe_image_tokens
from scripts.probe_image_tokens import cell_targets, fit_and_score, probe_inputs, split_tiles

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tiles_keep_every_box_part_clipped_into_tile_pixels():
    image = Image.new("RGB", (300, 200))
    row = {"image": image, "objects": {"bbox": [[100, 50, 80, 60], [10, 150, 20, 20]], "category": [0, 1]}}
    tiles = split_tiles([row], 128)  # overlap 16: x starts 0, 112, 172; y starts 0, 72
    assert [tile for _, tile, _ in tiles] == [
        (0, 0, 128, 128),
        (112, 0, 240, 128),
        (172, 0, 300, 128),
        (0, 72, 128, 200),
        (112, 72, 240, 200),
        (172, 72, 300, 200),
    ]
    boxes = [inside for _, _, inside in tiles]
    assert boxes[0] == [(100, 50, 128, 110)]  # the first box cut at x = 128, kept (even a sliver counts)
    assert boxes[1] == [(0, 50, 68, 110)]  # 112..180 in the tile's pixels
    assert boxes[2] == [(0, 50, 8, 110)]
    assert boxes[3] == [(100, 0, 128, 38), (10, 78, 30, 98)]
    assert boxes[5] == [(0, 0, 8, 38)]


def test_cell_targets_mark_the_cells_whose_centres_a_box_covers():
    # 8 x 8 cells of 16 px on a 128-px tile; centres at 8, 24, ..., 120.
    targets = cell_targets([(20, 0, 60, 20), (100, 100, 128, 128)], 128, 128, 8).reshape(8, 8)
    expected = np.zeros((8, 8), dtype=np.int64)
    expected[0, 1:4] = 1  # x centres 24, 40, 56 in [20, 60); y centre 8 in [0, 20)
    expected[6:, 6:] = 1  # centres 104 and 120 in [100, 128)
    np.testing.assert_array_equal(targets, expected)
    assert cell_targets([], 64, 32, 4).sum() == 0


def test_only_the_local_probe_finds_objects_that_only_the_cell_tokens_show():
    """Tokens whose first feature says whether the cell holds an object, the rest noise: the local probe is near
    perfect, the position probe at chance, and the global probe sees only the cell's 1/16 share of the tile mean."""
    generator = np.random.default_rng(0)

    def split(tiles: int):
        targets = (generator.random((tiles, 16)) < 0.2).astype(np.int64)
        tokens = generator.normal(size=(tiles, 16, 6)).astype(np.float32)
        tokens[:, :, 0] += 4 * targets
        inputs = probe_inputs(tokens)
        return inputs, targets.reshape(-1)

    (train, train_y), (test, test_y) = split(300), split(200)
    assert train["position"].shape == (300 * 16, 16) and train["local"].shape == (300 * 16, 6 + 16)
    np.testing.assert_array_equal(train["position"][17], np.eye(16)[1])  # tile 1, cell 1
    scores = {key: fit_and_score(train[key], train_y, test[key], test_y) for key in probe_image_tokens.INPUTS}
    assert scores["local"]["roc_auc"] > 0.97 and scores["local"]["average_precision"] > 0.9
    assert 0.45 < scores["position"]["roc_auc"] < 0.55 and scores["position"]["average_precision"] < 0.25
    assert scores["global"]["roc_auc"] < 0.75 and scores["global"]["average_precision"] < 0.4


def _boxes_folder(root: Path) -> Path:
    """A COCO folder: per split, 4 images of 64 x 48 px with a bright square object."""
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "test"):
        (root / "images" / split).mkdir(parents=True)
        coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "tank"}]}
        for index in range(4):
            image = Image.new("RGB", (64, 48), (30, 60, 30))
            x, y = 8 + 10 * index, 4 + 6 * index
            image.paste((250, 250, 250), (x, y, x + 16, y + 16))
            image.save(root / "images" / split / f"{index}.png")
            coco["images"].append({"id": index, "file_name": f"{index}.png", "width": 64, "height": 48})
            annotation = {"id": index + 1, "image_id": index, "category_id": 1, "bbox": [x, y, 16, 16]}
            coco["annotations"].append({**annotation, "area": 256, "iscrowd": 0})
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


def test_the_command_probes_each_model_on_the_same_tiles(tmp_path, tiny_checkpoint, capsys):
    folder = _boxes_folder(tmp_path / "boxes")
    model = str(tiny_checkpoint("enhanced"))
    assert probe_image_tokens.main([str(folder), model, model, "--tile_size", "0"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first == second  # the same model twice: the same tokens, the same fits
    assert first["train_tiles"] == first["tiles"] == 4
    vision = json.loads((Path(model) / "config.json").read_text())["vision_config"]
    grid = vision["image_size"] // vision["patch_size"]  # one token per patch, a grid x grid of cells
    expected = np.mean(
        [
            cell_targets([(x, y, x + 16, y + 16)], 64, 48, grid)
            for x, y in ((8 + 10 * index, 4 + 6 * index) for index in range(4))
        ]
    )
    assert first["positive_share"] == round(float(expected), 4)
    for key in probe_image_tokens.INPUTS:
        assert 0 <= first[key]["average_precision"] <= 1 and 0 <= first[key]["roc_auc"] <= 1


def test_the_position_readout_reads_what_the_tokens_hold_of_their_place():
    """Tokens that hold their row (one-hot) but not their column: rows read back exactly, columns at chance."""
    generator = np.random.default_rng(1)

    def tokens(tiles: int) -> np.ndarray:
        rows = np.repeat(np.eye(4, dtype=np.float32), 4, axis=0)  # cell r * 4 + c holds row r
        values = np.tile(np.concatenate([rows, np.zeros((16, 2), np.float32)], axis=1), (tiles, 1, 1))
        return values + 0.1 * generator.normal(size=values.shape).astype(np.float32)

    scores = probe_image_tokens.position_readout(tokens(40), tokens(30))
    assert scores["row_accuracy"] == 1.0 and scores["chance"] == 0.25
    assert 0.15 < scores["column_accuracy"] < 0.35
