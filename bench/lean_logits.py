"""FLOPs of one QLoRA-style training step with the LM head on every position (full) vs only where the loss reads
(lean), at the real PaliGemma-3B-224 and PaliGemma2-3B-448 sizes, on the meta device (no weights, no download).

    python -m bench.lean_logits [--batch_size 4] [--caption_tokens 20]

One step is forward + backward of `enhanced` TSN-PaliGemma with LoRA r=32 on the language model (base frozen, the
segment encoder trained, as `qlora.apply_lora` sets it) and non-reentrant gradient checkpointing of the decoder
layers, batch 4, `<image>` + bos + 4 prompt tokens + newline + a caption of 20 tokens + eos. The 4-bit NF4 base does
the same matmuls as this dense one. Counted with torch.utils.flop_counter (matmuls, convolutions, attention).
The lean step runs the head on the batch's caption positions only (what `logits_to_keep` as a boolean mask does in
training). Prints one JSON object as its last line: `lean_train_flops_ratio` per config.
"""

import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.flops import REAL_SIZES, meta_config, meta_hidden_states
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from qlora import apply_lora

PREFIX_TEXT_TOKENS = 6  # bos + 4 prompt tokens + "\n"


def meta_training_model(size: dict):
    """The enhanced model at `size` on the meta device, LoRA-wrapped, decoder layers checkpointed, in train mode."""
    config = meta_config(size, "enhanced")
    with torch.device("meta"):
        model = TSNPaliGemmaForConditionalGeneration(config)
    model = apply_lora(model, r=32, alpha=64, dropout=0.0, quantized=False, gradient_checkpointing=True)
    return model.train(), config


def step_flops(model, config, batch_size: int, caption_tokens: int, lean: bool) -> int:
    """forward + backward FLOPs of one step (the forward's pieces one by one: see `bench.flops.meta_hidden_states`)."""
    inner = model.get_base_model()
    image_size = config.vision_config.image_size
    seq = config.image_seq_length + PREFIX_TEXT_TOKENS + caption_tokens + 1
    first_target = config.image_seq_length + PREFIX_TEXT_TOKENS  # the first caption token
    with torch.device("meta"):
        pixel_values = torch.zeros(batch_size, 3, image_size, image_size)
        text_ids = torch.zeros(batch_size, seq - config.image_seq_length, dtype=torch.long)
        targets = torch.zeros(batch_size, caption_tokens + 1, dtype=torch.long)  # caption + eos
    counter = FlopCounterMode(display=False)
    with counter:
        hidden = meta_hidden_states(inner, config, pixel_values, text_ids)  # (B, L, D)
        # Positions first_target - 1 .. seq - 2 predict the caption and eos.
        logits = inner.lm_head(hidden[:, first_target - 1 : seq - 1] if lean else hidden)
        read = logits if lean else logits[:, first_target - 1 : seq - 1]  # the full path computes all, reads these
        loss = F.cross_entropy(read.reshape(-1, read.shape[-1]).float(), targets.reshape(-1))
        loss.backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--caption_tokens", type=int, default=20)
    args = parser.parse_args()
    results = {}
    for name, size in REAL_SIZES.items():
        model, config = meta_training_model(size)
        full = step_flops(model, config, args.batch_size, args.caption_tokens, lean=False)
        lean = step_flops(model, config, args.batch_size, args.caption_tokens, lean=True)
        results[name] = {
            "full_train_tflops": round(full / 1e12, 3),
            "lean_train_tflops": round(lean / 1e12, 3),
            "lean_train_flops_ratio": round(lean / full, 4),
        }
        print(f"{name}: {results[name]}", file=sys.stderr)
        del model
    print(
        json.dumps(
            {
                "benchmark": "lean_logits",
                "batch_size": args.batch_size,
                "caption_tokens": args.caption_tokens,
                "configs": results,
            }
        )
    )


if __name__ == "__main__":
    main()
