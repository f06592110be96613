"""QLoRA training-step cost per integration: seconds/step, samples/s and peak memory, `enhanced`, `adapter` and
`replace` vs `direct` (plain PaliGemma) at the same config.

    python -m bench.train_step [--steps 5] [--warmup 2] [--threads 1] [--integrations direct enhanced adapter replace]
        [--real_size | --tiny_only] [--workdir /tmp/pg3b]

Every integration is trained exactly like `finetune.py` trains it: `from_base_pretrained(base, tsn_integration=...)`
quantized 4-bit NF4 (`qlora.quantization_config`), `qlora.apply_lora` (LoRA on the LM, gradient checkpointing, the
segment encoder fully trained), AdamW on the trainable parameters; one step is
forward + backward + optimizer step + zero_grad on the same batch of 4, after `warmup` untimed steps; the median of
`steps` timed steps is reported.
- `tiny_cpu` (always): the `direct` checkpoint of `scripts/make_tiny_checkpoint.py` as the base, fp32 compute, a
  batch of 4 real sample images + first captions (`dataset_builder/sample`, train split) through
  `collators.TSNPaliGemmaTrainCollator` with the processor resized for the integration (`processor_for_config`:
  adapter and replace change the image token count). Each integration runs in its own subprocess (this script with
  `--worker INTEGRATION`), so its peak resident memory (`ru_maxrss`) is its own. The tiny ratios say little about
  real size: an 11M-parameter ResNet-18 next to a 64-wide, 2-layer LM dominates the tiny step.
- `real_size_cuda` (whenever CUDA is there; `--real_size` insists on it): random weights at
  google/paligemma-3b-pt-224's size (the bf16 checkpoint of `bench/cuda_real_size.py`, built once in `workdir`
  and shared with it), bf16 compute, LoRA r=32, token batches of `bench/cuda_real_size.batch`; peak GPU memory is
  `torch.cuda.max_memory_allocated`, reset per integration, memory released between integrations.
CPU timings on a shared machine are noisy: the load average is recorded. Prints one JSON object as its last line.
"""

import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from qlora import apply_lora, quantization_config

REPO_ROOT = Path(__file__).resolve().parents[1]

INTEGRATIONS = ("direct", "enhanced", "adapter", "replace")
REAL_SIZE = "paligemma-3b-224"
BATCH_SIZE = 4
TINY_LORA = {"r": 32, "alpha": 64, "dropout": 0.1}  # finetune.py's defaults; the tiny LM is 64 wide
REAL_LORA = {"r": 32, "alpha": 64, "dropout": 0.1}


@dataclass
class TrainStepBenchArguments:
    steps: int = field(default=5, metadata={"help": "Timed training steps per integration (median reported)."})
    warmup: int = field(default=2, metadata={"help": "Untimed training steps before the timed ones."})
    threads: int = field(
        default=1,
        metadata={
            "help": "torch threads of the CPU workers (0: torch's own choice). One by default: the tiny model "
            "gains little from more, and more threads on a busy shared machine oversubscribe it."
        },
    )
    integrations: list[str] = field(
        default_factory=lambda: list(INTEGRATIONS),
        metadata={"help": "Integrations to time; `direct` is always added (first) as the reference."},
    )
    real_size: bool = field(
        default=False,
        metadata={"help": "Insist on the PaliGemma-3B-224-size run (random 4-bit, CUDA); it runs anyway with CUDA."},
    )
    tiny_only: bool = field(default=False, metadata={"help": "Skip the real-size run even when CUDA is available."})
    workdir: str = field(
        default="/tmp/pg3b", metadata={"help": "Where the real-size random bf16 checkpoint lives (built if absent)."}
    )
    worker: str | None = field(default=None, metadata={"help": "Internal: time one tiny integration and exit."})
    base: str | None = field(default=None, metadata={"help": "Internal: the tiny base checkpoint of --worker."})


# ---------------------------------------------------------------------------------------------------------- helpers
def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 2**10, 1)


def current_rss_mib() -> float | None:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 2**10, 1)
    return None


def quiet_loading() -> None:
    """No load report (the segment encoder is MISSING from a plain base by design) nor deprecation chatter."""
    import warnings

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def load_training_model(base: str | Path, integration: str, dtype: torch.dtype, lora: dict, **load_kwargs):
    """`finetuning.model_setup.load_training_model` for one integration: quantized base -> TSN -> LoRA."""
    model = TSNPaliGemmaForConditionalGeneration.from_base_pretrained(
        base,
        tsn_integration=integration,
        dtype=dtype,
        quantization_config=quantization_config("4bit", compute_dtype=dtype),
        **load_kwargs,
    )
    config = model.config
    model = apply_lora(
        model, r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"], quantized=True, gradient_checkpointing=True
    )
    return model, config


