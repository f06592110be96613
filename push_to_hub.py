"""Publish a finetune.py output_dir on the Hugging Face Hub: the merged model (default) or the LoRA adapter, with a
model card, in ONE commit (nothing partial lands on the branch if the upload fails).

    python push_to_hub.py OUTPUT_DIR --repo_id USER/NAME [--adapter_only] [--private] [--revision BRANCH]
        [--dry_run EXPORT_DIR] [--token T] [--commit_message M] [--base_model HUB_ID] [--baseline_results PATH]

Default: merged/ (safetensors weights, config.json with auto_map, both model code files, generation config,
processor) + README.md (the card, see model_card.py) + samples.png + example.jpg (the widget's image) +
eval_results.json. `--adapter_only`: adapter/ (adapter_config.json, adapter_model.safetensors with LoRA and the
segment encoder, config.json with the TSN settings, processor) + the model code + README.md + samples.png +
eval_results.json. `--dry_run EXPORT_DIR` writes exactly those files and uploads nothing (no token needed).

Everything is checked before any work: the repo id, the files in OUTPUT_DIR, offline mode and the token (`--token`,
HF_TOKEN, or the login saved by `hf auth login`). The upload honours HF_ENDPOINT.

```python
>>> from push_to_hub import publish
>>> publish("outputs/risc", "user/tsn-paligemma-risc", dry_run="outputs/export")  # doctest: +SKIP
{'README.md': PosixPath('outputs/export/README.md'), 'config.json': ..., 'model.safetensors': ...}
```
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import HfArgumentParser

from model_card import (
    CODE_FILES,
    EXAMPLE_IMAGE,
    SAMPLES_IMAGE,
    base_model_id,
    find_example_image,
    is_hub_id,
    read_finetune_config,
    render_model_card,
)

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent
# The HTTP client's base error and OSError (huggingface_hub >= 1 raises httpx's, 2.x httpx2's): status errors,
# refused connections and timeouts alike.
NETWORK_ERRORS = HfHubHTTPError.__bases__
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
# tokenizer_config.json records how the tokenizer was loaded HERE (and the absolute path of its vocab file): true on
# this machine, wrong (and a leak) on the Hub.
LOCAL_ONLY_KEYS = ("is_local", "local_files_only")
PATH_KEYS = ("vocab_file", "merges_file", "tokenizer_file", "name_or_path", "_name_or_path")
# Files checked for local paths before anything leaves the machine: what push_to_hub writes or rewrites, and the
# small JSON files transformers saves. Not the weights, images, code, or tokenizer.json (a vocabulary, whose tokens
# may look like short paths).
SCANNED_SUFFIXES = (".json", ".md", ".yaml", ".jinja", ".txt")


@dataclass
class PushToHubArguments:
    output_dir: str = field(metadata={"help": "finetune.py's output_dir (merged/, adapter/, eval_results.json, ...)."})
    repo_id: str | None = field(default=None, metadata={"help": "Hub repo to publish to, `user/name` (required)."})
    adapter_only: bool = field(
        default=False,
        metadata={
            "help": "Publish only the LoRA adapter + segment encoder (+ processor, TSN config, model code, "
            "card); users rebuild from the base PaliGemma. Default: the merged full model."
        },
    )
    private: bool = field(default=False, metadata={"help": "Create the repo as private (ignored if it exists)."})
    revision: str | None = field(
        default=None, metadata={"help": "Branch to commit to (created from main if missing). Default: main."}
    )
    dry_run: str | None = field(
        default=None,
        metadata={"help": "Write the files that would be uploaded into this (new or empty) folder; upload nothing."},
    )
    token: str | None = field(
        default=None, metadata={"help": "Hub token with write access. Default: HF_TOKEN or `hf auth login`'s."}
    )
    commit_message: str | None = field(default=None, metadata={"help": "Commit title. Default: says what and how."})
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the base PaliGemma for the card (e.g. google/paligemma-3b-pt-224). Default: "
            "finetune_config.yaml's model_name_or_path when it is a Hub id."
        },
    )
    baseline_results: str | None = field(
        default=None,
        metadata={
            "help": "eval_results.json of a zero-shot run (finetune.py --do_train false) shown beside the "
            "scores. Default: eval_results.json's baseline_test, if any."
        },
    )
    dataset_id: str | None = field(
        default=None, metadata={"help": "Hub dataset id for the card metadata (e.g. user/risc). Default: RISC."}
    )
    space: str | None = field(
        default=None,
        metadata={
            "help": "Also publish a Gradio Space `user/name` that captions images with the model (the card "
            "links it). With --dry_run DIR: the model goes to DIR/model, the Space to DIR/space."
        },
    )


class PushToHubError(RuntimeError):
    """A failure whose message names the argument or file, the value and the fix; main() prints only the message."""


# ------------------------------------------------------------------------------------------------------ checks
def check_repo_id(repo_id: str | None) -> str:
    if not repo_id:
        raise PushToHubError("--repo_id is required: the Hub repo to publish to, in the form `user/name`.")
    try:
        if repo_id.count("/") != 1:
            raise HFValidationError("it must have exactly one '/'")
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PushToHubError(
            f"--repo_id {repo_id!r} is not a valid Hub repo id ({error}). Expected `user/name` (or `org/name`): "
            "letters, digits, '-', '_', '.', at most 96 characters, e.g. `alice/tsn-paligemma-risc`."
        ) from error
    return repo_id


def check_online() -> None:
    if constants.HF_HUB_OFFLINE:
        raise PushToHubError(
            "HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) is set, so huggingface_hub refuses to reach "
            f"{constants.ENDPOINT}. Fix: unset it for this command (`env -u HF_HUB_OFFLINE -u TRANSFORMERS_OFFLINE "
            "python push_to_hub.py ...`; `make` sets both), or write the files only with --dry_run EXPORT_DIR."
        )


def resolve_token(token: str | None) -> str:
    token = token or get_token()  # HF_TOKEN, then the login saved by `hf auth login`
    if not token:
        raise PushToHubError(
            "No Hugging Face token: pass --token hf_..., set HF_TOKEN, or log in once with `hf auth login` "
            "(`huggingface-cli login` on older clients). The token needs write access. --dry_run needs none."
        )
    return token


def preflight(repo_id: str | None, token: str | None = None) -> str:
    """What an upload needs that training does not: a valid repo id, online mode, a token (returned).

    finetune.py can call it before training when asked to push, so that a long run does not end in a failed push.
    """
    check_repo_id(repo_id)
    check_online()
    return resolve_token(token)


def _missing(folder: Path, alternatives: tuple[str, ...]) -> str | None:
    return None if any((folder / name).is_file() for name in alternatives) else " or ".join(alternatives)


def check_output_dir(output_dir: str | Path, adapter_only: bool) -> Path:
    """The files publishing needs, checked before any work; the error names the first missing one."""
    output_dir = Path(output_dir)
    run_first = (
        f"Run finetune.py first (python finetune.py CONFIG --output_dir {output_dir}): it writes merged/, "
        "adapter/, eval_results.json and finetune_config.yaml."
    )
    if not output_dir.is_dir():
        raise PushToHubError(f"OUTPUT_DIR {output_dir} does not exist. {run_first}")
    folder = output_dir / ("adapter" if adapter_only else "merged")
    needed = [(output_dir, ("eval_results.json",)), (output_dir, ("finetune_config.yaml",))]
    if adapter_only:
        needed += [(folder, ("adapter_config.json",)), (folder, ("adapter_model.safetensors",))]
    else:
        needed += [(folder, ("model.safetensors", "model.safetensors.index.json"))]
        needed += [(folder, (name,)) for name in CODE_FILES]
    needed += [
        (folder, ("config.json",)),
        (folder, ("tokenizer_config.json",)),
        (folder, ("tokenizer.json", "tokenizer.model")),
        (folder, ("processor_config.json", "preprocessor_config.json")),
    ]
    for where, alternatives in needed:
        missing = _missing(where, alternatives)
        if missing:
            other = "" if adapter_only else " (or pass --adapter_only to publish adapter/ only)"
            raise PushToHubError(f"{where / missing} is missing{other}. {run_first}")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PushToHubError(f"{folder / 'config.json'} is not valid JSON ({error}). {run_first}") from error
    if not adapter_only and "auto_map" not in config:
        raise PushToHubError(
            f"{folder / 'config.json'} has no auto_map, so the Hub copy would not load with trust_remote_code. "
            "Save the TSN-PaliGemma model with model.save_pretrained (finetune.py does) and publish that folder."
        )
    return output_dir


# ----------------------------------------------------------------------------------------------------- export
def _code_file(output_dir: Path, name: str) -> Path:
    """The model code that was trained (merged/ or adapter/), else this checkout's copy."""
    for folder in ("merged", "adapter"):
        if (output_dir / folder / name).is_file():
            return output_dir / folder / name
    logger.warning("%s is not in %s/merged or adapter; shipping this checkout's copy.", name, output_dir)
    return REPO_ROOT / name


