"""Fine-tune PaliGemma into TSN-PaliGemma with QLoRA and Seq2SeqTrainer; evaluate by generating captions.

    python finetune.py configs/demo.yaml [--key value ...]
    accelerate launch --config_file configs/accelerate/ddp.yaml finetune.py configs/risc_paligemma_3b.yaml
    python finetune.py configs/demo.yaml --do_train false --output_dir outputs/zero-shot   # zero-shot baseline
    python finetune.py configs/demo.yaml --hpo_trials 8                                     # -> best_config.yaml

Outputs in output_dir: checkpoint-*/ (resumed from automatically), adapter/, merged/ (LoRA merged into a full-precision
base; loads with AutoModel...trust_remote_code), finetune_config.yaml, eval_results.json, predictions.jsonl,
val_predictions.jsonl, samples.png, characteristics.json, training_summary.json. See docs/training.md.
"""

import logging
import sys
from pathlib import Path

import torch
import transformers
from transformers import GenerationConfig, set_seed

from finetuning.arguments import (
    ConfigError,
    on_cuda,
    parse_finetune_args,
    resolve_quantization,
    resolve_strategy,
    resolved_config,
    write_config,
)
from finetuning.data import CaptionCollator, load_splits
from finetuning.model_setup import (
    count_parameters,
    load_processor,
    load_training_model,
    merge_adapter,
    merged_dtype,
    unwrapped_model,
)
from finetuning.outputs import last_complete_checkpoint, summary_table, training_losses, write_json, write_sample_grid
from finetuning.trainer import CaptionScorer, TSNPaliGemmaTrainer

logger = logging.getLogger("finetune")


def tsn_settings(config) -> dict:
    """Every tsn_* option of a model config: rebuilding from the base with these gives the same architecture."""
    return {key: value for key, value in config.to_dict().items() if key.startswith("tsn_")}


def caption_generation_config(model, generation_args) -> GenerationConfig:
    config = GenerationConfig.from_dict(model.generation_config.to_dict())
    config.update(
        do_sample=False,
        num_beams=generation_args.num_beams,
        max_new_tokens=generation_args.max_new_tokens,
        min_new_tokens=generation_args.min_new_tokens,
        length_penalty=generation_args.length_penalty,
        no_repeat_ngram_size=generation_args.no_repeat_ngram_size,
        max_length=None,
    )
    return config


def build_trainer(args, model, processor, splits, callbacks=None, model_init=None) -> TSNPaliGemmaTrainer:
    data = args.data
    collator = CaptionCollator.build(processor, data.prompt, data.caption_choice, data.max_length, data.augment)
    trainer = TSNPaliGemmaTrainer(
        model=None if model_init else model,
        model_init=model_init,
        args=args.training,
        train_dataset=splits["train"],
        eval_dataset=splits["val"],
        data_collator=collator,
        processing_class=processor,
        caption_generation_config=caption_generation_config(model, args.generation),
        scorer=CaptionScorer(processor, data.prompt),
        callbacks=callbacks,
    )
    return trainer


def train(args, trainer, splits, summary: dict) -> None:
    training = args.training
    checkpoint = training.resume_from_checkpoint or last_complete_checkpoint(training.output_dir)
    summary["resumed_from"] = checkpoint
    if args.run.evaluate_before_training and training.do_predict and checkpoint is None:
        trainer.predict(splits["test"], metric_key_prefix="baseline")
    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    summary["first_train_loss"], summary["last_train_loss"] = training_losses(trainer.state.log_history)
    summary.update(
        global_step=trainer.state.global_step,
        train_runtime_s=result.metrics.get("train_runtime"),
        best_checkpoint=trainer.state.best_model_checkpoint,
    )


def save_trained(args, trainer, processor, output_dir: Path) -> Path:
    """full / freeze: no adapter; merged/ is the trained model itself (the best checkpoint's, in merged_dtype)."""
    merged_dir = output_dir / "merged"
    if trainer.is_world_process_zero():
        model = unwrapped_model(trainer.accelerator.unwrap_model(trainer.model))
        model.generation_config = trainer.caption_generation_config
        model.to(merged_dtype(args.model, args.training)).save_pretrained(merged_dir)
        processor.save_pretrained(merged_dir)
    trainer.accelerator.wait_for_everyone()
    return merged_dir


def save_and_merge(args, trainer, processor, tsn_options: dict, output_dir: Path):
    """adapter/ (LoRA + segment encoder, processor, TSN config) and merged/ (the publishable full model)."""
    adapter_dir, merged_dir = output_dir / "adapter", output_dir / "merged"
    trainer.save_model(str(adapter_dir))  # the best checkpoint's adapter with load_best_model_at_end
    if trainer.is_world_process_zero():
        trainer.accelerator.unwrap_model(trainer.model).base_model.model.config.save_pretrained(adapter_dir)
        merged = merge_adapter(args.model, tsn_options, adapter_dir, merged_dtype(args.model, args.training))
        merged.generation_config = trainer.caption_generation_config
        merged.save_pretrained(merged_dir)
        processor.save_pretrained(merged_dir)
    trainer.accelerator.wait_for_everyone()
    return merged_dir


