"""What a publication contains: {repo path: local file, or the bytes to publish}. The model files of merged/ (or
adapter/), the card, the sample grid, the widget's image and the scores; JSON files rewritten without local paths.
Upload and --dry_run both publish exactly this."""

import json
import logging
import shutil
from pathlib import Path

from huggingface_hub import constants

from .card import render_model_card
from .checks import PublishError, check_export_dir
from .paths import is_hub_id, without_local_paths
from .run_folder import (
    CODE_FILES,
    EXAMPLE_IMAGE,
    SAMPLES_IMAGE,
    base_model_id,
    find_example_image,
    read_finetune_config,
)

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
MERGED_FILES = ("config.json", "generation_config.json", *CODE_FILES, *PROCESSOR_FILES)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "config.json", *PROCESSOR_FILES)
# tokenizer_config.json records how the tokenizer was loaded HERE (and the path of its vocab file): true on this
# machine, wrong (and a leak) on the Hub.
LOCAL_ONLY_KEYS = ("is_local", "local_files_only")
PATH_KEYS = ("vocab_file", "merges_file", "tokenizer_file", "name_or_path", "_name_or_path")
# Files checked for local paths before anything leaves the machine: what publishing writes or rewrites, and the
# small JSON files transformers saves. Not the weights, images, code, or tokenizer.json (a vocabulary, whose tokens
# may look like short paths).
SCANNED_SUFFIXES = (".json", ".md", ".yaml", ".jinja", ".txt")
NOT_REWRITTEN = ("eval_results.json", "tokenizer.json")


def _code_file(output_dir: Path, name: str) -> Path:
    """The model code that was trained (merged/ or adapter/), else this checkout's copy."""
    for folder in ("merged", "adapter"):
        if (output_dir / folder / name).is_file():
            return output_dir / folder / name
    logger.warning("%s is not in %s/merged or adapter; shipping this checkout's copy.", name, output_dir)
    return REPO_ROOT / name


def collect_export_files(output_dir: str | Path, adapter_only: bool = False) -> dict[str, Path]:
    """{repo path: local file} of everything published except README.md (which the card renders).

    Merged: merged/'s weights (single or sharded safetensors), config, generation config, model code and processor.
    Adapter: adapter/'s adapter_config.json, adapter_model.safetensors, config.json and processor, plus the model
    code. Both: samples.png and eval_results.json; merged also the widget's example.jpg.
    """
    output_dir = Path(output_dir)
    folder = output_dir / ("adapter" if adapter_only else "merged")
    names = ADAPTER_FILES if adapter_only else MERGED_FILES
    files = {name: folder / name for name in names if (folder / name).is_file()}
    if adapter_only:
        files.update({name: _code_file(output_dir, name) for name in CODE_FILES})
    else:
        for weights in sorted(folder.glob("model*.safetensors")) + sorted(folder.glob("model.safetensors.index.json")):
            files[weights.name] = weights
        example = find_example_image(output_dir)
        if example is not None:
            files[EXAMPLE_IMAGE] = example
        else:
            logger.warning(
                "No example image (output_dir/%s or the first test image): the card has no widget.", EXAMPLE_IMAGE
            )
    skipped = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in files)
    if skipped:
        logger.info("Not published from %s: %s", folder.name, ", ".join(skipped))
    if (output_dir / SAMPLES_IMAGE).is_file():
        files[SAMPLES_IMAGE] = output_dir / SAMPLES_IMAGE
    files["eval_results.json"] = output_dir / "eval_results.json"
    return dict(sorted(files.items()))


def public_json(repo_path: str, source: Path, base_id: str | None) -> bytes | None:
    """The JSON file's bytes for the Hub when they must differ from `source` (local paths removed, the adapter's
    base model set to its Hub id), else None (the file is published as is)."""
    data = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return None
    dropped: list[str] = []
    public = without_local_paths(data, repo_path, dropped)
    for key in LOCAL_ONLY_KEYS:
        if public.pop(key, None) is not None:
            dropped.append(f"{repo_path}.{key}")
    for key in PATH_KEYS:
        if key in public and isinstance(public[key], str) and not is_hub_id(public[key]):
            dropped.append(f"{repo_path}.{key}")
            del public[key]
    if repo_path == "adapter_config.json" and data.get("base_model_name_or_path") != base_id:
        public["base_model_name_or_path"] = base_id  # PEFT's pointer to the base: a Hub id, never a local folder
        dropped.append(f"{repo_path}.base_model_name_or_path (now {base_id})")
    if public == data:
        return None
    logger.info("Rewrote for the Hub: %s", ", ".join(dropped))
    return (json.dumps(public, indent=2, ensure_ascii=False) + "\n").encode()


def _local_roots(output_dir: Path, config: dict) -> set[str]:
    """Local folders whose paths must not appear in anything published (`config`: the run's finetune_config)."""
    roots = {str(output_dir.resolve()), str(Path(constants.HF_HUB_CACHE).resolve())}
    for value in (config.get("dataset_dir"), config.get("model_name_or_path"), config.get("output_dir")):
        if isinstance(value, str) and value and not is_hub_id(value):
            roots.add(str(Path(value).expanduser().resolve()))
    return {root for root in roots if len(root) > 1}


def check_no_local_paths(export: dict[str, Path | bytes], output_dir: Path, finetune_config: dict) -> None:
    roots = _local_roots(output_dir, finetune_config)
    for repo_path, content in export.items():
        if not repo_path.endswith(SCANNED_SUFFIXES) or repo_path == "tokenizer.json":
            continue
        data = content if isinstance(content, bytes) else content.read_bytes()
        leaked = sorted(root for root in roots if root.encode() in data)
        if leaked:
            raise PublishError(
                f"{repo_path} would publish the local path {leaked[0]}; remove it from the file (in "
                f"{output_dir}) and retry. Nothing was uploaded."
            )


def build_export(
    output_dir: str | Path,
    repo_id: str,
    adapter_only: bool = False,
    *,
    base_model: str | None = None,
    baseline_results: str | Path | None = None,
    revision: str | None = None,
    dataset_id: str | None = None,
    space_id: str | None = None,
) -> dict[str, Path | bytes]:
    """collect_export_files + README.md + the JSON files rewritten without local paths, checked for leaks."""
    output_dir = Path(output_dir)
    finetune_config = read_finetune_config(output_dir)
    base_id = base_model_id(finetune_config, base_model)
    if adapter_only and base_id is None:
        logger.warning(
            "The base model is a local folder: the adapter card cannot name it. Pass --base_model HUB_ID "
            "if the base is on the Hub."
        )
    export: dict[str, Path | bytes] = dict(collect_export_files(output_dir, adapter_only))
    for repo_path, source in list(export.items()):
        if repo_path.endswith(".json") and repo_path not in NOT_REWRITTEN:
            rewritten = public_json(repo_path, source, base_id)
            if rewritten is not None:
                export[repo_path] = rewritten
    card = render_model_card(
        output_dir,
        repo_id,
        adapter_only,
        base_model,
        baseline_results,
        revision=revision,
        dataset=dataset_id,
        space_id=space_id,
    )
    export["README.md"] = card.encode()
    check_no_local_paths(export, output_dir, finetune_config)
    return dict(sorted(export.items()))


def export_folder(export: dict[str, Path | bytes], export_dir: str | Path) -> dict[str, Path]:
    """Write `export` into `export_dir` (the --dry_run): {repo path: written file}."""
    export_dir = check_export_dir(export_dir)
    written = {}
    for repo_path, content in export.items():
        target = export_dir / repo_path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            shutil.copyfile(content, target)
        written[repo_path] = target
    return written
