"""A model at another input resolution: the SigLIP position embeddings resized on their 2-D grid, as PaliGemma's own
224 -> 448 -> 896 px stages do, every other weight kept; the processor resized to match.

    python -m scripts.resize_model_input examples/rs-mini outputs/rsicd-mini-256 --image_size 256

Small objects need it: at 128 px a 46-pixel box of a 768-pixel image is 8 pixels, half a 16-pixel patch. The
image token count grows with the square of the side (64 -> 256 tokens at 256 px) and the segment encoder's crops
with it (their native size is the side over the finest grid), so a step costs about that much more. Fine-tune after
resizing: the interpolated embeddings are a starting point, not a trained model.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoProcessor

from collators import processor_for_config
from command_line import parse_command_line
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration


@dataclass
class ResizeArguments:
    model_dir: str = field(metadata={"help": "A TSN-PaliGemma folder (model + processor)."})
    output_dir: str = field(metadata={"help": "Where to write the resized model and processor."})
    image_size: int = field(
        default=256, metadata={"help": "New square input side in pixels (a multiple of the patch)."}
    )


def resize_position_embeddings(weight: torch.Tensor, new_grid: int) -> torch.Tensor:
    """(G*G, D) row-major grid of position embeddings -> (new_grid**2, D), bicubic on the grid (corners aligned)."""
    old_grid = int(round(weight.shape[0] ** 0.5))
    if old_grid * old_grid != weight.shape[0]:
        raise ValueError(f"{weight.shape[0]} position embeddings are not a square grid.")
    grid = weight.reshape(old_grid, old_grid, -1).permute(2, 0, 1).unsqueeze(0).float()  # (1, D, G, G)
    resized = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=True)
    return resized.squeeze(0).permute(1, 2, 0).reshape(new_grid * new_grid, -1).to(weight.dtype)


def resize_model_input(model_dir: str | Path, output_dir: str | Path, image_size: int) -> Path:
    """Write the model of `model_dir` at `image_size` px into `output_dir` (weights, config, processor)."""
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    config = model.config
    patch = config.vision_config.patch_size
    if image_size % patch or image_size <= 0:
        raise ValueError(f"--image_size {image_size} must be a positive multiple of the patch size {patch}.")
    state = model.state_dict()
    key = next(name for name in state if name.endswith("embeddings.position_embedding.weight"))
    state[key] = resize_position_embeddings(state[key], image_size // patch)
    config.vision_config.image_size = image_size
    resized = TSNPaliGemmaForConditionalGeneration(config)
    resized.load_state_dict(state)  # every weight; the position_ids buffers are built for the new grid
    resized.generation_config = model.generation_config
    output_dir = Path(output_dir)
    resized.to(model.dtype).save_pretrained(output_dir)
    processor_for_config(
        AutoProcessor.from_pretrained(model_dir, trust_remote_code=True), resized.config
    ).save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(ResizeArguments, argv, positional=("model_dir", "output_dir"))
    folder = resize_model_input(args.model_dir, args.output_dir, args.image_size)
    print(f"{args.model_dir} at {args.image_size} px -> {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
