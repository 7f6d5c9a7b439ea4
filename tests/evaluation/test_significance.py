"""Paired comparisons: bootstrap CI, t-test and Wilcoxon p-values, per-slice comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recsemble.evaluation.significance import (
    bootstrap_means,
    compare_per_slice,
    paired_comparison,
)


def noisy_pair(n: int, effect: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.random(n)
    return base + effect + rng.normal(0, 0.1, n), base


def test_hand_means() -> None:
    # a - b = [0.5, 0, -0.1, 0.4]: mean diff 0.8 / 4 = 0.2; mean a = 1.8 / 4, mean b = 1.0 / 4.
    a = np.array([1.0, 0.2, 0.0, 0.6])
    b = np.array([0.5, 0.2, 0.1, 0.2])
    out = paired_comparison(a, b, n_resamples=200)
    assert out["n_users"] == 4
    assert out["mean_a"] == pytest.approx(0.45)
    assert out["mean_b"] == pytest.approx(0.25)
    assert out["mean_diff"] == pytest.approx(0.2)
    assert out["confidence"] == 0.95 and out["n_resamples"] == 200


def test_deterministic_with_seed() -> None:
    a, b = noisy_pair(500, 0.01)
    first = paired_comparison(a, b, seed=7)
    assert paired_comparison(a, b, seed=7) == first
    other = paired_comparison(a, b, seed=8)
    assert (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])


def test_ci_is_percentile_of_user_resamples() -> None:
    # One chunk: the same generator drawing all (resamples x users) indices at once.
    a, b = noisy_pair(50, 0.02)
    diff = a - b
    idx = np.random.default_rng(3).integers(0, 50, size=(400, 50))
    low, high = np.quantile(diff[idx].mean(axis=1), [0.05, 0.95])
    out = paired_comparison(a, b, n_resamples=400, seed=3, confidence=0.9)
    assert out["ci_low"] == pytest.approx(low, abs=1e-12)
    assert out["ci_high"] == pytest.approx(high, abs=1e-12)


def test_bootstrap_means_chunked_is_reproducible() -> None:
    diff = np.random.default_rng(0).normal(size=30_000)  # 30k users: several chunks
    means = bootstrap_means(diff, 100, seed=5)
    np.testing.assert_array_equal(means, bootstrap_means(diff, 100, seed=5))
    assert means.shape == (100,)
    assert abs(means.mean() - diff.mean()) < 0.01  # resample means centre on the sample mean


def test_ci_contains_mean_diff() -> None:
    a, b = noisy_pair(2_000, 0.005)
    out = paired_comparison(a, b)
    assert out["ci_low"] < out["mean_diff"] < out["ci_high"]


def test_identical_arrays() -> None:
    a = np.random.default_rng(2).random(100)
    out = paired_comparison(a, a.copy())
    assert out["p_ttest"] == 1.0 and out["p_wilcoxon"] == 1.0
    assert out["mean_diff"] == 0.0 and out["ci_low"] == 0.0 and out["ci_high"] == 0.0


def test_clearly_better_system() -> None:
    a, b = noisy_pair(1_000, 0.1)
    out = paired_comparison(a, b)
    assert out["p_ttest"] < 1e-10 and out["p_wilcoxon"] < 1e-10
    assert out["ci_low"] > 0.05
    reverse = paired_comparison(b, a)
    assert reverse["mean_diff"] == pytest.approx(-out["mean_diff"]) and reverse["ci_high"] < 0


def test_p_values_are_scipys() -> None:
    a, b = noisy_pair(40, 0.02)
    out = paired_comparison(a, b)
    assert out["p_ttest"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert out["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a - b, zero_method="wilcox").pvalue)


def test_constant_nonzero_difference() -> None:
    b = np.arange(20) / 8  # exact binary fractions: every difference is exactly 0.25
    out = paired_comparison(b + 0.25, b)
    assert out["p_ttest"] == 0.0
    assert out["p_wilcoxon"] < 1e-5


def test_nan_pairs_dropped() -> None:
    # Kept pairs: (1.0, 0.5) and (0.75, 0.5): differences 0.5 and 0.25, mean 0.375.
    a = np.array([1.0, np.nan, 0.5, 0.75])
    b = np.array([0.5, 0.1, np.nan, 0.5])
    out = paired_comparison(a, b, n_resamples=10)
    assert out["n_users"] == 2 and out["mean_diff"] == pytest.approx(0.375)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match=">= 2 users"):
        paired_comparison(np.array([1.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="one length"):
        paired_comparison(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="confidence"):
        paired_comparison(np.ones(3), np.zeros(3), confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        paired_comparison(np.ones(3), np.zeros(3), n_resamples=0)


def test_compare_per_slice() -> None:
    a, b = noisy_pair(30, 0.05)
    labels = np.array(["1-4"] * 20 + ["5-19"] * 9 + ["100+"])
    out = compare_per_slice(a, b, labels, n_resamples=100, seed=4)
    # "100+" has one user and the empty slices none: left out.
    assert list(out) == ["all", "1-4", "5-19"]
    assert out["all"] == paired_comparison(a, b, n_resamples=100, seed=4)
    mask = labels == "5-19"
    assert out["5-19"] == paired_comparison(a[mask], b[mask], n_resamples=100, seed=4)


def test_compare_per_slice_counts_users_without_nan() -> None:
    a = np.array([0.1, 0.2, np.nan, 0.4, 0.5])
    b = np.array([0.0, 0.1, 0.3, 0.3, 0.2])
    labels = np.array(["x", "x", "y", "y", "y"])
    # Slice y keeps 2 of 3 users, slice x keeps 2: both reported.
    out = compare_per_slice(a, b, labels, n_resamples=10)
    assert out["y"]["n_users"] == 2 and out["x"]["n_users"] == 2
    assert out["all"]["n_users"] == 4
    with pytest.raises(ValueError, match="labels for 5 users"):
        compare_per_slice(a, b, labels[:4])