def train_steps(model, inputs: dict, steps: int, warmup: int, autocast_dtype: torch.dtype | None = None) -> dict:
    """`warmup` + `steps` AdamW steps on the same batch; per-step wall times of the timed ones and all losses."""
    cuda = inputs["input_ids"].is_cuda
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    times, losses = [], []
    for step in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=autocast_dtype, enabled=cuda and autocast_dtype is not None):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
        losses.append(round(loss.item(), 4))
    del optimizer
    median = statistics.median(times)
    return {
        "s_per_step": round(median, 4),
        "samples_per_s": round(inputs["input_ids"].shape[0] / median, 3),
        "s_per_step_min": round(min(times), 4),
        "s_per_step_all": [round(seconds, 4) for seconds in times],
        "losses": losses,
    }


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def add_ratios(results: dict, memory_key: str) -> None:
    direct = results.get("direct")
    if not direct or "s_per_step" not in direct:
        return
    for name, row in results.items():
        if name == "direct" or not isinstance(row, dict) or "s_per_step" not in row:
            continue
        row["ratio_vs_direct"] = round(row["s_per_step"] / direct["s_per_step"], 4)
        if direct[memory_key]:
            row[f"{memory_key}_ratio_vs_direct"] = round(row[memory_key] / direct[memory_key], 4)


# ------------------------------------------------------------------------------------------------------- tiny, CPU
def tiny_batch(base: str, config) -> dict:
    """4 train-split sample images, caption 1 each, through the training collator resized for `config`."""
    from transformers import AutoProcessor

    from collators import TSNPaliGemmaTrainCollator, processor_for_config
    from dataset_builder import SAMPLE_DIR, load_risc
    from tasks.caption import CaptionTask

    processor = processor_for_config(AutoProcessor.from_pretrained(base, trust_remote_code=True), config)
    rows = load_risc(SAMPLE_DIR)["train"].select(range(BATCH_SIZE))
    random.seed(0)
    batch = TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="first"))(list(rows))
    return {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "labels")}


def tiny_worker(args: TrainStepBenchArguments) -> dict:
    """Time one integration on CPU in this (fresh) process; its ru_maxrss is the peak of this integration alone."""
    import bitsandbytes  # noqa: F401  (the libraries' own memory goes into the baseline, not the model's share)
    import peft  # noqa: F401

    import dataset_builder  # noqa: F401

    baseline = peak_rss_mib()
    torch.manual_seed(0)
    # An explicit CPU map: without one, bitsandbytes' quantizer puts the model on the GPU whenever there is one.
    model, config = load_training_model(args.base, args.worker, torch.float32, TINY_LORA, device_map={"": "cpu"})
    inputs = tiny_batch(args.base, config)
    loaded = current_rss_mib()
    result = train_steps(model, inputs, args.steps, args.warmup)
    peak = peak_rss_mib()
    result.update(
        {
            "peak_rss_mib": peak,
            "peak_rss_over_baseline_mib": round(peak - baseline, 1),
            "baseline_rss_mib": baseline,  # after imports (torch, transformers, peft, bitsandbytes), before the model
            "loaded_rss_mib": loaded,
            "image_tokens": config.image_seq_length,
            "sequence_length": inputs["input_ids"].shape[1],
            "trainable_params": trainable_parameters(model),
            "threads": torch.get_num_threads(),
        }
    )
    return result


def run_worker(integration: str, base: Path, args: TrainStepBenchArguments) -> dict:
    command = [
        sys.executable,
        "-m",
        "bench.train_step",
        "--worker",
        integration,
        "--base",
        str(base),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ]
    command += ["--threads", str(args.threads)]
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)  # stderr passes through
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"worker {integration} failed (exit {done.returncode}):\n{done.stdout[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["worker_wall_s"] = round(time.perf_counter() - start, 2)
    return result


