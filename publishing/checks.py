"""What publishing checks before any work: the repo id, online mode, the token, the files of the output_dir and the
dry run's folder. Every failure is a PublishError whose message names the argument or file and the fix."""

import json
from pathlib import Path

from huggingface_hub import constants, get_token
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .run_folder import CODE_FILES


class PublishError(RuntimeError):
    """A failure whose message names the argument or file, the value and the fix; the CLI prints only the message."""


def check_repo_id(repo_id: str | None) -> str:
    if not repo_id:
        raise PublishError("--repo_id is required: the Hub repo to publish to, in the form `user/name`.")
    try:
        if repo_id.count("/") != 1:
            raise HFValidationError("it must have exactly one '/'")
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(
            f"--repo_id {repo_id!r} is not a valid Hub repo id ({error}). Expected `user/name` (or `org/name`): "
            "letters, digits, '-', '_', '.', at most 96 characters, e.g. `alice/tsn-paligemma-risc`."
        ) from error
    return repo_id


def check_online() -> None:
    if constants.HF_HUB_OFFLINE:
        raise PublishError(
            "HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) is set, so huggingface_hub refuses to reach "
            f"{constants.ENDPOINT}. Fix: unset it for this command (`env -u HF_HUB_OFFLINE -u TRANSFORMERS_OFFLINE "
            "python push_to_hub.py ...`; `make` sets both), or write the files only with --dry_run EXPORT_DIR."
        )


def resolve_token(token: str | None) -> str:
    token = token or get_token()  # HF_TOKEN, then the login saved by `hf auth login`
    if not token:
        raise PublishError(
            "No Hugging Face token: pass --token hf_..., set HF_TOKEN, or log in once with `hf auth login` "
            "(`huggingface-cli login` on older clients). The token needs write access. --dry_run needs none."
        )
    return token


def preflight(repo_id: str | None, token: str | None = None) -> str:
    """What an upload needs that training does not: a valid repo id, online mode, a token (returned).

    finetune.py calls it before training when asked to push, so that a long run does not end in a failed push.
    """
    check_repo_id(repo_id)
    check_online()
    return resolve_token(token)


def _needed_files(output_dir: Path, folder: Path, adapter_only: bool) -> list[tuple[Path, tuple[str, ...]]]:
    """(folder, alternatives) pairs: one of the alternatives must exist in the folder."""
    needed = [(output_dir, ("eval_results.json",)), (output_dir, ("finetune_config.yaml",))]
    if adapter_only:
        needed += [(folder, ("adapter_config.json",)), (folder, ("adapter_model.safetensors",))]
    else:
        needed += [(folder, ("model.safetensors", "model.safetensors.index.json"))]
        needed += [(folder, (name,)) for name in CODE_FILES]
    return needed + [
        (folder, ("config.json",)),
        (folder, ("tokenizer_config.json",)),
        (folder, ("tokenizer.json", "tokenizer.model")),
        (folder, ("processor_config.json", "preprocessor_config.json")),
    ]


def check_output_dir(output_dir: str | Path, adapter_only: bool) -> Path:
    """The files publishing needs, checked before any work; the error names the first missing one."""
    output_dir = Path(output_dir)
    run_first = (
        f"Run finetune.py first (python finetune.py CONFIG --output_dir {output_dir}): it writes merged/, "
        "adapter/, eval_results.json and finetune_config.yaml."
    )
    if not output_dir.is_dir():
        raise PublishError(f"OUTPUT_DIR {output_dir} does not exist. {run_first}")
    folder = output_dir / ("adapter" if adapter_only else "merged")
    for where, alternatives in _needed_files(output_dir, folder, adapter_only):
        if not any((where / name).is_file() for name in alternatives):
            other = "" if adapter_only else " (or pass --adapter_only to publish adapter/ only)"
            raise PublishError(f"{where / ' or '.join(alternatives)} is missing{other}. {run_first}")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PublishError(f"{folder / 'config.json'} is not valid JSON ({error}). {run_first}") from error
    if not adapter_only and "auto_map" not in config:
        raise PublishError(
            f"{folder / 'config.json'} has no auto_map, so the Hub copy would not load with trust_remote_code. "
            "Save the TSN-PaliGemma model with model.save_pretrained (finetune.py does) and publish that folder."
        )
    return output_dir


def check_export_dir(export_dir: str | Path) -> Path:
    export_dir = Path(export_dir)
    if export_dir.exists() and (not export_dir.is_dir() or any(export_dir.iterdir())):
        raise PublishError(
            f"--dry_run {export_dir} exists and is not an empty folder; pass a new folder so that it holds exactly "
            "the files that would be uploaded."
        )
    return export_dir
