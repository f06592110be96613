"""BLEU-1..4, ROUGE-L and CIDEr-D on tokenized captions, equal to pycocoevalcap's `Bleu(4)`, `Rouge`, `Cider`.

Same formulas and the same floating-point order as coco-caption, only organised for speed: n-grams are counted
once per distinct sentence and shared by BLEU and CIDEr, the per-caption statistics of BLEU and ROUGE-L are cached
by content (scoring the groups of a set after the set costs little), every CIDEr vector is built once per scored
set, and ROUGE-L's longest common subsequence is a bit-parallel computation (Allison-Dix / Hyyro) instead of a
Python dynamic-programming table.

Inputs: `hyps` (N,) tokenized predictions and `refs` (N,) lists of tokenized references of one scored set.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import chain

import numpy as np

_MAX_N = 4
_BLEU_SMALL, _BLEU_TINY = 1e-9, 1e-15  # coco-caption's guards against division by zero
_ROUGE_BETA = 1.2
_CIDER_SIGMA = 6.0

NgramCounts = dict  # {(w1, ..., wn): count} for n = 1..4, in coco-caption's order (all 1-grams, then 2-grams, ...)


class CaptionScorer:
    """coco-caption's BLEU-1..4, ROUGE-L and CIDEr-D of caption sets, with per-sentence and per-caption caches."""

    def __init__(self) -> None:
        self._ngrams: dict[str, NgramCounts] = {}
        self._bleu: dict[tuple, tuple[int, int, tuple, tuple]] = {}
        self._rouge: dict[tuple, float] = {}

    def ngrams(self, sentence: str) -> NgramCounts:
        """1..4-gram counts of a sentence split on white space, as coco-caption's `precook`."""
        counts = self._ngrams.get(sentence)
        if counts is None:
            w = sentence.split()
            counts = Counter(chain(zip(w), zip(w, w[1:]), zip(w, w[1:], w[2:]), zip(w, w[1:], w[2:], w[3:])))
            self._ngrams[sentence] = counts
        return counts

    def _bleu_caption(self, hyp: str, refs: list[str]) -> tuple[int, int, tuple, tuple]:
        """(length, closest reference length, n-gram guesses, clipped matches): pycocoevalcap's cook_test."""
        key = (hyp, *refs)
        if key not in self._bleu:
            maxcounts: dict = {}
            for ref in refs:
                for ngram, count in self.ngrams(ref).items():
                    if count > maxcounts.get(ngram, 0):
                        maxcounts[ngram] = count
            correct = [0] * _MAX_N
            for ngram, count in self.ngrams(hyp).items():
                correct[len(ngram) - 1] += min(maxcounts.get(ngram, 0), count)
            testlen = len(hyp.split())
            # "closest" effective reference length; ties go to the shorter reference
            reflen = min((abs(length - testlen), length) for length in (len(ref.split()) for ref in refs))[1]
            self._bleu[key] = (testlen, reflen, tuple(max(0, testlen - k) for k in range(_MAX_N)), tuple(correct))
        return self._bleu[key]

    def bleu(self, hyps: list[str], refs: list[list[str]]) -> list[float]:
        """Corpus BLEU-1..4 (pycocoevalcap BleuScorer.compute_score, option "closest")."""
        testlen = reflen = 0
        guess, correct = [0] * _MAX_N, [0] * _MAX_N
        for hyp, references in zip(hyps, refs):
            caption_testlen, caption_reflen, caption_guess, caption_correct = self._bleu_caption(hyp, references)
            testlen, reflen = testlen + caption_testlen, reflen + caption_reflen
            guess = [a + b for a, b in zip(guess, caption_guess)]
            correct = [a + b for a, b in zip(correct, caption_correct)]
        bleus, bleu = [], 1.0
        for k in range(_MAX_N):
            bleu *= float(correct[k] + _BLEU_TINY) / (guess[k] + _BLEU_SMALL)
            bleus.append(bleu ** (1.0 / (k + 1)))
        ratio = (testlen + _BLEU_TINY) / (reflen + _BLEU_SMALL)
        if ratio < 1:
            bleus = [value * math.exp(1 - 1 / ratio) for value in bleus]
        return bleus

    def _rouge_caption(self, hyp: str, refs: list[str]) -> float:
        """Best precision and best recall of the LCS over the references, F with beta = 1.2."""
        key = (hyp, *refs)
        if key not in self._rouge:
            candidate = hyp.split(" ")  # split(" ") like coco-caption: "" is one empty token
            masks: dict[str, int] = {}
            for position, token in enumerate(candidate):
                masks[token] = masks.get(token, 0) | (1 << position)
            prec_max = rec_max = 0.0
            for ref in refs:
                tokens = ref.split(" ")
                lcs = _lcs_length(masks, len(candidate), tokens)
                prec_max = max(prec_max, lcs / float(len(candidate)))
                rec_max = max(rec_max, lcs / float(len(tokens)))
            score = 0.0
            if prec_max != 0 and rec_max != 0:
                beta2 = _ROUGE_BETA**2
                score = ((1 + beta2) * prec_max * rec_max) / float(rec_max + beta2 * prec_max)
            self._rouge[key] = score
        return self._rouge[key]

    def rouge_l(self, hyps: list[str], refs: list[list[str]]) -> float:
        """Mean ROUGE-L over the captions (pycocoevalcap Rouge)."""
        return float(np.mean(np.array([self._rouge_caption(hyp, references) for hyp, references in zip(hyps, refs)])))

    def cider_d(self, hyps: list[str], refs: list[list[str]]) -> float:
        """CIDEr-D, idf from these references only (pycocoevalcap CiderScorer): the mean over the images."""
        idf, log_reference_count = cider_idf(refs, self.ngrams)
        return float(np.mean(np.array(cider_d_scores(hyps, refs, self.ngrams, idf, log_reference_count))))