def evaluate_published(args, merged_dir: Path, processor, splits, output_dir: Path, summary: dict):
    """Final val/test scores come from the merged model read back from disk: the numbers belong to what is
    published, and predictions.jsonl is what that model reproduces."""
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
            write_outputs(args, model, processor, splits["test"], trainer.scorer, output_dir, summary)
    return trainer


def write_outputs(args, model, processor, test_split, scorer, output_dir: Path, summary: dict) -> None:
    """samples.png and characteristics.json from the published model."""
    from characteristics import measure_characteristics

    count = min(args.run.grid_images, len(test_split))
    images = [row["image"].convert("RGB") for row in test_split.select(range(count))]
    write_sample_grid(scorer.last_records[:count], images, output_dir / "samples.png")
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


def run(args, callbacks=None) -> dict:
    training = args.training
    output_dir = Path(training.output_dir)
    set_seed(training.seed)
    quantization = resolve_quantization(args.model.quantization, on_cuda(training), args.model.train_strategy)
    strategy = resolve_strategy(args.model.train_strategy, quantization)
    with training.main_process_first(desc="loading RISC"):  # one process builds the Arrow cache, the rest reuse it
        splits = load_splits(args.data)
    if args.run.hpo_trials:
        from finetuning.hpo import run_search

        return run_search(args, splits, quantization, build_trainer)
    checkpointing = bool(training.activation_checkpointing)
    model = load_training_model(args.model, args.tsn.overrides(), training, quantization, strategy)
    training.activation_checkpointing = False  # load_training_model did it (non-reentrant, after kbit prep)
    push = training.push_to_hub
    # The token stays in memory only: the Trainer pickles its arguments into every checkpoint (training_args.bin).
    hub_token, training.hub_token = training.hub_token, None
    training.push_to_hub = False  # the Trainer would push bare adapters; push_to_hub.py publishes the merged model
    config = unwrapped_model(model).config
    processor = load_processor(args.model, config)
    total, trainable = count_parameters(model)
    summary = {
        "train_strategy": strategy,
        "quantization": quantization,
        "total_parameters": total,
        "trainable_parameters": trainable,
        "integration": config.tsn_integration,
        "world_size": training.world_size,
    }
    if training.process_index == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        values = resolved_config(
            args,
            train_strategy=strategy,
            quantization=quantization,
            activation_checkpointing=checkpointing,
            **tsn_settings(config),
        )
        header = f"train_strategy {strategy}: {trainable:,} of {total:,} parameters train"
        write_config(values, output_dir / "finetune_config.yaml", header=header)
    trainer = build_trainer(args, model, processor, splits, callbacks=callbacks)
    if training.do_train:
        train(args, trainer, splits, summary)
        if strategy in ("full", "freeze"):
            merged_dir = save_trained(args, trainer, processor, output_dir)
        else:
            merged_dir = save_and_merge(args, trainer, processor, tsn_settings(config), output_dir)
        del trainer, model
        trainer = evaluate_published(args, merged_dir, processor, splits, output_dir, summary)
    else:  # zero-shot / as-is evaluation of any model, scored exactly like a fine-tuned one
        if training.do_eval:
            trainer.evaluate(splits["val"])
        if training.do_predict:
            trainer.predict(splits["test"])
    if trainer.is_world_process_zero():
        write_json(summary, output_dir / "training_summary.json")
        if push:
            summary["pushed"] = push_outputs(output_dir, training, hub_token)
    return summary


def push_outputs(output_dir: Path, training, token: str | None) -> bool:
    """Publish the merged model with push_to_hub.py; a failure keeps the outputs and says how to retry."""
    from push_to_hub import PushToHubError, publish

    try:
        publish(output_dir, repo_id=training.hub_model_id, token=token, private=bool(training.hub_private_repo))
    except PushToHubError as error:
        logger.error(
            "%s\nThe outputs are kept; retry with: python push_to_hub.py %s --repo_id %s",
            error,
            output_dir,
            training.hub_model_id,
        )
        return False
    return True


def main(argv: list[str] | None = None, callbacks=None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    try:
        args = parse_finetune_args(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as error:
        print(f"finetune.py: error: {error}", file=sys.stderr)
        return 2
    summary = run(args, callbacks=callbacks)
    if args.training.process_index == 0 and not args.run.hpo_trials:
        print(summary_table(args.training.output_dir, summary))
    return 1 if summary.get("pushed") is False else 0


if __name__ == "__main__":
    sys.exit(main())
