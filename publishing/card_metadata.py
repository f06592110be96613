"""The model card's YAML metadata: a `ModelCardData` with license, base model, pipeline tag, tags, datasets, the
widget, and a `model-index` holding every task's test scores exactly as eval_results.json has them (each task says
which of its scores go there: `Task.model_index`)."""

from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from .run_folder import EXAMPLE_IMAGE


def eval_results(run: dict) -> list[EvalResult]:
    """model-index entries of every task; undefined values (None) are left out."""
    results = []
    for view in run["tasks"]:
        task = view["task"]
        task_type, task_name = task.hub_task
        for config, name, scores in task.model_index(view):
            results += [
                EvalResult(
                    task_type=task_type,
                    task_name=task_name,
                    dataset_type=task.card_dataset(view),
                    dataset_name=name,
                    dataset_config=config,
                    dataset_split="test",
                    metric_type=key,
                    metric_name=task.metric_names.get(key, key),
                    metric_value=value,
                )
                for key, value in scores.items()
                if value is not None
            ]
    return results


def tags(run: dict, adapter_only: bool) -> list[str]:
    method = {"full": "full-training", "freeze": "partial-training"}.get(run["strategy"])
    method = method or ("qlora" if run["quantization"] == "4bit" else "lora")
    task_tags = [tag for view in run["tasks"] for tag in view["task"].hub_tags]
    names = ["remote-sensing", "aerial-imagery", *task_tags, "paligemma", "tsn", f"tsn-{run['integration']}", method]
    names += ["peft", "lora"] if adapter_only else ["custom_code"]
    return list(dict.fromkeys(names))


def card_data(run: dict, repo_id: str, adapter_only: bool, revision: str) -> ModelCardData:
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
        tags=tags(run, adapter_only),
        datasets=run["datasets"] or None,
        metrics=list(dict.fromkeys(metric for view in run["tasks"] for metric in view["task"].hub_metrics)),
        model_name=repo_id.split("/")[-1],
        eval_results=eval_results(run),
        **extra,
    )
