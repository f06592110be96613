"""The constant-caption floor: the one candidate sentence that scores the highest CIDEr-D when it is written under
every image of a scored set. Datasets with many repeated, generic sentences (RSICD) make this floor high, so a
captioner's scores mean something only beside it.

Every candidate is scored against all references at once (numpy over the references, one pass per candidate n-gram),
with coco-caption's CIDEr-D formula; the best few are then scored exactly by `caption_metrics`, whose number is the
one reported.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ._scorers import _CIDER_SIGMA, _MAX_N, CaptionScorer, cider_idf
from ._suite import caption_metrics
from ._tokenize import ptb_tokenize, regroup


class ConstantCiderIndex:
    """CIDEr-D of one constant (tokenized) caption against tokenized references `refs` (N images, lists of refs)."""

    def __init__(self, refs: list[list[str]]):
        self.ngrams = CaptionScorer().ngrams
        self.idf, self.log_count = cider_idf(refs, self.ngrams)
        flat = [(image, reference) for image, references in enumerate(refs) for reference in references]
        self.ref_norms = np.zeros((len(flat), _MAX_N))  # (R, 4) tf-idf norm per n-gram order
        self.ref_lengths = np.zeros(len(flat))  # (R,) 2-gram count, coco-caption's "length"
        # (R,) each reference's share of the mean over references and images, times CIDEr's 10 / 4 orders
        self.ref_weights = np.array([10.0 / _MAX_N / len(refs[image]) / len(refs) for image, _ in flat])
        postings: dict = defaultdict(lambda: ([], []))
        for row, (_, reference) in enumerate(flat):
            for ngram, term_frequency in self.ngrams(reference).items():
                weight = float(term_frequency) * self.idf[ngram]
                self.ref_norms[row, len(ngram) - 1] += weight * weight
                self.ref_lengths[row] += term_frequency if len(ngram) == 2 else 0
                postings[ngram][0].append(row)
                postings[ngram][1].append(weight)
        self.ref_norms = np.sqrt(self.ref_norms)
        self.postings = {ngram: (np.array(rows), np.array(weights)) for ngram, (rows, weights) in postings.items()}

    def score(self, sentence: str) -> float:
        """CIDEr-D of `sentence` written under every image (equal to `caption_metrics` up to float rounding)."""
        similarity = np.zeros_like(self.ref_norms)  # (R, 4)
        norms, length = np.zeros(_MAX_N), 0
        for ngram, term_frequency in self.ngrams(sentence).items():
            order = len(ngram) - 1
            weight = float(term_frequency) * self.idf.get(ngram, self.log_count)
            norms[order] += weight * weight
            length += term_frequency if order == 1 else 0
            if ngram in self.postings:
                rows, ref_weights = self.postings[ngram]
                similarity[rows, order] += np.minimum(weight, ref_weights) * ref_weights
        norms = np.sqrt(norms)
        denominator = norms[None, :] * self.ref_norms
        similarity = np.divide(similarity, denominator, out=np.zeros_like(similarity), where=denominator != 0)
        penalty = np.exp(-((length - self.ref_lengths) ** 2) / (2 * _CIDER_SIGMA**2))
        return float((similarity.sum(axis=1) * penalty * self.ref_weights).sum())


def constant_caption_floor(candidates: list[str], references: list[list[str]], exact_top: int = 10) -> dict:
    """The best constant caption among `candidates` for `references` (one list per image) and its coco-caption
    scores (BLEU-1..4, METEOR, ROUGE-L, CIDEr; METEOR needs Java).

    Returns {"caption", "scores", "candidates" (how many distinct ones were scored), "ranking" (the `exact_top`
    best with their exact CIDEr)}.
    """
    distinct = list(dict.fromkeys(candidates))
    if not distinct or not references:
        raise ValueError("constant_caption_floor needs at least one candidate and one image with references.")
    tokenized_refs = ptb_tokenize([ref for refs in references for ref in refs])
    index = ConstantCiderIndex(regroup(tokenized_refs, [len(refs) for refs in references]))
    approximate = [index.score(sentence) for sentence in ptb_tokenize(distinct)]
    shortlist = [distinct[i] for i in np.argsort(approximate)[::-1][:exact_top]]
    exact = {
        sentence: caption_metrics([sentence] * len(references), references, metrics=("cider",))["overall"]["cider"]
        for sentence in shortlist
    }
    best = max(shortlist, key=lambda sentence: (exact[sentence], sentence))
    scores = caption_metrics([best] * len(references), references)["overall"]
    ranking = [{"caption": sentence, "cider": exact[sentence]} for sentence in sorted(exact, key=exact.get)[::-1]]
    return {"caption": best, "scores": scores, "candidates": len(distinct), "ranking": ranking}
