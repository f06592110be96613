"""Export a trained TSN-PaliGemma into the repository as an example model folder: bf16 safetensors, config,
generation config, processor, and the three model code files copied from the repository (real files, so that a
copied folder keeps working; tests/test_example_model.py checks they stay identical to the repository's).

    python -m scripts.export_example outputs/rs-mini-scenes/merged examples/rs-mini [--max_megabytes 50]

The folder loads like a Hub repo: `AutoModelForImageTextToText.from_pretrained(FOLDER, trust_remote_code=True)`.
"""

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from command_line import parse_command_line
from publishing import public_json
from publishing.run_folder import CODE_FILES

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ExportArguments:
    model_dir: str = field(metadata={"help": "A trained model folder (finetune.py's output_dir/merged)."})
    output_dir: str = field(metadata={"help": "The example folder to write (e.g. examples/rs-mini)."})
    max_megabytes: float = field(default=50.0, metadata={"help": "Fail if the weights file is larger."})


def copy_code_files(output_dir: Path) -> None:
    """The repository's model code files into the folder (what save_pretrained copied may be an older import)."""
    for name in CODE_FILES:
        shutil.copyfile(REPO_ROOT / name, output_dir / name)


def drop_local_paths(output_dir: Path) -> None:
    """The JSON files as they would be published: no local path, no record of how they were loaded here."""
    for path in sorted(output_dir.glob("*.json")):
        if path.name != "tokenizer.json":  # a vocabulary, not settings
            public = public_json(path.name, path, base_id=None)
            if public is not None:
                path.write_bytes(public)


def export_example(args: ExportArguments) -> Path:
    output_dir = Path(args.output_dir)
    model = AutoModelForImageTextToText.from_pretrained(args.model_dir, trust_remote_code=True, dtype=torch.bfloat16)
    processor = AutoProcessor.from_pretrained(args.model_dir, trust_remote_code=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    copy_code_files(output_dir)
    drop_local_paths(output_dir)
    megabytes = (output_dir / "model.safetensors").stat().st_size / 1e6
    if megabytes > args.max_megabytes:
        raise ValueError(
            f"{output_dir}/model.safetensors is {megabytes:.1f} MB, over --max_megabytes "
            f"{args.max_megabytes}. Fix: a smaller model, or raise the limit."
        )
    return output_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(ExportArguments, argv, positional=("model_dir", "output_dir"))
    print(f"Exported {args.model_dir} -> {export_example(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
