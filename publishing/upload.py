"""Publishing in ONE commit per repo (nothing partial lands on the branch if the upload fails): the model with its
card, and optionally the Gradio Space that shows it. Honours HF_ENDPOINT."""

from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from tasks import get_task

from .checks import PublishError, check_export_dir, check_output_dir, check_repo_id, preflight
from .export import build_export, export_folder
from .run_folder import read_test_results, task_results
from .space import space_files

# The HTTP client's base error and OSError (huggingface_hub >= 1 raises httpx's): status errors, refused connections
# and timeouts alike.
NETWORK_ERRORS = HfHubHTTPError.__bases__


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

    A failure raises PublishError naming the endpoint and the repo; the branch then holds no new commit.
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
        raise PublishError(
            f"Publishing {repo_id} to {api.endpoint} failed: {reason}. Nothing was committed to {branch}: rerun the "
            "same command once the cause is fixed (check HF_ENDPOINT and the network for connection errors)."
        ) from error


def _commit_texts(output_dir: Path, adapter_only: bool, commit_message: str | None) -> tuple[str, str]:
    what = "LoRA adapter + segment encoder" if adapter_only else "merged model"
    parts = []
    for name, entry in task_results(read_test_results(output_dir)).items():
        task = get_task(entry["task"])
        overall = entry["overall"]
        scores = ", ".join(
            f"{key} {overall[key]:.4f}" for key in task.headline_metrics if isinstance(overall.get(key), (int, float))
        )
        label = task.name + (f", {name}" if name else "")
        if scores:
            parts.append(f"Test scores ({label}): {scores}.")
    message = commit_message or f"Upload TSN-PaliGemma {what} (push_to_hub.py)"
    return message, " ".join(parts)


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
        raise PublishError(str(error)) from error
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
    """The Gradio Space showing `model_id` (space.py): written to `dry_run`, or uploaded in one commit."""
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
