"""Two arms of an experiment (e.g. `enhanced` against `direct`), each trained with several seeds and scored on the
same images: intervals for the difference of the arm means that count the seed as a source of variance, not only
the choice of images.

Scores come as (runs, images) arrays: one row per training run (seed) of the arm, one column per test image, the
same images in the same order for every run. The mean of a row is that run's corpus score (CIDEr-D's per-image
scores average to the corpus CIDEr).

- `paired_bootstrap`: images resampled, the runs of each arm averaged per image first. It covers the choice of
  images only: with one run per arm (or seeds that differ a lot) it is too narrow for "does the arm help".
- `seed_bootstrap`: a two-level bootstrap. Each resample draws the images (shared by all runs: they are paired)
  and, independently per arm, the seeds with replacement; the statistic is the difference of the arm means. With
  few seeds a percentile bootstrap over seeds is somewhat narrow (it draws from the seeds seen), so
  `welch_interval` is reported beside it.
- `welch_interval`: the runs as the unit (each run's mean score), Welch's t interval and test (unequal variances,
  Welch-Satterthwaite degrees of freedom), which is exact for normal run means.
- `detectable_difference`: the smallest true difference that a two-sided Welch test at level 0.05 finds with 80%
  power, given the spread of runs observed and the number of runs per arm.
"""

import numpy as np
from scipy import stats


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> dict:
    """Per-image scores `a`, `b` (images,), paired: the mean difference, its 95% percentile interval over image
    resamples and the share of resamples whose difference has the other sign."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(resamples, len(a)))
    differences = (a[picks] - b[picks]).mean(axis=1)
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "difference": float(a.mean() - b.mean()),
        "interval_95": [float(low), float(high)],
        "share_of_resamples_reversed": float(np.mean(np.sign(differences) != np.sign(a.mean() - b.mean()))),
    }


def seed_bootstrap(
    a_runs: np.ndarray,
    b_runs: np.ndarray,
    resamples: int,
    seed: int,
    chunk: int = 500,
    contrast: tuple | None = None,
) -> dict:
    """The difference of the arm means with a 95% interval over resamples of the images and, per arm, of its
    seeds (`a_runs`, `b_runs`: (runs, images) scores on the same images).

    With `contrast` = (columns_1, columns_2), two groups of images (e.g. scene classes of small objects against
    plain scenes), each run scores its mean over the first group minus its mean over the second, each group's
    images resampled on their own: the statistic is then how much more arm A leads on the first group than on
    the second (a difference of differences, 0 when the arms differ alike on both)."""
    a_runs, b_runs = np.atleast_2d(a_runs), np.atleast_2d(b_runs)
    if a_runs.shape[1] != b_runs.shape[1]:
        raise ValueError(f"the arms are scored on {a_runs.shape[1]} and {b_runs.shape[1]} images; give the same.")
    groups = [np.arange(a_runs.shape[1])] if contrast is None else [np.asarray(group) for group in contrast]
    signs = [1.0] if contrast is None else [1.0, -1.0]
    rng = np.random.default_rng(seed)
    differences = []
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        # The same image draw for every run: the runs are paired on the images.
        picks = [group[rng.integers(0, len(group), size=(count, len(group)))] for group in groups]
        a_scores = sum(sign * a_runs[:, pick].mean(axis=2) for sign, pick in zip(signs, picks))  # (runs, count)
        b_scores = sum(sign * b_runs[:, pick].mean(axis=2) for sign, pick in zip(signs, picks))
        a_seeds = rng.integers(0, a_runs.shape[0], size=(count, a_runs.shape[0]))
        b_seeds = rng.integers(0, b_runs.shape[0], size=(count, b_runs.shape[0]))
        columns = np.arange(count)[:, None]
        differences.append(a_scores[a_seeds, columns].mean(axis=1) - b_scores[b_seeds, columns].mean(axis=1))
    differences = np.concatenate(differences)
    difference = float(
        sum(sign * (a_runs[:, group].mean() - b_runs[:, group].mean()) for sign, group in zip(signs, groups))
    )
    low, high = np.percentile(differences, [2.5, 97.5])
    return {
        "difference": difference,
        "interval_95": [float(low), float(high)],
        "share_of_resamples_reversed": float(np.mean(np.sign(differences) != np.sign(difference))),
    }


def welch_interval(a_means, b_means) -> dict:
    """Welch's t on the runs' mean scores: the difference, its 95% interval, the t statistic, degrees of freedom
    and two-sided p value."""
    a_means, b_means = np.asarray(a_means, dtype=float), np.asarray(b_means, dtype=float)
    if len(a_means) < 2 or len(b_means) < 2:
        raise ValueError("Welch's t needs at least two runs per arm.")
    a_variance, b_variance = a_means.var(ddof=1) / len(a_means), b_means.var(ddof=1) / len(b_means)
    error = np.sqrt(a_variance + b_variance)
    dof = (a_variance + b_variance) ** 2 / (a_variance**2 / (len(a_means) - 1) + b_variance**2 / (len(b_means) - 1))
    difference = float(a_means.mean() - b_means.mean())
    half = float(stats.t.ppf(0.975, dof) * error)
    p_value = float(2 * stats.t.sf(abs(difference) / error, dof)) if error > 0 else 0.0
    return {
        "difference": difference,
        "interval_95": [difference - half, difference + half],
        "t": difference / error if error > 0 else float("inf"),
        "degrees_of_freedom": float(dof),
        "p_value": p_value,
        "standard_error": float(error),
    }


def detectable_difference(a_means, b_means, power: float = 0.8, level: float = 0.05) -> float:
    """The smallest true difference a two-sided Welch test at `level` detects with probability `power`, for runs
    spread as observed: (t_{1 - level/2} + t_{power}) x the standard error of the difference."""
    welch = welch_interval(a_means, b_means)
    dof = welch["degrees_of_freedom"]
    return float((stats.t.ppf(1 - level / 2, dof) + stats.t.ppf(power, dof)) * welch["standard_error"])


def arm_summary(runs: np.ndarray) -> dict:
    """Each run's mean score, the arm's mean and the standard deviation over its runs."""
    means = np.atleast_2d(runs).mean(axis=1)
    spread = float(means.std(ddof=1)) if len(means) > 1 else None
    return {"runs": [float(value) for value in means], "mean": float(means.mean()), "sd_over_seeds": spread}
