"""`TSNPaliGemmaTrainer`: a Seq2SeqTrainer whose evaluation computes the loss on prompt + target and GENERATES FROM
THE PROMPT ONLY (the `gen_*` tensors of `TSNPaliGemmaEvalCollator`), then has the split's task read and score the
outputs: captions against all 5 references with the project's coco-caption metrics, overall and per source; boxes
with COCOeval, overall and per class."""

import copy
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GenerationConfig, Seq2SeqTrainer
from transformers.trainer_utils import EvalLoopOutput

from metrics import flatten_metrics
from tasks.likelihood import answer_tokens, likeliest_answers, scored_pieces

from .cell_loss import CELL_HEAD, attach_cell_head, cell_grid, cell_loss
from .loc_loss import loc_aware_token_losses, loc_token_range
from .model_setup import unwrapped_model
from .scst import SCSTStats, scst_loss

logger = logging.getLogger(__name__)

GENERATION_KEYS = ("gen_input_ids", "gen_attention_mask", "gen_token_type_ids")


def caption_positions(labels: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the positions whose NEXT token is labelled, i.e. where the loss reads the logits."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep


def row_balanced_weights(labels: torch.Tensor) -> torch.Tensor:
    """(B, L-1) float: per shifted label position, a weight that makes every row of the batch count the same.

    A row of n labelled tokens gives each of them (T / R) / n, T the batch's labelled tokens and R its rows with any:
    the weights still sum to T, so dividing the weighted sum by the token count (or by the trainer's
    `num_items_in_batch` under gradient accumulation and several processes) gives the mean over rows of each row's
    mean token loss, and a batch keeps its token share of an accumulated step.
    """
    labelled = labels[:, 1:] != -100  # (B, L-1)
    per_row = labelled.sum(dim=1, keepdim=True)  # (B, 1)
    rows = (per_row > 0).sum().clamp(min=1)
    return labelled * (labelled.sum() / rows) / per_row.clamp(min=1)


def causal_lm_loss(
    outputs,
    labels: torch.Tensor,
    num_items_in_batch=None,
    label_smoothing: float = 0.0,
    weighting: str = "token",
    loc_sigma: float = 0.0,
    first_loc: int | None = None,
):
    """Next-token cross entropy with label smoothing, labels SHIFTED by one.

    `outputs.logits` is either (B, L, V), every position, or (M, V), only the `caption_positions` of `labels` in
    row-major order (the model's boolean `logits_to_keep`, what training uses). transformers' LabelSmoother shifts
    only for model classes it knows as causal LMs; this custom class is not one, so the Trainer would smooth against
    unshifted labels. Summed and divided by the batch's label count (or by `num_items_in_batch` under gradient
    accumulation), as the model's own loss is; `weighting="row"` weighs each token by `row_balanced_weights` first.
    With `loc_sigma` > 0 a `<loc>` target (ids from `first_loc`) is spread over its neighbouring bins
    (`loc_aware_token_losses`).
    """
    targets = labels[:, 1:].to(outputs.logits.device)  # (B, L-1): position t predicts token t+1
    labelled = targets != -100
    if outputs.logits.dim() == 3:
        logits = outputs.logits[:, :-1, :].reshape(-1, outputs.logits.shape[-1])  # (B * (L-1), V)
        flat_targets = targets.reshape(-1)
    else:
        logits, flat_targets = outputs.logits, targets[labelled]  # (M, V), (M,)
    if loc_sigma > 0:
        token_losses = loc_aware_token_losses(logits, flat_targets, first_loc, loc_sigma, label_smoothing)
    else:
        token_losses = F.cross_entropy(
            logits.float(), flat_targets, ignore_index=-100, label_smoothing=label_smoothing, reduction="none"
        )  # (B * (L-1),) or (M,); 0 where ignored
    if weighting == "row":
        weights = row_balanced_weights(labels.to(outputs.logits.device))  # (B, L-1)
        token_losses = token_losses * (weights.reshape(-1) if outputs.logits.dim() == 3 else weights[labelled])
    # Summed in float64: the total then does not depend on how many positions were computed (lean or full) beyond
    # the rounding of each token's loss.
    loss = token_losses.double().sum().to(token_losses.dtype)
    count = num_items_in_batch if num_items_in_batch is not None else labelled.sum()
    return loss / torch.as_tensor(count, device=loss.device).clamp(min=1)


def score_generated(processor, task, predictions: dict, rows) -> tuple[list[dict], dict]:
    """(records, scores) of one evaluated split: the generated tokens decoded, matched back to their rows by
    `row_index` (a distributed gather may reorder and duplicate them), read back (with each token's probability,
    for a task that scores its outputs from them), merged into one record per image (`Task.image_records`: a task
    evaluated on tiles) and scored by the split's task.

    `predictions`: {"tokens": (N, T) ids, -100 = cross-batch padding; "row_index": (N, 1); optionally
    "probabilities": (N, T)}. `rows`: the evaluated split; only the task's `row_columns` are read, so no image is
    decoded here.
    """
    tokenizer = processor.tokenizer
    tokens = torch.as_tensor(predictions["tokens"])
    kept = tokens >= 0
    tokens = tokens.masked_fill(~kept, tokenizer.pad_token_id)
    probabilities = predictions.get("probabilities")
    indices = torch.as_tensor(predictions["row_index"]).reshape(-1).tolist()
    by_index = {}
    for position, (index, text) in enumerate(zip(indices, processor.batch_decode(tokens, skip_special_tokens=True))):
        if index in by_index:  # duplicates: distributed padding
            continue
        scored = None
        if probabilities is not None:
            ids = tokens[position][kept[position]].tolist()
            scored = scored_pieces(tokenizer, ids, torch.as_tensor(probabilities[position])[kept[position]].tolist())
        by_index[index] = (text, scored)
    names = [column for column in task.row_columns if column in getattr(rows, "column_names", task.row_columns)]
    columns = rows.select_columns(names)
    if sorted(by_index) != list(range(len(columns))):
        raise RuntimeError(f"evaluation returned rows {sorted(by_index)[:10]}..., expected 0..{len(columns) - 1}")
    records = []
    for i, row in enumerate(columns):
        text, scored = by_index[i]
        records.append(task.record(row, text) if scored is None else task.record(row, text, tokens=scored))
    records = task.image_records(records)
    return records, task.score(records)


def task_of_split(rows, tasks: dict, default):
    """The one task a split is evaluated by: its `task` column's (a mixture's splits carry one), else `default`."""
    if "task" not in getattr(rows, "column_names", ()):  # also plain lists of rows
        return default
    names = set(rows.select_columns(["task"])["task"])
    if len(names) != 1 or next(iter(names)) not in tasks:
        raise ValueError(f"an evaluated split must hold rows of one of the tasks {sorted(tasks)}, not {names}.")
    return tasks[names.pop()]


class TSNPaliGemmaTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer for TSN-PaliGemma captioning.

    - batches: `data_collator` (one caption per image) for training, `eval_data_collator` (caption 1 for the loss,
      the prompt alone for generation, `row_index`) for evaluation and prediction;
    - loss: `causal_lm_loss` (shifted, label-smoothed with `label_smoothing_factor`), the LM head computed only on
      the caption positions (training and the evaluation loss; generation is unchanged);
    - evaluation: captions generated from `"<image>" + prompt` alone with `caption_generation_config` (updated by
      `evaluate`/`predict`'s generation keywords), scored by `score_generated` (CIDEr picks the best
      checkpoint); on the main process `{split}_predictions.jsonl` and `eval_results.json[split]` are written.
    """

    # metric_key_prefix -> the split's name in eval_results.json and its predictions file
    SPLIT_NAMES = {"eval": "val", "test": "test", "baseline": "baseline_test"}

    def __init__(
        self,
        *args,
        eval_data_collator,
        caption_generation_config: GenerationConfig,
        tasks: dict,
        scst=None,
        objective: dict | None = None,
        **kwargs,
    ):
        smoothing = kwargs["args"].label_smoothing_factor
        weighting = (objective or {}).get("loss_weighting", "token")
        loc_sigma = (objective or {}).get("loc_sigma", 0.0)
        first_loc = loc_token_range(kwargs["processing_class"].tokenizer) if loc_sigma > 0 else None
        kwargs.setdefault(
            "compute_loss_func",
            lambda outputs, labels, num_items_in_batch=None: causal_lm_loss(
                outputs,
                labels,
                num_items_in_batch,
                label_smoothing=smoothing,
                weighting=weighting,
                loc_sigma=loc_sigma,
                first_loc=first_loc,
            ),
        )
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self.caption_generation_config = caption_generation_config
        self.tasks = tasks  # dataset name -> its task (a mixture's rows name theirs in a `task` column)
        self.default_task = next(iter(tasks.values()))  # the task of rows without a `task` column
        self.eval_task = self.default_task  # the task of the split being evaluated
        self.scst = scst  # (SCSTSettings, reward) when train_objective is scst
        self.scst_stats = SCSTStats()
        self.objective = objective
        self.cell_losses: list[torch.Tensor] = []  # the auxiliary image-token loss of each batch since the last log

    def get_eval_dataloader(self, eval_dataset=None):
        return self._with_eval_collator(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._with_eval_collator(super().get_test_dataloader, test_dataset)

    def _with_eval_collator(self, make_dataloader, dataset):
        """The DataLoader keeps the collator it is built with: build evaluation loaders with the eval collator."""
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return make_dataloader(dataset)
        finally:
            self.data_collator = train_collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "references" in inputs:  # an SCST training batch (TSNPaliGemmaSCSTCollator)
            settings, reward = self.scst
            loss = scst_loss(
                model, inputs, reward, self.processing_class, self.default_task, settings, self.scst_stats
            )
            return (loss, None) if return_outputs else loss
        inputs = {key: value for key, value in inputs.items() if key not in (*GENERATION_KEYS, "row_index")}
        if "labels" in inputs:  # the LM head runs only where the loss reads
            inputs["logits_to_keep"] = caption_positions(inputs["labels"])
        cell_targets = inputs.pop("cell_targets", None)
        if cell_targets is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        head = getattr(self.accelerator.unwrap_model(model), CELL_HEAD)
        auxiliary = cell_loss(head, outputs.image_outputs.pooler_output, cell_targets)
        self.cell_losses.append(auxiliary.detach())
        # The cross entropy is already a share of the accumulated step (`num_items_in_batch`); this mean per batch
        # is made one too (the Trainer sets the step's batch count while training).
        batches = getattr(self, "current_gradient_accumulation_steps", 1) if model.training else 1
        loss = loss + self.objective["cell_loss_weight"] * auxiliary / batches
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        """The training log gains SCST's mean reward and mean sampled length, and the auxiliary image-token loss
        (`cell_loss`), since the last log."""
        if "loss" in logs:
            logs.update(self.scst_stats.pop())
            if self.cell_losses:
                logs["cell_loss"] = round(float(torch.stack(self.cell_losses).mean()), 4)
                self.cell_losses = []
        super().log(logs, *args, **kwargs)

    def generation_config_for(self, gen_kwargs: dict) -> GenerationConfig:
        """`caption_generation_config` with evaluate()/predict()'s generation keywords; unknown ones are an error."""
        config = copy.deepcopy(self.caption_generation_config)
        unused = config.update(**{key: value for key, value in gen_kwargs.items() if value is not None})
        if unused:
            raise ValueError(f"{sorted(unused)} are not generation settings (transformers.GenerationConfig).")
        return config

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        """(loss, {"tokens": new tokens, "row_index": rows}, None): the predictions carry their rows by name."""
        inputs = self._prepare_inputs(inputs)
        row_index = inputs.pop("row_index", None)
        generation_inputs = {key[len("gen_") :]: inputs.pop(key) for key in GENERATION_KEYS if key in inputs}
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs).detach() if "labels" in inputs else None
        if prediction_loss_only or not self.args.predict_with_generate or not generation_inputs:
            return loss, None, None
        generator = self.accelerator.unwrap_model(self.model)
        answers = getattr(self.eval_task, "answers", None)
        if answers:  # a closed set (scene classes): the likeliest answer, as inference.py answers
            tokens, lengths = answer_tokens(self.processing_class.tokenizer, answers)
            prompts = {**generation_inputs, "pixel_values": inputs["pixel_values"]}
            chosen = likeliest_answers(generator, prompts, tokens, lengths, unwrapped_model(generator))
            return loss, {"tokens": tokens[chosen].to(row_index.device), "row_index": row_index}, None
        config = self.generation_config_for(gen_kwargs or getattr(self, "_gen_kwargs", {}))
        config.update(**getattr(self.eval_task, "generation", {}))  # e.g. detection: greedy, room for every box
        prompt_length = generation_inputs["input_ids"].shape[1]
        scored = getattr(self.eval_task, "token_scores", False)  # e.g. a score per box from its tokens
        with torch.no_grad():
            # Prompt only: the reference caption is never part of the generation input.
            out = generator.generate(
                **generation_inputs,
                pixel_values=inputs["pixel_values"],
                generation_config=config,
                output_scores=scored,
                return_dict_in_generate=True,
            )
        new_tokens = out.sequences[:, prompt_length:]  # (B, <= max_new_tokens): generate returns the prompt too
        predictions = {"tokens": new_tokens, "row_index": row_index}
        if scored:
            log_probs = generator.compute_transition_scores(
                out.sequences, out.scores, out.get("beam_indices"), normalize_logits=True
            )  # (B, new tokens)
            predictions["probabilities"] = log_probs.exp().float()
        return loss, predictions, None

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The loop of evaluate() and predict(), then the captions scored and the split's files written.

        The captions are this trainer's metrics, computed here rather than by a `compute_metrics` callback (which
        would receive the row indices as `label_ids`); evaluate() passes prediction_loss_only=True when there is
        no such callback, so only `args.prediction_loss_only` decides.
        """
        self.eval_task = task_of_split(dataloader.dataset, self.tasks, self.default_task)
        output = super().evaluation_loop(
            dataloader, description, self.args.prediction_loss_only, ignore_keys, metric_key_prefix
        )
        if output.predictions is None:  # loss only
            return output
        prefix = metric_key_prefix
        records, scores = score_generated(
            self.processing_class, self.eval_task, output.predictions, dataloader.dataset
        )
        metrics = {**output.metrics, **flatten_metrics(scores, prefix=f"{prefix}_")}
        if self.is_world_process_zero():
            split, task = self.split_and_task(prefix)
            self._write_split(split, task, records, scores, metrics.get(f"{prefix}_loss"))
        return EvalLoopOutput(output.predictions, None, metrics, output.num_samples)

    def split_and_task(self, prefix: str) -> tuple[str, str | None]:
        """("val", None) for "eval"; ("val", "detect") for a mixture's "eval_detect" (Trainer.evaluate of a dict)."""
        for key, split in self.SPLIT_NAMES.items():
            if prefix == key:
                return split, None
            if prefix.startswith(f"{key}_") and prefix[len(key) + 1 :] in self.tasks:
                return split, prefix[len(key) + 1 :]
        return prefix, None

    def _write_split(self, split: str, task: str | None, records: list[dict], scores: dict, loss) -> None:
        """`{split}_predictions.jsonl` (test: predictions.jsonl) and eval_results.json[split]; a mixture's task
        gets `{split}_predictions_{task}.jsonl` and eval_results.json[split][task]."""
        output_dir = Path(self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        stem = "predictions" if split == "test" else f"{split}_predictions"
        name = f"{stem}.jsonl" if task is None else f"{stem}_{task}.jsonl"
        with open(output_dir / name, "w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        results_path = output_dir / "eval_results.json"
        results = json.loads(results_path.read_text()) if results_path.is_file() else {}
        entry = {"task": self.eval_task.name, "loss": loss, "num_samples": len(records), **scores}
        if self.state.global_step:
            entry["step"] = self.state.global_step
        if task is None:
            results[split] = entry
        else:
            results.setdefault(split, {})[task] = entry
        if self.objective:  # how the scored model was trained (cross-entropy or SCST and its settings)
            results["objective"] = self.objective
        results_path.write_text(json.dumps(results, indent=2) + "\n")


def caption_generation_config(model, generation_args) -> GenerationConfig:
    """The evaluation's (and the published model's) decoding: the model's own config with the run's settings."""
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


def build_trainer(
    args, model, processor, splits, callbacks=None, model_init=None, trains: bool = True
) -> TSNPaliGemmaTrainer:
    """The trainer of a run: collators from the data arguments, evaluation decoding from the generation ones.
    `trains`: False for a trainer that only evaluates (the published model's scores): no training-only head."""
    from .data import build_collators, build_tasks, split_by_task
    from .outputs import objective_settings

    tasks = build_tasks(args.data, splits, processor, sbert_model=args.run.sbert_model)
    grid = 0
    if args.objective.cell_loss_weight and args.training.do_train and trains:
        config = unwrapped_model(model).config
        grid = cell_grid(config)
        attach_cell_head(unwrapped_model(model), config.text_config.hidden_size)  # before the optimizer is built
    train_collator, eval_collator = build_collators(
        processor, args.data, args.objective.train_objective, tasks, cell_grid=grid
    )
    scst = None
    if args.objective.train_objective == "scst":
        from metrics import CiderDReward

        from .scst import SCSTSettings

        # Document frequencies from the training split's references, once: the reward is the reported CIDEr-D.
        references = splits["train"].select_columns(["captions"])["captions"]
        scst = (SCSTSettings.from_args(args.objective, args.generation), CiderDReward(references))
    return TSNPaliGemmaTrainer(
        model=None if model_init else model,
        model_init=model_init,
        args=args.training,
        train_dataset=splits["train"],
        eval_dataset=split_by_task(splits["val"]),  # a mixture: one evaluation per task (eval_<name>_<metric>)
        data_collator=train_collator,
        eval_data_collator=eval_collator,
        processing_class=processor,
        caption_generation_config=caption_generation_config(model, args.generation),
        tasks=tasks,
        scst=scst,
        objective=objective_settings(args.objective) if args.training.do_train else None,
        callbacks=callbacks,
    )
