"""Cost of one SCST step against one cross-entropy step at the same batch of images.

    python -m bench.scst_step [--batch_size 4] [--samples 5] [--steps 3] [--max_new_tokens 20]

- `cpu_rs_mini`: the shipped captioner (`examples/rs-mini`, every weight trains, float32), a batch of bundled
  sample images; the SCST step samples `samples` captions per image (temperature 0.5, up to `max_new_tokens`),
  rewards them by CIDEr-D and back-propagates; the cross-entropy step trains on one reference caption per image.
- `cuda_real_size` (whenever CUDA is there): random weights at PaliGemma-3B-224's size (`bench/cuda_real_size.py`'s
  checkpoint), 4-bit NF4 + LoRA r=32, bf16; the reward is then ~0 (random captions) but the work is the real one.

Each figure is the median of `steps` timed steps after one warm-up step. The last line printed is JSON with
`scst_over_xent` per setting.
"""

import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, HfArgumentParser

from collators import TSNPaliGemmaSCSTCollator, TSNPaliGemmaTrainCollator
from dataset_builder import SAMPLE_DIR, load_risc
from finetuning.scst import SCSTSettings, scst_loss
from finetuning.trainer import caption_positions, causal_lm_loss
from metrics import CiderDReward
from tasks.caption import CaptionTask

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "rs-mini"


@dataclass
class SCSTBenchArguments:
    batch_size: int = field(default=4, metadata={"help": "Images per step."})
    samples: int = field(default=5, metadata={"help": "SCST captions sampled per image."})
    steps: int = field(default=3, metadata={"help": "Timed steps (after one warm-up step)."})
    max_new_tokens: int = field(default=20, metadata={"help": "Longest sampled caption."})
    workdir: str = field(default="/tmp/pg3b", metadata={"help": "Where the CUDA real-size checkpoint is built."})


def _timed(step, count: int, cuda: bool) -> float:
    """Median seconds of `count` calls of `step` after one untimed warm-up call."""
    times = []
    for index in range(count + 1):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        if index:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(model, processor, rows, reward, args: SCSTBenchArguments, device: str) -> dict:
    """{"xent_step_s", "scst_step_s", "scst_over_xent"} of AdamW steps on `rows`."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    xent = {key: value.to(device) for key, value in TSNPaliGemmaTrainCollator(processor)(rows).items()}
    scst = TSNPaliGemmaSCSTCollator(processor)(rows)
    scst = {key: value.to(device) if torch.is_tensor(value) else value for key, value in scst.items()}
    settings = SCSTSettings(scst_samples=args.samples, scst_temperature=0.5, max_new_tokens=args.max_new_tokens)
    model.train()

    def xent_step():
        labels = xent["labels"]
        inputs = {key: value for key, value in xent.items() if key != "labels"}
        outputs = model(**inputs, logits_to_keep=caption_positions(labels))
        causal_lm_loss(outputs, labels, label_smoothing=0.1).backward()
        optimizer.step()
        optimizer.zero_grad()

    def scst_step():
        scst_loss(model, scst, reward, processor, CaptionTask(), settings).backward()
        optimizer.step()
        optimizer.zero_grad()

    cuda = device == "cuda"
    xent_s, scst_s = _timed(xent_step, args.steps, cuda), _timed(scst_step, args.steps, cuda)
    return {
        "xent_step_s": round(xent_s, 3),
        "scst_step_s": round(scst_s, 3),
        "scst_over_xent": round(scst_s / xent_s, 2),
    }


def cuda_real_size(args: SCSTBenchArguments, rows) -> dict:
    from bench.cuda_real_size import real_size_checkpoint
    from bench.train_step import REAL_LORA, load_training_model
    from collators import processor_for_config

    folder = real_size_checkpoint(args.workdir)
    model, config = load_training_model(folder, "enhanced", torch.bfloat16, REAL_LORA, device_map={"": 0})
    processor = processor_for_config(AutoProcessor.from_pretrained(EXAMPLE, trust_remote_code=True), config)
    reward = CiderDReward([list(row["captions"]) for row in rows])
    result = compare(model, processor, rows, reward, args, "cuda")
    result["device"] = torch.cuda.get_device_name()
    return result


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(SCSTBenchArguments).parse_args_into_dataclasses(args=argv)
    torch.set_num_threads(1)  # a small model gains nothing from a second thread, and loses much when cores are shared
    sample = load_risc(SAMPLE_DIR)
    rows = list(sample["train"].select(range(args.batch_size)))
    reward = CiderDReward([list(captions) for captions in sample["train"]["captions"]])
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(EXAMPLE, trust_remote_code=True, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(EXAMPLE, trust_remote_code=True)
    result = {
        "benchmark": "scst_step",
        "batch_size": args.batch_size,
        "samples": args.samples,
        "max_new_tokens": args.max_new_tokens,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_rs_mini": compare(model, processor, rows, reward, args, "cpu"),
    }
    del model
    if torch.cuda.is_available():
        result["cuda_real_size"] = cuda_real_size(args, rows)
    else:
        result["cuda_real_size"] = "skipped: no CUDA device"
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
