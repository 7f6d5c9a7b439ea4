"""Exposure Gini and calibration KL against brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsemble.evaluation.distribution import calibration_kl, exposure_gini, kl_to_history
from recsemble.evaluation.metrics import CatalogStats, compute_metrics
from recsemble.types import PAD_IDX


def brute_gini(counts: list[int]) -> float:
    n, total = len(counts), sum(counts)
    diffs = sum(abs(a - b) for a in counts for b in counts)
    return diffs / (2 * n * total)


@given(st.lists(st.lists(st.integers(0, 7), max_size=5, unique=True), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None)
def test_gini_matches_mean_absolute_difference(lists: list[list[int]]) -> None:
    k = 5
    top = np.array([row + [PAD_IDX] * (k - len(row)) for row in lists])
    counts = [sum(row.count(i) for row in lists) for i in range(8)]
    if sum(counts) == 0:
        assert math.isnan(exposure_gini(top, 8))
    else:
        assert exposure_gini(top, 8) == pytest.approx(brute_gini(counts))


def test_gini_extremes() -> None:
    assert exposure_gini(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    # One item of 4 takes every slot: Gini = (n - 1) / n.
    assert exposure_gini(np.array([[0], [0], [0]]), 4) == pytest.approx(3 / 4)


def brute_kl(history: set[int], lst: list[int], cats: list[set[int]], alpha: float) -> float:
    n_cats = 1 + max(c for item in cats for c in item)

    def mix(items: list[int]) -> np.ndarray:
        weights = np.zeros(n_cats)
        for item in items:
            for c in cats[item]:
                weights[c] += 1 / len(cats[item])
        return weights / weights.sum() if weights.sum() else weights

    p, q = mix(sorted(history)), mix(lst)
    q_tilde = (1 - alpha) * q + alpha * p
    return float(sum(p[g] * math.log(p[g] / q_tilde[g]) for g in range(n_cats) if p[g] > 0))


CATS = [{0}, {1}, {0, 1}, {2}, set(), {2}]


def test_calibration_kl_by_hand() -> None:
    histories = [{0, 1}, {3, 5}, {0, 4}]
    lists = [[0, 1], [0, 2], [4, 3]]
    safe = np.array(lists)
    valid = np.ones_like(safe, dtype=bool)
    rows = [(u, i) for u, h in enumerate(histories) for i in h]
    history = sp.csr_array(
        (np.ones(len(rows)), ([r for r, _ in rows], [i for _, i in rows])), shape=(3, 6)
    )
    cat_rows = [(i, c) for i, cs in enumerate(CATS) for c in cs]
    cats = sp.csr_array(
        (np.ones(len(cat_rows)), ([i for i, _ in cat_rows], [c for _, c in cat_rows])),
        shape=(6, 3),
    )
    got = calibration_kl(safe, valid, history, cats, alpha=0.01)
    want = [brute_kl(h, lst, CATS, 0.01) for h, lst in zip(histories, lists, strict=True)]
    np.testing.assert_allclose(got, want)
    assert got[0] == pytest.approx(0.0)  # same mix as the history
    assert got[1] > 1.0  # a Horror fan shown no Horror


def test_kl_is_nan_without_history_categories() -> None:
    out = kl_to_history(np.array([[np.nan, np.nan]]), np.array([[0.5, 0.5]]))
    assert math.isnan(out[0])


def test_compute_metrics_adds_calibration_kl_only_with_history() -> None:
    cats = sp.csr_array(np.array([[1, 0], [0, 1], [1, 1]], dtype=float))
    stats = CatalogStats(np.array([1, 1, 1]), 2, 3, cats)
    truth = sp.csr_array(np.array([[1, 0, 0], [0, 1, 0]], dtype=float))
    recs = np.array([[0, 1], [2, PAD_IDX]])
    plain = compute_metrics(recs, truth, 2, stats)
    assert plain.calibration_kl is None and "calibration_kl@2" not in plain.summary()
    history = sp.csr_array(np.array([[1, 0, 0], [0, 1, 0]], dtype=float))
    result = compute_metrics(recs, truth, 2, stats, history=history)
    assert result.calibration_kl is not None
    assert result.calibration_kl[0] > 0.5  # all-category-0 history, half-and-half list
    assert "calibration_kl@2" in result.summary()
    with pytest.raises(ValueError, match="history has 1 rows"):
        compute_metrics(recs, truth, 2, stats, history=history[:1])
