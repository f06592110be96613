"""Write a tiny random TSN-PaliGemma (model + processor) for tests and the demo, offline, in seconds.

    python scripts/make_tiny_checkpoint.py OUT_DIR [--integration enhanced] [--text_model gemma] [--backbone resnet18]

The tokenizer is a SentencePiece BPE model trained on caption text (the bundled sample by default) and loaded as a
Gemma tokenizer; the processor adds PaliGemma's `<image>`, `<locXXXX>` and `<segXXX>` tokens. Every linear layer
that 4-bit quantization touches has in_features % 64 == 0 and out_features % 32 == 0 (bitsandbytes' CPU path).
"""

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import sentencepiece
import torch
from transformers import GemmaTokenizer, HfArgumentParser, PaliGemmaProcessor, SiglipImageProcessor

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a file: the model modules live at the repo root
    sys.path.insert(0, str(REPO_ROOT))

from configuration_tsn_paligemma import TSNPaliGemmaConfig  # noqa: E402
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration  # noqa: E402
from processing import processor_for_config  # noqa: E402

DEFAULT_CAPTIONS = REPO_ROOT / "dataset_builder" / "sample" / "captions.csv"
HIDDEN = 64  # text and vision width; a multiple of 64 for bitsandbytes' CPU 4-bit kernels
IMAGE_SIZE, PATCH_SIZE = 64, 16  # 4 x 4 = 16 SigLIP tokens


@dataclass
class TinyCheckpointArguments:
    output_dir: str = field(metadata={"help": "Folder to write the checkpoint into."})
    integration: Literal["enhanced", "adapter", "replace", "direct"] = field(
        default="enhanced", metadata={"help": "How segment features reach the language model."}
    )
    text_model: Literal["gemma", "gemma2"] = field(
        default="gemma", metadata={"help": "gemma (PaliGemma 1) or gemma2 (PaliGemma 2)."}
    )
    backbone: Literal["resnet18", "inception_v3"] = field(default="resnet18", metadata={"help": "TSN CNN backbone."})
    fusion: Literal["gated", "ratio"] = field(default="gated", metadata={"help": "Fusion of `enhanced`."})
    captions_csv: str = field(default=str(DEFAULT_CAPTIONS), metadata={"help": "RISC captions.csv for the tokenizer."})
    vocab_size: int = field(
        default=512, metadata={"help": "SentencePiece vocabulary size (before PaliGemma's tokens)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the random weights."})
    lm_head_std: float = field(
        default=0.3,
        metadata={"help": "Std of the (untied) LM head. QLoRA never trains the head; with the usual 0.02 a random "
                  "64-wide model's logits span about +-1, too flat for any caption to be learned."},
    )  # fmt: skip


def read_captions(captions_csv: str) -> list[str]:
    path = Path(captions_csv)
    if not path.is_file():
        raise FileNotFoundError(
            f"--captions_csv {path} does not exist; pass a RISC captions.csv (caption_1..5 columns)."
        )
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    captions = [row[key].strip() for row in rows for key in row if key.startswith("caption_") and row[key]]
    if not captions:
        raise ValueError(f"{path} has no caption_1..caption_5 values to train a tokenizer on.")
    return captions


def train_tokenizer(captions: list[str], vocab_size: int, output_dir: Path) -> GemmaTokenizer:
    """SentencePiece BPE with Gemma's special-token ids (pad 0, eos 1, bos 2, unk 3), loaded as GemmaTokenizer."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(captions), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, hard_vocab_limit=False, character_coverage=1.0, split_digits=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", minloglevel=2, num_threads=1,
    )  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "tokenizer.model").write_bytes(model.getvalue())
    return GemmaTokenizer.from_pretrained(str(output_dir))


def tiny_config(args: TinyCheckpointArguments, vocab_size: int, image_token_index: int) -> TSNPaliGemmaConfig:
    text_config = {
        "model_type": args.text_model,
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,  # k/v projections: 1 x 32 outputs, a multiple of 32
        "vocab_size": vocab_size,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }
    if args.text_model == "gemma2":
        text_config.update({"sliding_window": 32, "query_pre_attn_scalar": 32})
    vision_config = {
        "model_type": "siglip_vision_model",
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH_SIZE,
        "vision_use_head": False,
    }
    return TSNPaliGemmaConfig(
        text_config=text_config,
        vision_config=vision_config,
        projection_dim=HIDDEN,
        hidden_size=HIDDEN,
        vocab_size=vocab_size,
        image_token_index=image_token_index,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=False,
        tsn_integration=args.integration,
        tsn_backbone=args.backbone,
        tsn_fusion=args.fusion,
        tsn_crop_size=32 if args.backbone == "resnet18" else 75,
        tsn_replace_grid_size=2,  # 5 segments x 2 x 2 = 20 image tokens
        tsn_pretrained_backbone=False,
    )


def build_tiny_model(args: TinyCheckpointArguments):
    """The tiny model (eval mode) and its processor, in memory; the tokenizer is trained into `args.output_dir`."""
    output_dir = Path(args.output_dir)
    tokenizer = train_tokenizer(read_captions(args.captions_csv), args.vocab_size, output_dir)
    image_processor = SiglipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    image_processor.image_seq_length = (IMAGE_SIZE // PATCH_SIZE) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    # Room for the SentencePiece vocabulary plus <image>, 1024 <loc> and 128 <seg> tokens, rounded up.
    vocab_size = -(-len(processor.tokenizer) // 64) * 64
    config = tiny_config(args, vocab_size, processor.image_token_id)
    processor = processor_for_config(processor, config)
    torch.manual_seed(args.seed)
    model = TSNPaliGemmaForConditionalGeneration(config).eval()
    with torch.no_grad():  # untied: the input embeddings keep their scale, only the head's logits grow
        model.lm_head.weight.normal_(0.0, args.lm_head_std)
    model.generation_config.max_new_tokens = 24
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):  # OUT_DIR as the first positional argument
        argv = ["--output_dir", *argv]
    (args,) = HfArgumentParser(TinyCheckpointArguments).parse_args_into_dataclasses(args=argv)
    print(
        f"Tiny TSN-PaliGemma ({args.integration}, {args.text_model}, {args.backbone}) -> {make_tiny_checkpoint(args)}"
    )


if __name__ == "__main__":
    main()
