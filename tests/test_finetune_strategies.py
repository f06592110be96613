"""Training strategies (qlora, lora, full, freeze): after a few optimizer steps exactly the expected parameters have
changed and nothing else has; `full` runs end to end without an adapter."""

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor

import finetune
from collators import TSNPaliGemmaTrainCollator
from finetuning.arguments import parse_finetune_args, resolve_quantization, resolve_strategy
from finetuning.model_setup import load_training_model
from tasks.caption import CaptionTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = str(REPO_ROOT / "configs" / "demo.yaml")
SAMPLE = str(REPO_ROOT / "dataset_builder" / "sample")
SECRET = "hf_SECRETtokenThatMustNotBeWritten"
PEFT_TRAINED = re.compile(r"lora_[AB]\.|\.tsn\.modules_to_save\.default\.")


def training_model(folder, *overrides):
    """The model finetune.py would train with these overrides (BN frozen: its statistics are buffers that would
    change in training and blur the comparison); output_dir is a fresh folder, never the checkout's outputs/demo."""
    output_dir = Path(folder).parent / "unused-output"
    argv = [DEMO, "--model_name_or_path", str(folder), "--dataset_dir", SAMPLE, "--use_cpu", "true"]
    argv += ["--output_dir", str(output_dir), *overrides]
    args = parse_finetune_args(argv)
    quantization = resolve_quantization(args.model.quantization, False, args.model.train_strategy)
    strategy = resolve_strategy(args.model.train_strategy, quantization)
    options = {**args.tsn.overrides(), "tsn_batchnorm": "frozen"}
    return load_training_model(args.model, options, args.training, quantization, strategy), strategy


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def changed_after_steps(model, batch, steps: int = 3) -> set[str]:
    """Names of state_dict entries (parameters and buffers) that a few AdamW steps changed."""
    before = snapshot(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = snapshot(model)
    return {name for name, tensor in after.items() if not torch.equal(before[name], tensor)}


@pytest.fixture(scope="module")
def batch_for(tiny_checkpoint):
    from dataset_builder import load_risc

    rows = list(load_risc(SAMPLE)["train"].select(range(2)))
    processor = AutoProcessor.from_pretrained(tiny_checkpoint(), trust_remote_code=True)
    return TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="first"))(rows)


def trainable_names(model) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


@pytest.mark.parametrize("strategy, quantization", [("qlora", "4bit"), ("lora", "none")])
def test_lora_strategies_change_only_lora_and_the_segment_encoder(tiny_checkpoint, batch_for, strategy, quantization):
    torch.manual_seed(0)
    model, resolved = training_model(tiny_checkpoint(), "--train_strategy", strategy, "--quantization", quantization)
    assert resolved == strategy
    expected = {name for name, _ in model.named_parameters() if PEFT_TRAINED.search(name)}
    assert expected and trainable_names(model) == expected
    assert changed_after_steps(model, batch_for) == expected
    linear4bit = model.get_base_model().model.language_model.layers[0].self_attn.q_proj.base_layer
    assert (linear4bit.weight.dtype == torch.uint8) == (strategy == "qlora")  # packed NF4 only for qlora


def test_full_changes_every_parameter(tiny_checkpoint, batch_for):
    torch.manual_seed(0)
    model, _ = training_model(tiny_checkpoint(), "--train_strategy", "full", "--quantization", "none")
    everything = {name for name, _ in model.named_parameters()}
    assert trainable_names(model) == everything
    assert changed_after_steps(model, batch_for) == everything  # no buffer moves (BN frozen), every weight does


@pytest.mark.parametrize(
    "regex, expected",
    [
        ("self_attn", re.compile(r"self_attn")),  # attention only: the segment encoder excluded by the regex
        (None, re.compile(r"self_attn|^model\.tsn\.")),  # the default: attention layers + the segment encoder
    ],
)
def test_freeze_changes_only_the_matching_parameters(tiny_checkpoint, batch_for, regex, expected):
    torch.manual_seed(0)
    extra = ["--trainable_modules", regex] if regex else []
    model, _ = training_model(tiny_checkpoint(), "--train_strategy", "freeze", "--quantization", "none", *extra)
    with torch.no_grad():
        model.model.tsn.gate.fill_(0.5)  # open the gate so the encoder gets gradients from the first step
    names = {name for name, _ in model.named_parameters() if expected.search(name)}
    assert any(".vision_tower." in name for name in names) and any(".language_model." in name for name in names)
    assert trainable_names(model) == names
    assert changed_after_steps(model, batch_for) == names


