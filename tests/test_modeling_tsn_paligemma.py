"""The model: exact equivalence with PaliGemma, one encoder call per generate, gradients, checkpointing,
segment cropping, backbones, and building from a base PaliGemma checkpoint."""

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

from configuration_tsn_paligemma import TSNPaliGemmaConfig
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration

PROMPT = "<image>caption en"


def load(folder, **overrides):
    return TSNPaliGemmaForConditionalGeneration.from_pretrained(folder, **overrides).eval()


def plain_paligemma_config(tsn_config) -> PaliGemmaConfig:
    """The same architecture as transformers' own PaliGemma (no TSN fields, no custom code)."""
    values = tsn_config.to_dict()
    for key in ("model_type", "auto_map", "architectures"):
        values.pop(key, None)
    return PaliGemmaConfig(**{key: value for key, value in values.items() if not key.startswith("tsn_")})


def inputs_for(folder, images, captions=None):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    return processor(
        images=images,
        text=[PROMPT] * len(images),
        suffix=captions,
        return_tensors="pt",
        padding="longest",
        padding_side="right",
    )


def test_fresh_enhanced_gated_model_has_plain_paligemma_logits(tiny_checkpoint, sample_images):
    folder = tiny_checkpoint("enhanced")
    enhanced = load(folder)
    assert torch.count_nonzero(enhanced.model.tsn.gate) == 0
    inputs = inputs_for(folder, sample_images[:2])
    # The same weights (minus the segment encoder) as transformers' own PaliGemma and as `direct`.
    state = {k: v for k, v in enhanced.state_dict().items() if ".tsn." not in k}
    plain = PaliGemmaForConditionalGeneration(plain_paligemma_config(enhanced.config)).eval()
    plain.load_state_dict(state, strict=True)
    direct = load(folder, tsn_integration="direct")
    with torch.no_grad():
        logits = enhanced(**inputs).logits
        assert torch.equal(logits, plain(**inputs).logits)
        assert torch.equal(logits, direct(**inputs).logits)
        # ... and the encoder did contribute a non-zero context that the zero gate cancels.
        siglip = enhanced.model.vision_tower(inputs["pixel_values"]).last_hidden_state
        siglip = enhanced.model.multi_modal_projector(siglip)
        segments = enhanced.model.tsn.segment_tokens(inputs["pixel_values"])
        assert enhanced.model.tsn.context(siglip, segments).abs().sum() > 0


def test_direct_has_no_segment_encoder(tiny_checkpoint):
    direct = load(tiny_checkpoint("direct"))
    assert not hasattr(direct.model, "tsn")
    assert not any("tsn" in name for name, _ in direct.named_parameters())
    assert not any("tsn" in name for name, _ in direct.named_buffers())


def test_replace_has_no_siglip_and_adapter_appends_one_token_per_segment(tiny_checkpoint, sample_images):
    replace = load(tiny_checkpoint("replace"))
    assert not hasattr(replace.model, "vision_tower") and not hasattr(replace.model, "multi_modal_projector")
    adapter = load(tiny_checkpoint("adapter"))
    pixel_values = inputs_for(tiny_checkpoint("adapter"), sample_images[:2])["pixel_values"]
    with torch.no_grad():
        adapter_tokens = adapter.model.get_image_features(pixel_values).pooler_output
        replace_tokens = replace.model.get_image_features(pixel_values).pooler_output
    config = adapter.config
    assert adapter_tokens.shape == (2, config.num_siglip_tokens + config.num_segments, config.projection_dim)
    assert replace_tokens.shape == (2, config.num_segments * config.tsn_replace_grid_size**2, config.projection_dim)


