"""Cross entropy with `<loc>` targets spread over neighbouring bins, against the formula computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from finetuning.loc_loss import gaussian_bins, loc_aware_token_losses, loc_token_range
from tasks.loc_codec import NUM_BINS

FIRST_LOC = 3  # a vocabulary of 3 word ids, then the 1024 <loc> ids, then 2 more
VOCAB = FIRST_LOC + NUM_BINS + 2


def peaked_logits(index: int) -> torch.Tensor:
    logits = torch.zeros(VOCAB)
    logits[index] = 8.0
    return logits


def test_a_loc_target_against_the_formula_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(4, VOCAB)
    targets = torch.tensor([FIRST_LOC + 500, 1, -100, FIRST_LOC + 1023])  # a loc, a word, ignored, the last bin
    sigma, smoothing = 3.0, 0.1
    losses = loc_aware_token_losses(logits, targets, FIRST_LOC, sigma, smoothing)

    log_probs = torch.log_softmax(logits.double(), dim=-1)
    for row, centre in ((0, 500), (3, 1023)):
        weights = [math.exp(-((j - centre) ** 2) / (2 * sigma**2)) for j in range(NUM_BINS)]
        total = sum(weights)
        target = [0.0] * VOCAB
        for j, weight in enumerate(weights):
            target[FIRST_LOC + j] = (1 - smoothing) * weight / total
        target = [value + smoothing / VOCAB for value in target]
        by_hand = -sum(q * log_probs[row, v].item() for v, q in enumerate(target))
        assert losses[row].item() == pytest.approx(by_hand, rel=1e-5)
    # A word target keeps torch's label-smoothed cross entropy; an ignored one costs nothing.
    word = F.cross_entropy(logits[1:2], targets[1:2], label_smoothing=smoothing)
    assert losses[1].item() == pytest.approx(word.item(), rel=1e-6)
    assert losses[2].item() == 0.0


def test_a_narrow_spread_is_plain_cross_entropy_and_sigma_zero_is_it_exactly():
    torch.manual_seed(1)
    logits = torch.randn(6, VOCAB)
    targets = torch.tensor([FIRST_LOC, FIRST_LOC + 7, 0, 2, FIRST_LOC + 1000, -100])
    plain = F.cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.1, reduction="none")
    torch.testing.assert_close(loc_aware_token_losses(logits, targets, FIRST_LOC, 0.05, 0.1), plain)
    assert torch.equal(loc_aware_token_losses(logits, targets, FIRST_LOC, 0.0, 0.1), plain)


def test_a_near_miss_costs_less_than_a_far_one_only_with_a_spread():
    target = torch.tensor([FIRST_LOC + 400])
    near = peaked_logits(FIRST_LOC + 402)[None]
    far = peaked_logits(FIRST_LOC + 900)[None]
    spread = [loc_aware_token_losses(x, target, FIRST_LOC, 4.0).item() for x in (near, far)]
    one_hot = [loc_aware_token_losses(x, target, FIRST_LOC, 0.0).item() for x in (near, far)]
    # Two bins off, the peak (8 nats above every other id) sits where the target holds g(2) of its mass, which a
    # miss 500 bins off does not: the near miss is cheaper by 8 g(2), g the Gaussian of 4 bins normalised.
    g = [math.exp(-(j * j) / 32) for j in range(-400, 624)]
    assert spread[1] - spread[0] == pytest.approx(8 * g[402] / sum(g), rel=1e-4)
    assert one_hot[0] == pytest.approx(one_hot[1])  # one-hot: every miss costs the same
    right = loc_aware_token_losses(peaked_logits(FIRST_LOC + 400)[None], target, FIRST_LOC, 4.0).item()
    assert right < spread[0]


def test_the_gradient_reaches_the_neighbouring_bins():
    logits = torch.zeros(1, VOCAB, requires_grad=True)
    loc_aware_token_losses(logits, torch.tensor([FIRST_LOC + 100]), FIRST_LOC, 2.0).sum().backward()
    gradient = logits.grad[0, FIRST_LOC : FIRST_LOC + NUM_BINS]
    # Every bin within 2 sigma is pulled up (negative gradient), the nearest most; bins far away are pushed down.
    assert (gradient[96:105] < 0).all() and gradient[100] < gradient[102] < gradient[104]
    assert (gradient[:90] > 0).all() and (gradient[111:] > 0).all()


def test_the_spread_sums_to_one_and_is_cut_at_the_edges():
    spread = gaussian_bins(torch.tensor([0, 511, 1023]), 5.0)
    torch.testing.assert_close(spread.sum(dim=1), torch.ones(3))
    assert spread[0, 0] > spread[1, 511]  # at an edge the mass of the missing half goes to the bins that exist
    assert spread[2].argmax().item() == 1023


def test_a_tokenizer_without_loc_tokens_names_the_fix():
    class WordsOnly:
        unk_token_id = 0

        def convert_tokens_to_ids(self, token):
            return 0

    with pytest.raises(ValueError, match=r"--loc_sigma needs the tokenizer's <loc0000>..<loc1023> tokens"):
        loc_token_range(WordsOnly())
