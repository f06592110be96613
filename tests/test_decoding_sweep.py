"""scripts/decoding_sweep.py: every setting is scored as the metrics score its captions, and the winner is what
inference.py then decodes with."""

import json
import shutil
from pathlib import Path

import pytest

from dataset_builder import load_risc
from inference_core import caption_images, load_model
from metrics import caption_metrics
from scripts import decoding_sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "dataset_builder" / "sample"


def test_settings_try_greedy_once():
    args = decoding_sweep.SweepArguments(
        model="m", num_beams="1,2", length_penalty="0.5,1.5", no_repeat_ngram_size="0"
    )
    assert decoding_sweep.settings(args) == [
        {"num_beams": 1, "length_penalty": 1.0, "no_repeat_ngram_size": 0},
        {"num_beams": 2, "length_penalty": 0.5, "no_repeat_ngram_size": 0},
        {"num_beams": 2, "length_penalty": 1.5, "no_repeat_ngram_size": 0},
    ]
    with pytest.raises(ValueError, match="'1,x' is not a comma-separated list of int"):
        decoding_sweep.settings(decoding_sweep.SweepArguments(model="m", num_beams="1,x"))


def test_the_sweep_scores_each_setting_and_writes_the_best(tiny_checkpoint, tmp_path, capsys):
    model_dir = shutil.copytree(tiny_checkpoint("direct"), tmp_path / "model")
    argv = [str(model_dir), "--dataset_dir", str(SAMPLE_DIR), "--num_beams", "1,2", "--max_new_tokens", "6"]
    assert decoding_sweep.main([*argv, "--no_repeat_ngram_size", "0,2", "--write_best"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    results, summary = lines[:-1], lines[-1]
    assert len(results) == 4 and summary["split"] == "val"
    assert summary["best"] == max(results, key=lambda result: result["cider"])

    model, processor = load_model(str(model_dir))
    rows = load_risc(SAMPLE_DIR)["val"]
    captions = caption_images(
        model,
        processor,
        [row["image"].convert("RGB") for row in rows],
        num_beams=2,
        max_new_tokens=6,
        no_repeat_ngram_size=2,
    )
    expected = caption_metrics(captions, rows["captions"])["overall"]
    measured = next(r for r in results if (r["num_beams"], r["no_repeat_ngram_size"]) == (2, 2))
    assert {key: measured[key] for key in expected} == expected
    assert measured["distinct_captions"] == len(set(captions))
    config = json.loads((model_dir / "generation_config.json").read_text())
    best = summary["best"]
    assert (config["num_beams"], config["no_repeat_ngram_size"]) == (best["num_beams"], best["no_repeat_ngram_size"])
