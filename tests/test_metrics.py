"""metrics/: inputs, scorers against pycocoevalcap on tokenized text, tokenizers, no-Java behaviour, evaluate
modules and their cards. The parity runs on the real references are in test_metrics_parity.py."""

import csv
import doctest
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

import metrics
from metrics import _meteor, _paraphrase, _scorers, _suite, _tokenize
from metrics._inputs import check_inputs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
needs_java = pytest.mark.skipif(not metrics.java_available(), reason="METEOR and the PTB jar need a Java runtime")

PREDICTIONS = [
    "many planes are parked next to the terminal of an airport .",
    "a river with green trees on both sides .",
]
REFERENCES = [
    ["several planes are parked near the terminal building .", "many airplanes are parked at the airport ."],
    ["a green river goes through the forest .", "there are many green trees on both sides of the river ."],
]
# pycocoevalcap on PREDICTIONS / REFERENCES (computed with it once; the parity tests recompute such values live)
EXPECTED = {"bleu_1": 0.7368421052243769, "bleu_4": 0.33401789305388047, "rouge_l": 0.5452462972632223}
EXPECTED["cider"] = 2.097071129008598


@pytest.mark.parametrize(
    ("predictions", "references", "groups", "message"),
    [
        (["a", "b"], [["a"]], None, "predictions has 2 items but references has 1"),
        ([], [], None, "predictions is empty"),
        ("a cat", [["a"]], None, "predictions must be a list, got str"),
        (["a", 7], [["a"], ["b"]], None, r"predictions\[1\] is a int"),
        (["a", None], [["a"], ["b"]], None, r"predictions\[1\] is a NoneType"),
        (["a", "b"], [["a"], "b"], None, r"references\[1\] is a str, not a list of str"),
        (["a", "b"], [["a"], []], None, r"references\[1\] is empty"),
        (["a", "b"], [["a"], ["b", b"c"]], None, r"references\[1\]\[1\] is a bytes"),
        (["a", "b"], [["a"], ["b"]], ["NWPU"], "groups has 1 items but predictions has 2"),
        (["a", "b"], [["a"], ["b"]], ["NWPU", 3], r"groups\[1\] is a int"),
    ],
)
def test_bad_inputs_name_the_index(predictions, references, groups, message):
    with pytest.raises(ValueError, match=message):
        check_inputs(predictions, references, groups)
    with pytest.raises(ValueError, match=message):
        metrics.caption_metrics(predictions, references, groups, metrics=("bleu",), tokenizer="python")


def test_unknown_metric_and_tokenizer():
    with pytest.raises(ValueError, match="choose one or more of"):
        metrics.caption_metrics(PREDICTIONS, REFERENCES, metrics=("spice",))
    with pytest.raises(ValueError, match="backend='nltk'"):
        metrics.ptb_tokenize(["a"], backend="nltk")


def _random_tokenized(rng: random.Random, count: int) -> tuple[dict, dict]:
    """coco-caption-style gts/res of tokenized captions: short, repetitive, some empty, one long."""
    vocabulary = "a the many some green trees river planes parked near of and is are white buildings road".split()

    def caption(low: int) -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(low, 14)))

    gts = {i: [caption(1) for _ in range(rng.randint(1, 5))] for i in range(count)}
    res = {i: [caption(0)] for i in range(count)}  # low 0: some empty predictions
    res[0], gts[1] = [""], gts[1] + [""]  # an empty prediction; an empty reference
    res[2] = [" ".join(rng.choice(vocabulary) for _ in range(90))]  # longer than a 64-bit word for the LCS
    gts[3], res[3] = ["green trees"], ["green trees"]  # identical single reference
    return gts, res


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scorers_equal_pycocoevalcap_on_tokenized_text(seed):
    gts, res = _random_tokenized(random.Random(seed), 120)
    scorer = _scorers.CaptionScorer()
    for ids in (list(gts), list(gts)[::3]):  # a set, then a subset of it scored alone (its own idf and corpus)
        hyps, refs = [res[i][0] for i in ids], [gts[i] for i in ids]
        part_gts, part_res = {i: gts[i] for i in ids}, {i: res[i] for i in ids}
        expected = Bleu(4).compute_score(part_gts, part_res, verbose=0)[0]
        np.testing.assert_allclose(scorer.bleu(hyps, refs), expected, rtol=0, atol=1e-12)
        assert abs(scorer.rouge_l(hyps, refs) - Rouge().compute_score(part_gts, part_res)[0]) <= 1e-12
        assert abs(scorer.cider_d(hyps, refs) - Cider().compute_score(part_gts, part_res)[0]) <= 1e-12


