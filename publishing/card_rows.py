"""The rows of the model card's tables, formatted and escaped for Markdown: TSN settings, results, training recipe,
cost and example captions. Values that are local paths never reach a row."""

from pathlib import Path
from typing import Any

from tasks.classify import PROMPT as CLASSIFY_PROMPT
from tasks.count import COUNT_TEMPLATE

from .paths import looks_like_local_path

METRIC_NAMES = {
    "bleu_1": "BLEU-1",
    "bleu_2": "BLEU-2",
    "bleu_3": "BLEU-3",
    "bleu_4": "BLEU-4",
    "meteor": "METEOR",
    "rouge_l": "ROUGE-L",
    "cider": "CIDEr",
    "sbert_sim": "SBERT sim",
    "ap": "AP@[.5:.95]",
    "ap50": "AP50",
    "ap75": "AP75",
    "count_mae": "count MAE",
    "accuracy": "accuracy",
    "majority_accuracy": "majority-class accuracy",
    "mae": "MAE",
    "median_accuracy": "median-count accuracy",
    "median_mae": "median-count MAE",
}
# Scene and counting answers: the model-index task of each, and the scores it lists
ANSWER_TASKS = {
    "classify": ("image-classification", "Scene classification"),
    "count": ("visual-question-answering", "Counting"),
}
ANSWER_METRICS = {
    "classify": ("accuracy", "majority_accuracy"),
    "count": ("accuracy", "mae", "median_accuracy", "median_mae"),
}
ANSWER_HEADER = ["task", "prompt", "test questions", "accuracy", "MAE", "trivial baseline", "its accuracy", "its MAE"]
DETECTION_METRICS = ("ap", "ap50", "ap75", "count_mae")
DETECTION_HEADER = ["set", "images", "boxes", "AP@[.5:.95]", "AP50", "AP75", "count MAE"]
SOURCE_NAMES = {"NWPU": "NWPU-Captions", "RSICD": "RSICD", "UCM": "UCM-Captions", "SYDNEY": "Sydney-Captions"}
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


FEW_IMAGES = 30  # a score over fewer images is marked: its n-gram statistics come from those images alone


def image_size(config: dict) -> str:
    """ "128x128 px": the processor's resize target (what the model sees), else the vision config's image size."""
    height, width = config.get("processor_image_size") or [(config.get("vision_config") or {}).get("image_size")] * 2
    return f"{height}x{width} px" if height else "-"


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


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


def cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(value).replace("|", "\\|").replace("\n", " ")


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


def metric_keys(overall: dict) -> list[str]:
    return [key for key in METRIC_NAMES if key in overall] + [key for key in overall if key not in METRIC_NAMES]


def results_rows(eval_results: dict, baseline: dict | None, counts: dict[str, int]) -> list[list[str]]:
    """Test overall, then each source, each followed by its zero-shot row; val overall last."""
    test, baseline = eval_results["test"], baseline or {}
    keys = metric_keys(test["overall"])
    rows = []

    def add(label: str, scores: dict | None, images: Any) -> None:
        if scores:
            few = isinstance(images, int) and images < FEW_IMAGES
            rows.append([label, f"{images} (few)" if few else str(images), *(number(scores.get(key)) for key in keys)])

    overall_count = test.get("num_samples") or sum(counts.values()) or "-"
    add("**test, all sources**", test["overall"], overall_count)
    add("zero-shot base", baseline.get("overall"), baseline.get("num_samples") or overall_count)
    for group, scores in (test.get("groups") or {}).items():
        add(f"**test, {SOURCE_NAMES.get(group, group)}**", scores, counts.get(group, "-"))
        add("zero-shot base", (baseline.get("groups") or {}).get(group), counts.get(group, "-"))
    if isinstance(eval_results.get("val"), dict):
        add("val, all sources", eval_results["val"].get("overall"), eval_results["val"].get("num_samples") or "-")
    return rows


def what_text(captions: bool, detection: bool, answers=()) -> str:
    """What the model is, for the card's first line."""
    parts = (["captioner"] if captions else []) + (["object detector"] if detection else [])
    parts += [{"classify": "scene classifier", "count": "object counter"}[kind] for kind in dict.fromkeys(answers)]
    if len(parts) == 1 and not captions:
        return f"An aerial {parts[0]}"
    parts = parts or ["captioner"]
    return "An aerial-image " + (", ".join(parts[:-1]) + " and " if len(parts) > 1 else "") + parts[-1]


def detection_prompt(test: dict) -> str:
    """The detection prefix the model was scored with: every class, in the dataset's order."""
    return "detect " + " ; ".join(test.get("groups") or {})


