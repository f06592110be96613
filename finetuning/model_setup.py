"""Model setup for finetune.py: base (or saved) PaliGemma -> TSN-PaliGemma -> what trains (the strategy: qlora,
lora, full, freeze); and the merge of a trained adapter into a freshly loaded full-precision base for publishing."""

import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import AutoProcessor, PretrainedConfig

from collators import processor_for_config
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from publishing.run_folder import describe_base
from qlora import apply_lora, quantization_config
from tasks import TASKS_CONFIG_KEY, recorded_tasks, run_records
from tasks.registry import LEGACY_CONFIG_KEYS

from .cell_loss import detach_cell_head
from .checks import on_cuda, resolve_quantization, resolve_strategy

logger = logging.getLogger(__name__)


def compute_dtype(training_args) -> torch.dtype:
    """bf16 compute when asked for and on CUDA; bitsandbytes' CPU kernels and CPU training run in fp32."""
    if training_args.bf16 and on_cuda(training_args):
        return torch.bfloat16
    return torch.float32


def load_base_model(model_args, tsn_options: dict, training_args, quantization: str):
    """TSN-PaliGemma built from `model_name_or_path` with `tsn_options`, quantized as asked (not yet LoRA-wrapped)."""
    dtype = compute_dtype(training_args)
    kwargs = {"dtype": dtype, "revision": model_args.revision}
    if quantization != "none":
        # Under FSDP the packed 4-bit weights must share the other parameters' dtype to be flattened and sharded.
        fsdp = bool(training_args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        storage = dtype if fsdp else torch.uint8
        kwargs["quantization_config"] = quantization_config(quantization, compute_dtype=dtype, quant_storage=storage)
        if on_cuda(training_args):
            # One copy per process: under DDP every rank holds its own quantized model on its own GPU.
            kwargs["device_map"] = {"": training_args.local_process_index}
    return TSNPaliGemmaForConditionalGeneration.from_base_pretrained(
        model_args.model_name_or_path, **tsn_options, **kwargs
    )


def load_training_model(model_args, tsn_options: dict, training_args, quantization: str, strategy: str):
    """The model the Trainer trains, by `strategy` (resolved, never "auto"):

    - qlora / lora: (quantized) base + LoRA on the LM; the segment encoder and gate train fully;
    - full: every weight trains;
    - freeze: only parameters whose name matches `model_args.trainable_modules` train.
    """
    model = load_base_model(model_args, tsn_options, training_args, quantization)
    if strategy in ("full", "freeze"):
        pattern = re.compile(model_args.trainable_modules) if strategy == "freeze" else None
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(pattern is None or pattern.search(name) is not None)
        if pattern is not None and not any(parameter.requires_grad for parameter in model.parameters()):
            raise ValueError(
                f"trainable_modules={model_args.trainable_modules!r} matches no parameter of "
                f"{model_args.model_name_or_path}. Fix: e.g. --trainable_modules self_attn"
            )
        if training_args.activation_checkpointing:
            # Non-reentrant: no input needs requires_grad, so frozen embeddings are fine.
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        return model
    model = apply_lora(
        model,
        r=model_args.lora_r,
        alpha=model_args.lora_alpha,
        dropout=model_args.lora_dropout,
        include_vision_tower=model_args.lora_vision_tower,
        quantized=quantization != "none",
        gradient_checkpointing=bool(training_args.activation_checkpointing),
    )
    return model


def unwrapped_model(model):
    """The TSN-PaliGemma model itself, whether or not PEFT wraps it."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def load_processor(model_args, model_config):
    processor = AutoProcessor.from_pretrained(
        model_args.model_name_or_path, revision=model_args.revision, trust_remote_code=True
    )
    return processor_for_config(processor, model_config)


def logical_numel(parameter) -> int:
    """Values a parameter holds: for 4-bit weights their logical size (bitsandbytes packs two values per byte)."""
    if getattr(parameter, "quant_state", None) is not None:  # Params4bit: numel() is the packed byte count
        return int(torch.Size(parameter.quant_state.shape).numel())
    return parameter.numel()


def count_parameters(model) -> tuple[int, int]:
    """(total, trainable), 4-bit weights at their logical size."""
    total = trainable = 0
    for parameter in model.parameters():
        count = logical_numel(parameter)
        total += count
        trainable += count if parameter.requires_grad else 0
    return total, trainable


def merged_dtype(model_args, training_args) -> torch.dtype:
    """The published weights' dtype: `merged_dtype`, or (auto) bf16 when training in bf16, else the base's own
    (a bf16 base stays bf16: twice smaller, and what it was published in), else float32."""
    if model_args.merged_dtype != "auto":
        return getattr(torch, model_args.merged_dtype)
    if training_args.bf16:
        return torch.bfloat16
    config, _ = PretrainedConfig.get_config_dict(model_args.model_name_or_path, revision=model_args.revision)
    base = config.get("dtype") or config.get("torch_dtype") or "float32"
    return torch.bfloat16 if base == "bfloat16" else torch.float32


def merge_adapter(model_args, tsn_options: dict, adapter_dir: str | Path, dtype: torch.dtype):
    """LoRA merged into a freshly loaded FULL-precision base (never into the 4-bit one: that would bake the
    quantization error into the published weights and lose the adapter's precision)."""
    from peft import PeftModel

    options = {**tsn_options, "tsn_pretrained_backbone": False}  # the trained encoder comes from the adapter
    base = TSNPaliGemmaForConditionalGeneration.from_base_pretrained(
        model_args.model_name_or_path, revision=model_args.revision, dtype=torch.float32, **options
    )
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.tsn_pretrained_backbone = False
    return merged.to(dtype).eval()  # merged in float32, then stored in `dtype`


class TrainingPlan(NamedTuple):
    """What trains and on which base, resolved from `train_strategy` and `quantization` (never "auto")."""

    quantization: str
    strategy: str


def plan_training(args) -> TrainingPlan:
    quantization = resolve_quantization(args.model.quantization, on_cuda(args.training), args.model.train_strategy)
    return TrainingPlan(quantization, resolve_strategy(args.model.train_strategy, quantization))


def tsn_settings(config) -> dict:
    """Every tsn_* option of a model config: rebuilding from the base with these gives the same architecture."""
    return {key: value for key, value in config.to_dict().items() if key.startswith("tsn_")}


def base_parameter_count(model, base_type: str | None) -> int:
    """Parameters of the base the run started from: not LoRA's, not PEFT's trainable copies of modules_to_save, and
    not a segment encoder this run added to a plain PaliGemma."""
    skip = ("lora_", ".modules_to_save.") + (() if base_type == "tsn_paligemma" else (".tsn.",))
    return sum(
        logical_numel(parameter)
        for name, parameter in model.named_parameters()
        if not any(part in name for part in skip)
    )


def prepare_training_model(args, plan: TrainingPlan):
    """(the model the Trainer trains, its processor, the run summary so far)."""
    training = args.training
    model = load_training_model(args.model, args.tsn.overrides(), training, plan.quantization, plan.strategy)
    config = unwrapped_model(model).config
    total, trainable = count_parameters(model)
    summary = {
        "train_strategy": plan.strategy,
        "quantization": plan.quantization,
        "total_parameters": total,
        "trainable_parameters": trainable,
        "integration": config.tsn_integration,
        "world_size": training.world_size,
    }
    base = describe_base(args.model.model_name_or_path)
    summary["base_model"] = {**base, "parameters": base_parameter_count(model, base.get("model_type"))}
    return model, load_processor(args.model, config), summary


def save_trained_model(args, trainer, processor, plan: TrainingPlan, output_dir: Path) -> Path:
    """merged/, the publishable full model (the best checkpoint's with load_best_model_at_end): for full / freeze
    the trained model itself, for LoRA the adapter (also kept in adapter/) merged into a full-precision base; its
    config records the tasks it was trained on (`tasks.registry`)."""
    merged_dir, dtype = output_dir / "merged", merged_dtype(args.model, args.training)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    lora = plan.strategy not in ("full", "freeze")
    if lora:
        trainer.save_model(str(output_dir / "adapter"))
    if trainer.is_world_process_zero():
        if lora:
            trained.get_base_model().config.save_pretrained(output_dir / "adapter")
            tsn_options = tsn_settings(trained.get_base_model().config)
            model = merge_adapter(args.model, tsn_options, output_dir / "adapter", dtype)
        else:
            detach_cell_head(trained)  # training-only (`finetuning.cell_loss`)
            model = trained.to(dtype)
        model.generation_config = trainer.caption_generation_config
        # What inference.py --task reads back: each task's prompt, classes and decoding; the base's tasks that this
        # run did not train keep the base's record (the model can still do them)
        setattr(model.config, TASKS_CONFIG_KEY, {**recorded_tasks(model.config), **run_records(trainer.tasks)})
        for key in LEGACY_CONFIG_KEYS:
            model.config.__dict__.pop(key, None)
        model.save_pretrained(merged_dir)
        processor.save_pretrained(merged_dir)
    trainer.accelerator.wait_for_everyone()
    return merged_dir