def collect_export_files(output_dir: str | Path, adapter_only: bool = False) -> dict[str, Path]:
    """{repo path: local file} of everything published except README.md (which model_card renders).

    Merged: merged/'s weights (single or sharded safetensors), config, generation config, model code and processor.
    Adapter: adapter/'s adapter_config.json, adapter_model.safetensors, config.json and processor, plus the model
    code. Both: samples.png and eval_results.json; merged also the widget's example.jpg.
    """
    output_dir = Path(output_dir)
    folder = output_dir / ("adapter" if adapter_only else "merged")
    files: dict[str, Path] = {}
    names = ADAPTER_FILES if adapter_only else MERGED_FILES
    for name in names:
        if (folder / name).is_file():
            files[name] = folder / name
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


def _is_absolute_path(value: object) -> bool:
    return isinstance(value, str) and (value.startswith(("/", "~", "\\\\")) or value[1:3] in (":\\", ":/"))


def _strip_local_paths(data, where: str, dropped: list[str]):
    """A copy of a JSON value without absolute local paths (keys whose value is one are dropped)."""
    if isinstance(data, dict):
        kept = {}
        for key, value in data.items():
            if _is_absolute_path(value):
                dropped.append(f"{where}.{key}")
            else:
                kept[key] = _strip_local_paths(value, f"{where}.{key}", dropped)
        return kept
    if isinstance(data, list):
        return [_strip_local_paths(value, where, dropped) for value in data if not _is_absolute_path(value)]
    return data


