"""finetune.py's pieces in-process: arguments (YAML + overrides, round trip), fail-fast errors before any model is
loaded, the shifted label-smoothed loss, prompt-only generation in evaluation, scoring against all 5 references."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoProcessor

import finetune
from collators import TSNPaliGemmaTrainCollator
from dataset_builder import load_risc
from finetuning.arguments import ConfigError, parse_finetune_args, resolved_config, write_config
from finetuning.cell_loss import CELL_HEAD, cell_loss
from finetuning.outputs import last_complete_checkpoint
from finetuning.trainer import build_trainer, caption_positions, causal_lm_loss, row_balanced_weights, score_generated
from metrics import caption_metrics, flatten_metrics
from modeling_tsn_paligemma import TSNPaliGemmaForConditionalGeneration
from tasks.caption import CaptionTask

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = str(REPO_ROOT / "configs" / "demo.yaml")
SAMPLE = str(REPO_ROOT / "dataset_builder" / "sample")


@pytest.fixture(scope="module")
def demo(tiny_checkpoint, tmp_path_factory) -> list[str]:
    """configs/demo.yaml on the fast tiny checkpoint instead of the shipped captioner, into an empty output_dir (the
    checkout's outputs/demo may hold a real demo run)."""
    output_dir = str(tmp_path_factory.mktemp("demo-args") / "out")
    return [DEMO, "--model_name_or_path", str(tiny_checkpoint()), "--dataset_dir", SAMPLE, "--output_dir", output_dir]


def test_yaml_then_cli_overrides(demo):
    args = parse_finetune_args(
        [*demo, "--learning_rate", "1e-3", "--tsn_segment_scales", "1x1,3x3", "--dataset_dir", SAMPLE]
    )
    assert args.training.learning_rate == 1e-3  # the CLI wins over the YAML's 0.0005
    assert args.model.quantization == "4bit" and args.model.lora_r == 16 and args.generation.num_beams == 3
    assert args.tsn.overrides()["tsn_segment_scales"] == [[1, 1], [3, 3]]
    assert args.training.remove_unused_columns is False and args.training.metric_for_best_model == "cider"
    assert "learning_rate" in args.explicit and "tsn_segment_scales" in args.explicit


def test_resolved_config_parses_back_to_the_same_arguments(demo, tmp_path):
    args = parse_finetune_args([*demo, "--tsn_fusion", "ratio", "--report_to", "none"])
    write_config(resolved_config(args, tsn_backbone="resnet18", tsn_generation_ratio=None), tmp_path / "cfg.yaml")
    again = parse_finetune_args([str(tmp_path / "cfg.yaml")])
    for name in args.explicit:
        group = next(group for group in args[:-1] if hasattr(group, name))
        assert getattr(next(g for g in again[:-1] if hasattr(g, name)), name) == getattr(group, name), name
    assert again.tsn.tsn_backbone == "resnet18" and again.tsn.tsn_generation_ratio is None


def test_resolved_config_of_a_mixture_parses_back_to_the_same_datasets(tmp_path):
    """A mixture written in YAML as a list of mappings is written back as mappings, not as their Python text."""
    from finetuning.data import dataset_entries

    config = yaml.safe_load((REPO_ROOT / "configs" / "demo.yaml").read_text())
    config["mixture"] = [
        {"task": "caption", "dataset_dir": SAMPLE, "weight": 3, "name": "captions"},
        {"task": "classify", "dataset_dir": SAMPLE, "weight": 1, "name": "scenes"},
    ]
    config["output_dir"] = str(tmp_path / "run")
    (tmp_path / "mixture.yaml").write_text(yaml.safe_dump(config))
    args = parse_finetune_args([str(tmp_path / "mixture.yaml")])
    write_config(resolved_config(args), tmp_path / "again.yaml")
    assert yaml.safe_load((tmp_path / "again.yaml").read_text())["mixture"] == config["mixture"]
    again = parse_finetune_args([str(tmp_path / "again.yaml")])
    assert dataset_entries(again.data) == dataset_entries(args.data) and len(dataset_entries(args.data)) == 2


@pytest.fixture
def no_model_loading(monkeypatch):
    """Any model load fails the test: fail-fast errors must come before it."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded before the argument check failed")

    monkeypatch.setattr(TSNPaliGemmaForConditionalGeneration, "from_base_pretrained", forbidden)
    monkeypatch.setattr(TSNPaliGemmaForConditionalGeneration, "from_pretrained", forbidden)
    monkeypatch.setattr(AutoProcessor, "from_pretrained", forbidden)


FAIL_FAST_CASES = {
    "missing data folder": (["--dataset_dir", "/nonexistent/RISC"], "dataset_dir='/nonexistent/RISC' does not exist"),
    "invalid TSN option": (["--tsn_integration", "sideways"], "tsn_integration"),
    "invalid scales": (["--tsn_segment_scales", "2by2"], "'2by2' is not ROWSxCOLS"),
    "invalid quantization": (["--quantization", "3bit"], "quantization='3bit' is invalid"),
    "unknown argument": (["--learning_rat", "1e-3"], "Unknown arguments"),
    "full on a 4-bit base": (
        ["--train_strategy", "full"],  # the demo config sets quantization: 4bit
        "train_strategy='full' contradicts quantization='4bit': only qlora trains on a quantized base. Fix:",
    ),
    "freeze on an 8-bit base": (
        ["--train_strategy", "freeze", "--quantization", "8bit"],
        "train_strategy='freeze' contradicts quantization='8bit'",
    ),
    "qlora without quantization": (
        ["--train_strategy", "qlora", "--quantization", "none"],
        "train_strategy='qlora' contradicts quantization='none'",
    ),
    "invalid strategy": (["--train_strategy", "everything"], "train_strategy='everything' is invalid"),
    "missing model folder": (
        ["--model_name_or_path", "/nonexistent/tiny-base"],
        "model_name_or_path='/nonexistent/tiny-base': the folder does not exist. Fix: pass an existing model folder",
    ),
    "missing relative model folder": (
        ["--model_name_or_path", "tests/no-such-model"],
        "model_name_or_path='tests/no-such-model': the folder does not exist",
    ),
    "uncached Hub model offline": (
        ["--model_name_or_path", "someone/never-downloaded"],
        "is not a local folder, and as a Hub id it is not in the cache while HF_HUB_OFFLINE=1",
    ),
    "invalid freeze regex": (
        ["--train_strategy", "freeze", "--quantization", "none", "--trainable_modules", "self_attn("],
        "trainable_modules='self_attn(' is not a valid regex",
    ),
}


@pytest.mark.parametrize("case", sorted(FAIL_FAST_CASES))
def test_fail_fast_before_any_model_is_loaded(case, demo, no_model_loading, capsys):
    extra, message = FAIL_FAST_CASES[case]
    assert finetune.main([*demo, *extra]) == 2
    error = capsys.readouterr().err
    assert message in error
    if "strategy" in case or "quantization" in case or "model" in case:
        assert error.count("\n") == 1  # one line


def test_fail_fast_push_to_hub_without_token(demo, no_model_loading, monkeypatch, tmp_path, capsys):
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))  # no saved login
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    argv = [*demo, "--push_to_hub", "true", "--hub_model_id", "someone/tsn-demo"]
    assert finetune.main(argv) == 2
    error = capsys.readouterr().err
    assert "No Hugging Face token" in error and "hf auth login" in error
    assert finetune.main([*argv[:-1], "not a repo id"]) == 2
    assert "is not a valid Hub repo id" in capsys.readouterr().err


def test_fail_fast_4bit_without_bitsandbytes(demo, no_model_loading, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    assert finetune.main([*demo, "--quantization", "4bit"]) == 2
    error = capsys.readouterr().err
    assert "needs bitsandbytes" in error and "--quantization none" in error


def test_fail_fast_tracker_that_is_not_installed(demo, no_model_loading, monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("tensorboard") else real_find_spec(name, *a),
    )
    assert finetune.main([*demo, "--report_to", "tensorboard"]) == 2
    error = capsys.readouterr().err
    assert "report_to='tensorboard' needs the tensorboard package" in error and "--report_to none" in error


def test_default_install_has_what_the_real_recipes_report_to():
    import importlib.util

    assert importlib.util.find_spec("tensorboard") is not None


def test_no_secret_reaches_the_resolved_config(demo, tmp_path):
    args = parse_finetune_args([*demo, "--hub_token", "hf_SECRETvalue123", "--push_to_hub", "false"])
    values = resolved_config(args, hub_token="hf_SECRETvalue123", api_key="k-SECRET")
    write_config(values, tmp_path / "finetune_config.yaml")
    text = (tmp_path / "finetune_config.yaml").read_text()
    assert "SECRET" not in text and "hub_token" not in text and "api_key" not in text
    assert "learning_rate" in text  # the rest is still there


def test_fail_fast_missing_config_file(no_model_loading, capsys):
    assert finetune.main(["configs/nope.yaml"]) == 2
    assert "configs/nope.yaml' does not exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_model_and_processor(tiny_checkpoint):
    folder = tiny_checkpoint()
    torch.manual_seed(0)
    model = TSNPaliGemmaForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    return model, processor


@pytest.fixture(scope="module")
def eval_rows():
    test = load_risc(SAMPLE)["test"].select(range(3))
    return [dict(row, row_index=index) for index, row in enumerate(test)]


def test_loss_without_smoothing_equals_the_model_loss(tiny_model_and_processor, eval_rows):
    model, processor = tiny_model_and_processor
    batch = TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="first"))(eval_rows)
    with torch.no_grad():
        outputs = model(**batch)
        ours = causal_lm_loss(outputs, batch["labels"])
        smoothed = causal_lm_loss(outputs, batch["labels"], label_smoothing=0.1)
    torch.testing.assert_close(ours, outputs.loss, rtol=1e-5, atol=1e-6)
    # Label smoothing on the SHIFTED labels: by hand, eps/V on every class plus (1 - eps) on the target.
    logits, targets = outputs.logits[:, :-1].float(), batch["labels"][:, 1:]
    log_probs = torch.log_softmax(logits, dim=-1)[targets != -100]
    kept = targets[targets != -100]
    by_hand = -(0.9 * log_probs.gather(1, kept[:, None]).squeeze(1) + 0.1 * log_probs.mean(dim=-1)).mean()
    torch.testing.assert_close(smoothed, by_hand, rtol=1e-5, atol=1e-6)


def test_row_weighting_is_the_mean_of_each_rows_mean_token_loss_lean_or_full(tiny_model_and_processor, eval_rows):
    """loss_weighting=row: three captions of different lengths count the same, computed by hand per row; the lean
    path (logits only where the loss reads) gives the same number."""
    model, processor = tiny_model_and_processor
    batch = TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="first"))(eval_rows)
    labels = batch["labels"]
    lengths = (labels[:, 1:] != -100).sum(dim=1)
    assert len(set(lengths.tolist())) == 3, "rows of different lengths, or both weightings agree"
    with torch.no_grad():
        full = model(**batch)
        lean = model(**{k: v for k, v in batch.items() if k != "labels"}, logits_to_keep=caption_positions(labels))
        by_row = causal_lm_loss(full, labels, weighting="row")
        by_row_lean = causal_lm_loss(lean, labels, weighting="row")
        by_token = causal_lm_loss(full, labels)
    log_probs = torch.log_softmax(full.logits[:, :-1].float(), dim=-1)
    row_means = []
    for row in range(len(eval_rows)):
        kept = labels[row, 1:] != -100
        row_means.append(-log_probs[row][kept].gather(1, labels[row, 1:][kept][:, None]).mean())
    torch.testing.assert_close(by_row, torch.stack(row_means).mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_row_lean, by_row, rtol=1e-5, atol=1e-6)
    assert abs(by_row.item() - by_token.item()) > 1e-4
    # Under gradient accumulation the trainer divides by the accumulated token count: weights keep the batch's sum.
    assert row_balanced_weights(labels).sum().item() == pytest.approx(lengths.sum().item())


def trainer_and_caption_outputs(model, processor, eval_rows, tmp_path, bad_option, good_option, error):
    """`bad_option` (name, value) refused with `error`; a trainer built with `good_option`; the model's outputs on
    the caption batch of `eval_rows`."""
    argv = [DEMO, "--model_name_or_path", str(model.name_or_path), "--output_dir", str(tmp_path), "--use_cpu", "true"]
    with pytest.raises(ConfigError, match=error):
        parse_finetune_args([*argv, *bad_option])
    args = parse_finetune_args([*argv, *good_option])
    trainer = build_trainer(args, model, processor, {"train": None, "val": eval_rows})
    batch = TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="first"))(eval_rows)
    with torch.no_grad():
        outputs = model(**batch)
    return trainer, batch, outputs


def test_loss_weighting_reaches_the_trainers_loss_and_a_bad_value_names_the_fix(
    tiny_model_and_processor, eval_rows, tmp_path
):
    model, processor = tiny_model_and_processor
    error = r"^loss_weighting='rows' is invalid. Fix: use token or row.$"
    trainer, batch, outputs = trainer_and_caption_outputs(
        model, processor, eval_rows, tmp_path, ("--loss_weighting", "rows"), ("--loss_weighting", "row"), error
    )
    smoothing = trainer.args.label_smoothing_factor
    expected = causal_lm_loss(outputs, batch["labels"], label_smoothing=smoothing, weighting="row")
    assert trainer.compute_loss_func(outputs, batch["labels"]).item() == expected.item()
    assert trainer.objective == {"train_objective": "xent", "loss_weighting": "row"}


def test_loc_sigma_reaches_the_trainers_loss_on_loc_targets_only_and_a_bad_value_names_the_fix(
    tiny_model_and_processor, eval_rows, tmp_path
):
    model, processor = tiny_model_and_processor
    error = r"^loc_sigma=-1.0 is out of range: .* Fix: 0 \(one-hot targets\)"
    trainer, batch, outputs = trainer_and_caption_outputs(
        model, processor, eval_rows, tmp_path, ("--loc_sigma", "-1"), ("--loc_sigma", "4"), error
    )
    assert trainer.objective == {"train_objective": "xent", "loc_sigma": 4.0}
    smoothing = trainer.args.label_smoothing_factor
    plain = causal_lm_loss(outputs, batch["labels"], label_smoothing=smoothing)
    # Captions hold no <loc> target: the loss is plain cross entropy, to the bit.
    assert trainer.compute_loss_func(outputs, batch["labels"]).item() == plain.item()
    # The first three labelled tokens of each row made <loc> targets: only then does the spread change the loss.
    first_loc = processor.tokenizer.convert_tokens_to_ids("<loc0000>")
    labels = batch["labels"].clone()
    for row in labels:
        row[(row != -100).nonzero()[:3, 0]] = torch.tensor([first_loc + 10, first_loc + 500, first_loc + 1023])
    spread = causal_lm_loss(outputs, labels, label_smoothing=smoothing, loc_sigma=4.0, first_loc=first_loc)
    assert trainer.compute_loss_func(outputs, labels).item() == spread.item()
    assert abs(spread.item() - causal_lm_loss(outputs, labels, label_smoothing=smoothing).item()) > 1e-3


@pytest.mark.parametrize(
    "options, error",
    [
        (["--object_order", "shuffled"], r"^object_order='shuffled' is invalid. Fix: use \('sorted', 'random'\)"),
        (["--tile_keep_area", "0"], r"^tile_keep_area=0.0 is invalid. Fix: a share of a box's area in \(0, 1\]"),
        (["--tile_keep_area", "1.5"], r"^tile_keep_area=1.5 is invalid"),
        (["--tile_overlap", "32"], r"^tile_overlap is set without tile_size. Fix: add --tile_size"),
        (["--tile_size", "256", "--tile_overlap", "256"], r"^tile_overlap=256 is invalid for tile_size=256. Fix: "),
    ],
)
def test_bad_tile_and_object_order_options_name_the_fix(options, error, tmp_path):
    argv = [DEMO, "--output_dir", str(tmp_path), "--use_cpu", "true", *options]
    with pytest.raises(ConfigError, match=error):
        parse_finetune_args(argv)


def test_cell_loss_weight_adds_the_weighted_loss_and_bad_settings_name_the_fix(
    tiny_model_and_processor, eval_rows, tmp_path
):
    model, processor = tiny_model_and_processor
    argv = [DEMO, "--model_name_or_path", str(model.name_or_path), "--output_dir", str(tmp_path), "--use_cpu", "true"]
    with pytest.raises(ConfigError, match=r"^cell_loss_weight needs --train_strategy full or freeze .* Fix: "):
        parse_finetune_args([*argv, "--cell_loss_weight", "1"])  # the demo trains QLoRA
    full = [*argv, "--train_strategy", "full", "--quantization", "none"]
    with pytest.raises(ConfigError, match=r"^cell_loss_weight=-1.0 is out of range. Fix: 0 \(off\)"):
        parse_finetune_args([*full, "--cell_loss_weight", "-1"])
    trainer = build_trainer(
        parse_finetune_args([*full, "--cell_loss_weight", "2"]), model, processor, {"train": None, "val": eval_rows}
    )
    try:
        head = getattr(model, CELL_HEAD)
        assert trainer.objective["cell_loss_weight"] == 2.0 and trainer.data_collator.cell_grid == 4
        optimizer = trainer.create_optimizer()
        optimised = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
        assert all(id(parameter) in optimised for parameter in head.parameters())
        batch = trainer.data_collator(eval_rows)  # captions: no cell targets of their own
        targets = torch.rand(len(eval_rows), 16)
        with torch.no_grad():
            plain = trainer.compute_loss(model, dict(batch))
            with_cells = trainer.compute_loss(model, {**batch, "cell_targets": targets})
            tokens = model(**batch).image_outputs.pooler_output
        assert with_cells.item() == pytest.approx(plain.item() + 2 * cell_loss(head, tokens, targets).item(), rel=1e-6)
        assert torch.equal(batch["cell_targets"], torch.full((len(eval_rows), 16), -1.0))
    finally:
        delattr(model, CELL_HEAD)  # the module-scoped model is shared with other tests


def test_evaluation_generates_from_the_prompt_only(tiny_model_and_processor, eval_rows, tmp_path):
    model, processor = tiny_model_and_processor
    args = parse_finetune_args(
        [
            DEMO,
            "--model_name_or_path",
            str(model.name_or_path),
            "--dataset_dir",
            SAMPLE,
            "--output_dir",
            str(tmp_path),
            "--use_cpu",
            "true",
        ]
    )
    splits = {"train": None, "val": eval_rows}
    trainer = build_trainer(args, model, processor, splits)
    batch = trainer.eval_data_collator(eval_rows)
    captured = {}
    real_generate = model.generate

    def spy(**kwargs):
        captured.update(kwargs)
        captured["output"] = real_generate(**kwargs)
        return captured["output"]

    model.generate = spy
    try:
        loss, predictions, label_ids = trainer.prediction_step(model, batch, prediction_loss_only=False)
    finally:
        del model.generate
    prompt_ids = processor(text="<image>caption en", images=eval_rows[0]["image"], return_tensors="pt")["input_ids"]
    # The generation input is exactly "<image>" + prompt, for every row; no caption token is in it.
    assert torch.equal(captured["input_ids"], prompt_ids.expand(len(eval_rows), -1))
    caption_ids = set(batch["input_ids"][batch["labels"] != -100].tolist()) - set(prompt_ids[0].tolist())
    assert caption_ids and not caption_ids & set(captured["input_ids"].flatten().tolist())
    assert captured["generation_config"].num_beams == 3 and captured["generation_config"].max_new_tokens == 40
    # What comes back is only the new tokens: generate's output minus the prompt.
    assert torch.equal(predictions["tokens"], captured["output"].sequences[:, prompt_ids.shape[1] :])
    assert "probabilities" not in predictions  # captions are not scored per token
    assert predictions["row_index"].flatten().tolist() == [0, 1, 2] and label_ids is None
    torch.testing.assert_close(
        loss,
        causal_lm_loss(
            model(**TSNPaliGemmaTrainCollator(processor, task=CaptionTask(caption_choice="first"))(eval_rows)),
            batch["labels"],
            label_smoothing=0.1,
        ),
    )


def test_generation_keywords_of_evaluate_are_honoured_or_rejected(tiny_model_and_processor, eval_rows, tmp_path):
    model, processor = tiny_model_and_processor
    argv = [DEMO, "--model_name_or_path", str(model.name_or_path), "--output_dir", str(tmp_path), "--use_cpu", "true"]
    trainer = build_trainer(parse_finetune_args(argv), model, processor, {"train": None, "val": eval_rows})
    config = trainer.generation_config_for({"num_beams": 2, "max_new_tokens": 3})
    assert (config.num_beams, config.max_new_tokens) == (2, 3)
    assert trainer.caption_generation_config.num_beams == 3  # the run's own setting is untouched
    with pytest.raises(ValueError, match="not_a_setting"):
        trainer.generation_config_for({"not_a_setting": 1})
    captured = {}
    real_generate = model.generate

    def spy(**kwargs):
        captured.update(kwargs)
        return real_generate(**kwargs)

    model.generate = spy
    try:
        trainer.prediction_step(model, trainer.eval_data_collator(eval_rows), False, num_beams=1, max_new_tokens=2)
    finally:
        del model.generate
    assert (captured["generation_config"].num_beams, captured["generation_config"].max_new_tokens) == (1, 2)


def test_scorer_uses_all_five_references_and_restores_row_order(tiny_model_and_processor, eval_rows):
    model, processor = tiny_model_and_processor
    predictions = ["many buildings are near a road .", "a playground is surrounded by trees .", "farmland ."]
    token_rows = [processor.tokenizer(text, add_special_tokens=False)["input_ids"] for text in predictions]
    width = max(len(row) for row in token_rows)
    tokens = torch.full((3, width + 2), -100)  # -100: the Trainer's cross-batch padding
    for index, row in enumerate(token_rows):
        tokens[index, : len(row)] = torch.tensor(row)
    order = [2, 0, 1]  # as a distributed gather may return them
    gathered = {"tokens": tokens[order], "row_index": torch.tensor([[index] for index in order])}
    rows = load_risc(SAMPLE)["test"].select(range(3))
    records, scores = score_generated(processor, CaptionTask("caption en"), gathered, rows)
    references = [list(row["captions"]) for row in eval_rows]
    assert all(len(refs) == 5 for refs in references)
    expected = caption_metrics(predictions, references, groups=[row["source"] for row in eval_rows])
    assert flatten_metrics(scores) == flatten_metrics(expected)
    assert [record["prediction"] for record in records] == predictions
    first_only = caption_metrics(predictions, [refs[:1] for refs in references])
    assert first_only["overall"]["cider"] != expected["overall"]["cider"]


def test_last_complete_checkpoint_skips_one_cut_off_while_saving(tmp_path):
    for step, complete in ((4, True), (8, True), (12, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")
    assert last_complete_checkpoint(tmp_path / "absent") is None


@pytest.mark.parametrize("name", ["risc_paligemma_3b", "risc_paligemma2_3b"])
def test_real_recipes_parse_with_their_settings(name, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the recipes name Hub models: online, they resolve
    path = str(REPO_ROOT / "configs" / f"{name}.yaml")
    cuda = torch.cuda.is_available()
    if not cuda:  # bf16 training needs a GPU: refused on the CPU, also when use_cpu says so explicitly
        with pytest.raises(ConfigError, match="bf16"):  # TrainingArguments' own check
            parse_finetune_args([path, "--dataset_dir", SAMPLE])
        with pytest.raises(ConfigError, match=r"^bf16=True needs a CUDA GPU, .* Fix: --bf16 false"):
            parse_finetune_args([path, "--dataset_dir", SAMPLE, "--use_cpu", "true"])
    args = parse_finetune_args(
        [path, "--dataset_dir", SAMPLE, *([] if cuda else ["--use_cpu", "true", "--bf16", "false"])]
    )
    assert args.model.model_name_or_path.startswith("google/paligemma")
    assert (args.model.quantization, args.model.lora_r, args.model.lora_alpha, args.model.lora_dropout) == (
        "4bit",
        32,
        64,
        0.1,
    )
    assert args.tsn.overrides()["tsn_segment_scales"] == [[1, 1], [2, 2]] and args.tsn.tsn_backbone == "resnet18"
    training = args.training
    assert training.per_device_train_batch_size * training.gradient_accumulation_steps == 16
    assert (training.weight_decay, training.label_smoothing_factor, training.bf16) == (0.05, 0.1, cuda)
    assert yaml.safe_load(Path(path).read_text())["bf16"] is True
    assert args.generation.num_beams == 4 and training.load_best_model_at_end and training.activation_checkpointing


def test_rsicd_mini_recipe_and_its_direct_twin_differ_only_in_the_integration(tiny_checkpoint):
    path = str(REPO_ROOT / "configs" / "rsicd_mini.yaml")
    common = [path, "--dataset_dir", SAMPLE, "--model_name_or_path", str(tiny_checkpoint())]
    enhanced = parse_finetune_args(common)
    direct = parse_finetune_args([*common, "--tsn_integration", "direct"])
    assert (enhanced.model.train_strategy, enhanced.model.quantization) == ("full", "none")
    assert (enhanced.tsn.tsn_integration, enhanced.tsn.tsn_batchnorm) == ("enhanced", "train")
    assert direct.tsn.tsn_integration == "direct"
    for name in (
        "seed",
        "num_train_epochs",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "per_device_train_batch_size",
        "weight_decay",
        "label_smoothing_factor",
    ):
        assert getattr(enhanced.training, name) == getattr(direct.training, name), name
    assert enhanced.data == direct.data and enhanced.generation == direct.generation


def test_rsicd_mini_heal_recipe_trains_every_weight_briefly(tiny_checkpoint):
    path = str(REPO_ROOT / "configs" / "rsicd_mini_heal.yaml")
    args = parse_finetune_args([path, "--dataset_dir", SAMPLE, "--model_name_or_path", str(tiny_checkpoint())])
    assert (args.model.train_strategy, args.model.quantization) == ("full", "none")
    assert args.training.num_train_epochs == 1 and args.training.learning_rate == 2e-4
    assert args.training.eval_strategy == "no" and args.data.augment


def test_rsicd_mini_more_recipe_continues_the_captioner_and_keeps_its_best_epoch(tiny_checkpoint, tmp_path):
    """The second stage of the rsicd-mini captioner: the first stage's merged weights, loss and data, a fifth of the
    learning rate, val scored after every epoch (and before the first) and the best epoch kept."""
    path = str(REPO_ROOT / "configs" / "rsicd_mini_more.yaml")
    stage_1 = yaml.safe_load((REPO_ROOT / "configs" / "rsicd_mini.yaml").read_text())["output_dir"]
    assert yaml.safe_load(Path(path).read_text())["model_name_or_path"] == f"{stage_1}/merged"
    common = ["--dataset_dir", SAMPLE, "--model_name_or_path", str(tiny_checkpoint()), "--output_dir", str(tmp_path)]
    more = parse_finetune_args([path, *common])
    first = parse_finetune_args([str(REPO_ROOT / "configs" / "rsicd_mini.yaml"), *common])
    assert (more.model.train_strategy, more.tsn.tsn_integration, more.tsn.tsn_batchnorm) == (
        "full",
        "enhanced",
        "train",
    )
    assert more.data == first.data and more.generation == first.generation
    assert more.training.label_smoothing_factor == first.training.label_smoothing_factor
    assert more.training.learning_rate == first.training.learning_rate / 5 and more.training.num_train_epochs == 4
    assert more.training.eval_strategy == "epoch" and more.training.load_best_model_at_end
    assert more.run.evaluate_before_training


def test_rs_mini_recipe_chains_from_the_captioner_and_its_later_stages_weigh_every_row_the_same(
    tmp_path, shared_data, monkeypatch
):
    """examples/rs-mini in three stages: the four-task mixture from the two-stage captioner; the same mixture, data
    and decoding with row weighting at a third of the learning rate; then more scene rows, the best val scene
    accuracy kept. BN statistics frozen in all three."""
    (tmp_path / "data").symlink_to(shared_data)  # the recipes name data/rsicd and data/nwpu-vhr10
    monkeypatch.chdir(tmp_path)
    configs = REPO_ROOT / "configs"
    recipes = {name: yaml.safe_load((configs / f"{name}.yaml").read_text()) for name in ("rsicd_mini_more", "rs_mini")}
    second = yaml.safe_load((configs / "rs_mini_scenes.yaml").read_text())
    assert recipes["rs_mini"]["model_name_or_path"] == f"{recipes['rsicd_mini_more']['output_dir']}/merged"
    assert second["model_name_or_path"] == f"{recipes['rs_mini']['output_dir']}/merged"
    common = ["--output_dir", str(tmp_path / "out"), "--model_name_or_path", str(REPO_ROOT / "examples" / "rs-mini")]
    first = parse_finetune_args([str(configs / "rs_mini.yaml"), *common])
    scenes = parse_finetune_args([str(configs / "rs_mini_scenes.yaml"), *common])
    assert [entry["task"] for entry in scenes.data.mixture] == ["caption", "classify", "detect", "count"]
    assert scenes.data == first.data and scenes.generation == first.generation
    assert (first.objective.loss_weighting, scenes.objective.loss_weighting) == ("token", "row")
    assert first.tsn.tsn_batchnorm == scenes.tsn.tsn_batchnorm == "frozen"
    assert scenes.training.learning_rate == pytest.approx(first.training.learning_rate / 3)
    assert first.run.evaluate_before_training  # stage 2 is compared with the test predictions of stage 1
    third_recipe = yaml.safe_load((configs / "rs_mini_scenes_more.yaml").read_text())
    assert third_recipe["model_name_or_path"] == f"{second['output_dir']}/merged"
    third = parse_finetune_args([str(configs / "rs_mini_scenes_more.yaml"), *common])
    weights = {entry["name"]: entry["weight"] for entry in third.data.mixture}
    assert weights == {"rsicd": 3, "scenes": 12, "nwpu": 1, "counts": 1}
    assert [entry["dataset_dir"] for entry in third.data.mixture] == [e["dataset_dir"] for e in scenes.data.mixture]
    assert third.generation == first.generation and third.objective.loss_weighting == "row"
    assert third.tsn.tsn_batchnorm == "frozen"
    assert third.training.metric_for_best_model == "scenes_accuracy" and third.training.load_best_model_at_end


# ------------------------------------------------------------------------------------------------ re-runs
def previous_run(demo, output_dir: Path, checkpoint: bool = True) -> list[str]:
    """An output_dir as a run of `demo` leaves it: its recorded training settings and a complete checkpoint."""
    from finetuning.resume import SETTINGS_FILE, training_settings

    argv = [*demo, "--output_dir", str(output_dir)]
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / SETTINGS_FILE).write_text(json.dumps(training_settings(parse_finetune_args(argv))))
    if checkpoint:
        (output_dir / "checkpoint-32").mkdir()
        (output_dir / "checkpoint-32" / "trainer_state.json").write_text(json.dumps({"global_step": 32}))
    return argv


def test_rerun_with_other_training_settings_stops_before_loading(demo, tmp_path, no_model_loading, capsys):
    argv = previous_run(demo, tmp_path / "run")
    before = {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir() if path.is_file()}
    assert finetune.main([*argv, "--learning_rate", "0.002", "--lora_r", "8"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds checkpoint-32 of a run trained with other settings" in error
    assert "(lora_r: 16 -> 8, learning_rate: 0.0005 -> 0.002)" in error
    assert "--overwrite_output_dir true" in error and "a new --output_dir" in error
    assert f"--resume_from_checkpoint {tmp_path / 'run' / 'checkpoint-32'}" in error
    # Nothing written: the folder still describes the run that happened.
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir() if path.is_file()} == before


def test_rerun_with_the_same_training_settings_may_resume(demo, tmp_path):
    argv = previous_run(demo, tmp_path / "run")
    parse_finetune_args(argv)  # the same command: resumes
    parse_finetune_args([*argv, "--num_beams", "5", "--max_test_samples", "4", "--logging_steps", "1"])  # eval only
    for extra in (["--overwrite_output_dir", "true"], ["--resume_from_checkpoint", str(tmp_path / "run")]):
        parse_finetune_args([*argv, "--learning_rate", "0.002", *extra])  # on purpose
    parse_finetune_args([*argv, "--learning_rate", "0.002", "--do_train", "false"])  # evaluation trains nothing
    with pytest.raises(ConfigError, match="other settings"):  # also before the first checkpoint
        parse_finetune_args([*previous_run(demo, tmp_path / "early", checkpoint=False), "--seed", "1"])


def test_an_evaluation_only_run_says_in_its_config_that_nothing_trained(demo, tmp_path, tiny_checkpoint):
    from transformers import AutoConfig

    from finetuning.model_setup import TrainingPlan
    from finetuning.outputs import write_run_config

    config = AutoConfig.from_pretrained(tiny_checkpoint(), trust_remote_code=True)
    summary = {"total_parameters": 1000, "trainable_parameters": 1000}
    for extra, header in (
        ([], "# train_strategy full: 1,000 of 1,000 parameters train"),
        (["--do_train", "false"], "# do_train false: evaluation only, none of the 1,000 parameters trained"),
    ):
        args = parse_finetune_args([*demo, "--output_dir", str(tmp_path / str(len(extra))), *extra])
        write_run_config(args, TrainingPlan("none", "full"), summary, config)
        written = (tmp_path / str(len(extra)) / "finetune_config.yaml").read_text()
        assert written.splitlines()[0] == header


def test_checkpoints_without_recorded_settings_are_not_resumed_blindly(demo, tmp_path):
    argv = previous_run(demo, tmp_path / "run")
    (tmp_path / "run" / "training_settings.json").unlink()
    with pytest.raises(ConfigError, match="holds checkpoint-32 but no training_settings.json"):
        parse_finetune_args(argv)


def test_overwrite_output_dir_clears_the_previous_run_and_records_the_new_settings(demo, tmp_path):
    from finetuning.resume import prepare_output_dir

    output_dir = tmp_path / "run"
    argv = previous_run(demo, output_dir)
    for name in ("eval_results.json", "finetune_config.yaml", "predictions.jsonl"):
        (output_dir / name).write_text("{}")
    (output_dir / "merged").mkdir()
    (output_dir / "notes.txt").write_text("the user's own file")
    args = parse_finetune_args([*argv, "--learning_rate", "0.002", "--overwrite_output_dir", "true"])
    prepare_output_dir(args)
    assert sorted(path.name for path in output_dir.iterdir()) == ["notes.txt", "training_settings.json"]
    assert json.loads((output_dir / "training_settings.json").read_text())["learning_rate"] == 0.002


def test_help_prints_the_usage_and_exits_0(capsys):
    assert finetune.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: finetune.py [CONFIG.yaml] [--key value ...]") and "--overwrite_output_dir" in out


def test_bf16_on_the_cpu_is_refused(demo, no_model_loading, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: bf16 is valid here")
    assert finetune.main([*demo, "--bf16", "true"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "bf16=True needs a CUDA GPU, but use_cpu is set" in error