def test_all_empty_predictions_and_references():
    # every prediction empty: BLEU 0 (coco-caption's 1e-15 guards), ROUGE-L 0, CIDEr 0
    result = metrics.caption_metrics(["", ""], [["a b"], ["c"]], metrics=("bleu", "rouge", "cider"))
    assert result["overall"]["rouge_l"] == 0.0 and result["overall"]["cider"] == 0.0
    assert max(result["overall"][f"bleu_{n}"] for n in range(1, 5)) < 1e-9
    # no reference n-gram at all: pycocoevalcap's Cider fails (max() of no document frequency); here it is 0
    assert metrics.caption_metrics(["a"], [[""]], metrics=("cider",), tokenizer="python")["overall"]["cider"] == 0.0


def test_groups_flatten_and_key_order():
    groups = ["UCM", "RSICD", "RSICD", "UCM"]
    result = metrics.caption_metrics(PREDICTIONS * 2, REFERENCES * 2, groups, metrics=("cider", "bleu"))
    assert list(result["overall"]) == ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider"]
    assert list(result["groups"]) == ["UCM", "RSICD"]  # order of first appearance
    flat = metrics.flatten_metrics(result, prefix="eval_")
    assert flat["eval_cider"] == result["overall"]["cider"]
    assert flat["eval_RSICD_bleu_4"] == result["groups"]["RSICD"]["bleu_4"]
    assert len(flat) == 15
    assert metrics.caption_metrics(PREDICTIONS, REFERENCES, metrics="rouge", tokenizer="python")["groups"] == {}


TRICKY = ["It's a T-junction (near U.S. farm b.)", "Don't: 3.5km, 1,000 cars!", "a ‘L’ sign", "tab\there\rnext"]
TRICKY += ["near farm b.", "The end: farm b.", "no. 5 and no.", "7 180-degree turns"]
TRICKY_TOKENS = [  # what the Stanford PTB jar gives, context included: "b." loses its period before a capital
    "it 's a t-junction -lrb- near u.s. farm b. -rrb-",
    "do n't 3.5 km 1,000 cars",
    "a l’ sign",
    "tab here next",
    "near farm b",
    "the end farm b.",
    "no. 5 and no.",
    "7 180-degree turns",
]


def test_python_tokenizer_examples():
    assert metrics.ptb_tokenize(TRICKY, backend="python") == TRICKY_TOKENS
    assert metrics.ptb_tokenize_streams([TRICKY[4:6], TRICKY[4:5]], backend="python") == [
        ["near farm b", "the end farm b."],
        ["near farm b."],  # at the end of its stream "b." keeps its period
    ]


@needs_java
def test_one_java_call_equals_pycocoevalcap_tokenizer():
    assert metrics.ptb_tokenize(TRICKY, backend="java") == TRICKY_TOKENS
    sentences = [
        "A plane (white) is parked.",
        "",
        'It\'s 3.5km -- "quoted" & odd: a!b, e.g. ... done',
        "line\rbreaks\x0bare\x0cspaces\u2028here",
        "naïve café — x",
        "",
    ]
    streams = [sentences, sentences[::-1], TRICKY]
    ours = metrics.ptb_tokenize_streams(streams, backend="java")  # one process, each stream its own lexer
    for stream, tokens in zip(streams, ours):
        clean = [sentence.translate(_tokenize._LINE_BREAKS) for sentence in stream]  # pycocoevalcap splits them
        reference = PTBTokenizer().tokenize({i: [{"caption": sentence}] for i, sentence in enumerate(clean)})
        assert tokens == [reference[i][0] for i in range(len(stream))]
    assert ours[0][3] == "line breaks are spaces here"


