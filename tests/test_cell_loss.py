"""The auxiliary image-token loss (`--cell_loss_weight`): cell coverage by hand, detection's targets after a
rotation, the collator's targets per row and the loss against binary cross entropy written out. The trainer's
wiring is tested in test_finetune.py, a run with it in test_detection_training.py."""

import math

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from collators import TSNPaliGemmaTrainCollator
from finetuning.cell_loss import cell_loss
from tasks.caption import CaptionTask
from tasks.cell_coverage import cell_coverage
from tasks.detect import DetectTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cell_coverage_of_boxes_by_hand():
    # A 64 x 32 image in a 4 x 4 grid: cells of 16 x 8 px, row-major.
    assert cell_coverage([(0, 0, 16, 8)], 64, 32, 4)[:2] == [1.0, 0.0]
    assert cell_coverage([(8, 0, 24, 8)], 64, 32, 4)[:3] == [0.5, 0.5, 0.0]
    assert cell_coverage([(0, 0, 4, 4)], 64, 32, 4)[0] == 4 / 16 * 4 / 8
    # Two overlapping boxes: their union, not the sum of their areas.
    assert cell_coverage([(0, 0, 16, 8), (0, 0, 8, 8)], 64, 32, 4)[0] == 1.0
    # The bottom-right cell (row 3, column 3) and nothing else.
    shares = cell_coverage([(48, 24, 64, 32)], 64, 32, 4)
    assert shares[15] == 1.0 and sum(shares) == 1.0
    assert cell_coverage([], 64, 32, 4) == [0.0] * 16


def test_detection_targets_move_with_the_image():
    """A 10 x 10 box at the top-left of a 40 x 20 image is half of its top-left 20 x 10 cell. Turned 90 degrees
    counter-clockwise, the image is 20 wide and 40 high and the box its bottom-left 10 x 10 (x 0-10, y 30-40), half of
    the bottom-left 10 x 20 cell."""
    task = DetectTask(["ship"])
    row = {"width": 40, "height": 20, "objects": {"bbox": [[0, 0, 10, 10]], "category": [0]}}
    assert task.cell_targets(row, None, 2) == [0.5, 0.0, 0.0, 0.0]
    assert task.cell_targets(row, Image.Transpose.ROTATE_90, 2) == [0.0, 0.0, 0.5, 0.0]
    empty = {**row, "objects": {"bbox": [], "category": []}}
    assert task.cell_targets(empty, None, 2) == [0.0] * 4  # a tile without objects: background everywhere
    assert CaptionTask().cell_targets({"captions": ["a"] * 5}, None, 2) is None


def test_the_collator_gives_each_detection_row_its_cells_and_ignores_the_others(tiny_checkpoint):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint(), trust_remote_code=True)
    tasks = {"boxes": DetectTask(["ship"]), "caption": CaptionTask(caption_choice="first")}
    image = Image.new("RGB", (40, 20), (30, 90, 160))
    rows = [
        {"image": image, "width": 40, "height": 20, "objects": {"bbox": [[0, 0, 10, 10]], "category": [0]}},
        {"image": image, "captions": ["a ship is in the port ."] * 5},
    ]
    rows = [{**rows[0], "task": "boxes"}, {**rows[1], "task": "caption"}]
    batch = TSNPaliGemmaTrainCollator(processor, tasks=tasks, cell_grid=4)(rows)
    # The tiny model reads 4 x 4 SigLIP tokens: cells of 10 x 5 px; the box covers (0-10, 0-10), rows 0 and 1.
    expected = torch.zeros(16)
    expected[[0, 4]] = 1.0
    assert torch.equal(batch["cell_targets"][0], expected)
    assert torch.equal(batch["cell_targets"][1], torch.full((16,), -1.0))
    assert "cell_targets" not in TSNPaliGemmaTrainCollator(processor, tasks=tasks)(rows)


def test_the_loss_is_binary_cross_entropy_written_out_and_ignores_rows_without_targets():
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.LayerNorm(6, elementwise_affine=False), torch.nn.Linear(6, 1))
    tokens = torch.randn(3, 5, 6)  # 5 tokens per row, of which the first 4 are the grid's
    targets = torch.tensor([[1.0, 0.0, 0.5, 0.25], [-1.0] * 4, [0.0, 0.0, 0.0, 1.0]])
    total, count = 0.0, 0
    for row in (0, 2):
        for index in range(4):
            token = tokens[row, index]
            normalised = (token - token.mean()) / torch.sqrt(token.var(unbiased=False) + 1e-5)
            probability = 1 / (1 + math.exp(-float(head[1](normalised).detach())))
            target = float(targets[row, index])
            total -= target * math.log(probability) + (1 - target) * math.log(1 - probability)
            count += 1
    assert cell_loss(head, tokens, targets).item() == pytest.approx(total / count, rel=1e-5)
    nothing = cell_loss(head, tokens.requires_grad_(), torch.full((3, 4), -1.0))
    assert nothing.item() == 0.0 and nothing.requires_grad  # every process still runs a backward
