"""The constant-caption floor: the fast CIDEr of a constant caption equals coco-caption's, and the floor is the true
best candidate (checked exhaustively on the bundled sample)."""

import json
from pathlib import Path

import pytest

from metrics import caption_metrics
from metrics._tokenize import ptb_tokenize
from metrics.floor import ConstantCiderIndex, constant_caption_floor
from scripts import caption_floor

SAMPLE = str(Path(__file__).resolve().parents[1] / "dataset_builder" / "sample")


@pytest.fixture(scope="module")
def sample_sets():
    return caption_floor.split_captions(SAMPLE, "train"), caption_floor.split_captions(SAMPLE, "test")


def test_fast_constant_cider_equals_coco_caption(sample_sets):
    train, test = sample_sets
    candidates = list(dict.fromkeys(caption for captions in train for caption in captions))[:40]
    tokenized_refs = iter(ptb_tokenize([ref for refs in test for ref in refs]))
    index = ConstantCiderIndex([[next(tokenized_refs) for _ in refs] for refs in test])
    exact = caption_metrics(  # each candidate under every test image, one group per candidate (scored alone)
        [sentence for sentence in candidates for _ in test],
        [references for _ in candidates for references in test],
        groups=[sentence for sentence in candidates for _ in test],
        metrics=("cider",),
    )["groups"]
    for sentence, tokens in zip(candidates, ptb_tokenize(candidates)):
        assert index.score(tokens) == pytest.approx(exact[sentence]["cider"], rel=1e-12, abs=1e-12), sentence


def test_floor_is_the_best_candidate_by_exhaustive_search(sample_sets, capsys):
    train, test = sample_sets
    candidates = list(dict.fromkeys(caption for captions in train for caption in captions))
    # Every candidate under every test image, each candidate its own group: caption_metrics scores each group as if
    # it were scored alone (tests/test_metrics_parity.py), in one tokenizer call instead of one per candidate.
    scored = caption_metrics(
        [sentence for sentence in candidates for _ in test],
        [references for _ in candidates for references in test],
        groups=[str(index) for index in range(len(candidates)) for _ in test],
        metrics=("cider",),
    )["groups"]
    exhaustive = {sentence: scored[str(index)]["cider"] for index, sentence in enumerate(candidates)}
    floor = constant_caption_floor(candidates, test)
    assert floor["candidates"] == len(candidates)
    assert floor["scores"]["cider"] == max(exhaustive.values()) and exhaustive[floor["caption"]] == max(
        exhaustive.values()
    )
    assert floor["scores"] == caption_metrics([floor["caption"]] * len(test), test)["overall"]
    assert caption_floor.main([SAMPLE, "--split", "test"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["caption"] == floor["caption"] and printed["images"] == len(test)


def test_unknown_split_names_the_fix():
    with pytest.raises(ValueError, match="no rows with split='tset'"):
        caption_floor.split_captions(SAMPLE, "tset")
