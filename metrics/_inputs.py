"""Checks of the caption metrics' inputs: every error names the argument, the index and the fix."""

from __future__ import annotations

from collections.abc import Sequence


def _as_list(value, name: str) -> list:
    if isinstance(value, (str, bytes)) or not (isinstance(value, Sequence) or hasattr(value, "__array__")):
        raise ValueError(f"{name} must be a list, got {type(value).__name__}")
    return list(value)


def check_inputs(predictions, references, groups=None) -> tuple[list[str], list[list[str]], list[str] | None]:
    """Validated copies of (predictions, references, groups); ValueError naming the first bad item.

    predictions: N strings (empty strings allowed, they are scored). references: N non-empty lists of strings.
    groups: None or N strings (e.g. the RISC source of each image).
    """
    predictions = _as_list(predictions, "predictions")
    references = _as_list(references, "references")
    if not predictions:
        raise ValueError("predictions is empty: give at least one caption to score")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions has {len(predictions)} items but references has {len(references)}: "
            "give one list of reference captions per prediction"
        )
    for i, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise ValueError(f"predictions[{i}] is a {type(prediction).__name__} ({prediction!r:.60}), not a str")
    checked = []
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise ValueError(f"references[{i}] is a str, not a list of str: wrap a single reference as [{refs!r:.60}]")
        refs = _as_list(refs, f"references[{i}]")
        if not refs:
            raise ValueError(f"references[{i}] is empty: every prediction needs at least one reference caption")
        for j, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise ValueError(f"references[{i}][{j}] is a {type(ref).__name__} ({ref!r:.60}), not a str")
        checked.append(refs)
    if groups is not None:
        groups = _as_list(groups, "groups")
        if len(groups) != len(predictions):
            raise ValueError(f"groups has {len(groups)} items but predictions has {len(predictions)}: give one each")
        for i, group in enumerate(groups):
            if not isinstance(group, str):
                raise ValueError(f"groups[{i}] is a {type(group).__name__} ({group!r:.60}), not a str")
    return predictions, checked, groups