def _lcs_length(masks: dict[str, int], length: int, tokens: list[str]) -> int:
    """Length of the longest common subsequence of `tokens` and the sequence whose bit `masks` are given.

    Bit-parallel LCS (Allison & Dix 1986; Hyyro 2004): bit i of `row` is 0 where the LCS grows at position i.
    """
    full = (1 << length) - 1
    row = full
    for token in tokens:
        matches = row & masks.get(token, 0)
        row = ((row + matches) | (row - matches)) & full
    return length - row.bit_count()


def cider_idf(refs: list[list[str]], ngrams) -> tuple[dict, float]:
    """(idf per n-gram, log of the image count) of CIDEr-D: document frequencies over the images' reference sets."""
    document_frequency: Counter = Counter()
    for references in refs:
        document_frequency.update({ngram for reference in references for ngram in ngrams(reference)})
    log_reference_count = math.log(float(len(refs)))
    # idf; an n-gram no reference has gets df 1 (log 1 = 0)
    return {ngram: log_reference_count - math.log(df) for ngram, df in document_frequency.items()}, log_reference_count


def cider_d_scores(hyps: list[str], refs: list[list[str]], ngrams, idf: dict, log_reference_count: float) -> list:
    """CIDEr-D of each caption against its references, with the given idf (coco-caption's per-image scores)."""
    vectors: dict[str, tuple[dict, list[float], int]] = {}

    def vector(sentence: str) -> tuple[dict, list[float], int]:
        """tf-idf weights, their norm per n, and the sentence's 2-gram count (coco-caption's "length")."""
        if sentence not in vectors:
            weights, squares, length = {}, [0.0] * _MAX_N, 0
            for ngram, term_frequency in ngrams(sentence).items():
                weight = weights[ngram] = float(term_frequency) * idf.get(ngram, log_reference_count)
                squares[len(ngram) - 1] += weight * weight
                if len(ngram) == 2:
                    length += term_frequency
            vectors[sentence] = (weights, [math.sqrt(square) for square in squares], length)
        return vectors[sentence]

    scores = []
    for hyp, references in zip(hyps, refs):
        hyp_weights, hyp_norms, hyp_length = vector(hyp)
        total = [0.0] * _MAX_N
        for reference in references:
            ref_weights, ref_norms, ref_length = vector(reference)
            similarity = [0.0] * _MAX_N
            for ngram, weight in hyp_weights.items():
                ref_weight = ref_weights.get(ngram)
                if ref_weight is not None:
                    similarity[len(ngram) - 1] += min(weight, ref_weight) * ref_weight
            penalty = math.e ** (-(float(hyp_length - ref_length) ** 2) / (2 * _CIDER_SIGMA**2))
            for n in range(_MAX_N):
                if hyp_norms[n] != 0 and ref_norms[n] != 0:
                    similarity[n] /= hyp_norms[n] * ref_norms[n]
                total[n] += similarity[n] * penalty
        # mean over n (numpy's order for 4 values), over references, times 10
        scores.append((((total[0] + total[1]) + total[2]) + total[3]) / _MAX_N / len(references) * 10.0)
    return scores
