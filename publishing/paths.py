"""The one test of "is this a local path?" used everywhere something is published: a card shows no local path, and
JSON files lose every value that is one before they leave the machine."""

import os
import re
from typing import Any

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?$")
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "\\\\")


def looks_like_local_path(value: Any) -> bool:
    """True for strings that name a local file or folder: one that exists here (from_pretrained would load it), or
    anything shaped like a path (absolute, ./ or ../, home, Windows, more than one '/'). URLs and regular
    expressions (PEFT's target_modules) are not paths."""
    if not isinstance(value, str) or not value or "://" in value:
        return False
    if value.startswith(_PATH_PREFIXES) or re.match(r"^[A-Za-z]:[\\/]", value):
        return True
    return value.count("/") > 1 or os.path.exists(value)


def is_hub_id(value: Any) -> bool:
    """`name` or `owner/name` that is not a local folder: what from_pretrained would fetch from the Hub."""
    return isinstance(value, str) and not looks_like_local_path(value) and _HUB_ID.match(value) is not None


def without_local_paths(data: Any, where: str, dropped: list[str]) -> Any:
    """A copy of a JSON value without local paths: a mapping key whose value is one is dropped, a list loses such
    items; `dropped` collects where they were (for the log)."""
    if isinstance(data, dict):
        kept = {}
        for key, value in data.items():
            if looks_like_local_path(value):
                dropped.append(f"{where}.{key}")
            else:
                kept[key] = without_local_paths(value, f"{where}.{key}", dropped)
        return kept
    if isinstance(data, list):
        return [without_local_paths(value, where, dropped) for value in data if not looks_like_local_path(value)]
    return data
