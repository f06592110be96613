"""A Gradio Space for a published TSN-PaliGemma: the project's app.py (and the modules it imports), a
requirements.txt, app_config.json naming the model repo, and a README whose metadata Spaces read.

The Hub's inference widget does not run custom-code models, so the Space is how a published model is tried.
"""

import json
from importlib.metadata import version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# app.py and what it imports: the inference core, image reading, the collators' processor helpers, every task
SPACE_CODE_FILES = (
    "app.py",
    "inference_core.py",
    "images.py",
    "collators.py",
    *sorted(f"tasks/{path.name}" for path in (REPO_ROOT / "tasks").glob("*.py")),
)


def space_url(space_id: str, endpoint: str = "https://huggingface.co") -> str:
    return f"{endpoint.rstrip('/')}/spaces/{space_id}"


def requirements() -> str:
    """What the Space installs: the model code's imports and the app's, at this machine's major versions."""
    major = int(version("gradio").split(".")[0])
    packages = [
        "torch",
        "torchvision",
        "transformers>=5.23,<6",
        f"gradio>={major},<{major + 1}",
        "pillow",
        "numpy",
        "sentencepiece",
        "protobuf",
    ]
    return "\n".join(packages) + "\n"


def readme(space_id: str, model_id: str) -> str:
    title = space_id.split("/")[-1]
    metadata = {
        "title": title,
        "emoji": "🛰️",
        "colorFrom": "blue",
        "colorTo": "green",
        "sdk": "gradio",
        "sdk_version": version("gradio"),
        "app_file": "app.py",
        "pinned": False,
        "license": "apache-2.0",
        "models": [model_id],
        "short_description": "Aerial-image captions from a TSN-PaliGemma model",
    }
    front = "\n".join(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in metadata.items())
    return (
        f"---\n{front}\n---\n\n# {title}\n\nCaptions aerial images with "
        f"[{model_id}](https://huggingface.co/{model_id}), a TSN-PaliGemma model (PaliGemma with a multi-scale "
        "segment encoder), loaded with `trust_remote_code=True`. Drop one or more images, set the beams and the "
        "length, and read the caption under each image.\n"
    )


def space_files(space_id: str, model_id: str) -> dict[str, Path | bytes]:
    """{path in the Space repo: file or content}."""
    files: dict[str, Path | bytes] = {name: REPO_ROOT / name for name in SPACE_CODE_FILES}
    files["app_config.json"] = (json.dumps({"model": model_id}, indent=2) + "\n").encode()
    files["requirements.txt"] = requirements().encode()
    files["README.md"] = readme(space_id, model_id).encode()
    return files
