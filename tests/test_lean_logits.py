"""The LM head only where the loss reads: loss and gradients equal the full-logits computation, for every
integration, with and without label smoothing; the Trainer's loss takes this path."""

from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor

from collators import TSNPaliGemmaTrainCollator
from dataset_builder import load_risc
from finetuning.arguments import parse_finetune_args
from finetuning.trainer import build_trainer, caption_positions, causal_lm_loss
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from tasks.caption import CaptionTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(REPO_ROOT / "dataset_builder" / "sample")


@pytest.fixture(scope="module")
def rows():
    return list(load_risc(SAMPLE)["train"].select(range(3)))


def loss_and_gradients(model, batch, smoothing: float, lean: bool):
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    if lean:
        inputs["logits_to_keep"] = caption_positions(batch["labels"])
    model.zero_grad()
    outputs = model(**inputs)
    loss = causal_lm_loss(outputs, batch["labels"], label_smoothing=smoothing)
    loss.backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), gradients, outputs.logits.shape


@pytest.mark.parametrize("integration", ["enhanced", "adapter", "replace", "direct"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_lean_loss_and_gradients_equal_the_full_computation(tiny_checkpoint, rows, integration, smoothing):
    folder = tiny_checkpoint(integration)
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).train()
    if integration == "enhanced":
        with torch.no_grad():
            model.model.tsn.gate.fill_(0.5)  # an open gate: the encoder's gradients are not all zero
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    batch = TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="random"))(rows)
    lengths = (batch["labels"] != -100).sum(dim=1)
    assert len(set(lengths.tolist())) > 1, "captions of different lengths: the padding must be skipped too"
    full_loss, full_gradients, full_shape = loss_and_gradients(model, batch, smoothing, lean=False)
    lean_loss, lean_gradients, lean_shape = loss_and_gradients(model, batch, smoothing, lean=True)
    count = int((batch["labels"][:, 1:] != -100).sum())
    assert full_shape[:2] == batch["input_ids"].shape and lean_shape == (count, full_shape[-1])
    assert (lean_loss - full_loss).abs().item() <= 1e-6
    assert full_gradients.keys() == lean_gradients.keys() and len(full_gradients) > 10
    worst = max((full_gradients[name] - lean_gradients[name]).abs().max().item() for name in full_gradients)
    assert worst <= 1e-6


def test_the_trainer_loss_runs_the_head_on_caption_positions_only(tiny_checkpoint, rows, tmp_path):
    folder = tiny_checkpoint()
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    demo = str(REPO_ROOT / "configs" / "demo.yaml")
    args = parse_finetune_args(
        [
            demo,
            "--model_name_or_path",
            str(folder),
            "--dataset_dir",
            SAMPLE,
            "--output_dir",
            str(tmp_path),
            "--use_cpu",
            "true",
            "--eval_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
        ]
    )
    trainer = build_trainer(args, model, processor, {"train": None, "val": None})
    batch = TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="first"))(rows)
    head_inputs = []
    hook = model.lm_head.register_forward_hook(lambda module, inputs, output: head_inputs.append(inputs[0].shape))
    try:
        with torch.no_grad():
            loss = trainer.compute_loss(model, dict(batch))
    finally:
        hook.remove()
    count = int((batch["labels"][:, 1:] != -100).sum())
    assert head_inputs == [torch.Size([count, model.config.text_config.hidden_size])]
    with torch.no_grad():
        full = causal_lm_loss(model(**{k: v for k, v in batch.items() if k != "labels"}), batch["labels"], None, 0.1)
    assert abs(loss.item() - full.item()) <= 1e-6


def test_boolean_logits_to_keep_refuses_labels(tiny_checkpoint, rows):
    folder = tiny_checkpoint()
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    batch = TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="first"))(rows)
    with pytest.raises(ValueError, match="no labels"):
        model(**batch, logits_to_keep=caption_positions(batch["labels"]))
