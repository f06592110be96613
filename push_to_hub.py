"""Publish a finetune.py output_dir on the Hugging Face Hub: the merged model (default) or the LoRA adapter, with a
model card, in ONE commit (nothing partial lands on the branch if the upload fails). The work is done by the
`publishing` package; this is its command line.

    python push_to_hub.py OUTPUT_DIR --repo_id USER/NAME [--adapter_only] [--private] [--revision BRANCH]
        [--dry_run EXPORT_DIR] [--token T] [--commit_message M] [--base_model HUB_ID] [--baseline_results PATH]
        [--space USER/SPACE]

Default: merged/ (safetensors weights, config.json with auto_map, both model code files, generation config,
processor) + README.md (the card) + samples.png + example.jpg (the widget's image) + eval_results.json.
`--adapter_only`: adapter/ (adapter_config.json, adapter_model.safetensors with LoRA and the segment encoder,
config.json with the TSN settings, processor) + the model code + README.md + samples.png + eval_results.json.
`--dry_run EXPORT_DIR` writes exactly those files and uploads nothing (no token needed).

Everything is checked before any work: the repo id, the files in OUTPUT_DIR, offline mode and the token (`--token`,
HF_TOKEN, or the login saved by `hf auth login`). The upload honours HF_ENDPOINT.
"""

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from command_line import parse_command_line
from publishing import PublishError, check_repo_id, publish, publish_space

USAGE = "push_to_hub.py OUTPUT_DIR --repo_id USER/NAME [options]"


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


def _report(args: PushToHubArguments, result, space, model_dry_run: str | None, space_dry_run: str | None) -> None:
    if isinstance(space, dict):
        print(f"Dry run: the Space's {len(space)} files are in {space_dry_run}.")
    elif space is not None:
        print(f"Published the Space {args.space}: {space.commit_url}")
    if isinstance(result, dict):
        total = sum(os.path.getsize(path) for path in result.values())
        print(f"Dry run: {len(result)} files ({total / 1e6:.1f} MB) in {model_dry_run}, nothing uploaded:")
        for repo_path, path in result.items():
            print(f"  {repo_path}  ({os.path.getsize(path):,} bytes)")
    else:
        branch = args.revision or "main"
        print(
            f"Published {args.repo_id} ({'adapter' if args.adapter_only else 'merged model'}) to branch {branch}: "
            f'{result.commit_url}\nPin this commit in from_pretrained: revision="{result.oid}"'
        )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_command_line(PushToHubArguments, argv, positional=("output_dir",), usage=USAGE)
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
        space = None
        if args.space:
            space = publish_space(
                args.space, args.repo_id, token=args.token, dry_run=space_dry_run, private=args.private
            )
    except PublishError as error:
        print(f"push_to_hub.py: error: {error}", file=sys.stderr)
        return 1
    _report(args, result, space, model_dry_run, space_dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
