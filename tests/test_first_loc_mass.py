"""scripts/first_loc_mass.py: the top-edge windows and the summary by hand, and the command's first-loc distribution
equal to the first step of the model's own greedy generation."""

import json

import pytest
import torch
from PIL import Image

from inference_core import generation_inputs, load_model
from scripts import first_loc_mass
from scripts.first_loc_mass import first_loc_distribution, first_loc_summary, top_edge_windows
from tests.test_probe_image_tokens import _boxes_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_top_edge_windows_by_hand_never_hold_the_tile_edge():
    # 64 px of 256 is bin round(64 / 256 * 1023) = 256; 4 bins either side
    mask = top_edge_windows([64.0], 256, 4)
    assert mask.nonzero().flatten().tolist() == list(range(252, 261))
    # 0.5 px is bin 2: bins 1 to 6, not bin 0 (where a cut box starts)
    assert top_edge_windows([0.5], 256, 4).nonzero().flatten().tolist() == [1, 2, 3, 4, 5, 6]
    assert top_edge_windows([], 256, 4).sum() == 0


def test_the_summary_by_hand():
    first = torch.zeros(1024)
    first[0], first[10], first[500] = 0.5, 0.3, 0.2  # greedy: <loc0000>; without it: bin 10, inside the window
    second = torch.full((1024,), 1.0)  # uniform (unnormalised): bin 0 holds 1 / 1024; argmax bin 0 (first of ties)
    near = torch.zeros(1024, dtype=torch.bool)
    near[5:16] = True  # 11 of bins 1-1023
    summary = first_loc_summary([first, second], [near, near])
    assert summary["tiles"] == 2
    assert summary["p_loc0000"] == pytest.approx((0.5 + 1 / 1024) / 2, abs=1e-4)
    assert summary["argmax_loc0000"] == 1.0
    # first: 0.3 of the 0.5 on bins 1-1023 lies in the window; second: 11 of 1023
    assert summary["near_top_edge"] == pytest.approx((0.3 / 0.5 + 11 / 1023) / 2, abs=1e-4)
    # first: bin 10 (in); second: ties go to bin 1 (out)
    assert summary["argmax_near_top_edge"] == 0.5
    assert summary["uniform"] == pytest.approx(11 / 1023, abs=1e-4)


def test_the_command_reads_the_first_step_of_greedy_generation(tmp_path, tiny_checkpoint, capsys):
    folder = _boxes_folder(tmp_path / "boxes")
    model_dir = str(tiny_checkpoint("enhanced"))
    assert first_loc_mass.main([str(folder), model_dir, "--tile_size", "256"]) == 0
    (summary,) = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert summary["tiles"] == 4  # four images smaller than a tile, each with a top edge inside
    # the first tile's distribution is the first generated step's, read from generate's own logits
    model, processor = load_model(model_dir)
    image = Image.open(folder / "images" / "test" / "0.png").convert("RGB")
    prompt = "detect tank"
    inputs = generation_inputs(model, processor, [image], prompt)
    with torch.inference_mode():
        generated = model.generate(
            **inputs, max_new_tokens=1, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    first = processor.tokenizer.convert_tokens_to_ids("<loc0000>")
    expected = torch.softmax(generated.logits[0][0].float(), dim=-1)[first : first + 1024]
    torch.testing.assert_close(first_loc_distribution(model, processor, image, prompt), expected)
    assert 0 <= summary["p_loc0000"] <= 1 and 0 <= summary["near_top_edge"] <= 1
