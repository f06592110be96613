"""Cross entropy that knows neighbouring `<loc>` bins are close.

With one-hot targets a box coordinate one bin off costs as much as one across the image, so a sequence detector
trained from scratch gets no signal that it is getting warmer: the cheapest loss is the marginal distribution of
coordinates, a box in the same place on every image. Spreading a `<loc>` target over its neighbours as a Gaussian
of `sigma` bins (the label distribution of distribution focal loss, Li et al. 2020, and of soft-label ordinal
regression) makes a near miss cheaper than a far one. Other tokens keep their label-smoothed one-hot targets.

For a `<loc>` target b the target distribution is

    q = (1 - smoothing) * g_b + smoothing / V,    g_b(j) proportional to exp(-(j - b)^2 / (2 sigma^2)) over the bins,

the same smoothing torch's `cross_entropy(label_smoothing=...)` applies, so sigma -> 0 gives exactly its loss.
"""

import torch
import torch.nn.functional as F

from tasks.loc_codec import NUM_BINS


def loc_token_range(tokenizer) -> int:
    """The id of `<loc0000>`, checked to start NUM_BINS consecutive ids `<loc0000>`..`<loc1023>`."""
    first = tokenizer.convert_tokens_to_ids("<loc0000>")
    last = tokenizer.convert_tokens_to_ids(f"<loc{NUM_BINS - 1:04d}>")
    unknown = tokenizer.unk_token_id
    if first is None or first == unknown or last != first + NUM_BINS - 1:
        raise ValueError(
            f"--loc_sigma needs the tokenizer's <loc0000>..<loc{NUM_BINS - 1:04d}> tokens as {NUM_BINS} consecutive "
            f"ids (found {first}..{last}): use a PaliGemma processor, or --loc_sigma 0."
        )
    return first


def gaussian_bins(centres: torch.Tensor, sigma: float) -> torch.Tensor:
    """(M, NUM_BINS): for each centre bin, a Gaussian of `sigma` bins over all bins, summing to 1."""
    bins = torch.arange(NUM_BINS, device=centres.device, dtype=torch.float32)
    weights = torch.exp(-0.5 * ((bins[None, :] - centres[:, None].float()) / sigma) ** 2)
    return weights / weights.sum(dim=1, keepdim=True)


def loc_aware_token_losses(
    logits: torch.Tensor, targets: torch.Tensor, first_loc: int, sigma: float, label_smoothing: float = 0.0
) -> torch.Tensor:
    """(M,) per-token losses of `logits` (M, V) against `targets` (M,) (-100 = ignored, loss 0): torch's
    label-smoothed cross entropy, but a `<loc>` target's mass spread as a Gaussian of `sigma` bins."""
    losses = F.cross_entropy(
        logits.float(), targets, ignore_index=-100, label_smoothing=label_smoothing, reduction="none"
    )
    is_loc = (targets >= first_loc) & (targets < first_loc + NUM_BINS)
    if sigma <= 0 or not bool(is_loc.any()):
        return losses
    log_probs = F.log_softmax(logits[is_loc].float(), dim=-1)  # (K, V)
    spread = gaussian_bins(targets[is_loc] - first_loc, sigma)  # (K, NUM_BINS)
    spread_loss = -(spread * log_probs[:, first_loc : first_loc + NUM_BINS]).sum(dim=-1)
    uniform_loss = -log_probs.mean(dim=-1)
    return losses.masked_scatter(is_loc, (1 - label_smoothing) * spread_loss + label_smoothing * uniform_loss)