def public_json(repo_path: str, source: Path, base_id: str | None) -> bytes | None:
    """The JSON file's bytes for the Hub when they must differ from `source` (local paths removed, the adapter's
    base model set to its Hub id), else None (the file is published as is)."""
    data = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return None
    dropped: list[str] = []
    public = _strip_local_paths(data, repo_path, dropped)
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


def _local_roots(output_dir: Path) -> set[str]:
    """Local folders whose paths must not appear in anything published."""
    config = read_finetune_config(output_dir)
    roots = {str(output_dir.resolve()), str(Path(constants.HF_HUB_CACHE).resolve())}
    for value in (config.get("dataset_dir"), config.get("model_name_or_path"), config.get("output_dir")):
        if isinstance(value, str) and value and not is_hub_id(value):
            roots.add(str(Path(value).expanduser().resolve()))
    return {root for root in roots if len(root) > 1}


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
    """{repo path: local file to publish as is, or the bytes to publish}: collect_export_files + README.md + the JSON
    files rewritten without local paths. Upload and --dry_run both publish exactly this."""
    output_dir = Path(output_dir)
    base_id = base_model_id(read_finetune_config(output_dir), base_model)
    if adapter_only and base_id is None:
        logger.warning(
            "The base model is a local folder: the adapter card cannot name it. Pass --base_model HUB_ID "
            "if the base is on the Hub."
        )
    export: dict[str, Path | bytes] = dict(collect_export_files(output_dir, adapter_only))
    for repo_path, source in list(export.items()):
        if repo_path.endswith(".json") and repo_path != "eval_results.json" and repo_path != "tokenizer.json":
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
    roots = _local_roots(output_dir)
    for repo_path, content in export.items():
        if not repo_path.endswith(SCANNED_SUFFIXES) or repo_path == "tokenizer.json":
            continue
        data = content if isinstance(content, bytes) else content.read_bytes()
        leaked = sorted(root for root in roots if root.encode() in data)
        if leaked:
            raise PushToHubError(
                f"{repo_path} would publish the local path {leaked[0]}; remove it from the file (in "
                f"{output_dir}) and retry. Nothing was uploaded."
            )
    return dict(sorted(export.items()))


