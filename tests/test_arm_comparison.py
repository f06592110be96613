"""metrics/arm_comparison.py and the seed-aware scripts/compare_predictions: intervals checked where the answer is
known (simulated arms drawn from the same distribution, or a known difference), Welch's t against scipy's, and the
four runs under docs/results."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from metrics import java_available
from metrics.arm_comparison import (
    detectable_difference,
    paired_bootstrap,
    seed_bootstrap,
    welch_interval,
)

RUNS, IMAGES, SEED_SD = 5, 80, 0.1


def _experiment(rng, difference: float = 0.0):
    """Two arms of RUNS runs on the same IMAGES images: a score per image (shared), an offset per run (the seed,
    sd SEED_SD) and noise per run and image; arm A is shifted by `difference`."""
    image = rng.normal(1.0, 0.5, IMAGES)
    arms = []
    for shift in (difference, 0.0):
        seeds = rng.normal(0.0, SEED_SD, (RUNS, 1))
        arms.append(image + shift + seeds + rng.normal(0.0, 0.3, (RUNS, IMAGES)))
    return arms


def _covers(interval, value) -> bool:
    return interval[0] <= value <= interval[1]


def test_arms_from_one_distribution_are_covered_by_the_seed_aware_intervals_not_by_the_image_bootstrap():
    """Same distribution, true difference 0, the seed as the main source of variance: the two-level bootstrap and
    Welch's t cover 0 about as often as they claim; the image-only bootstrap of the pooled runs, which ignores
    the seed, misses it far more often."""
    rng = np.random.default_rng(1)
    covered = {"seed_aware": 0, "welch": 0, "images_only": 0}
    trials = 150
    for trial in range(trials):
        a, b = _experiment(rng)
        covered["seed_aware"] += _covers(seed_bootstrap(a, b, 300, trial)["interval_95"], 0.0)
        covered["welch"] += _covers(welch_interval(a.mean(axis=1), b.mean(axis=1))["interval_95"], 0.0)
        covered["images_only"] += _covers(
            paired_bootstrap(a.mean(axis=0), b.mean(axis=0), 300, trial)["interval_95"], 0.0
        )
    shares = {name: count / trials for name, count in covered.items()}
    assert 0.88 <= shares["welch"] <= 1.0, shares
    assert shares["seed_aware"] >= 0.8, shares  # a bootstrap over 5 seeds is somewhat narrow, not badly so
    assert shares["images_only"] <= 0.6, shares


def test_a_known_difference_is_found_and_covered():
    rng = np.random.default_rng(2)
    a, b = _experiment(rng, difference=0.4)
    welch = welch_interval(a.mean(axis=1), b.mean(axis=1))
    assert welch["p_value"] < 0.01 and _covers(welch["interval_95"], 0.4)
    assert welch["difference"] == pytest.approx(a.mean() - b.mean())
    boot = seed_bootstrap(a, b, 2000, 0)
    assert boot["interval_95"][0] > 0 and _covers(boot["interval_95"], 0.4)
    assert boot["difference"] == pytest.approx(welch["difference"])


def test_a_group_contrast_is_the_difference_of_the_arms_differences():
    """Hand-made: A leads by 0.3 on images 0-1 and by 0.1 on images 2-3, and the runs differ by an offset (the
    seed), which a run's lead of one group over the other cancels: the contrast is 0.2 exactly, and every resample
    (each group's images, each arm's runs) gives 0.2 too."""
    b = np.array([[1.0, 2.0, 3.0, 4.0], [1.5, 2.5, 3.5, 4.5]])
    a = b + np.array([0.3, 0.3, 0.1, 0.1])
    result = seed_bootstrap(a, b, 500, 0, contrast=([0, 1], [2, 3]))
    assert result["difference"] == pytest.approx(0.2)
    assert result["interval_95"] == pytest.approx([0.2, 0.2])


def test_a_group_contrast_finds_a_lead_on_one_group_only_and_not_an_even_lead():
    """Simulated arms: A leads by 0.4 on the first half of the images and not on the second; an even lead of 0.4
    on both halves gives a contrast whose interval covers 0."""
    rng = np.random.default_rng(4)
    first, second = np.arange(IMAGES // 2), np.arange(IMAGES // 2, IMAGES)
    a, b = _experiment(rng)
    a[:, first] += 0.4
    uneven = seed_bootstrap(a, b, 2000, 0, contrast=(first, second))
    assert uneven["interval_95"][0] > 0 and _covers(uneven["interval_95"], 0.4)
    a[:, second] += 0.4
    even = seed_bootstrap(a, b, 2000, 0, contrast=(first, second))
    assert _covers(even["interval_95"], 0.0) and abs(even["difference"]) < 0.15


def test_welch_equals_scipys_unequal_variance_t_test():
    a, b = [0.968, 1.155, 1.02, 1.08, 0.99], [0.950, 0.979, 0.93, 1.01]
    welch = welch_interval(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert welch["t"] == pytest.approx(reference.statistic) and welch["p_value"] == pytest.approx(reference.pvalue)
    low, high = reference.confidence_interval(0.95)
    assert welch["interval_95"] == pytest.approx([low, high])


def test_the_detectable_difference_is_found_four_times_in_five():
    """Runs with sd 0.1, five per arm: a true difference equal to `detectable_difference` is found by Welch's test
    at level 0.05 in about 80% of simulated experiments."""
    z = np.array([-1.2, -0.6, 0.0, 0.6, 1.2])
    sample = 0.1 * z / z.std(ddof=1)  # sd exactly 0.1
    smallest = detectable_difference(sample, sample)
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(2000):
        a, b = rng.normal(smallest, 0.1, 5), rng.normal(0.0, 0.1, 5)
        found += stats.ttest_ind(a, b, equal_var=False).pvalue < 0.05
    assert 0.72 <= found / 2000 <= 0.88, (smallest, found / 2000)


@pytest.mark.skipif(not java_available(), reason="the PTB tokenizer needs Java")
def test_compare_predictions_over_seeds_on_the_published_ablation_runs(capsys):
    """The four runs under docs/results: each run's CIDEr is the one its eval_results.json reports, and the
    seed-aware analysis and the per-class table come with them."""
    from scripts import compare_predictions

    root = Path("docs/results/rsicd-mini-ablation")
    runs = {arm: [root / f"{arm}-seed{seed}" for seed in (42, 43)] for arm in ("enhanced", "direct-wide")}
    arms = [",".join(str(run / "predictions.jsonl") for run in runs[arm]) for arm in runs]
    groups = {"small objects": ["storage tanks", "parking"], "plain": ["desert", "beach", "meadow"]}
    options = ["--resamples", "200", "--per_class", "--class_groups", json.dumps(groups)]
    assert compare_predictions.main([*arms, *options]) == 0
    result = json.loads(capsys.readouterr().out)
    for key, arm in (("runs_a", "enhanced"), ("runs_b", "direct-wide")):
        reported = [
            json.loads((run / "eval_results.json").read_text())["test"]["overall"]["cider"] for run in runs[arm]
        ]
        assert result[key] == pytest.approx(reported, abs=1e-6)
    assert result["arm_a"]["sd_over_seeds"] == pytest.approx(np.std(result["runs_a"], ddof=1))
    assert result["welch"]["degrees_of_freedom"] < 2 and result["welch"]["p_value"] > 0.2  # two seeds: no verdict
    assert len(result["per_run_pair"]) == 2 and result["detectable_difference"] > result["cider_difference"]
    classes = result["per_class"]
    assert sum(entry["images"] for entry in classes.values()) == result["images"] == 547
    assert "storage tanks" in classes and "desert" in classes and classes["(numbered, no class)"]["images"] == 37
    # A group is its classes' images together; the contrast is the first group's difference minus the second's.
    summary = result["class_groups"]
    for group, names in groups.items():
        images = sum(classes[name]["images"] for name in names)
        lead = sum(classes[name]["difference"] * classes[name]["images"] for name in names) / images
        assert summary["groups"][group]["images"] == images
        assert summary["groups"][group]["difference"] == pytest.approx(lead)
    expected = summary["groups"]["small objects"]["difference"] - summary["groups"]["plain"]["difference"]
    assert summary["contrast"]["difference"] == pytest.approx(expected)
    assert summary["contrast"]["welch"]["difference"] == pytest.approx(expected)
    with pytest.raises(SystemExit, match="'plain' names \\['deserts'\\]"):
        compare_predictions.main([*arms, "--class_groups", json.dumps({"plain": ["deserts"]})])


def test_scene_answers_are_compared_by_accuracy(tmp_path, capsys):
    from scripts import compare_predictions

    truth = ["airport", "beach", "desert", "forest"]
    files = []
    for name, answers in (("a", ["airport", "beach", "desert", "meadow"]), ("b", ["port", "beach", "river", "park"])):
        lines = [
            json.dumps({"image": f"{t}_{i}.jpg", "prediction": p, "reference": t})
            for i, (p, t) in enumerate(zip(answers, truth))
        ]
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text("\n".join(lines) + "\n")
    assert compare_predictions.main([*map(str, files), "--resamples", "200"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["accuracy_a"], result["accuracy_b"], result["accuracy_difference"]) == (0.75, 0.25, 0.5)
    assert 0 <= result["interval_95"][0] <= 0.5 <= result["interval_95"][1] <= 1  # b is never right where a is wrong
