"""Block-influence pruning: scores equal a hand computation, a pruned checkpoint holds exactly the kept layers and
loads as Hub code in a fresh process (same logits and tokens), and a wrong k fails with a clear error."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import load_as_hub_code_in_a_fresh_process
from safetensors.torch import load_file

import prune
from pruning import block_influence, choose_layers, remove_layers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(REPO_ROOT / "dataset_builder" / "sample")


@pytest.fixture(scope="module")
def tiny_gemma2(tiny_checkpoint) -> Path:
    return tiny_checkpoint("enhanced", "gemma2")


def scoring(folder, num_images=6):
    model, processor = prune.load(str(folder))
    args = prune.PruneArguments(str(folder), SAMPLE, "unused", num_images=num_images, batch_size=3)
    return model, processor, prune.scoring_batches(args, processor)


def cosine_influence(inputs: torch.Tensor, outputs: torch.Tensor, positions=None) -> float:
    """1 - cos by its definition, in float64, averaged over the given (B, L) positions."""
    a, b = inputs.double(), outputs.double()
    cosine = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    selected = cosine if positions is None else cosine[positions]
    return float((1 - selected).mean())


def test_block_influence_equals_a_hand_computation(tiny_gemma2):
    model, _, batches = scoring(tiny_gemma2)
    text, vision = block_influence(model, batches, "text"), block_influence(model, batches, "vision")
    text_layers = model.config.text_config.num_hidden_layers
    # By hand, without hooks on the layers: hidden_states[i] is layer i's input; the last layer's output is what the
    # final norm receives (hidden_states[-1] is already normed).
    text_in, text_out, vision_in, vision_out, positions = [], [], [], [], []
    final_norm_inputs = []
    hook = model.model.language_model.norm.register_forward_pre_hook(lambda m, args: final_norm_inputs.append(args[0]))
    try:
        with torch.no_grad():
            for batch in batches:
                inputs = {key: value for key, value in batch.items() if key != "labels"}
                states = model(**inputs, output_hidden_states=True).hidden_states
                text_in.append(states[:text_layers])
                text_out.append((*states[1:text_layers], final_norm_inputs[-1]))
                vision_states = model.model.vision_tower(
                    batch["pixel_values"], output_hidden_states=True
                ).hidden_states
                vision_in.append(vision_states[:-1])
                vision_out.append(vision_states[1:])
                positions.append(batch["labels"] != -100)
    finally:
        hook.remove()
    for layer in range(text_layers):
        a = torch.cat([states[layer][p] for states, p in zip(text_in, positions)])  # (tokens, D) caption tokens
        b = torch.cat([states[layer][p] for states, p in zip(text_out, positions)])
        assert text[layer] == pytest.approx(cosine_influence(a, b), abs=1e-9)
    for layer in range(len(vision)):
        a = torch.cat([states[layer].flatten(0, 1) for states in vision_in])  # every patch of every image
        b = torch.cat([states[layer].flatten(0, 1) for states in vision_out])
        assert vision[layer] == pytest.approx(cosine_influence(a, b), abs=1e-9)
    assert len(text) == text_layers and len(vision) == model.config.vision_config.num_hidden_layers


def test_choose_layers_takes_the_lowest_scores():
    assert choose_layers([0.5, 0.1, 0.3, 0.2], 2) == [1, 3]
    assert choose_layers([0.5, 0.1, 0.3, 0.2], 0) == []


@pytest.mark.parametrize("k, message", [(2, "out of range: the model has 2 layers"), (-1, "cannot be negative")])
def test_wrong_k_fails_with_a_clear_error(tiny_gemma2, tmp_path, capsys, k, message):
    argv = [
        "--model_name_or_path",
        str(tiny_gemma2),
        "--dataset_dir",
        SAMPLE,
        "--output_dir",
        str(tmp_path / "out"),
        "--num_layers_to_remove",
        str(k),
    ]
    assert prune.main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and "Fix:" in error and not (tmp_path / "out").exists()


def test_pruned_checkpoint_keeps_exactly_the_layers_and_loads_as_hub_code(tiny_gemma2, tmp_path, sample_images):
    output_dir = tmp_path / "pruned"
    argv = [
        "--model_name_or_path",
        str(tiny_gemma2),
        "--dataset_dir",
        SAMPLE,
        "--output_dir",
        str(output_dir),
        "--num_layers_to_remove",
        "1",
        "--num_vision_layers_to_remove",
        "1",
        "--num_images",
        "4",
    ]
    assert prune.main(argv) == 0
    report = json.loads((output_dir / "scores.json").read_text())
    removed = report["removed"]
    kept_text = [i for i in range(2) if i not in removed["text"]]
    kept_vision = [i for i in range(2) if i not in removed["vision"]]
    assert removed["text"] == choose_layers(report["block_influence"]["text"], 1)
    config = json.loads((output_dir / "config.json").read_text())
    original = json.loads((tiny_gemma2 / "config.json").read_text())
    assert config["pruned_layers"] == removed
    assert config["text_config"]["num_hidden_layers"] == 1 and config["vision_config"]["num_hidden_layers"] == 1
    assert config["text_config"]["layer_types"] == [original["text_config"]["layer_types"][i] for i in kept_text]
    # The saved tensors are exactly the kept layers of the original, renumbered; everything else is unchanged.
    before, after = load_file(tiny_gemma2 / "model.safetensors"), load_file(output_dir / "model.safetensors")
    text_prefix, vision_prefix = "model.language_model.layers.", "model.vision_tower.encoder.layers."
    expected = {}
    for name, tensor in before.items():
        for prefix, kept in ((text_prefix, kept_text), (vision_prefix, kept_vision)):
            if name.startswith(prefix):
                index, rest = name[len(prefix) :].split(".", 1)
                if int(index) in kept:
                    expected[f"{prefix}{kept.index(int(index))}.{rest}"] = tensor
                break
        else:
            expected[name] = tensor
    assert after.keys() == expected.keys()
    assert all(torch.equal(after[name], expected[name]) for name in expected)
    # In a fresh process as Hub code: the logits and tokens of the model pruned in memory (renumbered KV-cache
    # layer indices included).
    model, processor = prune.load(str(tiny_gemma2))
    remove_layers(model, text=removed["text"], vision=removed["vision"])
    inputs = dict(processor(images=sample_images[0], text="<image>caption en", return_tensors="pt"))
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    case = {
        "folder": str(output_dir),
        "image": sample_images[0],
        "prompt": "<image>caption en",
        "inputs": inputs,
        "max_new_tokens": 5,
    }
    got = load_as_hub_code_in_a_fresh_process({"pruned": case}, tmp_path, cwd=tmp_path)["pruned"]
    assert (got["logits"]["AutoModel"] - logits).abs().max().item() == 0.0
    assert torch.equal(got["generated"]["AutoModelForImageTextToText"], generated)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 5


def test_report_prunes_scores_and_heals_each_k(tiny_gemma2, tmp_path):
    output_dir = tmp_path / "report"
    # The real healing recipe, scored on 4 test images with short greedy captions: the report's plumbing is under
    # test here, the recipe in tests/test_finetune.py.
    recipe = yaml.safe_load((REPO_ROOT / "configs" / "rsicd_mini_heal.yaml").read_text())
    recipe.update(max_test_samples=4, num_beams=1, max_new_tokens=8, grid_images=2)
    heal = tmp_path / "heal.yaml"
    heal.write_text(yaml.safe_dump(recipe))
    argv = ["--model_name_or_path", str(tiny_gemma2), "--dataset_dir", SAMPLE, "--output_dir", str(output_dir),
            "--report_k", "0,1", "--heal_config", str(heal), "--num_images", "4"]  # fmt: skip
    assert prune.main(argv) == 0
    report = json.loads((output_dir / "pruning_report.json").read_text())
    rows = {row["k"]: row for row in report["rows"]}
    assert sorted(rows) == [0, 1] and rows[0]["removed"] == [] and len(rows[1]["removed"]) == 1
    assert (
        rows[1]["parameters"] < rows[0]["parameters"] and rows[1]["gflops_per_caption"] < rows[0]["gflops_per_caption"]
    )
    for k in (0, 1):  # k = 0 heals too: the control
        assert set(rows[k]["healed"]) >= {"bleu_4", "meteor", "rouge_l", "cider"}
    # The "before" scores are finetune.py's own zero-shot evaluation of the pruned folder.
    before = json.loads((output_dir / "k1" / "before" / "eval_results.json").read_text())["test"]["overall"]
    assert rows[1]["before"] == before
    table = (output_dir / "pruning_report.md").read_text().splitlines()
    assert len(table) == 4 and table[3].startswith("| 1 | " + str(rows[1]["removed"][0]))
    assert (output_dir / "pruning_report.png").stat().st_size > 0


def test_a_stopped_report_reuses_its_finished_runs(tmp_path):
    from pruning.report import run_finetune

    finished = tmp_path / "k1" / "healed"
    finished.mkdir(parents=True)
    scores = {"bleu_4": 0.21, "meteor": 0.24, "rouge_l": 0.46, "cider": 0.95}
    (finished / "eval_results.json").write_text(json.dumps({"test": {"overall": scores}}))
    # No finetune.py run: the config does not even exist.
    assert run_finetune("missing.yaml", tmp_path / "model", finished, "data", train=True) == scores
    with pytest.raises(RuntimeError, match="missing.yaml"):
        run_finetune("missing.yaml", tmp_path / "model", tmp_path / "k2" / "healed", "data", train=True)
