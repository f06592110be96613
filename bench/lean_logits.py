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

from bench.flops import REAL_SIZES
from configuration_tsn_paligemma import TSNPaliGemmaConfig
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from qlora import apply_lora

PREFIX_TEXT_TOKENS = 6  # bos + 4 prompt tokens + "\n"


def meta_training_model(size: dict):
    """The enhanced model at `size` on the meta device, LoRA-wrapped, decoder layers checkpointed, in train mode."""
    config = TSNPaliGemmaConfig(**size, tsn_integration="enhanced", tsn_pretrained_backbone=False)
    # Eager attention: counted as its matmuls (Gemma 2 has no SDPA path because of logit soft-capping).
    config.text_config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    with torch.device("meta"):
        model = TSNPaliGemmaForConditionalGeneration(config)
    model = apply_lora(model, r=32, alpha=64, dropout=0.0, quantized=False, gradient_checkpointing=True)
    return model.train(), config


def step_flops(model, config, batch_size: int, caption_tokens: int, lean: bool) -> int:
    """forward + backward FLOPs of one step. The pieces of `forward` are called one by one: meta tensors carry no
    values, and the mask builders and the boolean selection need them."""
    inner = model.get_base_model()
    image_size = config.vision_config.image_size
    seq = config.image_seq_length + PREFIX_TEXT_TOKENS + caption_tokens + 1
    first_target = config.image_seq_length + PREFIX_TEXT_TOKENS  # the first caption token
    with torch.device("meta"):
        pixel_values = torch.zeros(batch_size, 3, image_size, image_size)
        text_ids = torch.zeros(batch_size, seq - config.image_seq_length, dtype=torch.long)
        targets = torch.zeros(batch_size, caption_tokens + 1, dtype=torch.long)  # caption + eos
        mask = torch.zeros(batch_size, 1, seq, seq)
    counter = FlopCounterMode(display=False)
    with counter:
        image_tokens = inner.model.get_image_features(pixel_values).pooler_output  # (B, N, D)
        embeds = inner.model.get_input_embeddings()(text_ids)
        inputs_embeds = torch.cat([image_tokens.to(embeds.dtype), embeds], dim=1)  # (B, L, D)
        hidden = inner.model.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=mask
            if config.text_config.model_type == "gemma"
            else {"full_attention": mask, "sliding_attention": mask},
            position_ids=torch.arange(1, seq + 1, device="meta")[None],
            use_cache=False,
        ).last_hidden_state
        # Positions first_target - 1 .. seq - 2 predict the caption and eos.
        read = hidden[:, first_target - 1 : seq - 1] if lean else hidden
        logits = inner.lm_head(read)
        if lean:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        else:
            shifted = logits[:, first_target - 1 : seq - 1].reshape(-1, logits.shape[-1]).float()
            loss = F.cross_entropy(shifted, targets.reshape(-1))  # the full path computes all, reads these
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
