"""Model characteristics for the model card: parameters, GFLOPs per caption, captioning latency, device and dtype.

`finetune.py` calls `measure_characteristics` on the merged model at the end of training and writes the result
(plus `trainable_parameters`) to `output_dir/characteristics.json`, which the model card reads. Standalone:

    python characteristics.py MODEL_DIR IMAGE_OR_FOLDER_OR_GLOB... [--num_images 8] [--num_beams 1]
        [--max_new_tokens 30] [--fixed_length false]

```python
>>> from captioning import load_image, load_model  # doctest: +SKIP
>>> model, processor = load_model("outputs/risc")  # doctest: +SKIP
>>> result = measure_characteristics(model, processor, [load_image("RSICD_00001.jpg")], num_images=8)  # doctest: +SKIP
>>> sorted(result)[:4]  # doctest: +SKIP
['batch_size', 'device', 'dtype', 'fixed_length']
```
"""

import json
import logging
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from transformers import HfArgumentParser

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
    device = model.device

    was_training = model.training
    model.eval()  # no dropout while measuring; the caller's mode is restored below
    try:
        inputs = generation_inputs(model, processor, [images[0]], prompt)
        counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS)
        with counter, torch.inference_mode():
            sequences = model.generate(**inputs, **generate_kwargs)
        flops_new_tokens = sequences.shape[1] - inputs["input_ids"].shape[1]

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
    finally:
        model.train(was_training)

    result = {
        "total_parameters": sum(parameter.numel() for parameter in model.parameters()),
        "gflops_per_caption": round(counter.get_total_flops() / 1e9, 6),
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
        "device": describe_device(device),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
    logger.info("characteristics: %s", result)
    return result


@dataclass
class CharacteristicsArguments:
    model: str = field(metadata={"help": "Checkpoint folder or Hub id (loaded like inference.py does)."})
    images: list[str] = field(
        default_factory=list, metadata={"help": "Image files, folders or glob patterns to time on."}
    )
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "Task prompt; '<image>' is prepended."})
    num_images: int = field(default=8, metadata={"help": "Timed images (after one warm-up)."})
    num_beams: int = field(default=1, metadata={"help": "Beams of generate."})
    max_new_tokens: int = field(default=30, metadata={"help": "Longest caption in tokens."})
    fixed_length: bool = field(default=False, metadata={"help": "Force every caption to max_new_tokens tokens."})


def main(argv: list[str] | None = None) -> int:
    """`python characteristics.py MODEL IMAGES... [--num_images 8]`: prints the characteristics as JSON."""
    from captioning import collect_inputs, load_image, load_model

    argv = list(sys.argv[1:] if argv is None else argv)
    positionals = []
    while argv and not argv[0].startswith("-"):
        positionals.append(argv.pop(0))
    if positionals:  # MODEL first, then the images
        argv = ["--model", positionals[0], *(["--images", *positionals[1:]] if positionals[1:] else []), *argv]
    parser = HfArgumentParser(CharacteristicsArguments, usage="characteristics.py MODEL IMAGES... [options]")
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    if not args.images:
        parser.error("no images given: pass image files, folders or glob patterns after MODEL.")
    try:
        paths = collect_inputs(args.images)[: args.num_images]
    except FileNotFoundError as error:
        parser.error(str(error))
    model, processor = load_model(args.model)
    result = measure_characteristics(
        model,
        processor,
        [load_image(path) for path in paths],
        prompt=args.prompt,
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens,
        num_images=args.num_images,
        fixed_length=args.fixed_length,
    )
    print(json.dumps(result, indent=2))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