def check_export_dir(export_dir: str | Path) -> Path:
    export_dir = Path(export_dir)
    if export_dir.exists() and (not export_dir.is_dir() or any(export_dir.iterdir())):
        raise PushToHubError(
            f"--dry_run {export_dir} exists and is not an empty folder; pass a new folder so that it holds exactly "
            "the files that would be uploaded."
        )
    return export_dir


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


# ----------------------------------------------------------------------------------------------------- upload
def _http_failure(error: HfHubHTTPError, repo_id: str, endpoint: str) -> str:
    response = error.response
    status = response.status_code if response is not None else None
    hint = {
        401: "the token was rejected: check --token / HF_TOKEN / `hf auth login`",
        403: f"the token may not write to {repo_id.split('/')[0]}: use a token with write access to it",
        404: "the repo or branch was not found: check --repo_id and --revision",
    }.get(status, "retry later; if it persists, check the Hub status page")
    server = getattr(error, "server_message", None) or str(error).splitlines()[0]
    url = response.request.url if response is not None else endpoint
    return f"HTTP {status} from {url} ({server}); {hint}"


def upload(
    export: dict[str, Path | bytes],
    repo_id: str,
    token: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    endpoint: str | None = None,
    repo_type: str = "model",
) -> CommitInfo:
    """create_repo (exist_ok), create_branch when `revision` is a new branch, then ONE create_commit with every file.

    A failure raises PushToHubError naming the endpoint and the repo; the branch then holds no new commit.
    """
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    operations = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=content if isinstance(content, bytes) else str(content))
        for path, content in export.items()
    ]
    try:
        space_sdk = "gradio" if repo_type == "space" else None
        api.create_repo(
            repo_id, private=True if private else None, exist_ok=True, repo_type=repo_type, space_sdk=space_sdk
        )
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type=repo_type)
        return api.create_commit(
            repo_id,
            operations,
            repo_type=repo_type,
            commit_message=commit_message or f"Upload TSN-PaliGemma with push_to_hub.py ({len(operations)} files)",
            commit_description=commit_description,
            revision=branch,
        )
    except (*NETWORK_ERRORS, RuntimeError, ValueError) as error:  # HTTP status, refused connection, LFS/Xet, README
        if isinstance(error, HfHubHTTPError):
            reason = _http_failure(error, repo_id, api.endpoint)
        else:
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'}"
        raise PushToHubError(
            f"Publishing {repo_id} to {api.endpoint} failed: {reason}. Nothing was committed to {branch}: rerun the "
            "same command once the cause is fixed (check HF_ENDPOINT and the network for connection errors)."
        ) from error


def _commit_texts(output_dir: Path, adapter_only: bool, commit_message: str | None) -> tuple[str, str]:
    what = "LoRA adapter + segment encoder" if adapter_only else "merged model"
    results = json.loads((output_dir / "eval_results.json").read_text(encoding="utf-8"))
    overall = (results.get("test") or {}).get("overall") or {}
    scores = ", ".join(
        f"{key} {overall[key]:.4f}"
        for key in ("bleu_4", "meteor", "rouge_l", "cider")
        if isinstance(overall.get(key), (int, float))
    )
    message = commit_message or f"Upload TSN-PaliGemma {what} (push_to_hub.py)"
    return message, f"Test scores (coco-caption): {scores}." if scores else ""


