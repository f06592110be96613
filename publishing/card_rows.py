"""The rows of the model card's tables that no task owns, formatted and escaped for Markdown: TSN settings, training
recipe and cost (each task writes its own results: `Task.card_values`). Values that are local paths never reach a
row."""

from typing import Any

from tasks.card_text import cell, number

from .paths import looks_like_local_path

INTEGRATIONS = {
    "enhanced": "segment features are fused into every projected SigLIP image token (each token combines the "
    "segments whose crop covers its patch); the language model sees the usual number of image tokens",
    "adapter": "one extra image token per segment is appended after the SigLIP tokens",
    "replace": "the SigLIP tower is replaced: the image tokens come from the CNN feature maps of every segment",
    "direct": "plain PaliGemma without the segment encoder (the ablation baseline)",
}
LANGUAGE_MODELS = {"gemma": "Gemma (PaliGemma 1)", "gemma2": "Gemma 2 (PaliGemma 2)"}
TRAINING_KEYS = [  # (finetune_config.yaml key, label); only these are shown, never paths
    ("train_objective", "objective"),
    ("loss_weighting", "loss weighting"),
    ("scst_samples", "SCST: captions sampled per image"),
    ("scst_baseline", "SCST: baseline"),
    ("scst_temperature", "SCST: temperature"),
    ("scst_top_k", "SCST: top-k (0 = all)"),
    ("learning_rate", "learning rate"),
    ("lr_scheduler_type", "schedule"),
    ("warmup_steps", "warm-up steps"),
    ("warmup_ratio", "warm-up ratio"),
    ("num_train_epochs", "epochs"),
    ("max_steps", "max steps"),
    ("per_device_train_batch_size", "batch size per device"),
    ("gradient_accumulation_steps", "gradient accumulation"),
    ("weight_decay", "weight decay"),
    ("label_smoothing_factor", "label smoothing"),
    ("caption_choice", "caption per image and epoch"),
    ("bf16", "bf16"),
    ("fp16", "fp16"),
    ("seed", "seed"),
]
QUANTIZED_BASES = {
    "4bit": "4-bit NF4 base with double quantization (QLoRA)",
    "8bit": "8-bit base",
    "none": "full-precision base",
}


def image_size(config: dict) -> str:
    """ "128x128 px": the processor's resize target (what the model sees), else the vision config's image size."""
    height, width = config.get("processor_image_size") or [(config.get("vision_config") or {}).get("image_size")] * 2
    return f"{height}x{width} px" if height else "-"


def significant(value: Any) -> str:
    """1641.6 -> "1641.6", 0.0123 -> "0.0123": one decimal for large values, 3 significant digits for small."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"


def count(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= limit:
            return f"{value / limit:.2f} {suffix}"
    return str(value)


def setting_cell(value: Any) -> str:
    """A cell showing a config value: local paths are withheld."""
    return cell("(local path)" if looks_like_local_path(value) else value)


def strategy(finetune_config: dict) -> str:
    """The run's `train_strategy` (configs written before strategies existed trained LoRA or QLoRA)."""
    return finetune_config.get("train_strategy", "qlora" if finetune_config.get("quantization") != "none" else "lora")


def method_text(finetune_config: dict) -> str:
    """What trained, by `train_strategy`."""
    name = strategy(finetune_config)
    if name == "full":
        return "full training: every weight of the model trained (`train_strategy: full`)"
    if name == "freeze":
        return (
            f"only the parameters matching `{finetune_config.get('trainable_modules', '-')}` trained, the rest "
            "frozen (`train_strategy: freeze`)"
        )
    quantization = finetune_config.get("quantization")
    base = QUANTIZED_BASES.get(quantization, f"quantization {quantization}")
    lora = (
        f"LoRA r={finetune_config.get('lora_r', '-')}, alpha={finetune_config.get('lora_alpha', '-')}, "
        f"dropout {finetune_config.get('lora_dropout', '-')} on the language model's q/k/v/o/gate/up/down "
        "projections; the segment encoder trains fully"
    )
    return f"{base}; {lora} (`train_strategy: {name}`)"


