"""scripts/compare_predictions.py: per-image CIDEr-D whose mean is the corpus CIDEr of the metrics, and a paired
bootstrap that is zero for identical captioners."""

import json

import pytest

from dataset_builder import load_risc
from metrics import caption_metrics, java_available
from scripts import compare_predictions

pytestmark = pytest.mark.skipif(not java_available(), reason="the PTB tokenizer needs Java")


def write_predictions(path, rows, captions):
    records = [
        {"image": row["filename"], "prediction": caption, "references": list(row["captions"])}
        for row, caption in zip(rows, captions)
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_means_are_the_corpus_cider_and_identical_models_do_not_differ(tmp_path, capsys):
    rows = list(load_risc("dataset_builder/sample")["test"])
    leave_one_out = [row["captions"][0] for row in rows]
    constant = ["many buildings and green trees are in a dense residential area ."] * len(rows)
    a = write_predictions(tmp_path / "a.jsonl", rows, leave_one_out)
    b = write_predictions(tmp_path / "b.jsonl", rows, constant)
    assert compare_predictions.main([str(a), str(b), "--resamples", "500"]) == 0
    result = json.loads(capsys.readouterr().out)
    references = [list(row["captions"]) for row in rows]
    assert result["cider_a"] == pytest.approx(caption_metrics(leave_one_out, references)["overall"]["cider"], abs=1e-9)
    assert result["cider_b"] == pytest.approx(caption_metrics(constant, references)["overall"]["cider"], abs=1e-9)
    low, high = result["interval_95"]
    assert low <= result["cider_difference"] <= high
    assert compare_predictions.main([str(a), str(a), "--resamples", "500"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["cider_difference"] == 0 and same["interval_95"] == [0.0, 0.0]


def test_runs_of_one_model_pool_to_the_mean_of_their_cider(tmp_path, capsys):
    rows = list(load_risc("dataset_builder/sample")["test"])
    references = [list(row["captions"]) for row in rows]
    first = [row["captions"][0] for row in rows]
    second = [row["captions"][1] for row in rows]
    constant = ["many buildings and green trees are in a dense residential area ."] * len(rows)
    a1 = write_predictions(tmp_path / "a1.jsonl", rows, first)
    a2 = write_predictions(tmp_path / "a2.jsonl", rows, second)
    b = write_predictions(tmp_path / "b.jsonl", rows, constant)
    assert compare_predictions.main([f"{a1},{a2}", str(b), "--resamples", "500"]) == 0
    result = json.loads(capsys.readouterr().out)
    each = [caption_metrics(captions, references)["overall"]["cider"] for captions in (first, second)]
    assert result["runs_a"] == pytest.approx(each, abs=1e-9)
    assert result["cider_a"] == pytest.approx(sum(each) / 2, abs=1e-9)
    assert result["runs_b"] == pytest.approx([caption_metrics(constant, references)["overall"]["cider"]], abs=1e-9)


def test_runs_on_other_images_are_refused_naming_the_file(tmp_path):
    rows = list(load_risc("dataset_builder/sample")["test"])
    captions = [row["captions"][0] for row in rows]
    a = write_predictions(tmp_path / "a.jsonl", rows, captions)
    shorter = write_predictions(tmp_path / "short.jsonl", rows[1:], captions[1:])
    with pytest.raises(SystemExit, match="short.jsonl does not list the images of"):
        compare_predictions.main([str(a), str(shorter), "--resamples", "10"])
