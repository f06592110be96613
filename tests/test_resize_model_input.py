"""scripts/resize_model_input.py: a model at another input resolution keeps every weight but the position
embeddings, whose grid is resized, and its processor gives the new number of image tokens."""

import pytest
import torch
from transformers import AutoProcessor

from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from scripts.resize_model_input import resize_model_input, resize_position_embeddings

KEY = "embeddings.position_embedding.weight"


def test_grid_resize_keeps_corners_order_and_symmetry():
    ramp = torch.arange(4.0).repeat(4).reshape(16, 1)  # the x coordinate 0..3 on a 4 x 4 grid, row-major
    resized = resize_position_embeddings(ramp, 7).reshape(7, 7)
    assert torch.equal(resized[:, 0], torch.zeros(7)) and torch.equal(resized[:, -1], torch.full((7,), 3.0))
    assert torch.all(resized[:, 1:] >= resized[:, :-1])  # still increasing along x
    torch.testing.assert_close(resized[:, 3], torch.full((7,), 1.5))  # the middle stays the middle
    torch.testing.assert_close(resized, resized[0].expand(7, 7))  # and y does not leak in


def test_resized_model_keeps_its_weights_and_sees_more_tokens(tiny_checkpoint, tmp_path, sample_images):
    source = tiny_checkpoint("enhanced")
    before = TSNPaliGemmaForConditionalGeneration.from_pretrained(source, dtype=torch.float32)
    out = resize_model_input(source, tmp_path / "wide", image_size=128)
    after = TSNPaliGemmaForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    assert after.config.vision_config.image_size == 128 and after.config.image_seq_length == 64
    old, new = before.state_dict(), after.state_dict()
    assert sorted(old) == sorted(new)
    position = next(name for name in old if name.endswith(KEY))
    assert all(torch.equal(old[name], new[name]) for name in old if name != position)
    old_grid, new_grid = old[position].reshape(4, 4, -1), new[position].reshape(8, 8, -1)
    for (i, j), (k, m) in (((0, 0), (0, 0)), ((0, 3), (0, 7)), ((3, 0), (7, 0)), ((3, 3), (7, 7))):
        torch.testing.assert_close(new_grid[k, m], old_grid[i, j])
    processor = AutoProcessor.from_pretrained(out)
    inputs = processor(text="<image>caption en", images=sample_images[:1], return_tensors="pt")
    assert inputs["pixel_values"].shape[-2:] == (128, 128)
    assert int((inputs["input_ids"] == after.config.image_token_index).sum()) == 64
    with torch.no_grad():
        logits = after(**inputs).logits
    assert torch.isfinite(logits).all()


def test_a_size_off_the_patch_grid_is_refused(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        resize_model_input(tiny_checkpoint("enhanced"), tmp_path / "bad", image_size=100)