def _fusion_text(config: dict) -> str:
    fusion = config.get("tsn_fusion")
    detail = {
        "gated": "`siglip + tanh(gate) * context`, gate learned from 0",
        "ratio": f"`{config.get('tsn_original_ratio')} * siglip + {config.get('tsn_ratio')} * context`",
    }.get(fusion, "")
    return f"`{fusion}`: {detail}"


def tsn_rows(config: dict) -> list[tuple[str, str]]:
    integration = config.get("tsn_integration", "enhanced")
    rows = [("integration", f"`{integration}`: {INTEGRATIONS.get(integration, '')}")]
    if integration != "direct":
        rows += [
            ("backbone", config.get("tsn_backbone")),
            ("segment grids", ", ".join(f"{r}x{c}" for r, c in config.get("tsn_segment_scales") or [])),
            ("crop size", config.get("tsn_crop_size") or "native size of the finest grid's crops"),
            ("consensus over covering segments", config.get("tsn_consensus")),
        ]
        if integration == "enhanced":
            rows.append(("fusion", _fusion_text(config)))
        if integration == "replace":
            rows.append(("tokens per segment side", config.get("tsn_replace_grid_size")))
        if config.get("tsn_dropout"):
            rows.append(("segment dropout", config.get("tsn_dropout")))
    text = config.get("text_config") or {}
    model_type = text.get("model_type", "-")
    rows += [
        ("image size", image_size(config)),
        ("image tokens", config.get("image_seq_length", "-")),
        ("language model", LANGUAGE_MODELS.get(model_type, model_type)),
    ]
    return [(label, setting_cell(value)) for label, value in rows]


SCHEDULE_KEYS = ("num_train_epochs", "max_steps")  # what was asked for; a run that recorded its steps says those


def training_rows(finetune_config: dict, base_text: str, summary: dict, losses: tuple) -> list[tuple[str, str]]:
    """The recipe as it ran: base, method, trained parameters, settings, the steps and epochs done, the loss before
    and after (the test loss when the run scored the base first, else the first and last logged training loss)."""
    rows = [("base model", cell(base_text)), ("method", cell(method_text(finetune_config)))]
    if summary.get("trainable_parameters"):
        rows.append(("trained parameters", count(summary["trainable_parameters"])))
    ran = summary.get("global_step") is not None
    keys = [
        (key, label) for key, label in TRAINING_KEYS if key in finetune_config and not (ran and key in SCHEDULE_KEYS)
    ]
    rows += [(label, setting_cell(finetune_config[key])) for key, label in keys]
    if ran:
        rows.append(
            ("schedule as run", f"{summary['global_step']} steps, {number(summary.get('epochs_done'), 2)} epochs")
        )
    if None not in losses[1:]:
        rows.append((losses[0], f"{number(losses[1])} -> {number(losses[2])}"))
    generation = [
        f"{finetune_config[key]} {label}"
        for key, label in (("num_beams", "beams"), ("max_new_tokens", "new tokens at most"))
        if key in finetune_config
    ]
    if generation:
        rows.append(("generation (evaluation)", cell(", ".join(generation))))
    return rows


def cost_rows(characteristics: dict) -> list[tuple[str, str]]:
    if not characteristics:
        return []
    return [
        ("parameters", count(characteristics.get("total_parameters"))),
        ("trained parameters (LoRA + segment encoder)", count(characteristics.get("trainable_parameters"))),
        ("GFLOPs per caption", significant(characteristics.get("gflops_per_caption"))),
        ("latency per image, median", f"{number(characteristics.get('latency_ms_median'), 1)} ms"),
        ("latency per image, p95", f"{number(characteristics.get('latency_ms_p95'), 1)} ms"),
    ]


def cost_note(characteristics: dict) -> str:
    get = characteristics.get
    machine = get("device", "an unnamed device")
    if get("cpu_count"):
        machine += f" on a machine of {get('cpu_count')} cores"
    load = f", 1-minute load average {get('load_average_1min')}" if get("load_average_1min") is not None else ""
    return (
        f"Latency: batch 1, {get('dtype', '-')}, {get('num_beams', '-')} beam(s), at most "
        f"{get('max_new_tokens', '-')} new tokens; the median of {get('repeats', 1)} round(s) over "
        f"{get('num_images', '-')} test images after one warm-up call. Measured on {machine}{load}."
    )
