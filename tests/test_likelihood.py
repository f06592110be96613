"""tasks/likelihood.py on the shipped model: a closed set (the scene classes) is answered by ranking every class by
its mean log-probability per token as the prompt's suffix; the ranked scores equal those of a plain forward of
prompt + class through the model, and `inference.py --task classify` answers their argmax."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

import inference
from inference_core import generation_inputs
from tasks.likelihood import answer_scores, answer_tokens

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "rs-mini"
IMAGES = [
    REPO_ROOT / "dataset_builder" / "sample" / "resized" / name
    for name in ("RSICD_square_54.jpg", "NWPU_stadium_644.jpg")
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def example():
    model = AutoModelForImageTextToText.from_pretrained(EXAMPLE, trust_remote_code=True, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(EXAMPLE, trust_remote_code=True)
    record = model.config.task_prompts["classify"]
    return model, processor, record["prompt"], record["classes"]


def mean_log_prob_of_a_full_forward(model, processor, image, prompt: str, answer: str) -> float:
    """prompt + answer through the model as training feeds them (the processor's suffix and labels)."""
    inputs = processor(images=image, text="<image>" + prompt, suffix=answer, return_tensors="pt")
    labels = inputs.pop("labels")[0]
    with torch.no_grad():
        logits = model(**inputs).logits[0].float()
    positions = (labels != -100).nonzero()[:, 0]  # the answer's tokens and the end of sequence
    log_probs = F.log_softmax(logits[positions - 1], dim=-1).gather(1, labels[positions][:, None])
    return log_probs.mean().item()


def test_answer_tokens_are_the_suffix_tokens_training_labels(example):
    _, processor, prompt, classes = example
    tokens, lengths = answer_tokens(processor.tokenizer, classes)
    image = Image.open(IMAGES[0]).convert("RGB")
    for row, answer in enumerate(classes):
        labels = processor(images=image, text="<image>" + prompt, suffix=answer, return_tensors="pt")["labels"][0]
        assert tokens[row, : lengths[row]].tolist() == labels[labels != -100].tolist(), answer
        assert (tokens[row, lengths[row] :] == processor.tokenizer.pad_token_id).all()
    assert lengths.min() == 2 and lengths.max() > 2  # one-token and multi-token classes, each with its end


def test_ranked_scores_equal_a_full_forward_and_inference_answers_their_argmax(example, capsys):
    model, processor, prompt, classes = example
    images = [Image.open(path).convert("RGB") for path in IMAGES]
    tokens, lengths = answer_tokens(processor.tokenizer, classes)
    with torch.no_grad():
        ranked = answer_scores(model, generation_inputs(model, processor, images, prompt), tokens, lengths)
    direct = torch.tensor(
        [
            [mean_log_prob_of_a_full_forward(model, processor, image, prompt, answer) for answer in classes]
            for image in images
        ]
    )
    torch.testing.assert_close(ranked, direct, rtol=0, atol=1e-4)
    assert inference.main([*map(str, IMAGES), "--model", str(EXAMPLE), "--task", "classify", "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["text"] for record in records] == [classes[int(row.argmax())] for row in direct]
    # each answer's score: its probability normalised over the classes (softmax of the mean log-probabilities)
    expected = direct.softmax(dim=1).max(dim=1).values
    assert [record["score"] for record in records] == pytest.approx(expected.tolist(), abs=1e-4)