def all_real_captions() -> list[str]:
    """Every real caption: COCO/Karpathy JSON, JSONL, NWPU text files, RISC CSVs ([] when absent)."""
    captions = []
    for path in sorted(DATA.glob("annotations/*/*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "annotations" in data:
            captions += [annotation["caption"] for annotation in data["annotations"]]
        else:
            captions += [sentence["raw"] for image in data["images"] for sentence in image["sentences"]]
    for path in sorted(DATA.glob("annotations/*/*.jsonl")):
        captions += [caption for line in path.open(encoding="utf-8") for caption in json.loads(line)["captions"]]
    for path in sorted(DATA.glob("annotations/*/*_references_*.txt")):
        captions += path.read_text(encoding="utf-8").split("\n")
    for path in sorted(DATA.glob("annotations/*/*.csv")) + sorted(DATA.glob("*/captions.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows = csv.DictReader(handle)
            captions += [value for row in rows for key, value in row.items() if key.startswith("caption")]
    return captions


@needs_java
def test_python_tokenizer_equals_ptb_jar_on_all_real_captions():
    captions = all_real_captions()
    if not captions:
        pytest.skip(f"the real annotation files are absent ({DATA})")
    captions = list(dict.fromkeys(captions))
    assert len(captions) > 50_000
    java = metrics.ptb_tokenize(captions, backend="java")
    python = metrics.ptb_tokenize(captions, backend="python")
    different = [(caption, j, p) for caption, j, p in zip(captions, java, python) if j != p]
    assert not different, different[:5]


def test_without_java_meteor_explains_and_the_rest_works(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on PATH
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert not metrics.java_available()
    with pytest.raises(metrics.JavaNotFoundError, match=r"Java runtime.*apt-get install -y default-jre-headless"):
        metrics.caption_metrics(PREDICTIONS, REFERENCES)
    result = metrics.caption_metrics(PREDICTIONS, REFERENCES, metrics=("bleu", "rouge", "cider"))["overall"]
    for key, value in EXPECTED.items():
        assert abs(result[key] - value) <= 1e-9, key
    meteor = _load_module("meteor")
    with pytest.raises(metrics.JavaNotFoundError, match="install"):
        meteor.compute(predictions=PREDICTIONS, references=REFERENCES)
    cider = _load_module("cider").compute(predictions=PREDICTIONS, references=REFERENCES)["cider"]
    assert abs(cider - EXPECTED["cider"]) <= 1e-9


@needs_java
def test_meteor_jvm_failure_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(_meteor, "meteor_dir", lambda: tmp_path)  # no jar, no paraphrase table there
    with pytest.raises(RuntimeError, match="METEOR 1.5 failed.*meteor-1.5.jar"):
        metrics.caption_metrics(PREDICTIONS, REFERENCES, metrics=("meteor",))


def _load_module(name: str):
    import evaluate

    return evaluate.load(str(ROOT / "metrics" / name))


def test_evaluate_modules_check_inputs_and_accumulate():
    bleu = _load_module("bleu")
    assert bleu.name == "bleu"
    with pytest.raises(ValueError, match=r"predictions\[1\] is a int"):
        bleu.compute(predictions=["a", 1], references=[["a"], ["b"]])
    with pytest.raises(ValueError, match=r"references\[0\] is empty"):
        bleu.add_batch(predictions=["a"], references=[[]])
    with pytest.raises(ValueError, match="reference is a str"):
        bleu.add(prediction="a", reference="a b")
    with pytest.raises(ValueError, match="predictions has 1 items but references has 2"):
        bleu.compute(predictions=["a"], references=[["a"], ["b"]])
    bleu.add_batch(predictions=PREDICTIONS[:1], references=REFERENCES[:1])
    bleu.add(prediction=PREDICTIONS[1], reference=REFERENCES[1])
    result = bleu.compute(tokenizer="python")
    assert abs(result["bleu_1"] - EXPECTED["bleu_1"]) <= 1e-9 and abs(result["bleu_4"] - EXPECTED["bleu_4"]) <= 1e-9


def _python_blocks(markdown: str) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL))


@pytest.mark.parametrize("name", ["bleu", pytest.param("meteor", marks=needs_java), "rouge", "cider"])
def test_metric_card_example_runs(name, monkeypatch):
    card = (ROOT / "metrics" / name / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\ntitle: ") and "\ntags:\n- evaluate\n- metric\n" in card and "\ndescription: " in card
    monkeypatch.chdir(ROOT)  # the examples load "metrics/<name>" relative to the repository root
    test = doctest.DocTestParser().get_doctest(_python_blocks(card), {}, f"{name}/README.md", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0 and len(test.examples) >= 4


@needs_java
def test_docs_examples_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    docs = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    test = doctest.DocTestParser().get_doctest(_python_blocks(docs), {}, "docs/metrics.md", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0 and test.examples


@pytest.mark.parametrize("module", [_suite, _tokenize, _paraphrase])
def test_docstring_examples(module):
    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_meteor_request_lines_match_pycocoevalcap():
    # pycocoevalcap Meteor._stat: "SCORE ||| ref ||| ... ||| hyp", the hypothesis cleaned of "|||" and double spaces
    assert _meteor.score_line("a  b|||c", ["r1", "r 2"]) == "SCORE ||| r1 ||| r 2 ||| a bc"
    assert _meteor.score_line("", ["x"]) == "SCORE ||| x ||| "


def test_java_error_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(metrics.JavaNotFoundError, match=r"brew install openjdk.*metrics=\('bleu', 'rouge', 'cider'\)"):
        metrics.ptb_tokenize(["a"], backend="java")
