"""The `evaluate` modules behind metrics/<name>/<name>.py: input checks, features, cards, `caption_metrics` scores."""

from __future__ import annotations

import datasets
import evaluate

from ._inputs import check_inputs
from ._suite import SCORE_NAMES, caption_metrics

_COCO_CITATION = """
@article{chen2015microsoft,
  title={Microsoft COCO Captions: Data Collection and Evaluation Server},
  author={Chen, Xinlei and Fang, Hao and Lin, Tsung-Yi and Vedantam, Ramakrishna and Gupta, Saurabh and
          Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  journal={arXiv preprint arXiv:1504.00325}, year={2015}
}"""
_CODEBASE = ["https://github.com/salaniz/pycocoevalcap", "https://github.com/tylin/coco-caption"]
_FEATURES = datasets.Features(
    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
)
_INPUTS = """
Args:
    predictions (`list` of `str`): one caption per image; empty strings are scored (as coco-caption does).
    references (`list` of `list` of `str`): the reference captions of each image, one or more.
    tokenizer (`str`, optional): "auto" (default: Stanford PTB jar when Java is installed, else the pure-Python
        equivalent), "java" or "python".
Returns:
    {returns}
"""


class CaptionMetric(evaluate.Metric):
    """One coco-caption score as an `evaluate` module; subclasses set `metric`, `_DESCRIPTION` and `_CITATION`
    (the COCO-caption paper is cited for all of them)."""

    metric = ""
    _DESCRIPTION = ""
    _CITATION = ""

    def _info(self) -> evaluate.MetricInfo:
        returns = ", ".join(f"`{key}` (float)" for key in SCORE_NAMES[self.metric]) + ", on coco-caption's scale."
        return evaluate.MetricInfo(
            description=self._DESCRIPTION,
            citation=self._CITATION + _COCO_CITATION,
            inputs_description=_INPUTS.format(returns=returns),
            features=_FEATURES,
            codebase_urls=_CODEBASE,
            reference_urls=["https://arxiv.org/abs/1504.00325"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Check the batch (ValueError naming the bad item) before evaluate stores it."""
        if predictions is not None or references is not None:
            check_inputs(predictions, references)
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Check one example (ValueError naming the bad item) before evaluate stores it."""
        try:
            check_inputs([prediction], [reference])
        except ValueError as error:
            message = str(error).replace("predictions[0]", "prediction").replace("references[0]", "reference")
            raise ValueError(message) from None
        super().add(prediction=prediction, reference=reference, **kwargs)

    def _compute(self, predictions, references, tokenizer: str = "auto") -> dict[str, float]:
        return caption_metrics(predictions, references, metrics=(self.metric,), tokenizer=tokenizer)["overall"]


class Bleu(CaptionMetric):
    """BLEU-1..4 of pycocoevalcap's `Bleu(4)`."""

    metric = "bleu"
    _DESCRIPTION = """BLEU-1..4 as coco-caption reports them (pycocoevalcap `Bleu(4)`): corpus-level modified n-gram
precision (n = 1..4, geometric mean up to n) times a brevity penalty computed with, for each caption, the reference
length closest to its own, on PTB-tokenized, lower-cased captions without punctuation. Values in [0, 1]."""
    _CITATION = """@inproceedings{papineni2002bleu,
  title={BLEU: a Method for Automatic Evaluation of Machine Translation},
  author={Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing},
  booktitle={Proceedings of the 40th Annual Meeting of the ACL}, pages={311--318}, year={2002}
}"""


class Meteor(CaptionMetric):
    """METEOR 1.5 of pycocoevalcap's `Meteor` (the jar it ships; needs Java)."""

    metric = "meteor"
    _DESCRIPTION = """METEOR 1.5 as coco-caption reports it (pycocoevalcap `Meteor`: meteor-1.5.jar, `-l en -norm`):
unigram alignment of each caption to its best reference through exact, stem, synonym and paraphrase matches,
F-mean of precision and recall (recall-weighted) with a fragmentation penalty, aggregated over the corpus from the
summed statistics. Runs the jar on Java: without a Java runtime it raises JavaNotFoundError saying how to install
one. Values in [0, 1]."""
    _CITATION = """@inproceedings{denkowski2014meteor,
  title={Meteor Universal: Language Specific Translation Evaluation for Any Target Language},
  author={Denkowski, Michael and Lavie, Alon},
  booktitle={Proceedings of the Ninth Workshop on Statistical Machine Translation}, pages={376--380}, year={2014}
}"""


class Rouge(CaptionMetric):
    """ROUGE-L of pycocoevalcap's `Rouge`."""

    metric = "rouge"
    _DESCRIPTION = """ROUGE-L as coco-caption reports it (pycocoevalcap `Rouge`): for each caption, the longest common
subsequence with each reference gives a precision and a recall; the best precision and the best recall over the
references make an F-measure with beta = 1.2; the score is the mean over captions. PTB-tokenized, lower-cased text
without punctuation. Values in [0, 1]. (Not the `rouge` module of the Hub, which uses rouge-score.)"""
    _CITATION = """@inproceedings{lin2004rouge,
  title={ROUGE: A Package for Automatic Evaluation of Summaries},
  author={Lin, Chin-Yew},
  booktitle={Text Summarization Branches Out}, pages={74--81}, year={2004}
}"""


class Cider(CaptionMetric):
    """CIDEr-D of pycocoevalcap's `Cider`."""

    metric = "cider"
    _DESCRIPTION = """CIDEr-D as coco-caption reports it (pycocoevalcap `Cider`): mean over n = 1..4 of the cosine
similarity of TF-IDF n-gram vectors (clipped to the reference's counts) times a Gaussian length penalty
(sigma = 6), averaged over the references, times 10, averaged over captions. The IDF comes from the references of
the evaluated captions themselves, so a score depends on the whole set scored together. Values in [0, 10]."""
    _CITATION = """@inproceedings{vedantam2015cider,
  title={CIDEr: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition}, pages={4566--4575},
  year={2015}
}"""
