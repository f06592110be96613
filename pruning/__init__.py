"""Block-influence layer pruning of TSN-PaliGemma (ShortGPT, arXiv 2403.03853): score, remove, report."""

from .influence import block_influence, decoder_layers
from .remove import choose_layers, remove_layers

__all__ = ["block_influence", "choose_layers", "decoder_layers", "remove_layers"]
