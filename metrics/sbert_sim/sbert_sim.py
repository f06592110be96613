"""SBERT similarity (mean cosine similarity of sentence-transformers embeddings): an `evaluate` module, card README."""

import json
import sys
from pathlib import Path

import evaluate

try:  # the project is installed, or its root is on sys.path (the scoring code: metrics/_sbert.py)
    from metrics import _evaluate, _sbert
except ModuleNotFoundError:  # evaluate.load() runs a cached copy of this file; the JSON beside it names the original
    _origin = json.loads(Path(__file__).with_suffix(".json").read_text())["original file path"]
    sys.path.insert(0, str(Path(_origin).resolve().parents[2]))
    from metrics import _evaluate, _sbert

_DESCRIPTION = """SBERT similarity: for each caption, the mean over its references of the cosine similarity between
the caption's sentence embedding and the reference's (a sentence-transformers model, default
sentence-transformers/all-MiniLM-L6-v2); the score is the mean over captions. Raw text, no tokenization or
lower-casing. Values in [-1, 1]. aac-metrics' `sbert_sim` uses the same formula with another default model
(paraphrase-TinyBERT-L6-v2): the numbers are not comparable unless the model is the same."""
_CITATION = """@inproceedings{reimers2019sentencebert,
  title={Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks},
  author={Reimers, Nils and Gurevych, Iryna},
  booktitle={Proceedings of the 2019 Conference on Empirical Methods in Natural Language Processing}, year={2019}
}"""
_INPUTS = f"""
Args:
    predictions (`list` of `str`): one caption per image; empty strings are scored.
    references (`list` of `list` of `str`): the reference captions of each image, one or more.
    model (`str`, optional): a local folder of a sentence-transformers model, or a Hub id (needs network access
        or the Hub cache), or a loaded `SentenceTransformer`. Default "{_sbert.DEFAULT_MODEL}".
    batch_size (`int`, optional): sentences per forward pass, default 64.
    device (`str`, optional): where the model is loaded, default None (CUDA when available).
Returns:
    `sbert_sim` (float): mean cosine similarity, in [-1, 1].
"""


class SbertSim(_evaluate.CaptionMetric):
    """Mean cosine similarity of sentence-transformers embeddings of each caption and its references."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=_evaluate._FEATURES,
            codebase_urls=["https://github.com/UKPLab/sentence-transformers"],
            reference_urls=["https://arxiv.org/abs/1908.10084", f"https://huggingface.co/{_sbert.DEFAULT_MODEL}"],
        )

    def _compute(
        self, predictions, references, model=_sbert.DEFAULT_MODEL, batch_size: int = 64, device=None
    ) -> dict[str, float]:
        result = _sbert.sbert_similarity(predictions, references, model=model, batch_size=batch_size, device=device)
        return {"sbert_sim": result["sbert_sim"]}