def publish(
    output_dir: str | Path,
    repo_id: str | None,
    *,
    adapter_only: bool = False,
    private: bool = False,
    revision: str | None = None,
    dry_run: str | Path | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    base_model: str | None = None,
    baseline_results: str | Path | None = None,
    dataset_id: str | None = None,
    endpoint: str | None = None,
    space_id: str | None = None,
) -> CommitInfo | dict[str, Path]:
    """Check everything, build the export, then write it (`dry_run`) or upload it in one commit.

    Returns the CommitInfo of the upload, or {repo path: written file} of the dry run.
    """
    if dry_run is not None:
        check_repo_id(repo_id)
        check_export_dir(dry_run)
    else:
        token = preflight(repo_id, token)
    output_dir = check_output_dir(output_dir, adapter_only)
    try:
        export = build_export(
            output_dir,
            repo_id,
            adapter_only,
            base_model=base_model,
            baseline_results=baseline_results,
            revision=revision,
            dataset_id=dataset_id,
            space_id=space_id,
        )
    except (ValueError, FileNotFoundError) as error:  # unreadable results/config, bad --base_model/--baseline_results
        raise PushToHubError(str(error)) from error
    if dry_run is not None:
        return export_folder(export, dry_run)
    message, description = _commit_texts(output_dir, adapter_only, commit_message)
    return upload(
        export,
        repo_id,
        token,
        private=private,
        revision=revision,
        commit_message=message,
        commit_description=description,
        endpoint=endpoint,
    )


def publish_space(
    space_id: str,
    model_id: str,
    *,
    token: str | None = None,
    dry_run: str | Path | None = None,
    private: bool = False,
    endpoint: str | None = None,
) -> CommitInfo | dict[str, Path]:
    """The Gradio Space showing `model_id` (publishing/space.py): written to `dry_run`, or uploaded in one commit."""
    from publishing import space_files

    check_repo_id(space_id)
    files = space_files(space_id, model_id)
    if dry_run is not None:
        return export_folder(files, dry_run)
    token = preflight(space_id, token)
    return upload(
        files,
        space_id,
        token,
        private=private,
        endpoint=endpoint,
        repo_type="space",
        commit_message=f"Gradio Space for {model_id} (push_to_hub.py --space)",
    )


def _size(content: Path | bytes) -> int:
    return len(content) if isinstance(content, bytes) else os.path.getsize(content)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):  # OUTPUT_DIR as the first positional argument
        argv = ["--output_dir", *argv]
    (args,) = HfArgumentParser(PushToHubArguments).parse_args_into_dataclasses(args=argv)
    model_dry_run = space_dry_run = args.dry_run
    if args.space and args.dry_run:
        model_dry_run, space_dry_run = str(Path(args.dry_run) / "model"), str(Path(args.dry_run) / "space")
    try:
        if args.space:
            check_repo_id(args.space)  # before any work on the model
        result = publish(
            args.output_dir,
            args.repo_id,
            adapter_only=args.adapter_only,
            private=args.private,
            revision=args.revision,
            dry_run=model_dry_run,
            token=args.token,
            commit_message=args.commit_message,
            base_model=args.base_model,
            baseline_results=args.baseline_results,
            dataset_id=args.dataset_id,
            space_id=args.space,
        )
        space = (
            publish_space(args.space, args.repo_id, token=args.token, dry_run=space_dry_run, private=args.private)
            if args.space
            else None
        )
    except PushToHubError as error:
        print(f"push_to_hub.py: error: {error}", file=sys.stderr)
        return 1
    if isinstance(space, dict):
        print(f"Dry run: the Space's {len(space)} files are in {space_dry_run}.")
    elif space is not None:
        print(f"Published the Space {args.space}: {space.commit_url}")
    if isinstance(result, dict):
        total = sum(_size(path) for path in result.values())
        print(f"Dry run: {len(result)} files ({total / 1e6:.1f} MB) in {model_dry_run}, nothing uploaded:")
        for repo_path, path in result.items():
            print(f"  {repo_path}  ({_size(path):,} bytes)")
    else:
        branch = args.revision or "main"
        print(
            f"Published {args.repo_id} ({'adapter' if args.adapter_only else 'merged model'}) to branch {branch}: "
            f'{result.commit_url}\nPin this commit in from_pretrained: revision="{result.oid}"'
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
