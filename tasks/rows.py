"""Helpers over a task's rows (`datasets.Dataset`) that never decode an image, and over a user's class list."""

import logging

logger = logging.getLogger("tasks")


def distinct_rows(rows, columns: tuple[str, ...]):
    """`rows` with each value of `columns` kept once, at its first row. A mixture's training split repeats the rows
    of its smaller datasets (interleave_datasets, all_exhausted) as often as the weights ask; a baseline is a
    statistic of the training data, which that repetition must not change."""
    keys = zip(*(rows.select_columns([column])[column] for column in columns))
    seen, keep = set(), []
    for index, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return rows if len(keep) == len(rows) else rows.select(keep)


def split_classes(classes: str | None) -> list[str]:
    """'a ; b' -> ['a', 'b'] (a user's class list)."""
    return [name.strip() for name in (classes or "").split(";") if name.strip()]


def warn_untrained(task: str, wanted: list[str], known: list[str]) -> None:
    """One warning line when a user asks about classes the model never learned (it answers anyway)."""
    unknown = [name for name in wanted if known and name not in known]
    if unknown:
        logger.warning(
            "--task %s --classes %s: not among the classes this model was trained on (%s); its answers about them "
            "are untested.",
            task,
            " ; ".join(unknown),
            " ; ".join(known),
        )


def box_classes(rows) -> list[str]:
    """The class names of a boxes dataset's rows (`objects.category` ClassLabel), in category order."""
    return list(rows.features["objects"]["category"].feature.names)
