"""CIDEr-D as a training reward: the score of ONE caption against its image's references, with document frequencies
fixed once from a corpus (the training split's references), as self-critical sequence training uses it (Rennie et
al., CVPR 2017). The formula, the tokenization and the n-gram code are `caption_metrics`' own (coco-caption's), so
the reward is the number evaluation reports; only the document frequencies come from the corpus instead of the
scored set.

```python
>>> reward = CiderDReward([["a plane is parked .", "a white plane ."], ["many green trees ."] * 2])
>>> [round(value, 3) for value in reward(["a white plane .", "a plane"], [["a white plane ."], ["many trees ."]])]
[7.5, 0.0]

(A three-word match: 1- to 3-grams agree, no 4-gram exists: 3 of CIDEr-D's 4 orders, times 10.)
```
"""

from __future__ import annotations

from ._scorers import CaptionScorer, cider_d_scores, cider_idf
from ._tokenize import ptb_tokenize, regroup


class CiderDReward:
    """`reward(captions, references) -> [CIDEr-D of each caption]`, document frequencies from `corpus_references`
    (one list of reference captions per image).

    Captions are PTB-tokenized like coco-caption; `backend="python"` (the default) needs no Java and gives the jar's
    tokens on every real caption checked (tests/test_metrics.py), at no process start per training step.
    """

    def __init__(self, corpus_references: list[list[str]], backend: str = "python"):
        if not corpus_references:
            raise ValueError("CiderDReward needs the references of at least one image (corpus_references is empty).")
        self.backend = backend
        self.scorer = CaptionScorer()
        self._tokenized: dict[tuple[str, ...], list[str]] = {}
        tokenized = self._tokenize_references(corpus_references)
        self.idf, self.log_reference_count = cider_idf(tokenized, self.scorer.ngrams)

    def _tokenize_references(self, references: list[list[str]]) -> list[list[str]]:
        """Tokenized reference lists, each distinct list tokenized once (training references repeat every epoch)."""
        missing = list(dict.fromkeys(tuple(refs) for refs in references if tuple(refs) not in self._tokenized))
        if missing:
            flat = ptb_tokenize([ref for refs in missing for ref in refs], backend=self.backend)
            for refs, tokens in zip(missing, regroup(flat, [len(refs) for refs in missing])):
                self._tokenized[refs] = tokens
        return [self._tokenized[tuple(refs)] for refs in references]

    def __call__(self, captions: list[str], references: list[list[str]]) -> list[float]:
        if len(captions) != len(references):
            raise ValueError(f"{len(captions)} captions but {len(references)} reference lists; give one per caption.")
        hyps = ptb_tokenize(list(captions), backend=self.backend)
        refs = self._tokenize_references(references)
        return cider_d_scores(hyps, refs, self.scorer.ngrams, self.idf, self.log_reference_count)
