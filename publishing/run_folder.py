"""Reading what finetune.py left in an output_dir, for the card and the export: the results, the resolved config,
the published model's config, the widget's example image and the zero-shot baseline."""

import json
from pathlib import Path
from typing import Any

import yaml

from dataset_builder.user_data import dataset_label

from .paths import is_hub_id

EXAMPLE_IMAGE = "example.jpg"
SAMPLES_IMAGE = "samples.png"
# The model as Hub custom code: save_pretrained copies them next to config.json (auto_map names the modeling file).
CODE_FILES = ("configuration_tsn_paligemma.py", "modeling_tsn_paligemma.py", "segment_encoder_tsn_paligemma.py")


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


def read_optional_json(path: Path) -> dict:
    return read_json(path) if path.is_file() else {}


def model_config(output_dir: Path, adapter_only: bool) -> dict:
    """The TSN-PaliGemma config.json of the published model (merged/, or adapter/ for an adapter-only card), plus
    `image_seq_length` (a config property, not saved in config.json) and `processor_image_size` from its processor."""
    for folder in ("adapter", "merged") if adapter_only else ("merged", "adapter"):
        path = output_dir / folder / "config.json"
        if path.is_file():
            config = read_json(path)
            for name in ("processor_config.json", "preprocessor_config.json"):
                processor = read_optional_json(output_dir / folder / name)
                image_processor = processor.get("image_processor", processor)
                if image_processor.get("image_seq_length"):
                    config.setdefault("image_seq_length", image_processor["image_seq_length"])
                size = image_processor.get("size") or {}
                if size.get("height"):  # what the processor resizes every image to (the card's "image size")
                    config.setdefault("processor_image_size", [size["height"], size.get("width", size["height"])])
            return config
    return {}


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


GEMMA_BASES = ("google/paligemma",)  # every Google PaliGemma (1 and 2) checkpoint is under the Gemma terms


def describe_base(name: str | None) -> dict:
    """What the card says of a base model: its name (a Hub id, or a local folder's name: never a path), its model
    type and license (the folder's config.json and README metadata; the Gemma terms for Google's PaliGemma ids and
    for local PaliGemma checkpoints; else None)."""
    if not name:
        return {}
    folder = Path(name).expanduser()
    record: dict[str, Any] = {"name": folder.resolve().name if folder.is_dir() else name, "local": folder.is_dir()}
    if folder.is_dir():
        if (folder / "config.json").is_file():
            record["model_type"] = read_json(folder / "config.json").get("model_type")
        if (folder / "README.md").is_file():
            from huggingface_hub import ModelCard

            record["license"] = ModelCard.load(folder / "README.md").data.license
    if not record.get("license") and (name.startswith(GEMMA_BASES) or record.get("model_type") == "paligemma"):
        record["license"] = "gemma"
    return record


def dataset_ids(finetune_config: dict, summary: dict, dataset: str | None = None) -> list[str]:
    """The datasets named in the metadata: `dataset` or a Hub id the config records, else the run's own data as
    finetune.py recorded it (RISC only for a RISC folder; a user's data by its name, never its path)."""
    for candidate in (dataset, finetune_config.get("dataset_id"), finetune_config.get("dataset_name")):
        if is_hub_id(candidate):
            return [candidate]
    if summary.get("datasets"):
        return list(dict.fromkeys(summary["datasets"].values()))
    folders = [entry["dataset_dir"] for entry in finetune_config.get("mixture") or [] if "dataset_dir" in entry]
    if not folders and finetune_config.get("dataset_dir"):
        folders = [finetune_config["dataset_dir"]]
    return list(dict.fromkeys(dataset_label(folder) for folder in folders))


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


def task_results(eval_results: dict, split: str = "test") -> dict[str | None, dict]:
    """{task name: its scores on `split`}: {None: scores} for a one-task run, one entry per dataset of a mixture
    (eval_results.json[split][name])."""
    scores = eval_results.get(split)
    if not isinstance(scores, dict):
        return {}
    if isinstance(scores.get("overall"), dict):
        return {None: scores}
    return {name: entry for name, entry in scores.items() if isinstance(entry, dict) and "overall" in entry}


def read_test_results(output_dir: Path) -> dict:
    """eval_results.json, checked to hold the test scores a card and a commit description need."""
    path = output_dir / "eval_results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is missing in the output_dir; run finetune.py first.")
    eval_results = read_json(path)
    results = task_results(eval_results)
    if not results:
        raise ValueError(
            f"{path.name} has no test scores ('test': {{'overall': ...}}); rerun finetune.py with do_predict."
        )
    unnamed = [name or "test" for name, scores in results.items() if "task" not in scores]
    if unnamed:
        raise ValueError(
            f"{path.name}: the test scores of {unnamed} do not name their task ('task': 'caption', ...); rerun "
            "finetune.py with --do_train false on the model to rescore it."
        )
    return eval_results
