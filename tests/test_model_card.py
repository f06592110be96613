"""publishing: the README.md of a published TSN-PaliGemma parses as a Hub model card, its model-index holds exactly
eval_results.json's test scores, its body carries results (with the zero-shot baseline), TSN settings, training
recipe, cost, samples, usage code and citations, and it never contains a local path."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from fake_hub import validate_card_metadata
from huggingface_hub import ModelCard

from configuration_tsn_paligemma import TSNPaliGemmaConfig
from metrics import caption_metrics, java_available
from publishing import is_hub_id, looks_like_local_path, render_model_card
from tasks import get_task

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "dataset_builder" / "sample"
REPO_ID = "alice/tsn-paligemma-risc"
BASE = "google/paligemma-3b-pt-224"


def _rows(split: str) -> list[dict]:
    with (SAMPLE_DIR / "captions.csv").open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def _results(sets: dict[str, tuple[list[str], list[list[str]], list[str]]]) -> dict:
    """eval_results.json entries from ONE caption_metrics call: each item is scored once in its set and once in its
    set/source group (caption_metrics scores every group as if alone)."""
    predictions, references, groups = [], [], []
    for name, (preds, refs, sources) in sets.items():
        for prediction, reference, source in zip(preds, refs, sources):
            for group in (name, f"{name}/{source}"):
                predictions.append(prediction)
                references.append(reference)
                groups.append(group)
    metrics = ("bleu", "meteor", "rouge", "cider") if java_available() else ("bleu", "rouge", "cider")
    scores = caption_metrics(predictions, references, groups=groups, metrics=metrics)["groups"]
    return {
        name: {
            "task": "caption",
            "loss": 1.25,
            "num_samples": len(sets[name][0]),
            "overall": scores[name],
            "groups": {g.split("/")[1]: v for g, v in scores.items() if g.startswith(name + "/")},
        }
        for name in sets
    }


def fabricate_card_inputs(output_dir: Path, base: str, baseline: bool = True) -> Path:
    """What the card reads from a finetune.py output_dir, with real scores: every test image's first human caption
    as "prediction" against the other four (leave-one-out), and a constant caption as the zero-shot baseline."""
    test, val = _rows("test"), _rows("val")[:4]
    refs = [[row[f"caption_{i}"] for i in range(2, 6)] for row in test]
    sets = {
        "test": ([row["caption_1"] for row in test], refs, [row["source"] for row in test]),
        "val": (
            [row["caption_1"] for row in val],
            [[row[f"caption_{i}"] for i in range(2, 6)] for row in val],
            [row["source"] for row in val],
        ),
    }
    if baseline:
        sets["baseline_test"] = (["many buildings and green trees are around ."] * len(test), refs, sets["test"][2])
    (output_dir / "merged").mkdir(parents=True)
    (output_dir / "eval_results.json").write_text(json.dumps(_results(sets), indent=2))
    config = TSNPaliGemmaConfig(tsn_integration="enhanced", tsn_backbone="resnet18", tsn_fusion="gated")
    config.to_json_file(output_dir / "merged" / "config.json")
    processor = {
        "image_processor": {"image_seq_length": 256, "size": {"height": 224, "width": 224}},
        "processor_class": "PaliGemmaProcessor",
    }
    (output_dir / "merged" / "processor_config.json").write_text(json.dumps(processor))
    finetune_config = {
        "model_name_or_path": base,
        "quantization": "4bit",
        "lora_r": 32,
        "lora_alpha": 64,
        "lora_dropout": 0.1,
        "learning_rate": 0.0002,
        "num_train_epochs": 5,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 2,
        "weight_decay": 0.01,
        "label_smoothing_factor": 0.1,
        "num_beams": 4,
        "max_new_tokens": 30,
        "prompt": "caption en",
        "dataset_dir": str(SAMPLE_DIR),
        "output_dir": str(output_dir),
        "bf16": True,
        "seed": 42,
        "an_unknown_key": {"nested": str(output_dir)},
        "tsn_integration": "enhanced",
    }
    (output_dir / "finetune_config.yaml").write_text(yaml.safe_dump(finetune_config))
    predictions = [
        {
            "image": row["image"],
            "source": row["source"],
            "prediction": row["caption_1"],
            "references": [row[f"caption_{i}"] for i in range(1, 6)],
        }
        for row in test
    ]
    (output_dir / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    (output_dir / "samples.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    characteristics = {
        "total_parameters": 2_923_335_408,
        "trainable_parameters": 51_700_000,
        "gflops_per_caption": 1641.63,
        "latency_ms_median": 47.25,
        "latency_ms_mean": 49.0,
        "latency_ms_p95": 61.5,
        "num_images": 64,
        "repeats": 3,
        "cpu_count": 16,
        "load_average_1min": 0.5,
        "num_beams": 4,
        "max_new_tokens": 30,
        "device": "NVIDIA H100 80GB HBM3",
        "dtype": "bfloat16",
    }
    (output_dir / "characteristics.json").write_text(json.dumps(characteristics))
    return output_dir


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return fabricate_card_inputs(tmp_path_factory.mktemp("card") / "run", base=BASE)


@pytest.fixture(scope="module")
def card_text(output_dir) -> str:
    return render_model_card(output_dir, REPO_ID, adapter_only=False, base_model=None)


def test_metadata_parses_and_model_index_equals_eval_results(output_dir, card_text, tmp_path):
    (tmp_path / "README.md").write_text(card_text)
    for card in (ModelCard(card_text), ModelCard.load(tmp_path / "README.md")):
        data = card.data
        assert data.license == "gemma" and data.pipeline_tag == "image-text-to-text"
        assert data.library_name == "transformers" and data.base_model == BASE
        assert {"remote-sensing", "image-captioning", "paligemma", "tsn", "qlora", "tsn-enhanced"} <= set(data.tags)
        assert data.datasets == ["RISC"]
        assert data.widget == [
            {
                "src": f"https://huggingface.co/{REPO_ID}/resolve/main/example.jpg",
                "text": "<image>caption en",
                "example_title": "aerial image",
            }
        ]
        test = json.loads((output_dir / "eval_results.json").read_text())["test"]
        expected = {("all", key): value for key, value in test["overall"].items()}
        expected |= {
            (group.lower(), key): value for group, scores in test["groups"].items() for key, value in scores.items()
        }
        got = {(result.dataset_config, result.metric_type): result.metric_value for result in data.eval_results}
        assert got == expected  # exactly the json's floats, overall and per source
        assert len(got) == 7 * (1 + len(test["groups"])) if java_available() else len(got) == 6 * 4
        assert {result.dataset_split for result in data.eval_results} == {"test"}
        assert 0 < test["overall"]["cider"] and test["overall"]["bleu_1"] > 0.3  # real, non-trivial scores
    assert validate_card_metadata(card_text) == []  # what the Hub's validate-yaml checks


def test_body_has_results_settings_recipe_cost_usage_and_citations(output_dir, card_text):
    results = json.loads((output_dir / "eval_results.json").read_text())
    test, baseline = results["test"], results["baseline_test"]
    lines = card_text.splitlines()
    overall = next(line for line in lines if line.startswith("| **test, all sources** |"))
    assert f"| {test['overall']['bleu_4']:.4f} |" in overall and f"| {test['overall']['cider']:.4f} |" in overall
    zero_shot = lines[lines.index(overall) + 1]
    assert zero_shot.startswith("| zero-shot base |") and f"| {baseline['overall']['cider']:.4f} |" in zero_shot
    for group, name in (("NWPU", "NWPU-Captions"), ("RSICD", "RSICD"), ("UCM", "UCM-Captions")):
        row = next(line for line in lines if line.startswith(f"| **test, {name}** |"))
        assert f"| {test['groups'][group]['rouge_l']:.4f} |" in row
        assert lines[lines.index(row) + 1].startswith("| zero-shot base |")
    assert "| segment grids | 1x1, 2x2 |" in card_text and "| backbone | resnet18 |" in card_text
    assert "| image tokens | 256 |" in card_text and "`gated`" in card_text
    assert "LoRA r=32, alpha=64, dropout 0.1" in card_text and "| learning rate | 0.0002 |" in card_text
    assert "| gradient accumulation | 2 |" in card_text and "| generation (evaluation) | 4 beams" in card_text
    assert "an_unknown_key" not in card_text
    assert "| parameters | 2.92 B |" in card_text and "| GFLOPs per caption | 1641.6 |" in card_text
    assert (
        "| latency per image, median | 47.2 ms |" in card_text
        or "| latency per image, median | 47.3 ms |" in card_text
    )
    assert "the median of 3 round(s) over 64 test images after one warm-up call" in card_text
    assert "Measured on NVIDIA H100 80GB HBM3 on a machine of 16 cores, 1-minute load average 0.5." in card_text
    assert "![Test images with the model's caption and a reference caption](samples.png)" in card_text
    assert "trust_remote_code=True" in card_text and 'revision = "main"' in card_text and "commit sha" in card_text
    assert f'pipeline("image-text-to-text", model="{REPO_ID}", revision="main", trust_remote_code=True)' in card_text
    assert "max_new_tokens=30, num_beams=4" in card_text
    for key in ("beyer2024paligemma", "wang2016tsn", "dettmers2023qlora", "lu2018rsicd", "qu2016ucm", "cheng2022nwpu"):
        assert f"{{{key}," in card_text
    assert "## Limitations" in card_text


def test_no_local_path_in_the_card(tmp_path, monkeypatch):
    base_dir = tmp_path / "checkpoints" / "paligemma-local"
    base_dir.mkdir(parents=True)
    output_dir = fabricate_card_inputs(tmp_path / "run", base=str(base_dir))
    text = render_model_card(output_dir, REPO_ID, adapter_only=False, base_model=None)
    for path in (str(tmp_path), str(SAMPLE_DIR), "/tmp/"):
        assert path not in text
    assert (
        ModelCard(text).data.base_model is None
        and "trained from a local model checkpoint `paligemma-local` with" in text
    )
    # a relative path that exists here is local too, although it has a Hub id's shape
    monkeypatch.chdir(tmp_path)
    assert looks_like_local_path("checkpoints/paligemma-local") and not is_hub_id("checkpoints/paligemma-local")
    assert is_hub_id(BASE) and not looks_like_local_path(BASE) and is_hub_id("gpt2")
    assert not is_hub_id("/abs/path") and not is_hub_id("a/b/c") and not is_hub_id("C:\\models\\pg")


def test_baseline_from_a_file_or_absent(tmp_path, output_dir):
    results = json.loads((output_dir / "eval_results.json").read_text())
    zero_shot_run = tmp_path / "zero-shot" / "eval_results.json"
    zero_shot_run.parent.mkdir()
    zero_shot_run.write_text(json.dumps({"test": results["baseline_test"], "val": results["val"]}))
    bare = fabricate_card_inputs(tmp_path / "no-baseline", base=BASE, baseline=False)
    text = render_model_card(bare, REPO_ID, adapter_only=False, base_model=None)
    assert "| zero-shot base |" not in text and "No zero-shot baseline" in text
    for baseline in (str(zero_shot_run), results["baseline_test"]):
        text = render_model_card(bare, REPO_ID, adapter_only=False, base_model=None, baseline_results=baseline)
        assert f"| zero-shot base | {results['baseline_test']['num_samples']} (few) |" in text
        assert f"{results['baseline_test']['overall']['cider']:.4f}" in text
    with pytest.raises(FileNotFoundError, match="--baseline_results .* does not exist"):
        render_model_card(bare, REPO_ID, baseline_results=str(tmp_path / "missing.json"))


def test_adapter_card_points_to_the_base_and_the_revision(output_dir):
    text = render_model_card(output_dir, REPO_ID, adapter_only=True, base_model=BASE, revision="v2")
    data = ModelCard(text).data
    assert data.library_name == "peft" and data.base_model == BASE and data.base_model_relation == "adapter"
    assert {"peft", "lora"} <= set(data.tags) and getattr(data, "widget", None) is None  # adapters: no widget
    assert f'base_model = "{BASE}"' in text and 'revision = "v2"' in text
    assert "from_base_pretrained(base_model" in text and "PeftModel.from_pretrained(model, repo_id" in text
    assert 'tsn_options["tsn_pretrained_backbone"] = False' in text


def test_optional_outputs_missing_and_errors(tmp_path):
    output_dir = fabricate_card_inputs(tmp_path / "run", base=BASE)
    for name in ("characteristics.json", "predictions.jsonl", "samples.png"):
        (output_dir / name).unlink()
    text = render_model_card(output_dir, REPO_ID, base_model=None)
    assert "characteristics.json was absent" in text and "samples.png" not in text
    assert getattr(ModelCard(text).data, "widget", None) is None  # no example image without predictions
    with pytest.raises(ValueError, match="--base_model 'not a hub id' is not a Hub model id"):
        render_model_card(output_dir, REPO_ID, base_model="not a hub id")
    (output_dir / "eval_results.json").write_text(json.dumps({"val": {}}))
    with pytest.raises(ValueError, match="no test scores"):
        render_model_card(output_dir, REPO_ID)
    (output_dir / "eval_results.json").unlink()
    with pytest.raises(FileNotFoundError, match="eval_results.json is missing .* run finetune.py first"):
        render_model_card(output_dir, REPO_ID)


def test_card_states_a_full_strategy_its_trainable_count_and_pruned_layers(tmp_path):
    output_dir = fabricate_card_inputs(tmp_path / "run", base=BASE)
    config_path = output_dir / "finetune_config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config.update(train_strategy="full", quantization="none")
    config_path.write_text(yaml.safe_dump(config))
    (output_dir / "training_summary.json").write_text(json.dumps({"trainable_parameters": 19403072}))
    merged_config = json.loads((output_dir / "merged" / "config.json").read_text())
    merged_config["pruned_layers"] = {"text": [2]}
    (output_dir / "merged" / "config.json").write_text(json.dumps(merged_config))
    text = render_model_card(output_dir, REPO_ID, adapter_only=False, base_model=None)
    assert "full training: every weight of the model trained (`train_strategy: full`)" in text
    assert "| trained parameters | 19.40 M |" in text
    assert "removed language-model layers 2" in text and "full-training" in ModelCard(text).data.tags


def test_card_states_only_what_the_run_recorded(tmp_path):
    """A small from-scratch base fine-tuned on a few images: the card names that base, its size and license, the
    training images per source and the processor's image size, marks scores of few images, and claims no Gemma
    weights, no RISC training and no 224 px input."""
    output_dir = fabricate_card_inputs(tmp_path / "run", base="examples/rs-mini")
    processor_path = output_dir / "merged" / "processor_config.json"
    processor = json.loads(processor_path.read_text())
    processor["image_processor"]["size"] = {"height": 128, "width": 128}
    processor_path.write_text(json.dumps(processor))
    summary = {
        "total_parameters": 19_403_072,
        "trainable_parameters": 1_234_567,
        "base_model": {
            "name": "rs-mini",
            "local": True,
            "model_type": "tsn_paligemma",
            "license": "apache-2.0",
            "parameters": 19_403_072,
        },
        "train_images": {"RSICD": 25, "UCM": 5},
    }
    (output_dir / "training_summary.json").write_text(json.dumps(summary))
    text = render_model_card(output_dir, REPO_ID, adapter_only=False, base_model=None)
    data = ModelCard(text).data
    assert data.license == "apache-2.0" and data.base_model is None
    assert "trained from a local TSN-PaliGemma checkpoint `rs-mini` of 19.40 M parameters with QLoRA" in text
    assert "30 training images (RSICD 25, UCM-Captions 5; five captions each)" in text
    assert "RISC (NWPU-Captions" not in text and "Gemma terms" not in text
    assert "224x224" not in text and "224 px" not in text
    assert "| image size | 128x128 px |" in text and "resized to 128x128 px" in text
    assert "License: `apache-2.0`, the base model's." in text
    test = json.loads((output_dir / "eval_results.json").read_text())["test"]
    few = [line for line in text.splitlines() if "(few) |" in line]
    assert few and all(line.startswith(("| **test", "| zero-shot", "| val")) for line in few)
    assert len([line for line in few if line.startswith("| **test")]) == 1 + len(test["groups"])  # 12 images: all
    assert 'Rows marked "(few)" score fewer than 30 images' in text


def test_card_license_follows_the_base(tmp_path):
    google = render_model_card(fabricate_card_inputs(tmp_path / "google", base=BASE), REPO_ID)
    assert ModelCard(google).data.license == "gemma" and "Gemma terms of use" in google
    local = fabricate_card_inputs(tmp_path / "local", base=str(tmp_path / "somewhere"))
    (local / "training_summary.json").write_text(json.dumps({"base_model": {"name": "somewhere", "local": True}}))
    text = render_model_card(local, REPO_ID)
    assert ModelCard(text).data.license == "unknown" and "The base model states no license" in text
    assert "Gemma terms" not in text


def test_a_multi_task_card_lists_every_task_with_its_prompt_score_and_baseline():
    caption = {"results": {"test": {"overall": {"cider": 1.39}}}, "baseline": {"overall": {"cider": 1.24}}}
    detection = {"results": {"test": {"overall": {"ap": 0.0, "ap50": 0.01}, "groups": {"airplane": {}, "ship": {}}}}}
    scenes = {"results": {"test": {"overall": {"images": 510, "accuracy": 0.459, "majority_accuracy": 0.043}}}}
    counts = {
        "results": {
            "test": {
                "overall": {
                    "questions": 60,
                    "accuracy": 0.467,
                    "mae": 1.5,
                    "median_accuracy": 0.417,
                    "median_mae": 1.5,
                }
            }
        },
    }
    views = {"caption": caption, "detect": detection, "classify": scenes, "count": counts}
    rows = [[name, *get_task(name).card_row(view)] for name, view in views.items()]
    assert rows == [
        ["caption", "`caption en`", "CIDEr 1.3900", "before this training: CIDEr 1.2400"],
        ["detect", "`detect airplane ; ship`", "AP 0.0000, AP50 0.0100", "no boxes: AP 0"],
        ["classify", "`answer en what is the scene?`", "accuracy 0.4590", "majority class: accuracy 0.0430"],
        [
            "count",
            "`answer en how many <classes> are there?`",
            "accuracy 0.4670, MAE 1.5000",
            "median count per class: accuracy 0.4170, MAE 1.5000",
        ],
    ]
    assert get_task("caption").card_row({"results": caption["results"]})[2] == "-"
