"""The model card (README.md) of a published TSN-PaliGemma, rendered from a finetune.py output_dir through
huggingface_hub's `ModelCard.from_template` and `templates/model_card.md`.

The YAML metadata is a `ModelCardData` (license, base model, pipeline tag, tags, datasets, widget, and a `model-index`
holding the test scores of eval_results.json exactly); the body says what the model is, its TSN settings, results
per task (captions overall and per source next to the zero-shot baseline; detection overall and per class), usage,
the training recipe, cost, limitations and citations.
The card never contains a local path.

```python
>>> from publishing import render_model_card
>>> text = render_model_card("outputs/risc", "user/tsn-paligemma-risc", base_model="google/paligemma-3b-pt-224")
>>> from huggingface_hub import ModelCard  # doctest: +SKIP
>>> ModelCard(text).data.eval_results[0].metric_value  # doctest: +SKIP
0.7312...
```
"""

from collections import Counter
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from dataset_builder import CITATION as RISC_CITATION
from processing import DEFAULT_PROMPT

from . import card_rows
from .paths import looks_like_local_path
from .run_folder import (
    EXAMPLE_IMAGE,
    SAMPLES_IMAGE,
    base_model_id,
    dataset_id,
    describe_base,
    find_example_image,
    load_baseline,
    model_config,
    read_finetune_config,
    read_jsonl,
    read_optional_json,
    read_test_results,
    task_kind,
    task_results,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
UNKNOWN_LICENSE = "unknown"  # the Hub's value when the base states none
GENERATE_CODE = """image = Image.open("aerial.jpg").convert("RGB")
inputs = processor(images=image, text="<image>{prompt}", return_tensors="pt")
with torch.no_grad():
    output = model.generate(**inputs, max_new_tokens={max_new_tokens}, num_beams={num_beams}, do_sample=False)
caption = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
print(caption)"""


def _eval_results(run: dict) -> list[EvalResult]:
    """model-index entries of every task, values as in eval_results.json."""
    results = []
    for view in run["tasks"]:
        test = view["results"]["test"]
        if view["kind"] == "detect":
            results += _detection_eval_results(test, view["dataset"])
        elif view["kind"] == "caption":
            results += _caption_eval_results(test, run["dataset"])
        else:
            results += _answer_eval_results(test, view)
    return results


def _answer_eval_results(test: dict, view: dict) -> list[EvalResult]:
    """Scenes (image classification) and counts (visual question answering): the overall scores and the
    baseline's, then accuracy per class."""
    keys = card_rows.ANSWER_METRICS[view["kind"]]
    sets = [("all", f"{view['dataset']} (all classes)", {key: test["overall"].get(key) for key in keys})]
    sets += [
        (name.replace(" ", "-"), f"{view['dataset']} {name}", {"accuracy": scores.get("accuracy")})
        for name, scores in (test.get("groups") or {}).items()
    ]
    return _model_index(sets, card_rows.ANSWER_TASKS[view["kind"]], view["dataset"])


def _detection_eval_results(test: dict, dataset: str) -> list[EvalResult]:
    """One result per set (all classes, then each class) x metric: AP, AP50 (and AP75, count MAE overall)."""
    overall = {key: test["overall"].get(key) for key in card_rows.DETECTION_METRICS}
    sets = [("all", f"{dataset} (all classes)", overall)]
    sets += [
        (name.replace(" ", "-"), f"{dataset} {name}", {key: scores.get(key) for key in ("ap", "ap50")})
        for name, scores in (test.get("groups") or {}).items()
    ]
    return _model_index(sets, ("object-detection", "Object detection"), dataset)


def _caption_eval_results(test: dict, dataset: str) -> list[EvalResult]:
    """One result per set (all sources, then each source) x metric, values as in the json."""
    sets = [("all", f"{dataset} (all sources)", test["overall"])]
    sets += [
        (group.lower(), f"{dataset} {card_rows.SOURCE_NAMES.get(group, group)}", scores)
        for group, scores in (test.get("groups") or {}).items()
    ]
    return _model_index(sets, ("image-text-to-text", "Image captioning"), dataset)


def _model_index(sets, task: tuple[str, str], dataset: str) -> list[EvalResult]:
    """EvalResults of (config, dataset name, {metric: value}) sets; undefined values (None) are left out."""
    return [
        EvalResult(
            task_type=task[0],
            task_name=task[1],
            dataset_type=dataset,
            dataset_name=name,
            dataset_config=config,
            dataset_split="test",
            metric_type=key,
            metric_name=card_rows.METRIC_NAMES.get(key, key),
            metric_value=value,
        )
        for config, name, scores in sets
        for key, value in scores.items()
        if value is not None
    ]


def _tags(run: dict, adapter_only: bool) -> list[str]:
    method = {"full": "full-training", "freeze": "partial-training"}.get(run["strategy"])
    method = method or ("qlora" if run["quantization"] == "4bit" else "lora")
    tasks = ["image-captioning"] if run["caption"] else []
    tasks += ["object-detection"] if run["detection"] else []
    tasks += [card_rows.ANSWER_TASKS[view["kind"]][0] for view in run["answers"]]
    tags = ["remote-sensing", "aerial-imagery", *tasks, "paligemma", "tsn", f"tsn-{run['integration']}", method]
    tags += ["peft", "lora"] if adapter_only else ["custom_code"]
    return list(dict.fromkeys(tags))


def _card_data(run: dict, repo_id: str, adapter_only: bool, revision: str) -> ModelCardData:
    extra: dict[str, Any] = {}
    if run["base_id"]:
        extra["base_model_relation"] = "adapter" if adapter_only else "finetune"
    if run["example"] is not None:
        extra["widget"] = [
            {
                "src": f"https://huggingface.co/{repo_id}/resolve/{revision}/{EXAMPLE_IMAGE}",
                "text": f"<image>{run['prompt']}",
                "example_title": "aerial image",
            }
        ]
    return ModelCardData(
        license=run["license"],
        base_model=run["base_id"],
        pipeline_tag="image-text-to-text",
        library_name="peft" if adapter_only else "transformers",
        language=["en"],
        tags=_tags(run, adapter_only),
        datasets=[run["dataset"]],
        metrics=["bleu", "meteor", "rouge", "cider"],
        model_name=repo_id.split("/")[-1],
        eval_results=_eval_results(run),
        **extra,
    )


def _summary(tsn: dict) -> str:
    integration = tsn.get("tsn_integration", "enhanced")
    if integration == "direct":
        return "This release uses the `direct` integration: plain PaliGemma, without the segment encoder."
    grids = ", ".join(f"{rows}x{cols}" for rows, cols in tsn.get("tsn_segment_scales") or [])
    return (
        f"TSN-PaliGemma adds a TSN-style multi-scale segment encoder to PaliGemma's image path: the image is cut "
        f"into grids ({grids}), every crop goes through a {tsn.get('tsn_backbone', 'CNN')} in one batched call, "
        f"and the segment features reach the language model through the `{integration}` integration."
    )


def _pruned_text(config: dict) -> str:
    parts = [
        f"{'language-model' if part == 'text' else 'SigLIP'} layers {', '.join(map(str, layers))}"
        for part, layers in (config.get("pruned_layers") or {}).items()
        if layers
    ]
    return " and ".join(parts)


def _method(strategy: str, quantization: str) -> tuple[str, str]:
    """(how it was trained, what this repo holds) for the card's first lines."""
    if strategy in ("full", "freeze"):
        return {"full": "full training", "freeze": "partial training"}[strategy], "full model"
    method = {"4bit": "QLoRA", "8bit": "LoRA on an 8-bit base"}.get(quantization, "LoRA")
    return method, "full model (LoRA merged)"


def base_text(base_id: str | None, base: dict) -> str:
    """How the card names the base: a Hub link, or what the run recorded of a local folder (never its path)."""
    if base_id:
        return f"[{base_id}](https://huggingface.co/{base_id})"
    kind = {"tsn_paligemma": "TSN-PaliGemma", "paligemma": "PaliGemma"}.get(base.get("model_type"), "model")
    name = f" `{base['name']}`" if base.get("name") and not looks_like_local_path(base["name"]) else ""
    size = f" of {card_rows.count(base['parameters'])} parameters" if base.get("parameters") else ""
    return f"a local {kind} checkpoint{name}{size}"


def data_text(train_images: dict[str, int], dataset: str, box_sources=()) -> str:
    """The training data as the run recorded it: image counts per source (captions, or boxes for detection)."""
    if not train_images:
        return f"the train split of {dataset}"
    total = sum(train_images.values())
    captioned = {name: n for name, n in train_images.items() if name not in box_sources}
    parts = []
    if captioned:
        sources = ", ".join(f"{card_rows.SOURCE_NAMES.get(name, name)} {n:,}" for name, n in captioned.items())
        parts.append(f"{sources}; five captions each")
    boxed = {name: n for name, n in train_images.items() if name in box_sources}
    if boxed:
        parts.append(", ".join(f"{name} {n:,}" for name, n in boxed.items()) + " with boxes")
    return f"{total:,} training images ({'; '.join(parts)})"


def _task_views(output_dir: Path, eval_results: dict) -> list[dict]:
    """Per task of the run (one, or each dataset of a mixture): its test/val scores, zero-shot scores, predictions
    and its kind (caption, detect, classify, count)."""
    vals, baselines = task_results(eval_results, "val"), task_results(eval_results, "baseline_test")
    views = []
    for name, test in task_results(eval_results).items():
        predictions = read_jsonl(output_dir / ("predictions.jsonl" if name is None else f"predictions_{name}.jsonl"))
        views.append(
            {
                "name": name,
                "kind": task_kind(test),
                "detection": task_kind(test) == "detect",
                "results": {"test": test, "val": vals.get(name)},
                "baseline": baselines.get(name),
                "predictions": predictions,
                "dataset": predictions[0].get("source", name or "detection") if predictions else name or "detection",
            }
        )
    return views


def read_run(output_dir: Path, adapter_only: bool, base_model: str | None, dataset: str | None) -> dict:
    """Everything the card shows, read from the output_dir once."""
    finetune_config = read_finetune_config(output_dir)
    config = model_config(output_dir, adapter_only)
    tsn = {**{k: v for k, v in finetune_config.items() if k.startswith("tsn_")}, **config}
    summary = read_optional_json(output_dir / "training_summary.json")
    base_id = base_model_id(finetune_config, base_model)
    # What the run recorded of its base; for older runs, the base as it is now (its folder, or its Hub id).
    base = summary.get("base_model") or describe_base(base_id or finetune_config.get("model_name_or_path"))
    eval_results = read_test_results(output_dir)
    views = _task_views(output_dir, eval_results)
    caption = next((view for view in views if view["kind"] == "caption"), None)
    return {
        "tasks": views,
        "caption": caption,
        "detection": next((view for view in views if view["detection"]), None),
        "answers": [view for view in views if view["kind"] in card_rows.ANSWER_TASKS],
        "summary": summary,
        "base": base,
        "license": base.get("license") or UNKNOWN_LICENSE,
        "eval_results": eval_results,
        "finetune_config": finetune_config,
        "config": config,
        "tsn": tsn,
        "integration": tsn.get("tsn_integration", "enhanced"),
        "strategy": card_rows.strategy(finetune_config),
        "quantization": finetune_config.get("quantization", "4bit"),
        "base_id": base_id,
        "dataset": dataset_id(finetune_config, dataset),
        "prompt": finetune_config.get("prompt") or DEFAULT_PROMPT,
        "predictions": caption["predictions"] if caption else [],
        "characteristics": read_optional_json(output_dir / "characteristics.json"),
        "trainable": summary.get("trainable_parameters"),
        "has_samples": (output_dir / SAMPLES_IMAGE).is_file(),
        "example": None if adapter_only else find_example_image(output_dir),
    }


def _template_values(run: dict, repo_id: str, adapter_only: bool, revision: str, baseline: dict | None) -> dict:
    finetune_config, base_id = run["finetune_config"], run["base_id"]
    base = base_text(base_id, run["base"])
    method, kind = _method(run["strategy"], run["quantization"])
    max_new_tokens = int(finetune_config.get("max_new_tokens") or 30)
    num_beams = int(finetune_config.get("num_beams") or 1)
    caption, detection = run["caption"], run["detection"]
    overall = caption["results"]["test"]["overall"] if caption else {}
    counts = _source_counts(run["predictions"])
    results = card_rows.results_rows(caption["results"], baseline, counts) if caption else []
    detect_prompt = card_rows.detection_prompt(detection["results"]["test"]) if detection else None
    answers = card_rows.answer_rows(run["answers"])
    return {
        "what": card_rows.what_text(bool(caption), bool(detection), [view["kind"] for view in run["answers"]]),
        "answer_header": card_rows.ANSWER_HEADER,
        "answer_rows": answers,
        "task_header": card_rows.TASK_HEADER,
        "task_rows": card_rows.task_rows(run["prompt"], caption, detection, answers),
        "caption_results": bool(caption),
        "detection_header": card_rows.DETECTION_HEADER,
        "detection_rows": card_rows.detection_rows(detection["results"]) if detection else [],
        "detection_examples": card_rows.detection_examples(detection["predictions"]) if detection else [],
        "detect_prompt": detect_prompt,
        "name": repo_id.split("/")[-1],
        "repo_id": repo_id,
        "revision": revision,
        "adapter_only": adapter_only,
        "base_id": base_id,
        "base_text": base,
        "data_text": data_text(
            run["summary"].get("train_images") or {}, run["dataset"], {detection["dataset"]} if detection else ()
        ),
        "license": run["license"],
        "image_size": card_rows.image_size(run["config"]),
        "few_images": card_rows.FEW_IMAGES,
        "method": method,
        "kind": "LoRA adapter (with the trained segment encoder)" if adapter_only else kind,
        "summary": _summary(run["tsn"]),
        "pruned_text": _pruned_text(run["config"]),
        "tsn_rows": card_rows.tsn_rows(run["tsn"]),
        "baseline_note": '"zero-shot base" rows: the same architecture before fine-tuning, evaluated the same way.'
        if baseline
        else "No zero-shot baseline was provided for this release.",
        "results_header": [
            "set",
            "images",
            *(card_rows.METRIC_NAMES.get(k, k) for k in card_rows.metric_keys(overall)),
        ],
        "results_rows": results,
        "has_few_images": any(row[1].endswith("(few)") for row in results),
        "has_samples": run["has_samples"],
        "samples_image": SAMPLES_IMAGE,
        "example_rows": card_rows.example_rows(run["predictions"]),
        "prompt": run["prompt"],
        "max_new_tokens": max_new_tokens,
        "generate_code": GENERATE_CODE.format(
            prompt=run["prompt"], max_new_tokens=max_new_tokens, num_beams=num_beams
        ),
        "training_rows": card_rows.training_rows(finetune_config, base, run["trainable"]),
        "cost_rows": card_rows.cost_rows(run["characteristics"]),
        "cost_note": card_rows.cost_note(run["characteristics"]),
        "citations": (TEMPLATES / "citations.bib").read_text(encoding="utf-8") + RISC_CITATION.strip(),
    }


def _source_counts(predictions: list[dict]) -> dict[str, int]:
    return dict(Counter(record.get("source", "-") for record in predictions))


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
        space_id: a Gradio Space showing the model, linked from the card.
    """
    run = read_run(Path(output_dir), adapter_only, base_model, dataset)
    if baseline_results is not None:  # given: the zero-shot scores of the caption task
        baseline = load_baseline(run["eval_results"], baseline_results)
    else:
        baseline = (run["caption"] or {}).get("baseline")
    revision = revision or "main"
    card = ModelCard.from_template(
        _card_data(run, repo_id, adapter_only, revision),
        template_path=str(TEMPLATES / "model_card.md"),
        space_id=space_id,
        **_template_values(run, repo_id, adapter_only, revision, baseline),
    )
    text = str(card)
    ModelCard(text)  # parses back (metadata and model-index), as the Hub will
    return text
