"""scripts/box_landing.py: best IoUs by hand, and the same boxes scored against another image's references."""

import json

import pytest

from scripts import box_landing
from scripts.box_landing import best_ious, landing


def test_best_iou_by_hand():
    # [0, 0, 10, 10] against [5, 0, 15, 10]: 50 / 150; against itself 1; a box with no reference scores 0
    ious = best_ious([[0, 0, 10, 10], [20, 20, 30, 30]], [[5, 0, 15, 10], [20, 20, 30, 30]])
    assert ious.tolist() == pytest.approx([1 / 3, 1.0])
    assert best_ious([[0, 0, 10, 10]], []).tolist() == [0.0]
    assert len(best_ious([], [[0, 0, 1, 1]])) == 0


def test_boxes_on_their_own_objects_land_and_the_same_boxes_on_another_image_do_not(tmp_path, capsys):
    first = {"boxes": [{"box": [0, 0, 10, 10]}], "references": [{"box": [0, 0, 10, 10]}]}
    second = {"boxes": [{"box": [50, 50, 60, 60]}], "references": [{"box": [50, 50, 60, 65]}]}
    result = landing([first, second])
    assert result["boxes"] == 2
    # own: 1.0 and 100 / 150; the other image's references: no overlap at all
    assert result["own_image"] == {"mean_best_iou": round((1 + 2 / 3) / 2, 4), "share_iou_50": 1.0}
    assert result["another_image"] == {"mean_best_iou": 0.0, "share_iou_50": 0.0}
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in (first, second)))
    assert box_landing.main([str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"predictions": str(path), **result}
