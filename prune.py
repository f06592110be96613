"""Block-influence layer pruning of TSN-PaliGemma's language model (and optionally SigLIP), ShortGPT-style.

    python prune.py --model_name_or_path examples/rs-mini --num_layers_to_remove 1 \
        --dataset_dir data/rsicd --output_dir outputs/rs-mini-pruned-1
    python prune.py --model_name_or_path outputs/rsicd-mini/merged --dataset_dir data/rsicd \
        --output_dir outputs/prune --report_k 0,1,2 --heal_config configs/rsicd_mini_heal.yaml  # the table

Scores every decoder layer by block influence (1 - cos(input, output) over the caption tokens of `num_images`
images of `split`), removes the `num_layers_to_remove` lowest, and saves a checkpoint whose config lists the removed
layers (`pruned_layers`); it loads with `AutoModel...(trust_remote_code=True)`. `scores.json` keeps every score.
Heal a pruned folder with finetune.py (LoRA, QLoRA or full) like any other model: `--model_name_or_path FOLDER`.
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from collators import TSNPaliGemmaTrainCollator
from dataset_builder import load_risc
from inference_core import load_model as load
from pruning import block_influence, choose_layers, remove_layers
from tasks import DEFAULT_PROMPT, task_for_prompt

logger = logging.getLogger("prune")


@dataclass
class PruneArguments:
    model_name_or_path: str = field(metadata={"help": "A TSN-PaliGemma folder or Hub id (e.g. examples/rs-mini)."})
    dataset_dir: str = field(metadata={"help": "RISC folder whose images and captions score the layers."})
    output_dir: str = field(metadata={"help": "Where the pruned checkpoint (or the --report_k sweep) goes."})
    num_layers_to_remove: int = field(default=1, metadata={"help": "Language-model layers to remove (k)."})
    num_vision_layers_to_remove: int = field(default=0, metadata={"help": "SigLIP encoder layers to remove."})
    split: str = field(default="val", metadata={"help": "Split whose images score the layers (never test)."})
    num_images: int = field(default=64, metadata={"help": "Images that score the layers."})
    batch_size: int = field(default=8, metadata={"help": "Images per scoring forward pass."})
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "Prompt before the caption."})
    report_k: str | None = field(
        default=None, metadata={"help": "Comma-separated k values (e.g. 0,1,2): prune each, evaluate, write a table."}
    )
    heal_config: str | None = field(
        default=None,
        metadata={
            "help": "finetune.py YAML used with --report_k: test scores of each pruned model as is, and after "
            "healing it with this recipe."
        },
    )


def scoring_batches(args: PruneArguments, processor) -> list[dict]:
    """Training-collator batches (prompt + caption 1) of the first `num_images` images of `split`."""
    dataset = load_risc(args.dataset_dir)
    if args.split not in dataset:
        raise ValueError(f"--split {args.split!r}: {args.dataset_dir} has the splits {sorted(dataset)}.")
    rows = list(dataset[args.split].select(range(min(args.num_images, len(dataset[args.split])))))
    collator = TSNPaliGemmaTrainCollator(processor, task=task_for_prompt(args.prompt).evaluation_copy())
    return [collator(rows[start : start + args.batch_size]) for start in range(0, len(rows), args.batch_size)]


def layer_scores(model, batches, vision: bool) -> dict[str, list[float]]:
    scores = {"text": block_influence(model, batches, "text")}
    if vision:
        scores["vision"] = block_influence(model, batches, "vision")
    return scores


def prune_and_save(model, processor, scores: dict, text_k: int, vision_k: int, output_dir: Path) -> dict:
    """Remove the lowest-scoring layers from `model` (in place) and save it with its processor; returns the removed
    layer indices per part."""
    removed = {"text": choose_layers(scores["text"], text_k)}
    if vision_k:
        removed["vision"] = choose_layers(scores["vision"], vision_k, "--num_vision_layers_to_remove")
    remove_layers(model, text=removed["text"], vision=removed.get("vision", []))
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    (output_dir / "scores.json").write_text(json.dumps({"block_influence": scores, "removed": removed}, indent=2))
    logger.info("Removed %s -> %s", removed, output_dir)
    return removed


def check_arguments(args: PruneArguments) -> None:
    if args.num_layers_to_remove < 0 or args.num_vision_layers_to_remove < 0:
        raise ValueError(
            f"--num_layers_to_remove={args.num_layers_to_remove} / --num_vision_layers_to_remove="
            f"{args.num_vision_layers_to_remove}: a layer count cannot be negative. Fix: use 0 or more."
        )
    if args.report_k is not None and args.heal_config is None:
        raise ValueError("--report_k evaluates every pruned model with a finetune.py recipe. Fix: add --heal_config.")
    if args.split == "test":
        raise ValueError("--split test would choose layers on the images the report scores. Fix: --split val.")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = HfArgumentParser(PruneArguments).parse_args_into_dataclasses(args=argv)
    try:
        check_arguments(args)
        model, processor = load(args.model_name_or_path)
        # A wrong k fails before any scoring work.
        choose_layers([0.0] * model.config.text_config.num_hidden_layers, args.num_layers_to_remove)
        scores = layer_scores(model, scoring_batches(args, processor), vision=args.num_vision_layers_to_remove > 0)
        if args.report_k is not None:
            from pruning.report import write_report

            write_report(args, model, processor, scores)
            return 0
        removed = prune_and_save(
            model,
            processor,
            scores,
            args.num_layers_to_remove,
            args.num_vision_layers_to_remove,
            Path(args.output_dir),
        )
    except ValueError as error:
        print(f"prune.py: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"output_dir": args.output_dir, "removed": removed, "block_influence": scores}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
