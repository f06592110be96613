"""scripts/synthetic_boxes.py: a COCO folder the detection reader takes, each box exactly on its colour's pixels."""

import numpy as np
from PIL import Image

from dataset_builder.detection import load_detection
from scripts.synthetic_boxes import CLASSES, COLOURS, main


def test_boxes_cover_exactly_their_rectangles_and_the_reader_takes_the_folder(tmp_path, capsys):
    main([str(tmp_path / "boxes"), "--train_images", "12", "--eval_images", "4", "--image_size", "64"])
    splits = load_detection(tmp_path / "boxes")
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 12, "val": 4, "test": 4}
    classes = splits["train"].features["objects"]["category"].feature.names
    assert classes == CLASSES == ["red", "blue", "yellow"]
    for row in splits["train"]:
        pixels = np.asarray(row["image"].convert("RGB")).astype(int)
        assert 1 <= len(row["objects"]["bbox"]) <= 3
        for (x, y, width, height), category in zip(row["objects"]["bbox"], row["objects"]["category"]):
            x, y, width, height = int(x), int(y), int(width), int(height)
            colour = np.array(COLOURS[classes[category]])
            inside = pixels[y : y + height, x : x + width]
            assert (inside == colour).all()  # the whole box is the rectangle's colour (PNG is lossless)
            # ... and the rectangle ends at the box: the row above and the column left of it (when inside the
            # image) are not all that colour, so the box is not too small.
            if y > 0:
                assert not (pixels[y - 1, x : x + width] == colour).all()
            if x > 0:
                assert not (pixels[y : y + height, x - 1] == colour).all()
    assert '"train":' in capsys.readouterr().out
    first = Image.open(tmp_path / "boxes" / "images" / "train" / "train_0000.png")
    assert first.size == (64, 64)
