"""Data-pipeline throughput: RISC rows -> image decode -> PaliGemma processor -> training collator, per second.

    python -m bench.data_pipeline [--data_dir DATA_DIR] [--workers 0,2] [--image_size 224]

Rows come from `dataset_builder.load_risc` (Arrow cache built before timing), batches from a torch DataLoader
whose `collate_fn` is `collators.TSNPaliGemmaTrainCollator` with a processor resized to `image_size` (the tiny
checkpoint's tokenizer; SigLIP-224 geometry: 224 px, 256 image tokens). Each setting runs one untimed warm-up
pass (worker start-up, page cache), then a timed pass over every sample. torch uses one thread in the main
process and in each DataLoader worker. "per core" = samples per CPU-second spent by the main process and the
workers (read from /proc), which stays meaningful on a shared machine; wall-clock samples/s is reported too.
The last line printed is one JSON object.
"""

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader
from transformers import HfArgumentParser, PaliGemmaProcessor

from collators import TSNPaliGemmaTrainCollator, processor_for_config
from dataset_builder import SAMPLE_DIR, load_risc

REPO_ROOT = Path(__file__).resolve().parents[1]


logger = logging.getLogger("bench.data_pipeline")


@dataclass
class DataPipelineBenchArguments:
    data_dir: str = field(
        default=str(SAMPLE_DIR),
        metadata={"help": "RISC folder to read (default: the bundled 50-image sample; a larger one times better)."},
    )
    processor: str | None = field(
        default=None,
        metadata={"help": "Processor/checkpoint folder; default: build the tiny checkpoint in a temp folder."},
    )
    image_size: int = field(default=224, metadata={"help": "Side the processor resizes images to."})
    batch_size: int = field(default=16, metadata={"help": "Rows per batch."})
    workers: str = field(default="0,2", metadata={"help": "Comma-separated DataLoader num_workers to time."})
    max_samples: int | None = field(default=None, metadata={"help": "Use only the first N rows (default: all)."})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache (default: a temp folder)."})


def build_processor(args: DataPipelineBenchArguments, workdir: Path):
    folder = args.processor
    if folder is None:
        from scripts.make_tiny_checkpoint import TinyCheckpointArguments, make_tiny_checkpoint

        folder = make_tiny_checkpoint(TinyCheckpointArguments(output_dir=str(workdir / "tiny")))
    processor = PaliGemmaProcessor.from_pretrained(str(folder), trust_remote_code=True)  # no interactive prompt
    # PaliGemma's SigLIP geometry: patch 14, so 224 px -> 256 image tokens (448 -> 1024, 896 -> 4096)
    geometry = SimpleNamespace(
        image_seq_length=(args.image_size // 14) ** 2, vision_config=SimpleNamespace(image_size=args.image_size)
    )
    return processor_for_config(processor, geometry)


def _cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of other processes (Linux /proc); None where that cannot be read."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def time_loader(dataset, collator, batch_size: int, num_workers: int) -> dict:
    """Wall-clock samples/s and samples per CPU-second (main process + workers) of one timed pass."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collator,
        persistent_workers=num_workers > 0,
    )
    for _ in loader:  # warm-up pass: worker start-up and page cache are not what we measure
        pass
    # persistent workers survive between passes: their pids let us read the CPU time they spend
    iterator = iter(loader)
    pids = [worker.pid for worker in getattr(iterator, "_workers", [])]
    cpu_start, workers_start = time.process_time(), _cpu_seconds(pids)
    start = time.perf_counter()
    count = 0
    for batch in iterator:
        count += batch["pixel_values"].shape[0]
    seconds = time.perf_counter() - start
    workers_end = _cpu_seconds(pids)
    cpu = time.process_time() - cpu_start
    if pids:
        cpu = None if workers_start is None or workers_end is None else cpu + workers_end - workers_start
    return {"samples": count, "seconds": seconds, "cpu_seconds": None if cpu is None else round(cpu, 3)}


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(DataPipelineBenchArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    data_dir = Path(args.data_dir)
    if not (data_dir / "captions.csv").is_file():
        logger.warning("%s is absent; timing the bundled sample instead", data_dir)
        data_dir = SAMPLE_DIR
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        workdir = Path(tmp)
        processor = build_processor(args, workdir)
        dsd = load_risc(data_dir, cache_dir=args.cache_dir or str(workdir / "cache"))
        from datasets import concatenate_datasets

        dataset = concatenate_datasets([dsd[split] for split in dsd])
        if args.max_samples:
            dataset = dataset.select(range(min(args.max_samples, len(dataset))))
        collator = TSNPaliGemmaTrainCollator(processor)  # the default task: one random caption per image
        first = collator([dataset[0]])
        assert first["pixel_values"].shape[-2:] == (args.image_size, args.image_size), first["pixel_values"].shape

        runs = {}
        for num_workers in (int(w) for w in args.workers.split(",") if w.strip()):
            runs[num_workers] = run = time_loader(dataset, collator, args.batch_size, num_workers)
            logger.info(
                "num_workers=%d: %d samples in %.2f s (%.1f samples/s), %s CPU-s",
                num_workers,
                run["samples"],
                run["seconds"],
                run["samples"] / run["seconds"],
                run["cpu_seconds"],
            )

    # Per core = samples per CPU-second actually spent (main process + workers): unlike wall-clock / cores, it
    # does not depend on how busy a shared machine is. Wall-clock samples/s is reported as measured.
    per_core = {
        str(w): round(run["samples"] / run["cpu_seconds"], 1) if run["cpu_seconds"] else None
        for w, run in runs.items()
    }
    summary = {
        "benchmark": "data_pipeline",
        "data_dir": Path(data_dir).name,  # the folder's name: no machine path in the output
        "n_samples": len(dataset),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "samples_per_s": {str(w): round(run["samples"] / run["seconds"], 1) for w, run in runs.items()},
        "samples_per_s_per_core": per_core,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "image_processor": type(processor.image_processor).__name__,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
