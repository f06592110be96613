"""`caption_metrics`: every coco-caption score, overall and per group, from one tokenization."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext

from ._inputs import check_inputs
from ._java import require_java
from ._meteor import MeteorJob
from ._scorers import CaptionScorer
from ._tokenize import ptb_tokenize_streams, regroup

METRICS = ("bleu", "meteor", "rouge", "cider")
SCORE_NAMES = {"bleu": ("bleu_1", "bleu_2", "bleu_3", "bleu_4"), "meteor": ("meteor",), "rouge": ("rouge_l",)}
SCORE_NAMES["cider"] = ("cider",)


def _check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics={metrics!r}: choose one or more of {METRICS}")
    return tuple(name for name in METRICS if name in metrics)


def caption_metrics(
    predictions: list[str],
    references: list[list[str]],
    groups: list[str] | None = None,
    *,
    metrics: Iterable[str] = METRICS,
    tokenizer: str = "auto",
) -> dict:
    """coco-caption scores (pycocoevalcap's numbers) of `predictions` against `references`, overall and per group.

    Args:
        predictions: one caption per image; empty strings are scored, as coco-caption does.
        references: one list of >= 1 reference captions per image.
        groups: optional label per image (e.g. the RISC source "NWPU"/"RSICD"/"UCM"); each group is scored as if
            it were evaluated alone (its own CIDEr idf, its own corpus BLEU and METEOR).
        metrics: any of "bleu", "meteor", "rouge", "cider". METEOR needs Java (JavaNotFoundError otherwise).
        tokenizer: "auto" (Stanford PTB jar when Java is there, else the pure-Python equivalent), "java", "python".

    Returns:
        {"overall": {"bleu_1": .., "bleu_2": .., "bleu_3": .., "bleu_4": .., "meteor": .., "rouge_l": ..,
        "cider": ..}, "groups": {group: {same keys}}} on coco-caption's scale (BLEU/METEOR/ROUGE-L in [0, 1],
        CIDEr-D in [0, 10]); groups in order of first appearance, {} without `groups`.

    Example (without METEOR, so that it also runs without Java):

    >>> result = caption_metrics(
    ...     ["a plane is parked at the airport .", "many green trees are near a river ."],
    ...     [["a white plane is parked at the airport .", "there is a plane at the airport ."],
    ...      ["many trees are near a river .", "a river goes through the forest ."]],
    ...     groups=["RSICD", "UCM"], metrics=("bleu", "rouge", "cider"))
    >>> sorted(result["overall"])
    ['bleu_1', 'bleu_2', 'bleu_3', 'bleu_4', 'cider', 'rouge_l']
    >>> round(result["overall"]["bleu_1"], 4), round(result["groups"]["UCM"]["rouge_l"], 4)
    (0.9286, 0.9361)
    """
    predictions, references, groups = check_inputs(predictions, references, groups)
    metrics = _check_metrics(metrics)
    if "meteor" in metrics:
        require_java("METEOR 1.5")  # fail before any work
    sets = _tokenized_sets(predictions, references, groups, tokenizer)
    scores = _score_sets(sets, metrics)
    ordered = {name: {key: scores[name][key] for m in metrics for key in SCORE_NAMES[m]} for name in sets}
    return {"overall": ordered.pop(None), "groups": ordered}


def _tokenized_sets(predictions, references, groups, tokenizer) -> dict:
    """{None: (hyps, refs) of the whole set, group: (hyps, refs) of each group}, PTB-tokenized."""
    indices = {None: list(range(len(predictions)))}  # None: the whole set; then each group alone
    for i, group in enumerate(groups or []):
        indices.setdefault(group, []).append(i)
    # coco-caption tokenizes a set's references and its predictions as two files, and a caption's tokens can depend
    # on the caption after it, so each set (the whole, each group) gets its own two streams: one tokenizer call.
    streams = []
    for index in indices.values():
        streams += [[ref for i in index for ref in references[i]], [predictions[i] for i in index]]
    tokens = iter(ptb_tokenize_streams(streams, backend=tokenizer))
    sets = {}
    for name, index in indices.items():
        flat_refs, hyps = next(tokens), next(tokens)
        sets[name] = (hyps, regroup(flat_refs, [len(references[i]) for i in index]))
    return sets


def _score_sets(sets: dict, metrics: list[str]) -> dict:
    """{set name: {score name: value}}; METEOR's Java process runs while the Python scorers work."""
    scores: dict = {name: {} for name in sets}
    with MeteorJob(sets) if "meteor" in metrics else nullcontext() as meteor:
        scorer = CaptionScorer()
        for name, (hyps, refs) in sets.items():
            if "bleu" in metrics:
                scores[name].update(zip(SCORE_NAMES["bleu"], scorer.bleu(hyps, refs)))
            if "rouge" in metrics:
                scores[name]["rouge_l"] = scorer.rouge_l(hyps, refs)
            if "cider" in metrics:
                scores[name]["cider"] = scorer.cider_d(hyps, refs)
        if meteor is not None:
            for name, value in meteor.scores().items():
                scores[name]["meteor"] = value
    return scores


def flatten_metrics(result: dict, prefix: str = "") -> dict[str, float]:
    """One flat dict for loggers: `{prefix}{key}` overall, `{prefix}{group}_{key}` per group.

    >>> flatten_metrics({"overall": {"cider": 0.5}, "groups": {"RSICD": {"cider": 0.4}}}, prefix="eval_")
    {'eval_cider': 0.5, 'eval_RSICD_cider': 0.4}
    """
    flat = {f"{prefix}{key}": value for key, value in result["overall"].items()}
    for group, values in result["groups"].items():
        flat.update({f"{prefix}{group}_{key}": value for key, value in values.items()})
    return flat
