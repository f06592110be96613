"""finetune_config.yaml: the resolved arguments of a run as the flat YAML mapping finetune.py accepts back (secrets
never written), also the form of HPO's best_config.yaml."""

import enum
import os
import re
from pathlib import Path

import yaml

SECRET_ARGUMENT = re.compile(r"(?:^|_)(?:token|password|secret|api_key)$", re.IGNORECASE)  # not max_new_tokens


def resolved_config(args, **updates) -> dict:
    """The flat mapping finetune.py accepts back as a YAML file: every argument the YAML or the CLI set, with its
    parsed value, then `updates` (e.g. the TSN settings the model actually got, or the best HPO trial).

    Secrets (`hub_token`, anything named like a token or password) are never written: the file is meant to be
    reused and shared.
    """
    values = {}
    for name in (name for name in args.explicit if not SECRET_ARGUMENT.search(name)):
        for group in args[:-1]:
            if hasattr(group, name):
                values[name] = _plain(getattr(group, name))
                break
    values.update({key: _plain(value) for key, value in updates.items() if value is not None})
    return {key: value for key, value in values.items() if not SECRET_ARGUMENT.search(key)}


def _plain(value):
    """YAML-safe scalars: enums to their value, paths to str."""
    if isinstance(value, enum.Enum):  # SchedulerType, IntervalStrategy, ... (str subclasses that YAML rejects)
        return value.value
    if isinstance(value, list) and value and isinstance(value[0], list):  # segment scales
        return ",".join(f"{rows}x{cols}" for rows, cols in value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):  # a mixture's entries: kept as mappings, so that the file parses back
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def write_config(values: dict, path: str | os.PathLike, header: str | None = None) -> None:
    """The YAML finetune.py reads back; `header` becomes a comment line on top (ignored when read)."""
    comment = f"# {header}\n" if header else ""
    Path(path).write_text(comment + yaml.safe_dump(values, sort_keys=False))
