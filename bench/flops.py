"""FLOPs of one forward pass at real PaliGemma sizes, TSN vs direct, on the meta device (no weights, no download).

    python -m bench.flops [--text_tokens 24]

Counts with torch.utils.flop_counter (matmuls, convolutions, attention). One image, the prompt plus a caption of
`text_tokens` tokens, as in a training step. Prints one JSON object as its last line.
"""

import argparse
import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from configuration_tsn_paligemma import TSNPaliGemmaConfig
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration

SIGLIP_SO400M = {
    "model_type": "siglip_vision_model",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "patch_size": 14,
    "vision_use_head": False,
}
REAL_SIZES = {
    # google/paligemma-3b-pt-224: SigLIP So400m/14 at 224 px + Gemma 2B
    "paligemma-3b-224": {
        "vision_config": {**SIGLIP_SO400M, "image_size": 224},
        "text_config": {
            "model_type": "gemma",
            "hidden_size": 2048,
            "intermediate_size": 16384,
            "num_hidden_layers": 18,
            "num_attention_heads": 8,
            "num_key_value_heads": 1,
            "head_dim": 256,
            "vocab_size": 257216,
        },
        "projection_dim": 2048,
        "hidden_size": 2048,
        "vocab_size": 257216,
    },
    # google/paligemma2-3b-pt-448: SigLIP So400m/14 at 448 px + Gemma 2 2B
    "paligemma2-3b-448": {
        "vision_config": {**SIGLIP_SO400M, "image_size": 448},
        "text_config": {
            "model_type": "gemma2",
            "hidden_size": 2304,
            "intermediate_size": 9216,
            "num_hidden_layers": 26,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "vocab_size": 257216,
            "sliding_window": 4096,
            "query_pre_attn_scalar": 256,
            "final_logit_softcapping": 30.0,
            "attn_logit_softcapping": 50.0,
        },
        "projection_dim": 2304,
        "hidden_size": 2304,
        "vocab_size": 257216,
    },
}


def meta_config(size: dict, integration: str, **tsn_options) -> TSNPaliGemmaConfig:
    config = TSNPaliGemmaConfig(**size, tsn_integration=integration, tsn_pretrained_backbone=False, **tsn_options)
    # Eager attention: counted as its matmuls (Gemma 2 has no SDPA path because of logit soft-capping).
    config.text_config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    return config


def meta_hidden_states(model, config, pixel_values: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
    """The language model's last hidden states (B, L, D) for meta inputs: the pieces of `forward` one by one, since
    meta tensors carry no values (the id-based image mask and the mask builders need them). `model` is the task
    model (not PEFT-wrapped)."""
    batch, seq = text_ids.shape[0], config.image_seq_length + text_ids.shape[1]
    image_tokens = model.model.get_image_features(pixel_values).pooler_output  # (B, image_seq_length, D)
    embeds = model.model.get_input_embeddings()(text_ids)  # (B, T, D)
    inputs_embeds = torch.cat([image_tokens.to(embeds.dtype), embeds], dim=1)  # (B, L, D)
    mask = torch.zeros(batch, 1, seq, seq, device="meta")  # a ready 4-D mask (values irrelevant for counting)
    gemma2 = config.text_config.model_type != "gemma"
    return model.model.language_model(
        inputs_embeds=inputs_embeds,
        attention_mask={"full_attention": mask, "sliding_attention": mask} if gemma2 else mask,
        position_ids=torch.arange(1, seq + 1, device="meta")[None],
        use_cache=False,
    ).last_hidden_state


def forward_flops(size: dict, integration: str, text_tokens: int, **tsn_options) -> int:
    config = meta_config(size, integration, **tsn_options)
    with torch.device("meta"):
        model = TSNPaliGemmaForConditionalGeneration(config).eval()
        image_size = config.vision_config.image_size
        pixel_values = torch.zeros(1, 3, image_size, image_size)
        text_ids = torch.zeros(1, text_tokens, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.lm_head(meta_hidden_states(model, config, pixel_values, text_ids))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text_tokens", type=int, default=24, help="prompt + caption tokens after the image")
    args = parser.parse_args()
    results = {}
    for name, size in REAL_SIZES.items():
        direct = forward_flops(size, "direct", args.text_tokens)
        row = {"direct_gflops": round(direct / 1e9, 2)}
        for integration in ("enhanced", "adapter", "replace"):
            flops = forward_flops(size, integration, args.text_tokens)
            row[f"{integration}_gflops"] = round(flops / 1e9, 2)
            row[f"{integration}_overhead_ratio"] = round(flops / direct, 4)
        row["tsn_overhead_ratio"] = row["enhanced_overhead_ratio"]  # the default integration
        results[name] = row
        print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr)
    print(json.dumps({"benchmark": "flops", "text_tokens": args.text_tokens, "configs": results}))


if __name__ == "__main__":
    main()
