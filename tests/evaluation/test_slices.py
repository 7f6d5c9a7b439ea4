"""History slices, per-slice summaries and the long-tail hit share."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsemble.evaluation.metrics import CatalogStats, MetricResult, compute_metrics
from recsemble.evaluation.slices import (
    HISTORY_SLICES,
    history_slice_labels,
    longtail_hit_share,
    slice_order,
    sliced_summary,
)
from recsemble.types import PAD_IDX

# 10 items, pop = [4, 2, 1, 0, 2, 1, 0, 2, 4, 1]: long-tail head = items 0 and 8 (pop 4).
POP = np.array([4, 2, 1, 0, 2, 1, 0, 2, 4, 1])
TRUTH = [{3, 7}, {0}, {2, 4, 6, 8}, {8}]
RECS = np.array([[7, 1, 3], [5, 0, PAD_IDX], [1, 5, 9], [8, PAD_IDX, PAD_IDX]])


@pytest.fixture
def result() -> MetricResult:
    rows = [u for u, items in enumerate(TRUTH) for _ in items]
    cols = [i for items in TRUTH for i in sorted(items)]
    truth = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(4, 10))
    return compute_metrics(RECS, truth, 3, CatalogStats(POP, 4, 10))


def test_history_labels_boundaries() -> None:
    lengths = np.array([0, 1, 4, 5, 19, 20, 99, 100, 10_000])
    expected = ["cold", "1-4", "1-4", "5-19", "5-19", "20-99", "20-99", "100+", "100+"]
    assert history_slice_labels(lengths).tolist() == expected


def test_history_labels_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        history_slice_labels(np.array([3, -1]))
    with pytest.raises(ValueError, match="integer"):
        history_slice_labels(np.array([1.5]))
    assert history_slice_labels(np.array([], dtype=np.int64)).shape == (0,)


def test_sliced_summary_keys_and_values(result: MetricResult) -> None:
    # u0, u1 have 1-4 train items, u2 has 150, u3 none.
    labels = history_slice_labels(np.array([2, 3, 150, 0]))
    out = sliced_summary(result, labels)
    assert list(out) == ["all", *HISTORY_SLICES]
    assert out["all"] == {"n_users": 4, **result.summary(), "longtail_hit_share@3": 0.5}
    one_four = out["1-4"]
    assert one_four["n_users"] == 2
    # u0 MRR 1 (7 at rank 1), u1 MRR 1/2 (0 at rank 2).
    assert one_four["mrr@3"] == pytest.approx(0.75)
    # Coverage within the slice: items {7, 1, 3, 5, 0} of 10.
    assert one_four["coverage@3"] == pytest.approx(0.5)
    # Hits: u0 {7, 3} (both tail), u1 {0} (head): 2 of 3 on the tail.
    assert one_four["longtail_hit_share@3"] == pytest.approx(2 / 3)
    assert out["cold"]["n_users"] == 1 and out["cold"]["ndcg@3"] == 1.0
    # No hit in the 100+ slice: the share is undefined.
    assert math.isnan(out["100+"]["longtail_hit_share@3"])


def test_empty_slice_is_present_with_nan_metrics(result: MetricResult) -> None:
    out = sliced_summary(result, np.array(["1-4"] * 4))
    empty = out["5-19"]
    assert empty["n_users"] == 0
    assert set(empty) == set(out["all"])
    assert all(math.isnan(v) for key, v in empty.items() if key != "n_users")


def test_custom_labels_and_order(result: MetricResult) -> None:
    labels = np.array(["b", "a", "b", "b"])
    assert list(sliced_summary(result, labels)) == ["all", "a", "b"]
    out = sliced_summary(result, labels, order=["b", "a", "c"])
    assert list(out) == ["all", "b", "a", "c"]
    assert out["b"]["n_users"] == 3 and out["c"]["n_users"] == 0
    with pytest.raises(ValueError, match="not in the slice order"):
        sliced_summary(result, labels, order=["a"])


def test_reserved_and_misaligned_labels_raise(result: MetricResult) -> None:
    with pytest.raises(ValueError, match="reserved"):
        slice_order(np.array(["all", "cold"]))
    with pytest.raises(ValueError, match="labels for 4 users"):
        sliced_summary(result, np.array(["cold"] * 3))


def test_longtail_hit_share(result: MetricResult) -> None:
    # Hits: u0 {7, 3} tail, u1 {0} head, u3 {8} head -> 2 of 4.
    assert longtail_hit_share(result) == 0.5
    assert math.isnan(longtail_hit_share(result.subset(np.array([2]))))
