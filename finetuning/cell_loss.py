"""An auxiliary loss that teaches the image path to see objects: one target per image token, not four per box.

A sequence detector learns where objects are only through the few `<loc>` tokens of each box, and an image encoder
trained from nothing on captions gets little from them: its tokens say weakly which cells hold an object. Here a
linear head on each image token that the language model reads (after the segment encoder and position features)
predicts the share of the token's cell covered by the row's objects (`Task.cell_targets`, e.g. detection's boxes),
by binary cross entropy against that share. Rows whose task has no cell targets (-1) are ignored. The head exists
only while training: it is attached to the model as `cell_head`, so checkpoints keep it and a resumed run
continues it, and it is removed before the model is saved for use.
"""

import torch
import torch.nn.functional as F
from torch import nn

CELL_HEAD = "cell_head"


def cell_grid(config) -> int:
    """The side of the SigLIP token grid of a TSN-PaliGemma config (what finetune.py trains, plain bases too)."""
    if getattr(config, "tsn_integration", None) == "replace":
        raise ValueError(
            "cell_loss_weight needs the SigLIP token grid, which tsn_integration='replace' does not have (its tokens "
            "come from the segment crops). Fix: --cell_loss_weight 0, or another integration."
        )
    return round(config.num_siglip_tokens**0.5)


def attach_cell_head(model: nn.Module, hidden_size: int) -> nn.Module:
    """A linear head (on layer-normalised tokens: PaliGemma scales its image tokens down) on `model`, on the device
    of its parameters and in float32 (`cell_loss` feeds it float32 tokens)."""
    reference = next(model.parameters())
    head = nn.Sequential(nn.LayerNorm(hidden_size, elementwise_affine=False), nn.Linear(hidden_size, 1))
    model.add_module(CELL_HEAD, head.to(device=reference.device, dtype=torch.float32))
    return head


def detach_cell_head(model: nn.Module) -> None:
    """Remove the training-only head before the model is saved for use."""
    if hasattr(model, CELL_HEAD):
        delattr(model, CELL_HEAD)


def cell_loss(head: nn.Module, image_tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross entropy of `head`'s logits on the first N = targets.shape[1] image tokens (B, >= N, D)
    against `targets` (B, N) in [0, 1]; rows of -1 are ignored (0 when every row is)."""
    targets = targets.to(image_tokens.device)
    scored = targets[:, 0] >= 0
    if not bool(scored.any()):
        return image_tokens.sum() * 0.0  # keeps the graph: every process runs the same backward
    tokens = image_tokens[scored, : targets.shape[1]].float()
    logits = head(tokens).squeeze(-1)  # (B', N)
    return F.binary_cross_entropy_with_logits(logits, targets[scored].float())
