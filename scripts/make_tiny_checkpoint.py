"""Write a random TSN-PaliGemma (model + processor) built from scratch, offline, in seconds.

    python -m scripts.make_tiny_checkpoint OUT_DIR [--integration enhanced] [--text_model gemma] [--backbone resnet18]
    python -m scripts.make_tiny_checkpoint outputs/rsicd-mini-base --preset rsicd-mini \
        --captions_csv data/rsicd/captions.csv --captions_split train

Presets: `tiny` (64 wide, 2 layers, 64 px: tests and fast checks), `rsicd-mini` (256 wide, 4 layers each, 128 px,
2k-piece tokenizer: the base that `configs/rsicd_mini.yaml` trains from scratch into a real captioner) and
`rsicd-mini-wide` (384 wide, MLP 1792: with `--integration direct` as many parameters as `rsicd-mini` with its
ResNet18, 19.2 M against 19.4 M, for the ablation at equal size).

The tokenizer is a SentencePiece BPE model trained on caption text (the bundled sample by default) and loaded as a
Gemma tokenizer; the processor adds PaliGemma's `<image>`, `<locXXXX>` and `<segXXX>` tokens. Every linear layer
that 4-bit quantization touches has in_features % 64 == 0 and out_features % 32 == 0 (bitsandbytes' CPU path).
"""

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import sentencepiece
import torch
from transformers import GemmaTokenizer, PaliGemmaProcessor, SiglipImageProcessor

from collators import processor_for_config
from command_line import parse_command_line
from configuration_tsn_paligemma import TSNPaliGemmaConfig
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_CAPTIONS = REPO_ROOT / "dataset_builder" / "sample" / "captions.csv"


@dataclass(frozen=True)
class ModelPreset:
    """Sizes of a from-scratch model. Widths are multiples of 64 and every quantized linear layer has
    out_features % 32 == 0: bitsandbytes' CPU 4-bit kernels need both."""

    hidden: int  # text and vision width
    intermediate: int  # MLP width of both towers
    layers: int  # text and vision depth
    heads: int
    head_dim: int  # one key/value head of this size (multi-query attention, as in PaliGemma)
    image_size: int
    patch_size: int
    vocab_size: int  # SentencePiece pieces, before PaliGemma's <image>/<loc>/<seg> tokens
    tie_word_embeddings: bool
    lm_head_std: float | None  # untied head drawn with this std (None: the config's initializer_range)


PRESETS = {
    # QLoRA never trains the head; with the usual 0.02 a random 64-wide model's logits span about +-1, too flat for
    # any caption to be learned, hence the untied head with std 0.3.
    "tiny": ModelPreset(64, 128, 2, 2, 32, 64, 16, 512, tie_word_embeddings=False, lm_head_std=0.3),
    # Trains from scratch (every weight) on 2 CPU cores in hours: 8 x 8 = 64 SigLIP tokens at 128 px.
    "rsicd-mini": ModelPreset(256, 1024, 4, 4, 64, 128, 16, 2000, tie_word_embeddings=True, lm_head_std=None),
    # `direct` at the parameter count of `rsicd-mini` + ResNet18 (19.4 M): the ablation at equal size. The 11.3 M
    # the segment encoder adds go into wider towers (384 wide, MLP 1792) instead.
    "rsicd-mini-wide": ModelPreset(384, 1792, 4, 6, 64, 128, 16, 2000, tie_word_embeddings=True, lm_head_std=None),
}


