"""config.image_position_features: the grid features by hand, a model that gains the option keeps its logits,
the gate moves only the SigLIP tokens, trains (also under LoRA) and survives a save."""

import math

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from configuration_tsn_paligemma import TSNPaliGemmaConfig
from finetuning.arguments import parse_finetune_args
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration, grid_position_features
from qlora import apply_lora

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_grid_features_hold_the_row_in_one_half_and_the_column_in_the_other():
    features = grid_position_features(4, 8)  # 2 frequencies: 1 and 1/100 (times pi)
    assert features.shape == (16, 8)
    cell = 2 * 4 + 3  # row 2, column 3
    row_angles = torch.tensor([2 * math.pi, 2 * math.pi / 100])
    column_angles = torch.tensor([3 * math.pi, 3 * math.pi / 100])
    expected = torch.cat([row_angles.sin(), row_angles.cos(), column_angles.sin(), column_angles.cos()])
    torch.testing.assert_close(features[cell], expected)
    torch.testing.assert_close(features[8, :4], features[11, :4])  # same row, same first half
    torch.testing.assert_close(features[1, 4:], features[13, 4:])  # same column, same second half
    assert torch.cdist(features, features).add(torch.eye(16)).min() > 0  # every cell its own features
    with pytest.raises(ValueError, match="divisible by 4"):
        grid_position_features(4, 6)


def _inputs(folder):
    processor = AutoProcessor.from_pretrained(folder)
    images = [Image.new("RGB", (40, 30), (200, 40, 40)), Image.new("RGB", (30, 30), (10, 90, 200))]
    return processor(images=images, text=["<image>caption en"] * 2, return_tensors="pt")


@pytest.mark.parametrize("integration", ["enhanced", "adapter", "direct"])
def test_a_model_gains_the_option_with_its_logits_unchanged(tiny_checkpoint, integration):
    folder = tiny_checkpoint(integration)
    inputs = _inputs(folder)
    plain = TSNPaliGemmaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    placed = TSNPaliGemmaForConditionalGeneration.from_pretrained(
        folder, dtype=torch.float32, image_position_features=True
    ).eval()
    assert torch.equal(placed.model.image_positions.gate, torch.zeros(placed.config.text_config.hidden_size))
    with torch.no_grad():
        torch.testing.assert_close(placed(**inputs).logits, plain(**inputs).logits, rtol=0, atol=0)
        before = plain.model.get_image_features(inputs["pixel_values"]).pooler_output
        placed.model.image_positions.gate.fill_(0.5)
        after = placed.model.get_image_features(inputs["pixel_values"]).pooler_output
        assert not torch.allclose(placed(**inputs).logits, plain(**inputs).logits)
    count, dim = placed.config.num_siglip_tokens, after.shape[-1]
    expected = 0.5 * grid_position_features(math.isqrt(count), dim)
    torch.testing.assert_close(after[:, :count] - before[:, :count], expected.expand(2, -1, -1))
    torch.testing.assert_close(after[:, count:], before[:, count:], rtol=0, atol=0)  # adapter's segment tokens


def test_finetunes_loader_passes_the_option(tiny_checkpoint):
    """finetune.py builds its model with from_base_pretrained: the option reaches the config, the gate starts at 0."""
    model = TSNPaliGemmaForConditionalGeneration.from_base_pretrained(
        tiny_checkpoint("enhanced"), dtype=torch.float32, image_position_features=True, tsn_pretrained_backbone=False
    )
    assert model.config.image_position_features is True
    assert torch.equal(model.model.image_positions.gate, torch.zeros_like(model.model.image_positions.gate))


def test_a_gate_created_open_adds_the_features_at_full_strength(tiny_checkpoint):
    folder = tiny_checkpoint("direct")
    inputs = _inputs(folder)
    plain = TSNPaliGemmaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    opened = TSNPaliGemmaForConditionalGeneration.from_pretrained(
        folder, dtype=torch.float32, image_position_features=True, image_position_init=1.0
    ).eval()
    assert torch.equal(opened.model.image_positions.gate, torch.ones(opened.config.text_config.hidden_size))
    with torch.no_grad():
        before = plain.model.get_image_features(inputs["pixel_values"]).pooler_output
        after = opened.model.get_image_features(inputs["pixel_values"]).pooler_output
    grid = math.isqrt(opened.config.num_siglip_tokens)
    torch.testing.assert_close(after - before, grid_position_features(grid, after.shape[-1]).expand(2, -1, -1))


def test_the_gate_trains_and_is_saved(tiny_checkpoint, tmp_path):
    folder = tiny_checkpoint("enhanced")
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(
        folder, dtype=torch.float32, image_position_features=True
    )
    inputs = _inputs(folder)
    inputs["labels"] = inputs["input_ids"]
    model(**inputs).loss.backward()
    assert model.model.image_positions.gate.grad.abs().sum() > 0  # from 0, the loss can open it
    with torch.no_grad():
        model.model.image_positions.gate.copy_(torch.linspace(-1, 1, model.config.text_config.hidden_size))
    model.save_pretrained(tmp_path / "saved")
    again = TSNPaliGemmaForConditionalGeneration.from_pretrained(tmp_path / "saved", dtype=torch.float32)
    assert again.config.image_position_features is True
    torch.testing.assert_close(again.model.image_positions.gate, model.model.image_positions.gate, rtol=0, atol=0)


def test_lora_trains_the_gate(tiny_checkpoint):
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(
        tiny_checkpoint("direct"), dtype=torch.float32, image_position_features=True
    )
    lora = apply_lora(model, r=4, alpha=8, dropout=0.0, include_vision_tower=False, quantized=False)
    gates = [
        name for name, parameter in lora.named_parameters() if "image_positions" in name and parameter.requires_grad
    ]
    assert gates and all(name.endswith("gate") for name in gates)


def test_replace_and_bad_values_are_refused_and_finetune_passes_the_option(tmp_path, tiny_checkpoint):
    with pytest.raises(ValueError, match="image_position_features=True is invalid: tsn_integration='replace'"):
        TSNPaliGemmaConfig(tsn_integration="replace", image_position_features=True)
    with pytest.raises(ValueError, match="must be true or false"):
        TSNPaliGemmaConfig(image_position_features="yes")
    with pytest.raises(ValueError, match="image_position_init='1' is invalid: must be a number"):
        TSNPaliGemmaConfig(image_position_init="1")
    args = parse_finetune_args(
        [
            "--model_name_or_path",
            str(tiny_checkpoint("direct")),
            "--output_dir",
            str(tmp_path / "run"),
            "--image_position_features",
            "true",
            "--image_position_init",
            "1",
        ]
    )
    assert args.tsn.overrides() == {"image_position_features": True, "image_position_init": 1.0}
