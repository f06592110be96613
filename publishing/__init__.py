"""Publishing a finetune.py output_dir on the Hugging Face Hub: the export (files, JSON without local paths), the
model card (a template rendered by `ModelCard.from_template`), the upload in one commit, and the Gradio Space.
`push_to_hub.py` is its command line."""

from .card import render_model_card
from .checks import PublishError, check_repo_id, preflight
from .export import build_export, collect_export_files, export_folder, public_json
from .paths import is_hub_id, looks_like_local_path
from .run_folder import find_example_image
from .space import SPACE_CODE_FILES, space_files, space_url
from .upload import publish, publish_space, upload

__all__ = [
    "SPACE_CODE_FILES",
    "PublishError",
    "build_export",
    "check_repo_id",
    "collect_export_files",
    "export_folder",
    "find_example_image",
    "is_hub_id",
    "looks_like_local_path",
    "preflight",
    "public_json",
    "publish",
    "publish_space",
    "render_model_card",
    "space_files",
    "space_url",
    "upload",
]