def test_freeze_regex_that_matches_nothing_is_an_error(tiny_checkpoint):
    with pytest.raises(ValueError, match="trainable_modules='no_such_layer' matches no parameter"):
        training_model(
            tiny_checkpoint(),
            "--train_strategy",
            "freeze",
            "--quantization",
            "none",
            "--trainable_modules",
            "no_such_layer",
        )


def test_full_run_publishes_the_trained_model_without_an_adapter(tiny_checkpoint, tmp_path, capfd, caplog):
    output_dir = tmp_path / "full"
    argv = [
        DEMO,
        "--model_name_or_path",
        str(tiny_checkpoint()),
        "--dataset_dir",
        SAMPLE,
        "--train_strategy",
        "full",
        "--quantization",
        "none",
        "--output_dir",
        str(output_dir),
        "--max_steps",
        "2",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--hub_token",
        SECRET,
        "--load_best_model_at_end",
        "false",
        "--evaluate_before_training",
        "false",
        "--max_test_samples",
        "2",
        "--do_eval",
        "false",
        "--num_beams",
        "1",
        "--grid_images",
        "2",
    ]
    assert finetune.main(argv) == 0
    # No secret in any output file (checkpoints' training_args.bin included) or in what was printed/logged.
    written = [path for path in output_dir.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in written)
    assert not [path for path in written if SECRET.encode() in path.read_bytes()]
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text
    assert not (output_dir / "adapter").exists() and (output_dir / "merged" / "model.safetensors").is_file()
    summary = json.loads((output_dir / "training_summary.json").read_text())
    assert summary["train_strategy"] == "full" and summary["trainable_parameters"] == summary["total_parameters"]
    config_text = (output_dir / "finetune_config.yaml").read_text()
    assert config_text.startswith(f"# train_strategy full: {summary['trainable_parameters']:,} of ")
    assert "train_strategy: full" in config_text
    again = parse_finetune_args([str(output_dir / "finetune_config.yaml")])  # the comment line is harmless
    assert again.model.train_strategy == "full"


def changed_after_scst_steps(model, processor, rows, steps: int = 3) -> set[str]:
    """changed_after_steps with the SCST loss; the reward is the caption's length, so that a random model's samples
    get different rewards (the parameter sets are under test here, not CIDEr)."""
    from collators import TSNPaliGemmaSCSTCollator
    from finetuning.scst import SCSTSettings, scst_loss

    batch = TSNPaliGemmaSCSTCollator(processor)(rows)
    settings = SCSTSettings(scst_samples=3, max_new_tokens=6)
    before = snapshot(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        reward = lambda texts, refs: [float(len(text)) for text in texts]  # noqa: E731
        scst_loss(model, batch, reward, processor, CaptionTask("caption en"), settings).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = snapshot(model)
    return {name for name, tensor in after.items() if not torch.equal(before[name], tensor)}


@pytest.mark.parametrize(
    "overrides",
    [
        ("--train_strategy", "qlora", "--quantization", "4bit"),
        ("--train_strategy", "lora", "--quantization", "none"),
        ("--train_strategy", "full", "--quantization", "none"),
        ("--train_strategy", "freeze", "--quantization", "none"),
    ],
    ids=["qlora", "lora", "full", "freeze"],
)
def test_scst_trains_the_parameters_cross_entropy_trains(tiny_checkpoint, batch_for, overrides):
    from dataset_builder import load_risc

    rows = list(load_risc(SAMPLE)["train"].select(range(2)))
    processor = AutoProcessor.from_pretrained(tiny_checkpoint(), trust_remote_code=True)
    changed = {}
    for objective in ("xent", "scst"):
        torch.manual_seed(0)
        model, _ = training_model(tiny_checkpoint(), *overrides, "--train_objective", objective)
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        with torch.no_grad():
            inner.model.tsn.gate.fill_(0.5)  # an open gate: the encoder gets gradients from the first step
        if objective == "xent":
            changed[objective] = changed_after_steps(model, batch_for)
        else:
            changed[objective] = changed_after_scst_steps(model, processor, rows)
    assert changed["scst"] == changed["xent"] == trainable_names(model)
