"""What a captioning model costs, for the model card: parameters, GFLOPs per caption, latency, device and dtype.

`finetune.py` measures the merged model at the end of training (`output_dir/characteristics.json`, read by the card),
`prune.py` each pruned model; `python characteristics.py MODEL IMAGES...` measures any model.

```python
>>> from captioning import load_image, load_model  # doctest: +SKIP
>>> model, processor = load_model("outputs/risc")  # doctest: +SKIP
>>> result = measure_characteristics(model, processor, [load_image("RSICD_00001.jpg")], num_images=8)  # doctest: +SKIP
>>> sorted(result)[:4]  # doctest: +SKIP
['batch_size', 'device', 'dtype', 'fixed_length']
```
"""

import logging
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from captioning import generation_inputs
from processing import DEFAULT_PROMPT, IMAGE_TOKEN

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
    name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
                break
    name = name or platform.processor() or platform.machine() or "unknown CPU"
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


def _latencies(model, processor, images, prompt: str, generate_kwargs: dict, num_images: int):
    """([ms per image], [new tokens per image]) over `num_images` images, after one untimed warm-up."""
    device = model.device
    latencies, new_tokens = [], []
    for index in range(-1, num_images):  # index -1: warm-up (allocator, kernels, caches) on images[0]
        image = images[max(index, 0) % len(images)]
        _synchronize(device)
        start = time.perf_counter()
        inputs = generation_inputs(model, processor, [image], prompt)
        with torch.inference_mode():
            sequences = model.generate(**inputs, **generate_kwargs)
        processor.batch_decode(sequences[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        _synchronize(device)
        if index >= 0:
            latencies.append(1000 * (time.perf_counter() - start))
            new_tokens.append(sequences.shape[1] - inputs["input_ids"].shape[1])
    return latencies, new_tokens


def measure_characteristics(
    model,
    processor,
    images: Sequence[Image.Image],
    prompt: str = DEFAULT_PROMPT,
    num_beams: int = 1,
    max_new_tokens: int = 30,
    num_images: int = 8,
    fixed_length: bool = False,
) -> dict:
    """Parameters, GFLOPs of one caption and per-image latency of `model` (in eval mode, on its own device/dtype).

    - `gflops_per_caption`: torch's FlopCounterMode over ONE full `generate` call for `images[0]` (batch 1,
      `num_beams`, up to `max_new_tokens`): image encoders, prefill and every decoding step, beams included.
    - `latency_ms_mean` / `latency_ms_p95`: wall time per image, batch 1, processor + `generate` + decode, over
      `num_images` images (cycling through `images` if fewer) after one untimed warm-up call.
    - `fixed_length=True` forces every caption to `max_new_tokens` tokens (min_new_tokens = max_new_tokens), so
      two models are compared on the same work; by default generation stops at EOS, as in real use, and
      `new_tokens_mean` says how long the captions were.
    """
    if not images:
        raise ValueError("measure_characteristics needs at least one image (`images` is empty).")
    if num_images < 1:
        raise ValueError(f"num_images={num_images} is invalid; use a positive integer.")
    generate_kwargs = {"do_sample": False, "num_beams": num_beams, "max_new_tokens": max_new_tokens}
    if fixed_length:
        generate_kwargs["min_new_tokens"] = max_new_tokens

    was_training = model.training
    model.eval()  # no dropout while measuring; the caller's mode is restored below
    try:
        flops, flops_new_tokens = _caption_flops(model, processor, images[0], prompt, generate_kwargs)
        latencies, new_tokens = _latencies(model, processor, images, prompt, generate_kwargs, num_images)
    finally:
        model.train(was_training)

    result = {
        "total_parameters": sum(parameter.numel() for parameter in model.parameters()),
        "gflops_per_caption": round(flops / 1e9, 6),
        "flops_counted_new_tokens": int(flops_new_tokens),
        "latency_ms_mean": round(float(np.mean(latencies)), 3),
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 3),
        "new_tokens_mean": round(float(np.mean(new_tokens)), 2),
        "num_images": len(latencies),
        "batch_size": 1,
        "num_beams": num_beams,
        "max_new_tokens": max_new_tokens,
        "fixed_length": fixed_length,
        "prompt": prompt.removeprefix(IMAGE_TOKEN),
        "device": describe_device(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
    logger.info("characteristics: %s", result)
    return result