def test_crops_cut_every_scale_and_keep_segments_of_an_image_together(tiny_checkpoint):
    encoder = load(tiny_checkpoint("enhanced")).model.tsn
    encoder.crop_size = 32  # half of the 64 px image: the 2x2 crops keep their pixels exactly
    pixel_values = torch.arange(2 * 3 * 64 * 64, dtype=torch.float32).reshape(2, 3, 64, 64)
    crops = encoder.crops(pixel_values).unflatten(0, (2, 5))  # (B, S, 3, 32, 32)
    for image in range(2):
        assert torch.equal(crops[image, 1], pixel_values[image, :, :32, :32])  # top left
        assert torch.equal(crops[image, 2], pixel_values[image, :, :32, 32:])  # top right
        assert torch.equal(crops[image, 3], pixel_values[image, :, 32:, :32])  # bottom left
        assert torch.equal(crops[image, 4], pixel_values[image, :, 32:, 32:])  # bottom right
    # Each SigLIP patch (4 x 4 grid, row-major) maps to segment 0 (1x1) and to its own quadrant (2x2).
    expected_quadrant = torch.tensor([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    assert torch.equal(encoder.patch_segments[:, 0], torch.zeros(16, dtype=torch.long))
    assert torch.equal(encoder.patch_segments[:, 1], expected_quadrant)


@pytest.mark.parametrize(
    "generate_kwargs",
    [{"do_sample": False}, {"num_beams": 4, "do_sample": False}, {"do_sample": True, "num_return_sequences": 3}],
    ids=["greedy", "beam4", "sampling"],
)
@pytest.mark.parametrize("integration", ["enhanced", "adapter", "replace"])
def test_segment_encoder_runs_once_per_generate_on_the_unexpanded_batch(
    tiny_checkpoint, sample_images, integration, generate_kwargs
):
    folder = tiny_checkpoint(integration)
    model = load(folder)
    inputs = inputs_for(folder, sample_images[:2])
    calls = []
    handle = model.model.tsn.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    backbone_calls = []
    model.model.tsn.backbone.register_forward_hook(lambda module, args, output: backbone_calls.append(args[0].shape))
    torch.manual_seed(0)
    output = model.generate(**inputs, max_new_tokens=5, **generate_kwargs)
    handle.remove()
    assert calls == [2]  # once, with the 2 images, not 2 x beams or 2 x return sequences
    assert len(backbone_calls) == 1 and backbone_calls[0][0] == 2 * model.config.num_segments  # all crops at once
    expected_rows = 2 * generate_kwargs.get("num_return_sequences", 1)
    assert output.shape[0] == expected_rows


def _train_step_gradients(model, inputs):
    model.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_gradients_reach_gate_then_encoder(tiny_checkpoint, sample_images):
    folder = tiny_checkpoint("enhanced")
    model = load(folder).train()
    inputs = inputs_for(folder, sample_images[:2], captions=["many green trees", "a white building"])
    _, grads = _train_step_gradients(model, inputs)
    # With the gate at 0 only the gate learns at first (tanh(0) * context): that is what keeps the start exact.
    assert grads["model.tsn.gate"].abs().sum() > 0
    assert grads.get("model.tsn.proj.weight", torch.zeros(1)).abs().sum() == 0
    with torch.no_grad():
        model.model.tsn.gate.fill_(0.5)
    _, grads = _train_step_gradients(model, inputs)
    for name in (
        "model.tsn.gate",
        "model.tsn.proj.weight",
        "model.tsn.backbone.net.conv1.weight",
        "model.tsn.backbone.net.layer4.1.conv2.weight",
        "model.tsn.consensus_key.weight",
    ):
        assert grads[name].abs().sum() > 0, name


@pytest.mark.parametrize("integration", ["enhanced", "adapter", "replace"])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_checkpoint, sample_images, integration):
    folder = tiny_checkpoint(integration)
    model = load(folder).train()
    if integration == "enhanced":
        with torch.no_grad():
            model.model.tsn.gate.fill_(0.5)
    reference = copy.deepcopy(model)
    inputs = inputs_for(folder, sample_images[:2], captions=["many green trees", "a white building"])
    loss, grads = _train_step_gradients(reference, inputs)

    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.model.tsn.gradient_checkpointing
    # Count the backbone's first layer directly: module hooks do not fire during checkpoint recomputation.
    first_conv, backbone_calls = model.model.tsn.backbone.net.conv1, []
    first_forward = first_conv.forward
    first_conv.forward = lambda images: backbone_calls.append(1) or first_forward(images)
    checkpointed_loss, checkpointed_grads = _train_step_gradients(model, inputs)
    assert len(backbone_calls) == 2  # forward + recomputation in backward: checkpointing really ran
    assert torch.equal(loss, checkpointed_loss)
    assert grads.keys() == checkpointed_grads.keys()
    assert any(".tsn." in name for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_ratio_fusion_and_generation_overrides(tiny_checkpoint, sample_images):
    folder = tiny_checkpoint("enhanced", fusion="ratio")
    model = load(folder, tsn_generation_original_ratio=1.0, tsn_generation_ratio=0.0)
    pixel_values = inputs_for(folder, sample_images[:1])["pixel_values"]
    siglip = model.model.multi_modal_projector(model.model.vision_tower(pixel_values).last_hidden_state)
    with torch.no_grad():
        # eval: the generation ratios (1, 0) give SigLIP alone; train: 0.7 * SigLIP + 0.3 * context.
        assert torch.equal(model.model.get_image_features(pixel_values).pooler_output, siglip)
        model.train()
        segments = model.model.tsn.segment_tokens(pixel_values)
        expected = 0.7 * siglip + 0.3 * model.model.tsn.context(siglip, segments)
        torch.testing.assert_close(model.model.tsn(pixel_values, siglip), expected)


@pytest.mark.parametrize("consensus", ["average", "max"])
def test_average_and_max_consensus(tiny_checkpoint, consensus):
    model = load(tiny_checkpoint("enhanced"), tsn_consensus=consensus)
    segments = torch.randn(2, 5, model.config.projection_dim)
    context = model.model.tsn.context(torch.zeros(2, 16, model.config.projection_dim), segments)
    covering = torch.stack(
        [segments[:, 0].expand(16, -1, -1).transpose(0, 1), segments[:, model.model.tsn.patch_segments[:, 1]]], dim=2
    )
    expected = covering.mean(dim=2) if consensus == "average" else covering.amax(dim=2)
    torch.testing.assert_close(context, expected)


def test_inception_v3_backbone(tiny_checkpoint, sample_images):
    folder = tiny_checkpoint("adapter", backbone="inception_v3")
    model = load(folder)
    assert model.config.tsn_backbone == "inception_v3" and model.config.tsn_crop_size == 75
    pixel_values = inputs_for(folder, sample_images[:2])["pixel_values"]
    with torch.no_grad():
        maps = model.model.tsn.feature_maps(pixel_values)
    assert maps.shape[:2] == (2 * 5, 2048)


def _write_base_paligemma(folder, tsn_model):
    """A plain PaliGemma checkpoint with ORIGINAL Hub key names (language_model.model.*, vision_tower.*)."""
    base = PaliGemmaForConditionalGeneration(plain_paligemma_config(tsn_model.config))
    base.load_state_dict({k: v for k, v in tsn_model.state_dict().items() if ".tsn." not in k}, strict=True)
    base.save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    legacy = {}
    for key, value in state.items():
        key = key.replace("model.language_model.", "language_model.model.", 1)
        key = key.replace("model.vision_tower.", "vision_tower.", 1)
        key = key.replace("model.multi_modal_projector.", "multi_modal_projector.", 1)
        legacy[key] = value
    save_file(legacy, folder / "model.safetensors", metadata={"format": "pt"})
    return base


def test_from_base_pretrained_loads_base_weights_and_initialises_tsn(
    tiny_checkpoint, tmp_path, monkeypatch, sample_images
):
    folder = tiny_checkpoint("enhanced")
    reference = load(folder)
    base_folder = tmp_path / "base"
    base = _write_base_paligemma(base_folder, reference)
    model = TSNPaliGemmaForConditionalGeneration.from_base_pretrained(
        base_folder, tsn_integration="enhanced", tsn_crop_size=32, tsn_pretrained_backbone=False
    ).eval()
    assert model.config.model_type == "tsn_paligemma" and model.config.tsn_crop_size == 32
    for name, tensor in base.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert torch.count_nonzero(model.model.tsn.gate) == 0
    inputs = inputs_for(folder, sample_images[:1])
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, base.eval()(**inputs).logits)

    # Pretrained backbone: read from torch.hub's cache; offline without it -> an error that says what to do.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(RuntimeError, match=r"not cached.*resnet18-f37072fd\.pth.*tsn_pretrained_backbone=False"):
        TSNPaliGemmaForConditionalGeneration.from_base_pretrained(base_folder, tsn_crop_size=32)
    import torchvision

    fake_imagenet = torchvision.models.resnet18(weights=None).state_dict()
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(fake_imagenet, checkpoints / "resnet18-f37072fd.pth")
    monkeypatch.setattr(
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
        "get_state_dict",
        lambda **kwargs: torch.load(checkpoints / "resnet18-f37072fd.pth"),
    )
    model = TSNPaliGemmaForConditionalGeneration.from_base_pretrained(base_folder, tsn_crop_size=32)
    assert torch.equal(model.model.tsn.backbone.net.conv1.weight, fake_imagenet["conv1.weight"])
    assert torch.equal(
        model.model.tsn.backbone.net.layer4[1].bn2.running_var, fake_imagenet["layer4.1.bn2.running_var"]
    )


def test_from_base_pretrained_rejects_other_models(tmp_path):
    from transformers import GemmaConfig

    GemmaConfig(
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        vocab_size=128,
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="needs a PaliGemma checkpoint"):
        TSNPaliGemmaForConditionalGeneration.from_base_pretrained(tmp_path)


def test_config_class_survives_save(tiny_checkpoint):
    config = TSNPaliGemmaConfig.from_pretrained(tiny_checkpoint("adapter"))
    assert config.tsn_integration == "adapter" and config.image_seq_length == 16 + 5


@pytest.mark.parametrize("mode,updating", [("partial", 1), ("frozen", 0), ("train", 20)])
def test_batchnorm_modes_choose_which_bn_statistics_update(tiny_checkpoint, mode, updating):
    """TSN's partial BN (default): in training only the first BN layer updates its running statistics."""
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(tiny_checkpoint(), tsn_batchnorm=mode)
    norms = [module for module in model.model.tsn.backbone.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    assert len(norms) == 20  # ResNet18
    before = [norm.running_mean.clone() for norm in norms]
    model.train()
    assert model.training and model.model.tsn.proj.training
    assert sum(norm.training for norm in norms) == updating
    with torch.no_grad():
        model.model.tsn.feature_maps(torch.rand(2, 3, 64, 64) * 2 - 1)
    changed = [not torch.equal(old, norm.running_mean) for old, norm in zip(before, norms)]
    assert sum(changed) == updating and (updating != 1 or changed[0])
    model.eval()
    assert not any(norm.training for norm in norms)
