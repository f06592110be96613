"""The model card (README.md) of a published TSN-PaliGemma, rendered from a finetune.py output_dir through
huggingface_hub's `ModelCard.from_template` and `templates/model_card.md`.

The YAML metadata is a `ModelCardData` (`card_metadata`: a `model-index` holding the test scores of
eval_results.json exactly); the body says what the model is, its TSN settings, a results section per task (each task
writes its own: `Task.card_template`), usage, the training recipe, cost, limitations and citations. The card never
contains a local path.

```python
>>> from publishing import render_model_card
>>> text = render_model_card("outputs/risc", "user/tsn-paligemma-risc", base_model="google/paligemma-3b-pt-224")
>>> from huggingface_hub import ModelCard  # doctest: +SKIP
>>> ModelCard(text).data.eval_results[0].metric_value  # doctest: +SKIP
0.7312...
```
"""

from pathlib import Path

import jinja2
from huggingface_hub import ModelCard

from dataset_builder import CITATION as RISC_CITATION
from tasks import get_task, recorded_tasks

from .card_metadata import card_data
from .card_rows import cost_note, cost_rows, image_size, strategy, training_rows, tsn_rows
from .card_rows import count as count_text
from .paths import looks_like_local_path
from .run_folder import (
    SAMPLES_IMAGE,
    base_model_id,
    dataset_ids,
    describe_base,
    find_example_image,
    load_baseline,
    model_config,
    read_finetune_config,
    read_jsonl,
    read_optional_json,
    read_test_results,
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
# The card template's table macro, for the sections each task writes.
TABLE_MACRO = """{%- macro table(header, rows) %}
| {{ header | join(" | ") }} |
|{% for _ in header %} --- |{% endfor %}
{%- for row in rows %}
| {{ row | join(" | ") }} |
{%- endfor %}
{%- endmacro %}"""
TASK_HEADER = ["task", "prompt", "test score", "its baseline"]


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
    size = f" of {count_text(base['parameters'])} parameters" if base.get("parameters") else ""
    return f"a local {kind} checkpoint{name}{size}"


def data_text(train_images: dict[str, int], views: list[dict], dataset: str) -> str:
    """The training data as the run recorded it: image counts per source, each source told by the first task whose
    predictions come from it (captions, or boxes)."""
    if not train_images:
        return f"the train split of {dataset}"
    claimed: dict[str, type] = {}
    for view in views:
        for source in view["sources"]:
            claimed.setdefault(source, view["task"])
    default = views[0]["task"]
    groups: dict[type, dict[str, int]] = {}
    for source, count in train_images.items():
        groups.setdefault(claimed.get(source, default), {})[source] = count
    parts = [task.train_data_text(images, dataset == "RISC") for task, images in groups.items()]
    return f"{sum(train_images.values()):,} training images ({'; '.join(parts)})"


def _task_views(
    output_dir: Path, eval_results: dict, recorded: dict, run_dataset: str, base_tasks: list[str]
) -> list[dict]:
    """Per task of the run (one, or each dataset of a mixture): its task class (named in the results), test/val
    scores, zero-shot scores, predictions, the prompt the model recorded for it and the sources it scored."""
    vals, baselines = task_results(eval_results, "val"), task_results(eval_results, "baseline_test")
    views = []
    for name, test in task_results(eval_results).items():
        predictions = read_jsonl(output_dir / ("predictions.jsonl" if name is None else f"predictions_{name}.jsonl"))
        task = get_task(test["task"])
        views.append(
            {
                "name": name,
                "task": task,
                "results": {"test": test, "val": vals.get(name)},
                "baseline": baselines.get(name),
                "predictions": predictions,
                "prompt": (recorded.get(task.name) or {}).get("prompt"),
                "record": recorded.get(task.name) or {},  # what the model records of the task (e.g. a tile size)
                "source": predictions[0].get("source", name or task.name) if predictions else name or task.name,
                "sources": list(dict.fromkeys(record.get("source") for record in predictions)),
                "run_dataset": run_dataset,
                "base_trained": task.name in base_tasks,
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
    datasets = dataset_ids(finetune_config, summary, dataset)
    run_dataset = datasets[0] if datasets else "the training data"
    recorded, base_tasks = recorded_tasks(config), summary.get("base_tasks", [])
    views = _task_views(output_dir, eval_results, recorded, run_dataset, base_tasks)
    first, scored = views[0], {view["task"].name for view in views}
    return {
        "tasks": views,
        "inherited": {name: record for name, record in recorded.items() if name not in scored},
        "summary": summary,
        "base": base,
        "license": base.get("license") or UNKNOWN_LICENSE,
        "eval_results": eval_results,
        "finetune_config": finetune_config,
        "config": config,
        "tsn": tsn,
        "integration": tsn.get("tsn_integration", "enhanced"),
        "strategy": strategy(finetune_config),
        "quantization": finetune_config.get("quantization", "4bit"),
        "base_id": base_id,
        "dataset": run_dataset,
        "datasets": datasets,
        "prompt": first["task"].prompt_text(first),  # the widget's and the usage code's
        "characteristics": read_optional_json(output_dir / "characteristics.json"),
        "has_samples": (output_dir / SAMPLES_IMAGE).is_file(),
        "example": None if adapter_only else find_example_image(output_dir),
    }


def what_text(views: list[dict]) -> str:
    """What the model is, for the card's first line."""
    tasks = list(dict.fromkeys(view["task"] for view in views))
    if len(tasks) == 1:
        return tasks[0].card_title()
    nouns = [task.card_noun for task in tasks]
    return "An aerial-image " + ", ".join(nouns[:-1]) + " and " + nouns[-1]


def task_sections(run: dict) -> list[str]:
    """Each task's results section, its own Jinja text filled with its own values."""
    environment = jinja2.Environment(autoescape=False, keep_trailing_newline=False)
    sections = []
    for view in run["tasks"]:
        task = view["task"]
        values = task.card_values(view, run)
        sections.append(environment.from_string(TABLE_MACRO + task.card_template).render(**values).strip("\n"))
    return sections


def _usage_values(run: dict) -> dict:
    """The usage section: the code that generates with the first task's prompt, each task's own usage note, and
    every prompt the model was scored with."""
    finetune_config, views = run["finetune_config"], run["tasks"]
    max_new_tokens = int(finetune_config.get("max_new_tokens") or 30)
    num_beams = int(finetune_config.get("num_beams") or 1)
    environment = jinja2.Environment(autoescape=False)
    notes = [
        environment.from_string(view["task"].usage_template).render(prompt=view["task"].prompt_text(view)).strip("\n")
        for view in views
        if view["task"].usage_template
    ]
    return {
        "prompt": run["prompt"],
        "max_new_tokens": max_new_tokens,
        "generate_code": GENERATE_CODE.format(
            prompt=run["prompt"], max_new_tokens=max_new_tokens, num_beams=num_beams
        ),
        "usage_notes": notes,
        "task_prompts": list(dict.fromkeys(f"`{view['task'].prompt_text(view)}`" for view in views)),
    }


def _losses(run: dict) -> tuple[str, float | None, float | None]:
    """(label, before, after): the first task's test loss before and after this training when the run scored its
    base, else the first and last logged training loss."""
    first = run["tasks"][0]
    before = (first.get("baseline") or {}).get("loss")
    if before is not None:
        return "test loss, before -> after this training", before, first["results"]["test"].get("loss")
    summary = run["summary"]
    return "training loss, first -> last logged", summary.get("first_train_loss"), summary.get("last_train_loss")


def _template_values(run: dict, repo_id: str, adapter_only: bool, revision: str) -> dict:
    base = base_text(run["base_id"], run["base"])
    method, kind = _method(run["strategy"], run["quantization"])
    views = run["tasks"]
    return {
        "what": what_text(views),
        "task_header": TASK_HEADER,
        "task_rows": [[view["task"].name, *view["task"].card_row(view)] for view in views],
        "task_sections": task_sections(run),
        "has_examples": any(view["predictions"] for view in views),
        "scored_tasks": ", ".join(dict.fromkeys(view["task"].name for view in views)),
        "inherited_tasks": [
            f"{name} (`{record.get('prompt', '').replace('{}', '<class>')}`)"
            for name, record in run["inherited"].items()
        ],
        "name": repo_id.split("/")[-1],
        "repo_id": repo_id,
        "revision": revision,
        "adapter_only": adapter_only,
        "base_id": run["base_id"],
        "base_text": base,
        "data_text": data_text(run["summary"].get("train_images") or {}, views, run["dataset"]),
        "license": run["license"],
        "image_size": image_size(run["config"]),
        "method": method,
        "kind": "LoRA adapter (with the trained segment encoder)" if adapter_only else kind,
        "summary": _summary(run["tsn"]),
        "pruned_text": _pruned_text(run["config"]),
        "tsn_rows": tsn_rows(run["tsn"]),
        "has_samples": run["has_samples"],
        "samples_image": SAMPLES_IMAGE,
        "scoring_text": "; ".join(dict.fromkeys(filter(None, (view["task"].scoring_text for view in views)))),
        "training_rows": training_rows(run["finetune_config"], base, run["summary"], _losses(run)),
        "cost_rows": cost_rows(run["characteristics"]),
        "cost_note": cost_note(run["characteristics"]),
        "citations": (TEMPLATES / "citations.bib").read_text(encoding="utf-8") + RISC_CITATION.strip(),
        **_usage_values(run),
    }


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
        baseline_results: zero-shot scores of the first task (path or dict); default: eval_results.json's
            "baseline_test".
        revision: branch named in the usage code (default "main"); the card asks users to pin a commit.
        dataset: Hub dataset id for the metadata (default: finetune_config's dataset_id / dataset_name if a Hub
            id, else "RISC").
        space_id: a Gradio Space showing the model, linked from the card.
    """
    run = read_run(Path(output_dir), adapter_only, base_model, dataset)
    if baseline_results is not None:  # given: the zero-shot scores of the first task
        run["tasks"][0]["baseline"] = load_baseline(run["eval_results"], baseline_results)
    revision = revision or "main"
    card = ModelCard.from_template(
        card_data(run, repo_id, adapter_only, revision),
        template_path=str(TEMPLATES / "model_card.md"),
        space_id=space_id,
        **_template_values(run, repo_id, adapter_only, revision),
    )
    text = str(card)
    ModelCard(text)  # parses back (metadata and model-index), as the Hub will
    return text
