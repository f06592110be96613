"""Publishing to the Hugging Face Hub: the Gradio Space that shows a published model (see push_to_hub.py)."""

from .space import SPACE_CODE_FILES, space_files, space_url

__all__ = ["SPACE_CODE_FILES", "space_files", "space_url"]
