"""Fine-tune PaliGemma into TSN-PaliGemma (QLoRA, LoRA, full or partial training) with Seq2SeqTrainer; evaluate by
generating from the prompt alone and scoring with the task's own metrics (captions: coco-caption; detection: COCO AP).

    python finetune.py configs/demo.yaml [--key value ...]
    accelerate launch --config_file configs/accelerate/ddp.yaml finetune.py configs/risc_paligemma_3b.yaml
    python finetune.py configs/demo.yaml --do_train false --output_dir outputs/zero-shot   # zero-shot baseline
    python finetune.py configs/demo.yaml --hpo_trials 8                                     # -> best_config.yaml
    python finetune.py configs/demo.yaml --task detect --dataset_dir DETECTION_DIR          # COCO / PaliGemma JSONL

Outputs in output_dir: checkpoint-*/ (resumed from automatically), adapter/ (LoRA strategies), merged/ (the
publishable model; loads with AutoModel...trust_remote_code), finetune_config.yaml, eval_results.json,
predictions.jsonl, val_predictions.jsonl, samples.png, characteristics.json, training_summary.json.

The whole story reads top to bottom in `run`: parse -> data -> model -> trainer -> train -> evaluate the published
model -> outputs -> publish. Each stage is one call into `finetuning/`.
"""

import logging
import sys
from pathlib import Path

import transformers
from transformers import set_seed

from finetuning.arguments import ConfigError, parse_finetune_args
from finetuning.data import dataset_names, images_per_source, load_splits
from finetuning.evaluation import evaluate_as_is, evaluate_published
from finetuning.model_setup import plan_training, prepare_training_model, save_trained_model, unwrapped_model
from finetuning.outputs import publish_outputs, summary_table, write_json, write_run_config
from finetuning.resume import prepare_output_dir
from finetuning.trainer import build_trainer
from finetuning.training import train
from tasks import recorded_tasks


def run(args, callbacks=None) -> dict:
    """One run of finetune.py with parsed arguments; returns the summary written to training_summary.json."""
    training = args.training
    output_dir = Path(training.output_dir)
    set_seed(training.seed)
    plan = plan_training(args)  # the strategy and the quantization, resolved
    with training.main_process_first(desc="loading RISC"):  # one process builds the Arrow cache, the rest reuse it
        splits = load_splits(args.data, seed=training.seed)
    if args.run.hpo_trials:
        from finetuning.hpo import run_search

        return run_search(args, splits, plan.quantization)

    model, processor, summary = prepare_training_model(args, plan)
    if training.do_train:
        prepare_output_dir(args)  # --overwrite_output_dir clears the previous run; this run's settings recorded
    write_run_config(args, plan, summary, unwrapped_model(model).config)
    training.activation_checkpointing = False  # the model has it already (non-reentrant, after kbit prep)
    # The token stays in memory only: the Trainer pickles its arguments into every checkpoint (training_args.bin).
    hub_token, training.hub_token = training.hub_token, None
    push, training.push_to_hub = (
        training.push_to_hub,
        False,
    )  # push_to_hub.py publishes the merged model, not bare LoRA
    trainer = build_trainer(args, model, processor, splits, callbacks=callbacks)

    if training.do_train:
        summary["train_images"] = images_per_source(splits["train"])  # what the card says the model learned from
        summary["datasets"] = dataset_names(args.data)  # the run's own data, by name (never a local path)
        summary["base_tasks"] = sorted(recorded_tasks(unwrapped_model(model).config))  # what the base had learned
        summary.update(train(args, trainer, splits))
        merged_dir = save_trained_model(args, trainer, processor, plan, output_dir)
        del trainer, model
        trainer = evaluate_published(args, merged_dir, processor, splits, summary)
    else:
        evaluate_as_is(args, trainer, splits)

    if trainer.is_world_process_zero():
        write_json(summary, output_dir / "training_summary.json")
        if push:
            summary["pushed"] = publish_outputs(output_dir, training, hub_token)
    return summary


def main(argv: list[str] | None = None, callbacks=None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    try:
        args = parse_finetune_args(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as error:
        print(f"finetune.py: error: {error}", file=sys.stderr)
        return 2
    except SystemExit as error:  # --help printed the help
        return int(error.code or 0)
    summary = run(args, callbacks=callbacks)
    if args.training.process_index == 0 and not args.run.hpo_trials:
        print(summary_table(args.training.output_dir, summary))
    return 1 if summary.get("pushed") is False else 0


if __name__ == "__main__":
    sys.exit(main())