def detection_rows(results: dict) -> list[list[str]]:
    """Test overall, then each class (AP, AP50, count MAE; AP75 overall only); val overall last."""
    test = results["test"]
    images = test.get("num_samples") or "-"
    overall = test["overall"]
    rows = [
        [
            "**test, all classes**",
            str(images),
            str(overall.get("boxes", "-")),
            *(number(overall.get(key)) for key in DETECTION_METRICS),
        ]
    ]
    for name, scores in (test.get("groups") or {}).items():
        rows.append(
            [
                cell(name),
                str(images),
                str(scores.get("boxes", "-")),
                number(scores.get("ap")),
                number(scores.get("ap50")),
                "-",
                number(scores.get("count_mae")),
            ]
        )
    val = results.get("val")
    if isinstance(val, dict) and isinstance(val.get("overall"), dict):
        val_overall = val["overall"]
        rows.append(
            [
                "val, all classes",
                str(val.get("num_samples") or "-"),
                str(val_overall.get("boxes", "-")),
                *(number(val_overall.get(key)) for key in DETECTION_METRICS),
            ]
        )
    return rows


def answer_rows(views: list[dict]) -> list[list[str]]:
    """One row per scene or counting task: its prompt, test scores and its trivial baseline's (the majority class;
    the training median count of the class asked about)."""
    rows = []
    for view in views:
        overall = view["results"]["test"]["overall"]
        if view["kind"] == "classify":
            row = ["scene", f"`{CLASSIFY_PROMPT}`", overall.get("images"), overall.get("accuracy"), None]
            row += ["majority class", overall.get("majority_accuracy"), None]
        else:
            row = ["count", f"`{COUNT_TEMPLATE.format('<classes>')}`", overall.get("questions")]
            row += [overall.get("accuracy"), overall.get("mae"), "median count per class"]
            row += [overall.get("median_accuracy"), overall.get("median_mae")]
        rows.append([number(value) for value in row])
    return rows


TASK_HEADER = ["task", "prompt", "test score", "its baseline"]


def task_rows(caption_prompt: str, caption: dict | None, detection: dict | None, answers: list[list]) -> list[list]:
    """One row per task of a multi-task model: its prompt, its headline test score and the baseline beside it (the
    model before this training for captions, when the run scored it; no boxes for detection; the trivial answer for
    the questions, from their `answer_rows`)."""
    rows = []
    if caption:
        before = (caption.get("baseline") or {}).get("overall") or {}
        cider = caption["results"]["test"]["overall"].get("cider")
        rows.append(["caption", f"`{caption_prompt}`", f"CIDEr {number(cider)}", _before_text(before.get("cider"))])
    if detection:
        test = detection["results"]["test"]["overall"]
        score = f"AP {number(test.get('ap'))}, AP50 {number(test.get('ap50'))}"
        rows.append(["detect", f"`{detection_prompt(detection['results']['test'])}`", score, "no boxes: AP 0"])
    for row in answers:
        task, prompt, _, accuracy, mae, baseline, its_accuracy, its_mae = row
        score = f"accuracy {accuracy}" + (f", MAE {mae}" if mae != "-" else "")
        base = f"{baseline}: accuracy {its_accuracy}" + (f", MAE {its_mae}" if its_mae != "-" else "")
        rows.append([task, prompt, score, base])
    return rows


def _before_text(cider) -> str:
    return "-" if cider is None else f"before this training: CIDEr {number(cider)}"


def detection_examples(predictions: list[dict]) -> list[tuple[str, ...]]:
    """The first test images: boxes found per class against the references."""
    rows = []
    for record in predictions[:4]:
        found = ", ".join(f"{n} {label}" for label, n in _label_counts(record.get("boxes") or []).items()) or "none"
        truth = ", ".join(f"{n} {label}" for label, n in _label_counts(record.get("references") or []).items())
        rows.append(tuple(cell(v) for v in (Path(str(record.get("image", "-"))).name, found, truth or "none")))
    return rows


def _label_counts(objects: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in objects:
        counts[item["label"]] = counts.get(item["label"], 0) + 1
    return counts


def training_rows(finetune_config: dict, base_text: str, trainable: int | None) -> list[tuple[str, str]]:
    rows = [("base model", cell(base_text)), ("method", cell(method_text(finetune_config)))]
    if trainable:
        rows.append(("trained parameters", count(trainable)))
    rows += [(label, setting_cell(finetune_config[key])) for key, label in TRAINING_KEYS if key in finetune_config]
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


def example_rows(predictions: list[dict]) -> list[tuple[str, ...]]:
    rows = []
    for record in predictions[:4]:
        image = Path(str(record.get("image", "-"))).name
        reference = (record.get("references") or ["-"])[0]
        rows.append(
            tuple(cell(v) for v in (image, record.get("source", "-"), record.get("prediction", ""), reference))
        )
    return rows
