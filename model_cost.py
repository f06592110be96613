"""What a captioning model costs, for the model card: parameters, GFLOPs per caption, latency, device and dtype.

`finetune.py` measures the merged model at the end of training (`output_dir/characteristics.json`, read by the card),
`prune.py` each pruned model; `python characteristics.py MODEL IMAGES...` measures any model.

```python
>>> from images import load_image  # doctest: +SKIP
>>> from inference_core import load_model  # doctest: +SKIP
>>> model, processor = load_model("outputs/risc")  # doctest: +SKIP
>>> result = measure_characteristics(model, processor, [load_image("RSICD_00001.jpg")], num_images=8)  # doctest: +SKIP
>>> sorted(result)[:4]  # doctest: +SKIP
['batch_size', 'device', 'dtype', 'fixed_length']
```
"""

import logging
import os
import platform
import re
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from collators import IMAGE_TOKEN
from inference_core import decoding_settings, generation_inputs
from tasks import DEFAULT_PROMPT

logger = logging.getLogger(__name__)


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of CPU SDPA (torch's counter has no formula for it): QK^T and AV, 2 * b * h * s_q * s_k * (d_qk + d_v).

    Shapes are (B, H, S, D); equals what the counter reports for eager attention (its two bmm calls).
    """
    batch, heads, query_length, query_dim = query_shape
    key_length, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * query_length * key_length * (query_dim + value_dim)


# torch's flop counter knows the CUDA SDPA kernels (flash, efficient, cuDNN) but not the CPU one.
_EXTRA_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


def describe_device(device: torch.device | str) -> str:
    """Human-readable device: the GPU name, or the CPU model (from /proc/cpuinfo) and torch's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text(errors="replace") if cpuinfo.is_file() else ""
    match = re.search(r"^model name[^:\n]*:(.*)$", text, re.IGNORECASE | re.MULTILINE)
    name = (match.group(1).strip() if match else "") or platform.processor() or platform.machine() or "unknown CPU"
    threads = torch.get_num_threads()
    return f"{name} ({threads} thread{'s' if threads > 1 else ''})" if device.type == "cpu" else f"{name} ({device})"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _caption_flops(model, processor, image, prompt: str, generate_kwargs: dict) -> tuple[int, int]:
    """(FLOPs, new tokens) of one whole `generate` call on one image."""
    inputs = generation_inputs(model, processor, [image], prompt)
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)
    with counter, torch.inference_mode():
        sequences = model.generate(**inputs, **generate_kwargs)
    return counter.get_total_flops(), sequences.shape[1] - inputs["input_ids"].shape[1]


def _latencies(model, processor, images, prompt: str, generate_kwargs: dict, num_images: int, repeats: int):
    """([ms per image], [new tokens per image]) of `repeats` rounds over `num_images` images, after one untimed
    warm-up call (allocator, kernels, caches)."""
    device = model.device
    latencies, new_tokens = [], []
    calls = [None] + [index for _ in range(repeats) for index in range(num_images)]  # None: the warm-up
    for index in calls:
        image = images[(index or 0) % len(images)]
        _synchronize(device)
        start = time.perf_counter()
        inputs = generation_inputs(model, processor, [image], prompt)
        with torch.inference_mode():
            sequences = model.generate(**inputs, **generate_kwargs)
        processor.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        _synchronize(device)
        if index is not None:
            latencies.append(1000 * (time.perf_counter() - start))
            new_tokens.append(sequences.shape[1] - inputs["input_ids"].shape[1])
    return latencies, new_tokens


@contextmanager
def _eval_mode(model):
    """`model` in eval mode (no dropout) inside the block; the caller's mode is restored afterwards, even on error."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _load_average() -> float | None:
    """The 1-minute load average while measuring (other work on the cores slows every figure)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def measure_characteristics(
    model,
    processor,
    images: Sequence[Image.Image],
    prompt: str = DEFAULT_PROMPT,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    num_images: int = 8,
    fixed_length: bool = False,
    repeats: int = 3,
) -> dict:
    """Parameters, GFLOPs of one caption and per-image latency of `model` (in eval mode, on its own device/dtype).

    - `gflops_per_caption`: torch's FlopCounterMode over ONE full `generate` call for `images[0]` (batch 1,
      `num_beams`, up to `max_new_tokens`): image encoders, prefill and every decoding step, beams included.
    - `latency_ms_median` (the card's figure), `_mean`, `_p95`: wall time per image, batch 1, processor +
      `generate` + decode, over `repeats` rounds of `num_images` images (cycling through `images` if fewer) after
      one untimed warm-up call; `device`, `cpu_count` and `load_average_1min` say on what it was measured.
    - `num_beams` / `max_new_tokens` left as None take the model's generation_config, as inference does.
    - `fixed_length=True` forces every caption to `max_new_tokens` tokens (min_new_tokens = max_new_tokens), so
      two models are compared on the same work; by default generation stops at EOS, as in real use, and
      `new_tokens_mean` says how long the captions were.
    """
    if not images:
        raise ValueError("measure_characteristics needs at least one image (`images` is empty).")
    for name, value in (("num_images", num_images), ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"{name}={value} is invalid; use a positive integer.")
    decoding = decoding_settings(model, None, num_beams, max_new_tokens)
    fixed = {"min_new_tokens": decoding["max_new_tokens"]} if fixed_length else {}
    generate_kwargs = {"do_sample": False, **decoding, **fixed}
    with _eval_mode(model):
        flops, flops_new_tokens = _caption_flops(model, processor, images[0], prompt, generate_kwargs)
        load_before = _load_average()
        latencies, new_tokens = _latencies(model, processor, images, prompt, generate_kwargs, num_images, repeats)
    result = {
        "total_parameters": sum(parameter.numel() for parameter in model.parameters()),
        "gflops_per_caption": round(flops / 1e9, 6),
        "flops_counted_new_tokens": int(flops_new_tokens),
        "latency_ms_median": round(float(np.median(latencies)), 3),
        "latency_ms_mean": round(float(np.mean(latencies)), 3),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 3),
        "new_tokens_mean": round(float(np.mean(new_tokens)), 2),
        "num_images": num_images,
        "repeats": repeats,
        "batch_size": 1,
        "num_beams": decoding["num_beams"],
        "max_new_tokens": decoding["max_new_tokens"],
        "fixed_length": fixed_length,
        "prompt": prompt.removeprefix(IMAGE_TOKEN),
        "device": describe_device(model.device),
        "cpu_count": os.cpu_count(),
        "load_average_1min": None if load_before is None else max(load_before, _load_average()),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
    logger.info("characteristics: %s", result)
    return result
