"""Captioning speed, TSN (enhanced) vs direct (plain PaliGemma): captions/s and ms/image, same weights and length.

    python -m bench.generation [--real_size | --tiny_only] [--new_tokens 20] [--repeats 3] [--threads N]

Settings: batch 1 and 8 x greedy and 4 beams; every call generates exactly `new_tokens` tokens
(min_new_tokens = max_new_tokens) so both models do the same decoding work. The direct model gets the enhanced
model's weights minus the segment encoder (`model.tsn`), so the only difference is the encoder and its fusion.
- `tiny` (always, CPU): `scripts/make_tiny_checkpoint.py`'s model on real sample images through its processor.
- `paligemma-3b-224` (whenever CUDA is there; `--real_size` insists on it): random weights at
  google/paligemma-3b-pt-224's size in bf16 (the config and token batches of `bench/cuda_real_size.py`).
Each setting: one untimed warm-up per model, then `repeats` timed calls alternating direct / tsn (so drift hits both);
the median is reported. Prints one JSON object as its last line.
"""

import copy
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from bench.flops import REAL_SIZES
from collators import IMAGE_TOKEN
from configuration_tsn_paligemma import TSNPaliGemmaConfig
from model_cost import describe_device
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from scripts.make_tiny_checkpoint import TinyCheckpointArguments, build_tiny_model
from tasks import DEFAULT_PROMPT

REPO_ROOT = Path(__file__).resolve().parents[1]

SAMPLE_IMAGES = REPO_ROOT / "dataset_builder" / "sample" / "resized"
REAL_SIZE = "paligemma-3b-224"


