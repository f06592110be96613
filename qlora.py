"""QLoRA building blocks: the 4-bit/8-bit quantization config and LoRA on the language model.

Kept apart from `finetune.py` so tests, benchmarks and the training script build exactly the same model.

```python
>>> config = quantization_config("4bit", compute_dtype=torch.float32)
>>> config.bnb_4bit_quant_type, config.bnb_4bit_compute_dtype, config.llm_int8_skip_modules
('nf4', torch.float32, ['model.tsn', 'model.multi_modal_projector', 'lm_head'])
>>> import re
>>> bool(re.fullmatch(lora_target_regex(), "model.language_model.layers.3.self_attn.q_proj"))
True
>>> bool(re.fullmatch(lora_target_regex(), "model.vision_tower.encoder.layers.3.self_attn.q_proj"))
False
```
"""

import torch
from transformers import BitsAndBytesConfig

# Full module prefixes: bitsandbytes matches `llm_int8_skip_modules` against module names, and a bare "tsn" would
# not reach "model.tsn.proj". These stay in full precision; everything else linear is quantized.
UNQUANTIZED_MODULES = ["model.tsn", "model.multi_modal_projector", "lm_head"]
LANGUAGE_MODEL_TARGETS = r"model\.language_model\.layers\.\d+\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"
VISION_TOWER_TARGETS = r"model\.vision_tower\..*\.(?:self_attn\.(?:[qkv]_proj|out_proj)|mlp\.fc[12])"
QUANTIZATION_CHOICES = ("4bit", "8bit", "none")


def quantization_config(
    quantization: str, compute_dtype: torch.dtype = torch.bfloat16, quant_storage: torch.dtype = torch.uint8
) -> BitsAndBytesConfig | None:
    """NF4 4-bit (double quantization) or 8-bit config keeping the TSN encoder, projector and LM head unquantized.

    compute_dtype: bf16 on CUDA, fp32 on CPU (bitsandbytes' CPU kernels). quant_storage: the dtype the packed 4-bit
    weights are stored in; FSDP needs it equal to the other parameters' dtype to shard them together.
    """
    if quantization == "none":
        return None
    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,  # not "bnb_4bit_compute_type", which is silently ignored
            bnb_4bit_quant_storage=quant_storage,
            llm_int8_skip_modules=list(UNQUANTIZED_MODULES),
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(UNQUANTIZED_MODULES))
    raise ValueError(f"quantization={quantization!r} is invalid; use one of {list(QUANTIZATION_CHOICES)}.")


def lora_target_regex(include_vision_tower: bool = False) -> str:
    """Regex (full match) for the LoRA targets: the language model's q/k/v/o/gate/up/down, optionally SigLIP's."""
    if include_vision_tower:
        return f"(?:{LANGUAGE_MODEL_TARGETS}|{VISION_TOWER_TARGETS})"
    return LANGUAGE_MODEL_TARGETS


def keep_training_layout(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference.

    On a CPU with AVX512-BF16, bitsandbytes (0.50) converts a Linear4bit's weights to an inference-only layout at its
    first eval-mode, no-grad forward and never converts them back: training after an evaluation (the Trainer's
    eval steps, `evaluate_before_training`) then runs the inference kernel and fails ("a view of a leaf Variable
    that requires grad is being used in an in-place operation"). Training models keep the trainable layout.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def apply_lora(
    model,
    r: int = 32,
    alpha: int = 64,
    dropout: float = 0.1,
    include_vision_tower: bool = False,
    quantized: bool = True,
    gradient_checkpointing: bool = True,
):
    """Wrap `model` with LoRA on the language model; the segment encoder (if any) trains fully.

    With a quantized base, `prepare_model_for_kbit_training` freezes the base, upcasts norms and enables
    non-reentrant gradient checkpointing.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        keep_training_layout(model)
        if hasattr(model.model, "tsn"):
            # prepare_model_for_kbit_training upcasts bf16 parameters to fp32 but not buffers: BatchNorm would mix
            # fp32 weights with bf16 running stats ("Expected running_mean to have type Float") on CUDA.
            model.model.tsn.float()
    elif gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    modules_to_save = [name for name in ("tsn", "image_positions") if hasattr(model.model, name)] or None
    lora = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora_target_regex(include_vision_tower),
        modules_to_save=modules_to_save,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


__all__ = ["UNQUANTIZED_MODULES", "apply_lora", "keep_training_layout", "lora_target_regex", "quantization_config"]
