"""coco-caption metrics (BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D) with pycocoevalcap's exact numbers, faster.

`caption_metrics` scores everything at once, overall and per group; `metrics/<name>/<name>.py` are the same
scores as `evaluate` modules (`evaluate.load("metrics/bleu")`). See docs/metrics.md.
"""

from ._java import JavaNotFoundError, java_available
from ._sbert import sbert_similarity
from ._suite import METRICS, SCORE_NAMES, caption_metrics, flatten_metrics
from ._tokenize import ptb_tokenize, ptb_tokenize_streams
from .reward import CiderDReward

__all__ = [
    "CiderDReward",
    "METRICS",
    "SCORE_NAMES",
    "JavaNotFoundError",
    "caption_metrics",
    "flatten_metrics",
    "java_available",
    "ptb_tokenize",
    "ptb_tokenize_streams",
    "sbert_similarity",
]