@dataclass
class GenerationBenchArguments:
    real_size: bool = field(
        default=False,
        metadata={"help": "Insist on the PaliGemma-3B-224-size run (random bf16, CUDA); it runs anyway with CUDA."},
    )
    tiny_only: bool = field(default=False, metadata={"help": "Skip the real-size run even when CUDA is available."})
    new_tokens: int = field(default=20, metadata={"help": "Tokens every caption gets (min = max new tokens)."})
    repeats: int = field(default=3, metadata={"help": "Timed calls per model and setting (median reported)."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's own choice)."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8], metadata={"help": "Batch sizes to time."})
    beams: list[int] = field(default_factory=lambda: [1, 4], metadata={"help": "Beam counts to time."})


def direct_twin(model: TSNPaliGemmaForConditionalGeneration) -> TSNPaliGemmaForConditionalGeneration:
    """The `direct` model with `model`'s weights (everything but the segment encoder), same device and dtype."""
    config = copy.deepcopy(model.config)
    config.tsn_integration = "direct"
    with torch.device(model.device):
        direct = TSNPaliGemmaForConditionalGeneration(config).to(model.dtype).eval()
    missing, unexpected = direct.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(key.startswith("model.tsn.") for key in unexpected), (missing, unexpected[:5])
    direct.generation_config = copy.deepcopy(model.generation_config)
    return direct


def tiny_models_and_inputs(batch_sizes: list[int]) -> tuple[dict, dict]:
    """{"direct", "tsn"} tiny models on CPU and {batch size: processor inputs} from the bundled sample images."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:  # the tokenizer is trained into it
        tsn, processor = build_tiny_model(TinyCheckpointArguments(output_dir=folder, integration="enhanced"))
    paths = sorted(SAMPLE_IMAGES.glob("*.jpg"))
    inputs = {}
    for size in batch_sizes:
        images = [Image.open(paths[index % len(paths)]).convert("RGB") for index in range(size)]
        batch = processor(images=images, text=[IMAGE_TOKEN + DEFAULT_PROMPT] * size, return_tensors="pt")
        inputs[size] = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids", "pixel_values")}
    return {"direct": direct_twin(tsn), "tsn": tsn}, inputs


def real_size_models_and_inputs(batch_sizes: list[int], dimensions: dict = REAL_SIZES[REAL_SIZE]) -> tuple[dict, dict]:
    """{"direct", "tsn"} at PaliGemma-3B-224's `dimensions`, random bf16 weights on CUDA; cuda_real_size's batches."""
    from bench.cuda_real_size import IMAGE_TOKEN as IMAGE_TOKEN_ID
    from bench.cuda_real_size import batch

    config = TSNPaliGemmaConfig(**dimensions, tsn_pretrained_backbone=False, image_token_index=IMAGE_TOKEN_ID)
    torch.manual_seed(0)
    with torch.device("cuda"):
        tsn = TSNPaliGemmaForConditionalGeneration(config).to(torch.bfloat16).eval()
    inputs = {}
    for size in batch_sizes:
        tokens = batch(tsn.config, size, with_caption=False)  # (size, image tokens + prompt) on cuda, fp32 pixels
        tokens["pixel_values"] = tokens["pixel_values"].to(torch.bfloat16)
        inputs[size] = tokens
    return {"direct": direct_twin(tsn), "tsn": tsn}, inputs


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_generate(model, inputs: dict, kwargs: dict) -> float:
    _synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        sequences = model.generate(**inputs, **kwargs)
    _synchronize()
    seconds = time.perf_counter() - start
    generated = sequences.shape[1] - inputs["input_ids"].shape[1]
    assert generated == kwargs["max_new_tokens"], f"expected {kwargs['max_new_tokens']} new tokens, got {generated}"
    return seconds


def compare(models: dict, inputs: dict, args: GenerationBenchArguments) -> dict:
    """Per setting: direct and tsn ms/image and captions/s (medians) and their ratio tsn / direct."""
    results = {}
    for size, batch in inputs.items():
        for beams in args.beams:
            kwargs = {
                "max_new_tokens": args.new_tokens,
                "min_new_tokens": args.new_tokens,
                "num_beams": beams,
                "do_sample": False,
            }
            times = {name: [] for name in models}
            for model in models.values():
                timed_generate(model, batch, kwargs)  # warm-up
            for _ in range(args.repeats):
                for name, model in models.items():
                    times[name].append(timed_generate(model, batch, kwargs))
            row = {}
            for name, seconds in times.items():
                median = statistics.median(seconds)
                row[name] = {"ms_per_image": round(1000 * median / size, 3), "captions_per_s": round(size / median, 2)}
            row["ratio_tsn_over_direct"] = round(row["tsn"]["ms_per_image"] / row["direct"]["ms_per_image"], 4)
            results[f"batch{size}_beams{beams}"] = row
            print(
                f"  batch {size}, {beams} beam(s): direct {row['direct']['ms_per_image']} ms/image, "
                f"tsn {row['tsn']['ms_per_image']} ms/image, ratio {row['ratio_tsn_over_direct']}",
                file=sys.stderr,
            )
    return results


def summary(results: dict, device: str, dtype: torch.dtype) -> dict:
    ratios = [row["ratio_tsn_over_direct"] for row in results.values()]
    return {
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "settings": results,
        "max_ratio_tsn_over_direct": max(ratios),
        "mean_ratio_tsn_over_direct": round(statistics.mean(ratios), 4),
    }


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(GenerationBenchArguments).parse_args_into_dataclasses(args=argv)
    real_size = args.real_size or (torch.cuda.is_available() and not args.tiny_only)
    if real_size and not torch.cuda.is_available():
        raise SystemExit("--real_size needs a CUDA GPU (3B parameters in bf16); run without it on CPU (tiny only).")
    output = {
        "benchmark": "generation",
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "configs": {},
    }

    if args.threads:
        torch.set_num_threads(args.threads)
    # CPU timings on a shared machine mean little without the load they were taken under.
    output["cpu_load_average_1min"] = round(os.getloadavg()[0], 2)
    print("tiny config, CPU:", file=sys.stderr)
    models, inputs = tiny_models_and_inputs(args.batch_sizes)
    output["configs"]["tiny"] = summary(compare(models, inputs, args), describe_device("cpu"), torch.float32)
    del models, inputs

    if real_size:
        print(f"{REAL_SIZE}, random weights, bf16, {torch.cuda.get_device_name()}:", file=sys.stderr)
        models, inputs = real_size_models_and_inputs(args.batch_sizes)
        output["configs"][REAL_SIZE] = summary(
            compare(models, inputs, args), torch.cuda.get_device_name(), torch.bfloat16
        )
        del models, inputs
    else:
        output["skipped"] = f"{REAL_SIZE} size: needs CUDA"
    print(json.dumps(output))
    return output


if __name__ == "__main__":
    main()