def tiny_cpu(args: TrainStepBenchArguments, integrations: list[str]) -> dict:
    from dataset_builder import SAMPLE_DIR, load_risc
    from scripts.make_tiny_checkpoint import TinyCheckpointArguments, make_tiny_checkpoint

    load_risc(SAMPLE_DIR)  # build the Arrow cache once here, not inside a timed worker
    results = {
        "device": cpu_name(),
        "dtype": "float32 (4-bit NF4 base)",
        "batch_size": BATCH_SIZE,
        "lora": TINY_LORA,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    with tempfile.TemporaryDirectory(prefix="tiny-base-") as folder:
        # The base is a plain (direct) PaliGemma, like google/paligemma-3b-pt-224 in finetune.py: every integration
        # gets the same base weights and a freshly initialised segment encoder.
        base = make_tiny_checkpoint(TinyCheckpointArguments(output_dir=folder, integration="direct"))
        for integration in integrations:
            row = run_worker(integration, base, args)
            results[integration] = row
            print(
                f"  tiny {integration:8s}: {row['s_per_step']:.4f} s/step ({row['samples_per_s']:.2f} samples/s), "
                f"peak RSS {row['peak_rss_mib']:.0f} MiB, {row['image_tokens']} image tokens, "
                f"loss {row['losses'][0]} -> {row['losses'][-1]}",
                file=sys.stderr,
            )
    add_ratios(results, "peak_rss_mib")
    return results


# ------------------------------------------------------------------------------------------------ real size, CUDA
def real_size_one(folder: Path, integration: str, args: TrainStepBenchArguments) -> dict:
    from bench.cuda_real_size import batch

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model, config = load_training_model(folder, integration, torch.bfloat16, REAL_LORA, device_map={"": 0})
    loaded = torch.cuda.memory_allocated() / 2**30
    inputs = batch(config, BATCH_SIZE, with_caption=True)
    result = train_steps(model, inputs, args.steps, args.warmup, autocast_dtype=torch.bfloat16)
    result.update(
        {
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "loaded_gpu_memory_gib": round(loaded, 3),
            "image_tokens": config.image_seq_length,
            "sequence_length": inputs["input_ids"].shape[1],
            "trainable_params": trainable_parameters(model),
        }
    )
    del model, inputs
    gc.collect()
    torch.cuda.empty_cache()
    return result


def real_size_cuda(args: TrainStepBenchArguments, integrations: list[str]) -> dict:
    from bench.cuda_real_size import real_size_checkpoint

    folder = real_size_checkpoint(args.workdir)
    results = {
        "device": torch.cuda.get_device_name(),
        "size": REAL_SIZE,
        "dtype": "bfloat16 (4-bit NF4 base)",
        "batch_size": BATCH_SIZE,
        "lora": REAL_LORA,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    for integration in integrations:
        row = real_size_one(folder, integration, args)
        results[integration] = row
        print(
            f"  {REAL_SIZE} {integration:8s}: {row['s_per_step']:.4f} s/step ({row['samples_per_s']:.2f} "
            f"samples/s), peak {row['peak_gpu_memory_gib']:.2f} GiB, {row['image_tokens']} image tokens",
            file=sys.stderr,
        )
    add_ratios(results, "peak_gpu_memory_gib")
    return results


# ------------------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(TrainStepBenchArguments).parse_args_into_dataclasses(args=argv)
    quiet_loading()
    if args.worker is not None:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.worker not in INTEGRATIONS or args.base is None:
            raise SystemExit(f"--worker takes one of {list(INTEGRATIONS)} and needs --base")
        result = tiny_worker(args)
        print(json.dumps(result))
        return result

    unknown = [name for name in args.integrations if name not in INTEGRATIONS]
    if unknown:
        raise SystemExit(f"--integrations {unknown} invalid; choose from {list(INTEGRATIONS)}")
    integrations = ["direct"] + [name for name in dict.fromkeys(args.integrations) if name != "direct"]
    real_size = args.real_size or (torch.cuda.is_available() and not args.tiny_only)
    if real_size and not torch.cuda.is_available():
        raise SystemExit("--real_size needs a CUDA GPU (3B parameters, 4-bit); run without it on CPU (tiny only).")
    start = time.perf_counter()
    threads = args.threads or torch.get_num_threads()  # the CPU workers'
    output = {
        "benchmark": "train_step",
        "torch": torch.__version__,
        "threads": threads,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_load_average_start": load_average(),
    }

    print(
        f"tiny config, CPU ({cpu_name()}, {threads} thread(s)), 4-bit NF4 + LoRA, batch "
        f"{BATCH_SIZE}, {args.warmup} warm-up + {args.steps} timed steps:",
        file=sys.stderr,
    )
    output["tiny_cpu"] = tiny_cpu(args, integrations)

    if real_size:
        print(
            f"{REAL_SIZE}, random weights, 4-bit NF4 bf16 + LoRA r={REAL_LORA['r']}, {torch.cuda.get_device_name()}:",
            file=sys.stderr,
        )
        output["real_size_cuda"] = real_size_cuda(args, integrations)
    else:
        output["real_size_cuda"] = {"skipped": "needs CUDA"}
    output["cpu_load_average_end"] = load_average()
    output["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(output))
    return output


if __name__ == "__main__":
    main()
