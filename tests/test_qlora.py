"""4-bit NF4 on CPU with the TSN module, projector and lm_head unquantized; LoRA on the language model
only; a few optimizer steps change the LoRA and TSN weights and nothing else."""

import re

import pytest
import torch

from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from qlora import UNQUANTIZED_MODULES, apply_lora, lora_target_regex, quantization_config

bnb = pytest.importorskip("bitsandbytes")


def test_lora_regex_targets_the_language_model_only():
    regex = lora_target_regex()
    assert re.fullmatch(regex, "model.language_model.layers.17.mlp.down_proj")
    assert re.fullmatch(regex, "model.language_model.layers.0.self_attn.o_proj")
    assert not re.fullmatch(regex, "model.vision_tower.encoder.layers.0.self_attn.q_proj")
    assert not re.fullmatch(regex, "model.tsn.proj")
    assert re.fullmatch(lora_target_regex(include_vision_tower=True), "model.vision_tower.encoder.layers.0.mlp.fc1")


def test_bnb_config_uses_the_real_compute_dtype_key():
    config = quantization_config("4bit", compute_dtype=torch.bfloat16)
    assert config.bnb_4bit_compute_dtype == torch.bfloat16 and config.bnb_4bit_quant_type == "nf4"
    assert config.llm_int8_skip_modules == UNQUANTIZED_MODULES
    assert quantization_config("none") is None
    with pytest.raises(ValueError, match="quantization='2bit'"):
        quantization_config("2bit")


@pytest.mark.parametrize("integration", ["enhanced", "adapter"])
def test_qlora_cpu_trains_lora_and_tsn_only(tiny_checkpoint, sample_images, integration):
    folder = tiny_checkpoint(integration)
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(
        folder, quantization_config=quantization_config("4bit", compute_dtype=torch.float32)
    )
    quantized = {name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)}
    assert any(name.startswith("model.language_model.") for name in quantized)
    assert any(name.startswith("model.vision_tower.") for name in quantized)
    assert not [name for name in quantized if name.startswith(tuple(UNQUANTIZED_MODULES))]
    assert isinstance(model.lm_head, torch.nn.Linear) and not isinstance(model.lm_head, bnb.nn.Linear4bit)
    linear4bit = next(module for name, module in model.named_modules() if name in quantized)
    assert linear4bit.weight.quant_state.quant_type == "nf4"

    model = apply_lora(model, r=8, alpha=16, dropout=0.0)
    lora_modules = [name for name, _ in model.named_modules() if name.endswith("lora_A")]
    assert lora_modules and all(".language_model." in name for name in lora_modules)
    assert not [name for name, _ in model.named_modules() if "vision_tower" in name and "lora_" in name]
    tsn = model.base_model.model.model.tsn
    if integration == "enhanced":  # open the gate so the encoder gets gradients from the first step
        with torch.no_grad():
            tsn.modules_to_save["default"].gate.fill_(0.5)

    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    batch = processor(
        images=sample_images[:2],
        text=["<image>caption en"] * 2,
        suffix=["many green trees are around a building", "a white ship is in the port"],
        return_tensors="pt",
        padding="longest",
        padding_side="right",
    )
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {name for name, param in model.named_parameters() if not torch.equal(before[name], param.detach())}
    assert changed, "the optimizer changed nothing"
    assert all("lora_" in name or ".tsn.modules_to_save.default." in name for name in changed), sorted(changed)[:5]
    assert any("lora_B" in name for name in changed)
    assert any(".tsn.modules_to_save.default.backbone." in name for name in changed)
    assert any(".tsn.modules_to_save.default.proj." in name for name in changed)
    # The quantized base weights are bit-for-bit what was loaded.
    assert linear4bit.weight.data.dtype == torch.uint8


def test_qlora_trains_after_an_evaluation_forward(tiny_checkpoint, sample_images):
    """An eval-mode, no-grad forward (the Trainer's evaluation) must not leave the 4-bit weights in bitsandbytes'
    CPU inference layout: the next training step has to run and reach the LoRA weights."""
    from transformers import AutoProcessor

    folder = tiny_checkpoint()
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(
        folder, quantization_config=quantization_config("4bit", compute_dtype=torch.float32)
    )
    model = apply_lora(model, r=8, alpha=16, dropout=0.0)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    batch = processor(
        images=sample_images[:2],
        text=["<image>caption en"] * 2,
        suffix=["a river", "a port"],
        return_tensors="pt",
        padding="longest",
        padding_side="right",
    )
    model.eval()
    with torch.no_grad():
        model(**batch)
    layers = [module for module in model.modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert layers and not any(getattr(layer.weight.quant_state, "packing_format_for_cpu", False) for layer in layers)
    model.train()
    model(**batch).loss.backward()
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