@dataclass
class TinyCheckpointArguments:
    output_dir: str = field(metadata={"help": "Folder to write the checkpoint into."})
    preset: Literal["tiny", "rsicd-mini", "rsicd-mini-wide"] = field(
        default="tiny", metadata={"help": "Model size (see PRESETS)."}
    )
    integration: Literal["enhanced", "adapter", "replace", "direct"] = field(
        default="enhanced", metadata={"help": "How segment features reach the language model."}
    )
    text_model: Literal["gemma", "gemma2"] = field(
        default="gemma", metadata={"help": "gemma (PaliGemma 1) or gemma2 (PaliGemma 2)."}
    )
    backbone: Literal["resnet18", "inception_v3"] = field(default="resnet18", metadata={"help": "TSN CNN backbone."})
    fusion: Literal["gated", "ratio"] = field(default="gated", metadata={"help": "Fusion of `enhanced`."})
    captions_csv: str = field(default=str(DEFAULT_CAPTIONS), metadata={"help": "RISC captions.csv for the tokenizer."})
    captions_split: str | None = field(
        default=None, metadata={"help": "Train the tokenizer on this split's rows only (e.g. train); None: all rows."}
    )
    vocab_size: int | None = field(
        default=None, metadata={"help": "SentencePiece vocabulary size (before PaliGemma's tokens); None: preset's."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the random weights."})


def read_captions(captions_csv: str, split: str | None = None) -> list[str]:
    path = Path(captions_csv)
    if not path.is_file():
        raise FileNotFoundError(
            f"--captions_csv {path} does not exist; pass a RISC captions.csv (caption_1..5 columns)."
        )
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if split is not None:
        rows = [row for row in rows if row.get("split") == split]
        if not rows:
            raise ValueError(f"{path} has no rows with split={split!r}. Fix: use train, val or test, or drop it.")
    captions = [row[key].strip() for row in rows for key in row if key.startswith("caption_") and row[key]]
    if not captions:
        raise ValueError(f"{path} has no caption_1..caption_5 values to train a tokenizer on.")
    return captions


def train_tokenizer(captions: list[str], vocab_size: int, output_dir: Path) -> GemmaTokenizer:
    """SentencePiece BPE with Gemma's special-token ids (pad 0, eos 1, bos 2, unk 3), loaded as GemmaTokenizer."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(captions),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        hard_vocab_limit=False,
        character_coverage=1.0,
        split_digits=True,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        minloglevel=2,
        num_threads=1,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "tokenizer.model").write_bytes(model.getvalue())
    return GemmaTokenizer.from_pretrained(str(output_dir))


def tiny_config(args: TinyCheckpointArguments, vocab_size: int, image_token_index: int) -> TSNPaliGemmaConfig:
    preset = PRESETS[args.preset]
    hidden = preset.hidden
    text_config = {
        "model_type": args.text_model,
        "hidden_size": hidden,
        "intermediate_size": preset.intermediate,
        "num_hidden_layers": preset.layers,
        "num_attention_heads": preset.heads,
        "num_key_value_heads": 1,
        "head_dim": preset.head_dim,  # k/v projections: 1 x head_dim outputs, a multiple of 32
        "vocab_size": vocab_size,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }
    if args.text_model == "gemma2":
        text_config.update({"sliding_window": 32, "query_pre_attn_scalar": preset.head_dim})
    vision_config = {
        "model_type": "siglip_vision_model",
        "hidden_size": hidden,
        "intermediate_size": text_config["intermediate_size"],
        "num_hidden_layers": preset.layers,
        "num_attention_heads": preset.heads,
        "image_size": preset.image_size,
        "patch_size": preset.patch_size,
        "vision_use_head": False,
    }
    return TSNPaliGemmaConfig(
        text_config=text_config,
        vision_config=vision_config,
        projection_dim=hidden,
        hidden_size=hidden,
        vocab_size=vocab_size,
        image_token_index=image_token_index,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=preset.tie_word_embeddings,
        tsn_integration=args.integration,
        tsn_backbone=args.backbone,
        tsn_fusion=args.fusion,
        # tiny: 32-px crops (ResNet18's minimum) keep tests fast; larger presets use the native crop size.
        tsn_crop_size=(32 if args.backbone == "resnet18" else 75) if args.preset == "tiny" else None,
        tsn_replace_grid_size=2,  # 5 segments x 2 x 2 = 20 image tokens
        tsn_pretrained_backbone=False,
    )


def build_tiny_model(args: TinyCheckpointArguments):
    """The tiny model (eval mode) and its processor, in memory; the tokenizer is trained into `args.output_dir`."""
    output_dir = Path(args.output_dir)
    preset = PRESETS[args.preset]
    captions = read_captions(args.captions_csv, args.captions_split)
    tokenizer = train_tokenizer(captions, args.vocab_size or preset.vocab_size, output_dir)
    size = preset.image_size
    image_processor = SiglipImageProcessor(
        size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    image_processor.image_seq_length = (size // preset.patch_size) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    # Room for the SentencePiece vocabulary plus <image>, 1024 <loc> and 128 <seg> tokens, rounded up.
    vocab_size = -(-len(processor.tokenizer) // 64) * 64
    config = tiny_config(args, vocab_size, processor.image_token_id)
    processor = processor_for_config(processor, config)
    torch.manual_seed(args.seed)
    model = TSNPaliGemmaForConditionalGeneration(config).eval()
    if preset.lm_head_std is not None:
        with torch.no_grad():  # untied: the input embeddings keep their scale, only the head's logits grow
            model.lm_head.weight.normal_(0.0, preset.lm_head_std)
    model.generation_config.max_new_tokens = 24 if args.preset == "tiny" else 40
    return model, processor


def make_tiny_checkpoint(args: TinyCheckpointArguments) -> Path:
    """Build the tiny model and save it (weights, config with auto_map, code files, processor) to `output_dir`."""
    output_dir = Path(args.output_dir)
    model, processor = build_tiny_model(args)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    (output_dir / "tokenizer.model").unlink(missing_ok=True)  # tokenizer.json holds the same vocabulary
    return output_dir


def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(TinyCheckpointArguments, argv, positional=("output_dir",))
    folder = make_tiny_checkpoint(args)
    print(f"Random TSN-PaliGemma ({args.preset}: {args.integration}, {args.text_model}, {args.backbone}) -> {folder}")


if __name__ == "__main__":
    main()
