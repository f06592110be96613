"""collators.py: processor construction and the training, evaluation and self-critical collators; the caption task's
post-processing."""

import random

import pytest
import torch
from transformers import AutoConfig, AutoProcessor

from collators import (
    TSNPaliGemmaEvalCollator,
    TSNPaliGemmaTrainCollator,
    processor_for_config,
)
from finetuning.scst import decoded_texts
from tasks.caption import CaptionTask, postprocess_caption

CAPTIONS = [
    ["many green trees are around a building", "a building is near trees", "trees", "some trees", "a building"],
    ["a white ship is in the port", "the port has a ship", "a ship", "ships in a port", "a port"],
]


@pytest.fixture(scope="module")
def processor(tiny_checkpoint):
    return AutoProcessor.from_pretrained(tiny_checkpoint("enhanced"), trust_remote_code=True)


def rows(sample_images):
    return [
        {"image": image, "captions": captions, "source": "RSICD", "filename": f"{i}.jpg", "row_index": i}
        for i, (image, captions) in enumerate(zip(sample_images, CAPTIONS))
    ]


@pytest.mark.parametrize("integration,expected", [("adapter", 16 + 5), ("replace", 5 * 2 * 2), ("enhanced", 16)])
def test_processor_for_config_sets_the_image_token_count(tiny_checkpoint, processor, integration, expected):
    config = AutoConfig.from_pretrained(
        tiny_checkpoint("enhanced"), trust_remote_code=True, tsn_integration=integration
    )
    built = processor_for_config(processor, config)
    assert built.image_seq_length == expected
    from PIL import Image

    batch = built(images=Image.new("RGB", (300, 200)), text="<image>caption en", return_tensors="pt")
    assert int((batch["input_ids"] == built.image_token_id).sum()) == expected
    assert batch["pixel_values"].shape[-2:] == (64, 64)


def test_train_collator_labels_only_one_caption(processor, sample_images):
    random.seed(0)
    batch = TSNPaliGemmaTrainCollator(processor)(rows(sample_images))
    tokenizer = processor.tokenizer
    for index, captions in enumerate(CAPTIONS):
        labels = batch["labels"][index]
        supervised = labels[labels != -100]
        text = tokenizer.decode(supervised, skip_special_tokens=True)
        assert text in captions  # exactly one of the row's captions, nothing of the prompt
        assert supervised[-1].item() == tokenizer.eos_token_id
        # Prompt and padding are masked; the prompt is in the input, not in the labels.
        prefix = batch["token_type_ids"][index] == 0
        assert (labels[prefix] == -100).all()
        assert (labels[batch["attention_mask"][index] == 0] == -100).all()
    assert batch["attention_mask"][:, 0].all()  # right padding: every row starts with its image tokens


def test_random_caption_choice_varies_and_first_is_fixed(processor, sample_images):
    random.seed(1)
    collator = TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="random"))
    seen = set()
    for _ in range(12):
        labels = collator(rows(sample_images)[:1])["labels"][0]
        seen.add(processor.tokenizer.decode(labels[labels != -100], skip_special_tokens=True))
    assert len(seen) >= 3
    first_caption = TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="first"))
    first = first_caption(rows(sample_images)[:1])["labels"][0]
    assert processor.tokenizer.decode(first[first != -100], skip_special_tokens=True) == CAPTIONS[0][0]
    with pytest.raises(ValueError, match="caption_choice='all'"):
        TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="all"))


def test_eval_collator_generation_inputs_hold_the_prompt_only(processor, sample_images):
    batch = TSNPaliGemmaEvalCollator(processor)(rows(sample_images))
    tokenizer = processor.tokenizer
    for index in range(2):
        prompt_ids = batch["gen_input_ids"][index][batch["gen_attention_mask"][index] == 1]
        text = tokenizer.decode(prompt_ids, skip_special_tokens=True)
        assert text.strip() == "caption en"
        for caption in CAPTIONS[index]:
            assert caption not in text
        # identical to what the processor builds for a prompt alone
        alone = processor(images=sample_images[index], text="<image>caption en", return_tensors="pt")
        assert torch.equal(prompt_ids, alone["input_ids"][0])
    assert (batch["gen_token_type_ids"] == 0).all()
    assert batch["gen_attention_mask"][:, -1].all()  # left padded: generation continues from the last column
    assert batch["row_index"].flatten().tolist() == [0, 1]


def test_eval_collator_requires_the_row_index(processor, sample_images):
    unindexed = [{key: value for key, value in row.items() if key != "row_index"} for row in rows(sample_images)]
    with pytest.raises(ValueError, match="evaluation rows need a `row_index` column"):
        TSNPaliGemmaEvalCollator(processor)(unindexed)


def test_decode_and_postprocess(processor):
    assert postprocess_caption("caption en\n many  green trees <eos>") == "many green trees"
    assert postprocess_caption("  a ship \n") == "a ship"
    ids = processor.tokenizer("many green trees", add_special_tokens=False, return_tensors="pt")["input_ids"]
    sequences = torch.cat(
        [torch.full((1, 7), processor.image_token_id), ids, torch.tensor([[processor.tokenizer.eos_token_id]])], dim=1
    )
    assert decoded_texts(processor, sequences[:, 7:], CaptionTask()) == ["many green trees"]


def test_eval_collator_scores_caption_one_also_for_a_mixtures_random_caption_task(processor, sample_images):
    """A mixture's caption task draws a caption at random for training; its evaluation loss is on caption 1, the
    same at every evaluation."""
    tasks = {"rsicd": CaptionTask("caption en", caption_choice="random")}
    row = {**rows(sample_images)[0], "task": "rsicd"}
    seen = set()
    for seed in range(8):
        random.seed(seed)
        labels = TSNPaliGemmaEvalCollator(processor, tasks=tasks)([row])["labels"][0]
        seen.add(processor.tokenizer.decode(labels[labels != -100], skip_special_tokens=True))
    assert seen == {CAPTIONS[0][0]}
    assert tasks["rsicd"].caption_choice == "random"  # training still draws
