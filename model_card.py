"""The model card (README.md) of a published TSN-PaliGemma, rendered from a `finetune.py` output_dir.

YAML metadata through huggingface_hub's `ModelCardData`/`EvalResult` (license, base model, pipeline tag, tags,
datasets, widget, and a `model-index` holding the test scores of eval_results.json exactly), then the body: what the
model is, its TSN settings, results overall and per source next to the zero-shot baseline, the training recipe,
cost, the sample grid, usage code, limitations and citations. The card never contains a local path.

```python
>>> from model_card import render_model_card
>>> text = render_model_card("outputs/risc", "user/tsn-paligemma-risc", adapter_only=False,  # doctest: +SKIP
...                          base_model="google/paligemma-3b-pt-224")
>>> from huggingface_hub import ModelCard
>>> ModelCard(text).data.eval_results[0].metric_value  # doctest: +SKIP
0.7312...
```
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from dataset_builder import CITATION as RISC_CITATION

logger = logging.getLogger(__name__)

LICENSE = "gemma"  # every PaliGemma (1 and 2) checkpoint is under the Gemma terms; a fine-tune inherits them
DEFAULT_PROMPT = "caption en"
DEFAULT_DATASET = "RISC"
EXAMPLE_IMAGE = "example.jpg"
SAMPLES_IMAGE = "samples.png"
CODE_FILES = ("configuration_tsn_paligemma.py", "modeling_tsn_paligemma.py")
METRIC_NAMES = {
    "bleu_1": "BLEU-1",
    "bleu_2": "BLEU-2",
    "bleu_3": "BLEU-3",
    "bleu_4": "BLEU-4",
    "meteor": "METEOR",
    "rouge_l": "ROUGE-L",
    "cider": "CIDEr",
}
SOURCE_NAMES = {"NWPU": "NWPU-Captions", "RSICD": "RSICD", "UCM": "UCM-Captions", "SYDNEY": "Sydney-Captions"}
INTEGRATIONS = {
    "enhanced": "segment features are fused into every projected SigLIP image token (each token combines the "
    "segments whose crop covers its patch); the language model sees the usual number of image tokens",
    "adapter": "one extra image token per segment is appended after the SigLIP tokens",
    "replace": "the SigLIP tower is replaced: the image tokens come from the CNN feature maps of every segment",
    "direct": "plain PaliGemma without the segment encoder (the ablation baseline)",
}
TRAINING_KEYS = [  # (finetune_config.yaml key, label); only these are shown, never paths
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
# The model's sources; the RISC sources (RSICD, UCM-Captions, NWPU-Captions) come from the dataset builder.
MODEL_CITATIONS = """\
@article{beyer2024paligemma,
  title   = {PaliGemma: A versatile 3B VLM for transfer},
  author  = {Beyer, Lucas and Steiner, Andreas and Pinto, Andr{\\'e} Susano and Kolesnikov, Alexander and others},
  journal = {arXiv preprint arXiv:2407.07726},
  year    = {2024}
}
@article{steiner2024paligemma2,
  title   = {PaliGemma 2: A Family of Versatile VLMs for Transfer},
  author  = {Steiner, Andreas and Pinto, Andr{\\'e} Susano and Tschannen, Michael and others},
  journal = {arXiv preprint arXiv:2412.03555},
  year    = {2024}
}
@inproceedings{wang2016tsn,
  title     = {Temporal Segment Networks: Towards Good Practices for Deep Action Recognition},
  author    = {Wang, Limin and Xiong, Yuanjun and Wang, Zhe and Qiao, Yu and Lin, Dahua and Tang, Xiaoou and
               Van Gool, Luc},
  booktitle = {European Conference on Computer Vision (ECCV)},
  pages     = {20--36},
  year      = {2016}
}
@inproceedings{dettmers2023qlora,
  title     = {QLoRA: Efficient Finetuning of Quantized LLMs},
  author    = {Dettmers, Tim and Pagnoni, Artidoro and Holtzman, Ari and Zettlemoyer, Luke},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2023}
}
"""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?$")


# ------------------------------------------------------------------------------------------------ reading the run
def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path.name} is not valid JSON ({error}); rerun finetune.py to rewrite it.") from error


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_finetune_config(output_dir: Path) -> dict:
    path = output_dir / "finetune_config.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"{path.name} must be a YAML mapping of finetune.py arguments; got {type(config).__name__}.")
    return config or {}


def model_config(output_dir: Path, adapter_only: bool) -> dict:
    """The TSN-PaliGemma config.json of the published model (merged/, or adapter/ for an adapter-only card), plus
    `image_seq_length` from its processor (a config property, not saved in config.json)."""
    for folder in ("adapter", "merged") if adapter_only else ("merged", "adapter"):
        path = output_dir / folder / "config.json"
        if path.is_file():
            config = read_json(path)
            for name in ("processor_config.json", "preprocessor_config.json"):
                if (output_dir / folder / name).is_file():
                    processor = read_json(output_dir / folder / name)
                    image_processor = processor.get("image_processor", processor)
                    if image_processor.get("image_seq_length"):
                        config.setdefault("image_seq_length", image_processor["image_seq_length"])
            return config
    return {}


def looks_like_local_path(value: Any) -> bool:
    """True for strings that name a local file or folder (exists here, or has a path's shape), not a Hub id."""
    if not isinstance(value, str) or not value:
        return False
    if os.path.exists(value) or value.startswith(("/", "./", "../", "~", ".\\")) or "\\" in value:
        return True
    return re.match(r"^[A-Za-z]:", value) is not None or value.count("/") > 1


def is_hub_id(value: Any) -> bool:
    return isinstance(value, str) and not looks_like_local_path(value) and _HUB_ID.match(value) is not None


def base_model_id(finetune_config: dict, base_model: str | None = None) -> str | None:
    """The base PaliGemma's Hub id: `base_model` if given, else finetune_config's model_name_or_path when it is a Hub
    id; None when the run started from a local folder (the card then says "a local PaliGemma checkpoint")."""
    if base_model:
        if not is_hub_id(base_model):
            raise ValueError(
                f"--base_model {base_model!r} is not a Hub model id; pass one like google/paligemma-3b-pt-224."
            )
        return base_model
    candidate = finetune_config.get("model_name_or_path")
    return candidate if is_hub_id(candidate) else None


def dataset_id(finetune_config: dict, dataset: str | None = None) -> str:
    """The dataset named in the metadata: `dataset`, a Hub id recorded by finetune.py, or "RISC"."""
    for candidate in (dataset, finetune_config.get("dataset_id"), finetune_config.get("dataset_name")):
        if is_hub_id(candidate):
            return candidate
    return DEFAULT_DATASET


def find_example_image(output_dir: str | Path) -> Path | None:
    """The image shown by the card's widget: output_dir/example.jpg if finetune.py wrote one, else the first test
    prediction's image looked up in finetune_config's dataset_dir (RISC layout: `resized/NAME`)."""
    output_dir = Path(output_dir)
    if (output_dir / EXAMPLE_IMAGE).is_file():
        return output_dir / EXAMPLE_IMAGE
    dataset_dir = read_finetune_config(output_dir).get("dataset_dir")
    predictions = read_jsonl(output_dir / "predictions.jsonl")
    if not dataset_dir or not predictions or not predictions[0].get("image"):
        return None
    name = predictions[0]["image"]
    for candidate in (Path(dataset_dir) / "resized" / name, Path(dataset_dir) / name):
        if candidate.is_file() and candidate.suffix.lower() in (".jpg", ".jpeg"):
            return candidate
    return None


def load_baseline(eval_results: dict, baseline_results: str | Path | dict | None) -> dict | None:
    """Zero-shot scores on test: `baseline_results` (a path or a dict: {"overall", "groups"} or a whole
    eval_results.json of a `--do_train false` run), else eval_results.json's "baseline_test"."""
    if baseline_results is None:
        return eval_results.get("baseline_test")
    data = baseline_results
    if not isinstance(data, dict):
        path = Path(baseline_results)
        if not path.is_file():
            raise FileNotFoundError(
                f"--baseline_results {path} does not exist; pass the eval_results.json of a zero-shot run "
                "(python finetune.py CONFIG --do_train false --output_dir outputs/zero-shot)."
            )
        data = read_json(path)
    for key in (None, "test", "baseline_test"):
        candidate = data if key is None else data.get(key)
        if isinstance(candidate, dict) and isinstance(candidate.get("overall"), dict):
            return candidate
    raise ValueError(
        "--baseline_results must hold {'overall': {...}, 'groups': {...}} or an eval_results.json with a 'test' "
        f"entry; got keys {sorted(data)}."
    )


# --------------------------------------------------------------------------------------------------- formatting
def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _significant(value: Any) -> str:
    """1641.6 -> "1641.6", 0.0123 -> "0.0123": one decimal for large values, 3 significant digits for small."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"


def _count(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= limit:
            return f"{value / limit:.2f} {suffix}"
    return str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _public(value: Any) -> Any:
    """A config value fit for the card: local paths are withheld."""
    return "(local path)" if looks_like_local_path(value) else value


def _eval_results(test: dict, dataset: str) -> list[EvalResult]:
    """model-index entries: one result per set (all sources, then each source) x metric, values as in the json."""
    sets = [("all", f"{dataset} (all sources)", test["overall"])]
    sets += [
        (group.lower(), f"{dataset} {SOURCE_NAMES.get(group, group)}", scores)
        for group, scores in (test.get("groups") or {}).items()
    ]
    results = []
    for config, name, scores in sets:
        for key, value in scores.items():
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type="image-text-to-text",
                    task_name="Image captioning",
                    dataset_type=dataset,
                    dataset_name=name,
                    dataset_config=config,
                    dataset_split="test",
                    metric_type=key,
                    metric_name=METRIC_NAMES.get(key, key),
                    metric_value=value,
                )
            )
    return results


def _results_table(eval_results: dict, baseline: dict | None, counts: dict[str, int]) -> str:
    test = eval_results["test"]
    keys = [key for key in METRIC_NAMES if key in test["overall"]] + [
        key for key in test["overall"] if key not in METRIC_NAMES
    ]
    header = "| set | images | " + " | ".join(METRIC_NAMES.get(key, key) for key in keys) + " |"
    lines = [header, "|" + " --- |" * (len(keys) + 2)]

    def row(label: str, scores: dict | None, images: Any) -> None:
        if scores:
            lines.append(f"| {label} | {images} | " + " | ".join(_number(scores.get(key)) for key in keys) + " |")

    overall_count = test.get("num_samples") or sum(counts.values()) or "-"
    row("**test, all sources**", test["overall"], overall_count)
    row("zero-shot base", (baseline or {}).get("overall"), (baseline or {}).get("num_samples") or overall_count)
    for group, scores in (test.get("groups") or {}).items():
        row(f"**test, {SOURCE_NAMES.get(group, group)}**", scores, counts.get(group, "-"))
        row("zero-shot base", ((baseline or {}).get("groups") or {}).get(group), counts.get(group, "-"))
    if isinstance(eval_results.get("val"), dict):
        row("val, all sources", eval_results["val"].get("overall"), eval_results["val"].get("num_samples") or "-")
    return "\n".join(lines)


def _tsn_table(config: dict) -> str:
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
            fusion = config.get("tsn_fusion")
            detail = {
                "gated": "`siglip + tanh(gate) * context`, gate learned from 0",
                "ratio": f"`{config.get('tsn_original_ratio')} * siglip + {config.get('tsn_ratio')} * context`",
            }.get(fusion, "")
            rows.append(("fusion", f"`{fusion}`: {detail}"))
        if integration == "replace":
            rows.append(("tokens per segment side", config.get("tsn_replace_grid_size")))
        if config.get("tsn_dropout"):
            rows.append(("segment dropout", config.get("tsn_dropout")))
    vision, text = config.get("vision_config") or {}, config.get("text_config") or {}
    rows += [
        ("image size", f"{vision.get('image_size', '-')} px"),
        ("image tokens", config.get("image_seq_length", "-")),
        (
            "language model",
            {"gemma": "Gemma (PaliGemma 1)", "gemma2": "Gemma 2 (PaliGemma 2)"}.get(
                text.get("model_type"), text.get("model_type", "-")
            ),
        ),
    ]
    return "\n".join(["| setting | value |", "| --- | --- |"] + [f"| {k} | {_cell(v)} |" for k, v in rows])


def _strategy(finetune_config: dict) -> str:
    """The run's `train_strategy` (configs written before strategies existed trained LoRA or QLoRA)."""
    return finetune_config.get("train_strategy", "qlora" if finetune_config.get("quantization") != "none" else "lora")


def _method_text(finetune_config: dict) -> str:
    """What trained, by `train_strategy`."""
    strategy = _strategy(finetune_config)
    if strategy == "full":
        return "full training: every weight of the model trained (`train_strategy: full`)"
    if strategy == "freeze":
        return (
            f"only the parameters matching `{finetune_config.get('trainable_modules', '-')}` trained, the rest "
            "frozen (`train_strategy: freeze`)"
        )
    quantization = finetune_config.get("quantization")
    base = {
        "4bit": "4-bit NF4 base with double quantization (QLoRA)",
        "8bit": "8-bit base",
        "none": "full-precision base",
    }.get(quantization, f"quantization {quantization}")
    lora = (
        f"LoRA r={finetune_config.get('lora_r', '-')}, alpha={finetune_config.get('lora_alpha', '-')}, "
        f"dropout {finetune_config.get('lora_dropout', '-')} on the language model's q/k/v/o/gate/up/down "
        "projections; the segment encoder trains fully"
    )
    return f"{base}; {lora} (`train_strategy: {strategy}`)"


def _training_section(finetune_config: dict, base_text: str, trainable: int | None = None) -> str:
    rows = [("base model", base_text), ("method", _method_text(finetune_config))]
    if trainable:
        rows.append(("trained parameters", _count(trainable)))
    rows += [(label, _public(finetune_config[key])) for key, label in TRAINING_KEYS if key in finetune_config]
    generation = [
        f"{finetune_config[key]} {label}"
        for key, label in (("num_beams", "beams"), ("max_new_tokens", "new tokens at most"))
        if key in finetune_config
    ]
    if generation:
        rows.append(("generation (evaluation)", ", ".join(generation)))
    table = "\n".join(["| | |", "| --- | --- |"] + [f"| {k} | {_cell(v)} |" for k, v in rows])
    return (
        "Trained with the TSN-PaliGemma project's `finetune.py` (`transformers` `Seq2SeqTrainer`, LoRA via `peft`, "
        "4/8-bit bases via `bitsandbytes`). Evaluation generates from the prompt only and scores against all five "
        "reference captions with coco-caption's BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr-D (pycocoevalcap's numbers), "
        "overall and per source. Training data: the train split of RISC (NWPU-Captions, RSICD, UCM-Captions; 5 "
        "captions per image); model selection on val; the numbers above are on test.\n\n" + table
    )


def _characteristics_section(characteristics: dict) -> str:
    if not characteristics:
        return "Not measured for this release (characteristics.json was absent)."
    rows = [
        ("parameters", _count(characteristics.get("total_parameters"))),
        ("trained parameters (LoRA + segment encoder)", _count(characteristics.get("trainable_parameters"))),
        ("GFLOPs per caption", _significant(characteristics.get("gflops_per_caption"))),
        ("latency per image, mean", f"{_number(characteristics.get('latency_ms_mean'), 1)} ms"),
        ("latency per image, p95", f"{_number(characteristics.get('latency_ms_p95'), 1)} ms"),
    ]
    get = characteristics.get
    measured = (
        f"Measured on {get('device', 'an unnamed device')}, {get('dtype', '-')}, over "
        f"{get('num_images', '-')} test images, {get('num_beams', '-')} beam(s), at most "
        f"{get('max_new_tokens', '-')} new tokens per caption."
    )
    return "\n".join(["| | |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]) + "\n\n" + measured


def _examples_section(predictions: list[dict], has_samples: bool) -> str:
    parts = []
    if has_samples:
        parts.append(f"![Test images with the model's caption and a reference caption]({SAMPLES_IMAGE})")
    if predictions:
        lines = ["| image | source | generated | a reference |", "| --- | --- | --- | --- |"]
        for record in predictions[:4]:
            references = record.get("references") or ["-"]
            lines.append(
                f"| {_cell(Path(str(record.get('image', '-'))).name)} | {_cell(record.get('source', '-'))} "
                f"| {_cell(record.get('prediction', ''))} | {_cell(references[0])} |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or "No test predictions were shipped with this release."


def _usage_section(
    repo_id: str,
    revision: str,
    adapter_only: bool,
    base_id: str | None,
    prompt: str,
    max_new_tokens: int,
    num_beams: int,
) -> str:
    pin = f'revision = "{revision}"  # better: a commit sha ("Files and versions"), so code and weights stay fixed'
    generate = f"""image = Image.open("aerial.jpg").convert("RGB")
inputs = processor(images=image, text="<image>{prompt}", return_tensors="pt")
with torch.no_grad():
    output = model.generate(**inputs, max_new_tokens={max_new_tokens}, num_beams={num_beams}, do_sample=False)
caption = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
print(caption)"""
    if not adapter_only:
        return f"""Custom code (TSN segment encoder): pass `trust_remote_code=True`. `AutoModel`,
`AutoModelForImageTextToText` and `AutoModelForCausalLM` all give the captioning model.

```python
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

repo_id = "{repo_id}"
{pin}
model = AutoModelForImageTextToText.from_pretrained(repo_id, revision=revision, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(repo_id, revision=revision)
{generate}
```

Or as a pipeline:

```python
from transformers import pipeline

captioner = pipeline("image-text-to-text", model="{repo_id}", revision="{revision}", trust_remote_code=True)
result = captioner(images="aerial.jpg", text="<image>{prompt}", max_new_tokens={max_new_tokens},
                   return_full_text=False)
print(result[0]["generated_text"])
```

The model was trained and evaluated with the prompt `{prompt}`; other PaliGemma prefixes are untested."""
    base = base_id or "PATH/TO/BASE/PALIGEMMA"
    base_note = "" if base_id else "  # the local PaliGemma checkpoint this adapter was trained on (not on the Hub)"
    return f"""This repo holds the LoRA adapter and the trained segment encoder only (`peft` format). Rebuild the full
model from the base PaliGemma with the TSN settings in `config.json` (the model code ships in this repo:
`trust_remote_code`), load the adapter, and merge it in full precision:

```python
import torch
from peft import PeftModel
from PIL import Image
from transformers import AutoConfig, AutoProcessor
from transformers.dynamic_module_utils import get_class_from_dynamic_module

repo_id = "{repo_id}"
{pin}
base_model = "{base}"{base_note}
config = AutoConfig.from_pretrained(repo_id, revision=revision, trust_remote_code=True)
tsn_options = {{key: value for key, value in config.to_dict().items() if key.startswith("tsn_")}}
tsn_options["tsn_pretrained_backbone"] = False  # the trained segment encoder comes with the adapter
model_class = get_class_from_dynamic_module(
    "modeling_tsn_paligemma.TSNPaliGemmaForConditionalGeneration", repo_id, revision=revision
)
model = model_class.from_base_pretrained(base_model, dtype=torch.float32, **tsn_options)  # bf16 works on GPU
model = PeftModel.from_pretrained(model, repo_id, revision=revision).merge_and_unload().eval()
processor = AutoProcessor.from_pretrained(repo_id, revision=revision)
{generate}
```

For QLoRA training on top of this adapter, load the base in 4 bit (`from_base_pretrained(...,
quantization_config=...)`) and `PeftModel.from_pretrained(..., is_trainable=True)`; never merge into a 4-bit model."""


# ------------------------------------------------------------------------------------------------------- card
def render_model_card(
    output_dir: str | Path,
    repo_id: str,
    adapter_only: bool = False,
    base_model: str | None = None,
    baseline_results: str | Path | dict | None = None,
    *,
    revision: str | None = None,
    dataset: str | None = None,
    space_id: str | None = None,
) -> str:
    """README.md text (YAML metadata + markdown) for publishing `output_dir` (a finetune.py output) as `repo_id`.

    Args:
        output_dir: finetune.py's output_dir (eval_results.json, finetune_config.yaml, merged/ or adapter/, and
            optionally predictions.jsonl, samples.png, characteristics.json, example.jpg).
        repo_id: `user/name` on the Hub, used in the usage code.
        adapter_only: card of an adapter-only repo (rebuild recipe) instead of the merged model.
        base_model: Hub id of the base PaliGemma; default: finetune_config's model_name_or_path if a Hub id.
        baseline_results: zero-shot scores (path or dict); default: eval_results.json's "baseline_test".
        revision: branch named in the usage code (default "main"); the card asks users to pin a commit.
        dataset: Hub dataset id for the metadata (default: finetune_config's dataset_id / dataset_name if a Hub
            id, else "RISC").
    """
    output_dir = Path(output_dir)
    results_path = output_dir / "eval_results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path.name} is missing in the output_dir; run finetune.py first.")
    eval_results = read_json(results_path)
    if not isinstance(eval_results.get("test"), dict) or not isinstance(eval_results["test"].get("overall"), dict):
        raise ValueError(
            f"{results_path.name} has no test scores ('test': {{'overall': ...}}); rerun finetune.py with do_predict."
        )
    finetune_config = read_finetune_config(output_dir)
    config = model_config(output_dir, adapter_only)
    tsn = {**{k: v for k, v in finetune_config.items() if k.startswith("tsn_")}, **config}
    base_id = base_model_id(finetune_config, base_model)
    data_id = dataset_id(finetune_config, dataset)
    baseline = load_baseline(eval_results, baseline_results)
    characteristics_path = output_dir / "characteristics.json"
    characteristics = read_json(characteristics_path) if characteristics_path.is_file() else {}
    predictions = read_jsonl(output_dir / "predictions.jsonl")
    counts: dict[str, int] = {}
    for record in predictions:
        counts[record.get("source", "-")] = counts.get(record.get("source", "-"), 0) + 1
    has_samples = (output_dir / SAMPLES_IMAGE).is_file()
    example = None if adapter_only else find_example_image(output_dir)
    revision = revision or "main"
    prompt = finetune_config.get("prompt") or DEFAULT_PROMPT
    integration = tsn.get("tsn_integration", "enhanced")
    name = repo_id.split("/")[-1]

    quantization = finetune_config.get("quantization", "4bit")
    strategy = _strategy(finetune_config)
    method = {"4bit": "QLoRA", "8bit": "LoRA on an 8-bit base"}.get(quantization, "LoRA")
    method = {"full": "full training", "freeze": "partial training"}.get(strategy, method)
    tags = [
        "remote-sensing",
        "aerial-imagery",
        "image-captioning",
        "paligemma",
        "tsn",
        f"tsn-{integration}",
        {"full": "full-training", "freeze": "partial-training"}.get(
            strategy, "qlora" if quantization == "4bit" else "lora"
        ),
    ]
    tags += ["peft", "lora"] if adapter_only else ["custom_code"]
    tags = list(dict.fromkeys(tags))
    extra: dict[str, Any] = {}
    if base_id:
        extra["base_model_relation"] = "adapter" if adapter_only else "finetune"
    if example is not None:
        extra["widget"] = [
            {
                "src": f"https://huggingface.co/{repo_id}/resolve/{revision}/{EXAMPLE_IMAGE}",
                "text": f"<image>{prompt}",
                "example_title": "aerial image",
            }
        ]
    card_data = ModelCardData(
        license=LICENSE,
        base_model=base_id,
        pipeline_tag="image-text-to-text",
        library_name="peft" if adapter_only else "transformers",
        language=["en"],
        tags=tags,
        datasets=[data_id],
        metrics=["bleu", "meteor", "rouge", "cider"],
        model_name=name,
        eval_results=_eval_results(eval_results["test"], data_id),
        **extra,
    )
    base_text = f"[{base_id}](https://huggingface.co/{base_id})" if base_id else "a local PaliGemma checkpoint"
    kind = "LoRA adapter (with the trained segment encoder)" if adapter_only else "full model (LoRA merged)"
    if strategy in ("full", "freeze"):
        kind = "full model"
    summary_path = output_dir / "training_summary.json"
    trainable = read_json(summary_path).get("trainable_parameters") if summary_path.is_file() else None
    baseline_note = (
        '"zero-shot base" rows: the same architecture before fine-tuning, evaluated the same way.'
        if baseline
        else "No zero-shot baseline was provided for this release."
    )
    grids = ", ".join(f"{rows}x{cols}" for rows, cols in tsn.get("tsn_segment_scales") or [])
    max_new_tokens = int(finetune_config.get("max_new_tokens") or 30)
    usage = _usage_section(
        repo_id, revision, adapter_only, base_id, prompt, max_new_tokens, int(finetune_config.get("num_beams") or 1)
    )
    if integration == "direct":
        summary = "This release uses the `direct` integration: plain PaliGemma, without the segment encoder."
    else:
        summary = (
            f"TSN-PaliGemma adds a TSN-style multi-scale segment encoder to PaliGemma's image path: the "
            f"image is cut into grids ({grids}), every crop goes through a {tsn.get('tsn_backbone', 'CNN')} "
            f"in one batched call, and the segment features reach the language model through the "
            f"`{integration}` integration."
        )
    pruned = config.get("pruned_layers") or {}
    if pruned:
        parts = [
            f"{'language-model' if part == 'text' else 'SigLIP'} layers {', '.join(map(str, layers))}"
            for part, layers in pruned.items()
            if layers
        ]
        summary += (
            f"\n\nPruned by block influence (`prune.py`): removed {' and '.join(parts)} (indices of the "
            "unpruned model)."
        )
    space_line = (
        (
            f"\n\nTry it in a web page: the Space [{space_id}](https://huggingface.co/spaces/{space_id}) "
            "captions your images with this model."
        )
        if space_id
        else ""
    )
    body = f"""
# {name}

An aerial-image captioner: **TSN-PaliGemma** fine-tuned from {base_text} with {method} on RISC (NWPU-Captions,
RSICD and UCM-Captions). This repo holds the **{kind}**.

{summary}{space_line}

## Model

{_tsn_table(tsn)}

## Results

Test split, coco-caption scores (BLEU, METEOR and ROUGE-L in [0, 1], CIDEr-D in [0, 10]); each source is scored as
if evaluated alone. {baseline_note} The same numbers, unrounded, are in `eval_results.json` and in this card's
metadata (`model-index`).

{_results_table(eval_results, baseline, counts)}

## Examples

{_examples_section(predictions, has_samples)}

## Usage

{usage}

## Training

{_training_section(finetune_config, base_text, trainable)}

## Cost

{_characteristics_section(characteristics)}

## Limitations

- Trained on RISC's aerial and satellite RGB tiles (resized to 224x224); other sensors, ground resolutions, oblique
  or ground-level photos are out of distribution.
- English captions in RISC's short, templated style ("many buildings are near a playground ."); counts, colours and
  spatial relations are often wrong, and captions can name objects that are not there.
- Scores compare against five human references per image; they measure overlap with RISC's style, not factual
  correctness. Not for safety-critical use (disaster response, military or legal decisions) without human review.
- Base-model terms apply: PaliGemma is released under the [Gemma terms of use](https://ai.google.dev/gemma/terms);
  the images and captions keep the terms of their datasets (research use).

## Citation

PaliGemma (Beyer et al. 2024; PaliGemma 2: Steiner et al. 2024), TSN (Wang et al. 2016), QLoRA (Dettmers et al.
2023), RSICD (Lu et al. 2017/2018), UCM-Captions (Qu et al. 2016), NWPU-Captions (Cheng et al. 2022):

```bibtex
{MODEL_CITATIONS}{RISC_CITATION.strip()}
```
"""
    text = f"---\n{card_data.to_yaml()}\n---\n{body}"
    ModelCard(text)  # parses back (metadata and model-index), as the Hub will
    return text


__all__ = ["find_example_image", "base_model_id", "is_hub_id", "looks_like_local_path", "render_model_card"]
