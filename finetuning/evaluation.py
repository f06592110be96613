"""The evaluation stage of finetune.py: the published model read back from disk (after training), or the model as
it is (zero-shot), scored on val and test; samples.png and characteristics.json from the published model."""

import json
from pathlib import Path

import torch

from .arguments import on_cuda
from .model_setup import merged_dtype
from .outputs import write_json, write_sample_grid
from .trainer import build_trainer


def evaluate_published(args, merged_dir: Path, processor, splits, summary: dict):
    """Final val/test scores come from the merged model read back from disk: the numbers belong to what is
    published, and predictions.jsonl is what that model reproduces. Returns the evaluating trainer."""
    from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration

    cuda = on_cuda(args.training)
    dtype = merged_dtype(args.model, args.training) if cuda else torch.float32  # CPU: fp32 kernels, exact
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(merged_dir, dtype=dtype)
    model = model.to("cuda" if cuda else "cpu").eval()
    trainer = build_trainer(args, model, processor, splits)
    if args.training.do_eval:
        trainer.evaluate(splits["val"])
    if args.training.do_predict:
        trainer.predict(splits["test"])
        if trainer.is_world_process_zero():
            write_published_outputs(args, model, processor, splits["test"], summary)
    return trainer


def evaluate_as_is(args, trainer, splits):
    """Zero-shot / as-is evaluation of any model, scored exactly like a fine-tuned one."""
    if args.training.do_eval:
        trainer.evaluate(splits["val"])
    if args.training.do_predict:
        trainer.predict(splits["test"])
    return trainer


def write_published_outputs(args, model, processor, test_split, summary: dict) -> None:
    """samples.png (with the captions of predictions.jsonl) and characteristics.json from the published model."""
    from model_cost import measure_characteristics

    output_dir = Path(args.training.output_dir)
    count = min(args.run.grid_images, len(test_split))
    images = [row["image"].convert("RGB") for row in test_split.select(range(count))]
    with open(output_dir / "predictions.jsonl") as handle:
        records = [json.loads(line) for line, _ in zip(handle, range(count))]
    write_sample_grid(records, images, output_dir / "samples.png")
    characteristics = measure_characteristics(
        model,
        processor,
        images,
        prompt=args.data.prompt,
        num_beams=args.generation.num_beams,
        max_new_tokens=args.generation.max_new_tokens,
        num_images=count,
    )
    characteristics["trainable_parameters"] = summary.get("trainable_parameters")
    write_json(characteristics, output_dir / "characteristics.json")
