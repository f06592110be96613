"""Self-critical sequence training: the reward is pycocoevalcap's CIDEr-D (same document frequencies), advantages
have the right sign, the log-probability trained on is the sampler's own, the segment encoder runs once per step,
and a few steps on a fixed batch raise the shipped captioner's mean sampled reward."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.modeling_outputs import BaseModelOutputWithPooling

from collators import TSNPaliGemmaSCSTCollator
from dataset_builder import SAMPLE_DIR, load_risc
from finetuning.scst import (
    SCSTSettings,
    SCSTStats,
    caption_lengths,
    mean_of_others_baseline,
    sample_captions,
    scst_loss,
)
from metrics import CiderDReward, java_available
from tasks.caption import CaptionTask, postprocess_caption
from tasks.likelihood import sequence_log_probs

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rs-mini"
PROMPT = "caption en"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sample():
    return load_risc(SAMPLE_DIR)


@pytest.fixture(scope="module")
def shipped():
    model = AutoModelForImageTextToText.from_pretrained(EXAMPLE, trust_remote_code=True, dtype=torch.float32)
    return model, AutoProcessor.from_pretrained(EXAMPLE, trust_remote_code=True)


@pytest.mark.skipif(not java_available(), reason="pycocoevalcap's tokenizer needs a Java runtime")
def test_the_reward_equals_pycocoevalcap_cider_d_with_the_same_document_frequencies(sample):
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    references = [list(captions) for captions in sample["test"]["captions"]]
    # Each image's caption: the first human caption of the NEXT image (real sentences, partly matching).
    predictions = [references[(index + 1) % len(references)][0] for index in range(len(references))]
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": ref} for ref in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": prediction}] for i, prediction in enumerate(predictions)})
    corpus_score, per_image = Cider().compute_score(gts, res)
    # Document frequencies from exactly the references pycocoevalcap took them from: the scored set's own.
    reward = CiderDReward(references, backend="java")
    rewards = reward(predictions, references)
    assert rewards == pytest.approx(list(per_image), rel=1e-12, abs=1e-12)
    assert sum(rewards) / len(rewards) == pytest.approx(corpus_score, rel=1e-12)
    assert reward.log_reference_count == pytest.approx(torch.log(torch.tensor(12.0)).item())


def test_a_reference_sample_gets_a_positive_advantage_and_a_degenerate_one_a_negative(sample):
    reward = CiderDReward([list(captions) for captions in sample["train"]["captions"]])
    references = list(sample["train"][0]["captions"])
    samples = [references[0], "the the the the the", "many buildings are in an area .", "a road ."]
    rewards = torch.tensor([reward(samples, [references] * len(samples))])  # (1, k)
    advantages = rewards - mean_of_others_baseline(rewards)
    assert advantages[0, 0] > 0 > advantages[0, 1]
    assert rewards[0, 0] > 1.0 and rewards[0, 1] == 0.0
    # The mean-of-others baseline of k = 4 samples: (sum - own) / 3.
    assert mean_of_others_baseline(rewards)[0, 1] == pytest.approx(float(rewards.sum() - rewards[0, 1]) / 3)


def test_the_module_examples_run():
    import doctest

    import finetuning.scst
    import metrics.reward

    for module in (metrics.reward, finetuning.scst):
        result = doctest.testmod(module)
        assert result.attempted >= 1 and result.failed == 0, module.__name__


def test_caption_lengths_count_up_to_the_first_eos():
    tokens = torch.tensor([[5, 6, 1, 0, 0], [5, 6, 7, 8, 9], [1, 0, 0, 0, 0]])  # eos 1, pad 0
    assert caption_lengths(tokens, eos_token_id=1, pad_token_id=0).tolist() == [3, 5, 1]


def test_the_trained_log_probability_is_the_samplers_own(shipped, sample):
    """sequence_log_probs (prompt + sample, one teacher-forced forward with the cached image features) equals the
    log-softmax of the logits generate sampled from, token by token."""
    model, processor = shipped
    model.eval()
    batch = TSNPaliGemmaSCSTCollator(processor)(list(sample["test"].select(range(2))))
    with torch.no_grad():
        features = model.model.get_image_features(batch["pixel_values"]).pooler_output
        torch.manual_seed(0)
        generated = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=features)},
            do_sample=True,
            num_beams=1,  # the model's generation_config says 3 (its evaluation setting)
            top_k=None,
            top_p=None,
            num_return_sequences=3,
            max_new_tokens=12,
            output_logits=True,
            return_dict_in_generate=True,
        )
        tokens = generated.sequences[:, batch["input_ids"].shape[1] :]  # (6, T)
        lengths = caption_lengths(tokens, processor.tokenizer.eos_token_id, processor.tokenizer.pad_token_id)
        logits = torch.stack(generated.logits, dim=1).float().log_softmax(-1)  # (6, T, V)
        expected = torch.stack(
            [logits[row, : lengths[row]].gather(1, tokens[row, : lengths[row], None]).sum() for row in range(6)]
        )
        got = sequence_log_probs(model, batch, features.repeat_interleave(3, dim=0), tokens, lengths)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-3)
    assert (lengths > 1).all() and len(set(map(tuple, tokens.tolist()))) > 1  # real, different samples


@pytest.mark.parametrize("baseline", ["mean", "greedy"])
def test_the_segment_encoder_runs_once_per_step(shipped, sample, baseline):
    model, processor = shipped
    batch = TSNPaliGemmaSCSTCollator(processor)(list(sample["train"].select(range(3))))
    reward = CiderDReward([list(captions) for captions in sample["train"]["captions"]])
    calls = []
    hook = model.model.tsn.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    try:
        model.train()
        settings = SCSTSettings(scst_samples=4, scst_baseline=baseline, max_new_tokens=10)
        scst_loss(model, batch, reward, processor, CaptionTask(PROMPT), settings).backward()
    finally:
        hook.remove()
        model.zero_grad()
    assert calls == [3]  # one call, on the 3 images (not 3 x 4 samples, not once more for the baseline)


def test_a_few_scst_steps_raise_the_mean_sampled_reward_of_a_fixed_batch(sample):
    model = AutoModelForImageTextToText.from_pretrained(EXAMPLE, trust_remote_code=True, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(EXAMPLE, trust_remote_code=True)
    batch = TSNPaliGemmaSCSTCollator(processor)(list(sample["train"].select(range(4))))
    reward = CiderDReward([list(captions) for captions in sample["train"]["captions"]])

    def mean_sampled_reward() -> float:
        torch.manual_seed(123)
        settings = SCSTSettings(scst_samples=16, max_new_tokens=20)
        with torch.no_grad():
            features = model.model.get_image_features(batch["pixel_values"]).pooler_output
            tokens = sample_captions(model, batch, features, settings)
        texts = [
            postprocess_caption(t, PROMPT) for t in processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        ]
        return sum(reward(texts, [refs for refs in batch["references"] for _ in range(16)])) / len(texts)

    before = mean_sampled_reward()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    stats, logged = SCSTStats(), []
    torch.manual_seed(0)
    model.train()
    for _ in range(5):
        scst_loss(
            model, batch, reward, processor, CaptionTask(PROMPT), SCSTSettings(max_new_tokens=20), stats
        ).backward()
        optimizer.step()
        optimizer.zero_grad()
        logged.append(stats.pop())
    after = mean_sampled_reward()
    assert after > 1.5 * before, (before, after)
    assert all(set(entry) == {"scst_reward", "scst_sample_length"} for entry in logged)
    assert all(entry["scst_sample_length"] > 3 for entry in logged)
