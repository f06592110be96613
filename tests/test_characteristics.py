"""model_cost and characteristics.py: parameter count, FLOPs of one caption (beams, TSN vs direct, CPU SDPA
counted like eager), latency statistics, CLI JSON."""

import copy
import json
import os
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import characteristics
from model_cost import describe_device, measure_characteristics
from scripts.make_tiny_checkpoint import TinyCheckpointArguments, build_tiny_model

TOKENS = 5
KEYS = {
    "total_parameters",
    "gflops_per_caption",
    "latency_ms_median",
    "latency_ms_mean",
    "latency_ms_p95",
    "num_images",
    "repeats",
    "cpu_count",
    "load_average_1min",
    "num_beams",
    "max_new_tokens",
    "device",
    "dtype",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny enhanced model, its processor, and the `direct` model with the same weights minus the segment encoder."""
    enhanced, processor = build_tiny_model(TinyCheckpointArguments(output_dir=str(tmp_path_factory.mktemp("tok"))))
    config = copy.deepcopy(enhanced.config)
    config.tsn_integration = "direct"
    direct = type(enhanced)(config).eval()
    missing, unexpected = direct.load_state_dict(enhanced.state_dict(), strict=False)
    assert not missing and unexpected and all(key.startswith("model.tsn.") for key in unexpected)
    return enhanced, direct, processor


def measure(model, processor, images, **kwargs):
    options = {"max_new_tokens": TOKENS, "num_images": 2, "fixed_length": True, **kwargs}
    return measure_characteristics(model, processor, images, **options)


def test_parameter_counts(models, sample_images):
    enhanced, direct, processor = models
    tsn_parameters = sum(parameter.numel() for parameter in enhanced.model.tsn.parameters())
    result = measure(enhanced, processor, sample_images[:1], num_images=1)
    assert result["total_parameters"] == sum(parameter.numel() for parameter in enhanced.parameters())
    assert measure(direct, processor, sample_images[:1], num_images=1)["total_parameters"] == (
        result["total_parameters"] - tsn_parameters
    )
    assert tsn_parameters > 1_000_000  # the ResNet18 backbone is in there


def test_flops_beams_and_tsn_cost(models, sample_images):
    enhanced, direct, processor = models
    image = sample_images[:1]
    flops = {
        (name, beams): measure(model, processor, image, num_beams=beams, num_images=1)["gflops_per_caption"]
        for name, model in (("enhanced", enhanced), ("direct", direct))
        for beams in (1, 4)
    }
    assert all(value > 0 for value in flops.values())
    assert flops["enhanced", 4] > flops["enhanced", 1] and flops["direct", 4] > flops["direct", 1]
    assert flops["direct", 1] < flops["enhanced", 1]
    # The encoder runs once per generate call on the un-expanded batch: TSN's extra cost is the same with 4 beams
    # as greedy, and equals one forward pass of the segment encoder on this image.
    inputs = processor(images=image, text="<image>caption en", return_tensors="pt")
    with torch.no_grad():
        siglip = direct.model.get_image_features(inputs["pixel_values"]).pooler_output  # (1, 16, D)
        counter = FlopCounterMode(display=False)
        with counter:
            enhanced.model.tsn(inputs["pixel_values"], siglip)
    encoder_gflops = counter.get_total_flops() / 1e9
    for beams in (1, 4):
        assert flops["enhanced", beams] - flops["direct", beams] == pytest.approx(encoder_gflops, abs=2e-6)


def test_cpu_attention_flops_equal_eager_count(models, sample_images):
    """torch's counter has no formula for CPU SDPA; ours must give what it counts for eager attention's matmuls."""
    enhanced, _, processor = models
    eager = copy.deepcopy(enhanced)
    eager.set_attn_implementation("eager")
    assert enhanced.config.text_config._attn_implementation == "sdpa"
    counted = {}
    for beams in (1, 3):
        sdpa_flops = measure(enhanced, processor, sample_images[:1], num_beams=beams, num_images=1)
        eager_flops = measure(eager, processor, sample_images[:1], num_beams=beams, num_images=1)
        assert sdpa_flops["gflops_per_caption"] == eager_flops["gflops_per_caption"]
        counted[beams] = sdpa_flops["gflops_per_caption"]
    # Without the extra formula the SDPA attention would be missing from torch's count.
    counter = FlopCounterMode(display=False)
    inputs = processor(images=sample_images[:1], text="<image>caption en", return_tensors="pt")
    inputs.pop("labels", None)
    with counter, torch.no_grad():
        enhanced.generate(**inputs, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)
    assert counter.get_total_flops() / 1e9 < counted[1]


def test_latency_and_reported_settings(models, sample_images):
    enhanced, _, processor = models
    enhanced.train()  # finetune.py may hand over a model in training mode
    start = time.perf_counter()
    result = measure(enhanced, processor, sample_images[:2], num_images=3, num_beams=2, repeats=2)
    elapsed_ms = 1000 * (time.perf_counter() - start)
    assert enhanced.training  # measured in eval mode, the caller's mode restored
    enhanced.eval()
    assert KEYS <= set(result)
    assert (result["num_images"], result["repeats"]) == (3, 2)  # cycles through the 2 images given
    assert (result["num_beams"], result["max_new_tokens"], result["batch_size"]) == (2, TOKENS, 1)
    assert 0 < result["latency_ms_median"] <= result["latency_ms_p95"]  # 6 samples: p95 >= median always holds
    # Six timed captions (plus a warm-up and the FLOP count) fit in the measured wall time: units are ms per image.
    assert 6 * result["latency_ms_mean"] < elapsed_ms
    assert result["cpu_count"] == os.cpu_count() and result["load_average_1min"] >= 0
    assert result["new_tokens_mean"] == TOKENS == result["flops_counted_new_tokens"]  # fixed_length forces it
    assert result["dtype"] == "float32"
    assert result["device"] == describe_device("cpu") and "thread" in result["device"]
    assert json.loads(json.dumps(result)) == result  # what finetune.py writes to characteristics.json
    natural = measure(enhanced, processor, sample_images[:1], num_images=1, fixed_length=False, max_new_tokens=40)
    assert 1 <= natural["new_tokens_mean"] <= 40 and natural["fixed_length"] is False


def test_errors_name_the_argument(models):
    enhanced, _, processor = models
    with pytest.raises(ValueError, match="images"):
        measure_characteristics(enhanced, processor, [])
    with pytest.raises(ValueError, match="repeats=0 is invalid"):
        measure_characteristics(enhanced, processor, [object()], repeats=0)


def test_unset_decoding_takes_the_models_generation_config(models, sample_images):
    enhanced, _, processor = models
    config = enhanced.generation_config
    saved = config.num_beams, config.max_new_tokens
    config.num_beams, config.max_new_tokens = 3, 4
    try:
        result = measure_characteristics(enhanced, processor, sample_images[:1], num_images=1, repeats=1)
    finally:
        config.num_beams, config.max_new_tokens = saved
    assert (result["num_beams"], result["max_new_tokens"]) == (3, 4) and result["new_tokens_mean"] <= 4


def test_cli_prints_json(tiny_checkpoint, sample_image_paths, capsys):
    folder = tiny_checkpoint("enhanced")
    status = characteristics.main(
        [
            str(folder),
            str(sample_image_paths[0].parent),
            "--num_images",
            "2",
            "--max_new_tokens",
            "4",
            "--num_beams",
            "2",
        ]
    )
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert KEYS <= set(result)
    assert (result["num_images"], result["num_beams"], result["max_new_tokens"]) == (2, 2, 4)
    assert result["total_parameters"] > 1_000_000 and result["gflops_per_caption"] > 0
