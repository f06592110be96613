"""A model whose 1,024 `<locNNNN>` token embeddings know their order: each bin's embedding becomes sinusoidal
features of its position (like a transformer's position encoding), every other weight kept.

    python -m scripts.init_loc_embeddings outputs/rsicd-mini-more/merged outputs/rsicd-mini-loc

PaliGemma learns its `<loc>` tokens in pretraining. A model that never saw them (one trained on captions only, as
the rsicd-mini captioner is) starts detection with 1,024 unrelated random vectors, and with tied embeddings the output
layer then has no notion that bin 511 lies between 510 and 512: it must learn every bin from the few boxes that
fall in it. With sin/cos features of the bin index at geometric frequencies (from half a cycle over the side to a
cycle per 4 bins), nearby bins start with nearby embeddings, and a score over bins (the hidden state times these
embeddings) is a smooth, peaked function of position that one hidden state can place anywhere. The features are
turned by a random orthogonal matrix and scaled to the mean norm of the other token embeddings.
"""

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoProcessor

from command_line import parse_command_line
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from tasks.loc_codec import NUM_BINS as BINS

LOWEST_CYCLES, HIGHEST_CYCLES = 0.5, BINS / 4  # per image side


@dataclass
class LocInitArguments:
    model_dir: str = field(metadata={"help": "A TSN-PaliGemma folder (model + processor) with <loc> tokens."})
    output_dir: str = field(metadata={"help": "Where to write the model and its processor."})
    seed: int = field(default=0, metadata={"help": "Seed of the random rotation."})


def sinusoidal_loc_features(bins: int, width: int, seed: int = 0) -> torch.Tensor:
    """(bins, width) embeddings: [sin, cos] of 2*pi*f*position over `width / 2` geometric frequencies f, position
    = bin / (bins - 1), turned by a random orthogonal matrix; every row has norm 1."""
    if width % 2:
        raise ValueError(f"an embedding width of {width} is odd; sin/cos features need an even width.")
    half = width // 2
    ratio = math.log(HIGHEST_CYCLES / LOWEST_CYCLES) / max(half - 1, 1)
    cycles = LOWEST_CYCLES * torch.exp(torch.arange(half, dtype=torch.float64) * ratio)  # (half,)
    position = torch.arange(bins, dtype=torch.float64)[:, None] / (bins - 1)  # (bins, 1)
    angle = 2 * math.pi * position * cycles  # (bins, half)
    features = torch.cat([angle.sin(), angle.cos()], dim=1) / math.sqrt(half)  # (bins, width), norm 1
    generator = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(width, width, generator=generator, dtype=torch.float64))
    return (features @ rotation).float()


def init_loc_embeddings(model_dir: str | Path, output_dir: str | Path, seed: int = 0) -> Path:
    """Write the model of `model_dir` with sinusoidal `<loc>` embeddings into `output_dir` (weights, processor)."""
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
    ids = processor.tokenizer.convert_tokens_to_ids([f"<loc{index:04d}>" for index in range(BINS)])
    unknown = processor.tokenizer.unk_token_id
    if any(token is None or token == unknown for token in ids):
        raise ValueError(f"{model_dir}: the tokenizer has no <loc0000>..<loc{BINS - 1:04d}> tokens to initialise.")
    embeddings = model.get_input_embeddings().weight  # tied with the output layer when the config says so
    others = torch.ones(embeddings.shape[0], dtype=torch.bool)
    others[ids] = False
    scale = embeddings.detach()[others].norm(dim=1).mean()
    with torch.no_grad():
        embeddings[ids] = sinusoidal_loc_features(BINS, embeddings.shape[1], seed) * scale
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(LocInitArguments, argv, positional=("model_dir", "output_dir"))
    folder = init_loc_embeddings(args.model_dir, args.output_dir, args.seed)
    print(f"{args.model_dir} with sinusoidal <loc> embeddings -> {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
