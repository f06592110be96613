"""CUDA check at the real PaliGemma-3B-224 size (random weights): QLoRA training step and generation, TSN vs direct.

    python -m bench.cuda_real_size [--workdir /tmp/pg3b] [--steps 5]

Builds a random TSN-PaliGemma (enhanced) at google/paligemma-3b-pt-224's size, saves it once (bf16), then for
`direct` and `enhanced`:
  - loads it 4-bit NF4 (bf16 compute, TSN/projector/lm_head unquantized), LoRA r=32 via `qlora.apply_lora`
    (gradient checkpointing), times training steps at batch 4 and records peak GPU memory;
  - loads it in bf16 and times `generate` (20 new tokens, forced) for batch 1 and 8, greedy and 4 beams.
Needs a CUDA GPU (without one it prints a JSON line saying it skipped). Prints one JSON object as its last line.
"""

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import torch

from bench.flops import REAL_SIZES
from configuration_tsn_paligemma import TSNPaliGemmaConfig
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from qlora import apply_lora, quantization_config

IMAGE_TOKEN, BOS, EOS, NEWLINE = 256000, 2, 1, 108
PROMPT_TOKENS, CAPTION_TOKENS, NEW_TOKENS = 4, 20, 20


def batch(config, size: int, with_caption: bool) -> dict:
    image_tokens = config.image_seq_length
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(1000, 200000, (size, PROMPT_TOKENS), generator=generator)
    parts = [
        torch.full((size, image_tokens), IMAGE_TOKEN),
        torch.full((size, 1), BOS),
        prompt,
        torch.full((size, 1), NEWLINE),
    ]
    prefix = sum(part.shape[1] for part in parts)
    if with_caption:
        parts += [torch.randint(1000, 200000, (size, CAPTION_TOKENS), generator=generator), torch.full((size, 1), EOS)]
    input_ids = torch.cat(parts, dim=1)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, prefix:] = 1
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "token_type_ids": token_type_ids,
        "pixel_values": torch.rand(size, 3, 224, 224, generator=generator) * 2 - 1,
    }
    if with_caption:
        inputs["labels"] = input_ids.masked_fill(token_type_ids == 0, -100)
    return {key: value.cuda() for key, value in inputs.items()}


def train_steps(folder: Path, integration: str, steps: int) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(
        folder,
        tsn_integration=integration,
        dtype=torch.bfloat16,
        device_map={"": 0},
        quantization_config=quantization_config("4bit", compute_dtype=torch.bfloat16),
    )
    loaded_gib = torch.cuda.memory_allocated() / 2**30
    model = apply_lora(model, r=32, alpha=64, dropout=0.1)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = batch(model.config, 4, with_caption=True)
    model.train()
    times, losses = [], []
    for step in range(steps + 2):  # 2 warm-up steps
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - start)
        losses.append(round(loss.item(), 4))
    seconds = sum(times) / len(times)
    result = {
        "seconds_per_step": round(seconds, 4),
        "samples_per_s": round(4 / seconds, 2),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "loaded_4bit_memory_gib": round(loaded_gib, 2),
        "trainable_params": trainable,
        "losses": losses,
    }
    del model, optimizer
    return result


def generation(folder: Path, integration: str) -> dict:
    torch.cuda.empty_cache()
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(
        folder, tsn_integration=integration, dtype=torch.bfloat16, device_map={"": 0}
    ).eval()
    result = {}
    for size in (1, 8):
        inputs = batch(model.config, size, with_caption=False)
        for beams in (1, 4):
            kwargs = {
                "max_new_tokens": NEW_TOKENS,
                "min_new_tokens": NEW_TOKENS,
                "num_beams": beams,
                "do_sample": False,
            }
            with torch.no_grad():
                model.generate(**inputs, **kwargs)  # warm-up
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(3):
                    model.generate(**inputs, **kwargs)
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / 3
            result[f"batch{size}_beams{beams}"] = {
                "ms_per_image": round(1000 * seconds / size, 2),
                "captions_per_s": round(size / seconds, 2),
            }
    del model
    return result


def real_size_checkpoint(workdir: str | Path) -> Path:
    """A random bf16 TSN-PaliGemma of PaliGemma-3B-224's size in `workdir`, built on the GPU once and reused."""
    folder = Path(workdir)
    if not (folder / "config.json").is_file():
        config = TSNPaliGemmaConfig(
            **REAL_SIZES["paligemma-3b-224"], tsn_pretrained_backbone=False, image_token_index=IMAGE_TOKEN
        )
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = TSNPaliGemmaForConditionalGeneration(config).to(torch.bfloat16)
        model.save_pretrained(folder)
        del model
        gc.collect()
        torch.cuda.empty_cache()
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/pg3b", help="where the random bf16 checkpoint is written")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (after 2 warm-up steps)")
    args = parser.parse_args()
    if not torch.cuda.is_available():  # `make bench` runs every script: report the skip, do not fail
        print(json.dumps({"benchmark": "cuda_real_size", "skipped": "no CUDA GPU on this machine"}))
        return
    folder = real_size_checkpoint(args.workdir)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for integration in ("direct", "enhanced"):
        results[integration] = {
            "train_4bit": train_steps(folder, integration, args.steps),
            "generate_bf16": generation(folder, integration),
        }
        print(integration, json.dumps(results[integration]), file=sys.stderr)
    overhead = {}
    for key, direct in results["direct"]["generate_bf16"].items():
        overhead[key] = round(results["enhanced"]["generate_bf16"][key]["ms_per_image"] / direct["ms_per_image"], 4)
    results["enhanced_generation_time_ratio"] = overhead
    results["enhanced_train_step_time_ratio"] = round(
        results["enhanced"]["train_4bit"]["seconds_per_step"] / results["direct"]["train_4bit"]["seconds_per_step"], 4
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
