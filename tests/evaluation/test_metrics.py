"""Top-k metrics: hand-computed cases, edge cases, and a property test against a slow reference
written directly from benchmark-protocol.md ("Metrics")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recsemble.evaluation.metrics import (
    CatalogStats,
    MetricResult,
    _ild,
    compute_metrics,
    longtail_items,
)
from recsemble.types import PAD_IDX

LOG2_3 = math.log2(3)


def truth_matrix(sets: list[set[int]], n_items: int) -> sp.csr_array:
    rows = [u for u, items in enumerate(sets) for _ in items]
    cols = [i for items in sets for i in sorted(items)]
    return sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(len(sets), n_items))


def category_matrix(cats: list[set[int]], n_cats: int) -> sp.csr_array:
    return truth_matrix(cats, n_cats)


def pad(rows: list[list[int]], width: int) -> np.ndarray:
    return np.array([row + [PAD_IDX] * (width - len(row)) for row in rows], dtype=np.int32)


# --- hand-computed example -------------------------------------------------------------------
# 10 items, U = 4 train users, pop = [4, 2, 1, 0, 2, 1, 0, 2, 4, 1], 3 categories, k = 3.
POP = [4, 2, 1, 0, 2, 1, 0, 2, 4, 1]
CATS = [set(), {1}, {0}, set(), {2}, {2}, {1}, {0, 1}, {2}, {0, 1, 2}]
TRUTH = [{3, 7}, {0}, {2, 4, 6, 8}, {8}]
RECS = [[7, 1, 3], [5, 0], [1, 5, 9], [8]]


@pytest.fixture
def hand() -> MetricResult:
    stats = CatalogStats(np.array(POP), 4, 10, category_matrix(CATS, 3))
    return compute_metrics(pad(RECS, 4), truth_matrix(TRUTH, 10), 3, stats)


def test_hand_accuracy(hand: MetricResult) -> None:
    # u0: truth {3,7}, list [7,1,3]: rel = [1,0,1], 2 hits, |T| = 2.
    #   DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG over min(3,2)=2 = 1 + 1/log2(3).
    #   MAP = (1/2) * (P@1 + P@3) = (1/2) * (1 + 2/3) = 5/6; MRR = 1.
    # u1: truth {0}, list [5,0] (short): rel = [0,1,0]; precision 1/3 (still / k); recall 1;
    #   NDCG = (1/log2(3)) / 1; MAP = (1/1) * P@2 = 1/2; MRR = 1/2.
    # u2: truth {2,4,6,8}, list [1,5,9]: no hit, everything 0.
    # u3: truth {8}, list [8]: rel = [1,0,0]; precision 1/3, the rest 1.
    np.testing.assert_allclose(hand.hit, [1, 1, 0, 1])
    np.testing.assert_allclose(hand.precision, [2 / 3, 1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(hand.recall, [1, 1, 0, 1])
    np.testing.assert_allclose(hand.ndcg, [1.5 / (1 + 1 / LOG2_3), 1 / LOG2_3, 0, 1])
    np.testing.assert_allclose(hand.map, [5 / 6, 1 / 2, 0, 1])
    np.testing.assert_allclose(hand.mrr, [1, 1 / 2, 0, 1])
    np.testing.assert_array_equal(hand.n_hits, [2, 1, 0, 1])


def test_hand_beyond_accuracy(hand: MetricResult) -> None:
    # novelty(i) = -log2(max(pop,1)/4): pop 4 -> 0, pop 2 -> 1, pop 1 or 0 -> 2.
    # u0 [7,1,3]: pops 2,2,0 -> novelty (1+1+2)/3, arp 4/3.
    # u1 [5,0]: pops 1,4 -> novelty (2+0)/2 (over 2 items, not k), arp 5/2.
    # u2 [1,5,9]: pops 2,1,1 -> novelty 5/3, arp 4/3.   u3 [8]: pop 4 -> novelty 0, arp 4.
    np.testing.assert_allclose(hand.novelty, [4 / 3, 1, 5 / 3, 0])
    np.testing.assert_allclose(hand.arp, [4 / 3, 5 / 2, 4 / 3, 4])
    # ILD, distance 1 - Jaccard: u0: (7,1) {0,1}v{1} 1-1/2; (7,3) and (1,3) vs {} -> 1 each.
    # u1: (5,0) {2} vs {} -> 1. u2: (1,5) -> 1, (1,9) 1-1/3, (5,9) 1-1/3. u3: one item -> NaN.
    np.testing.assert_allclose(hand.ild, [2.5 / 3, 1, (1 + 2 / 3 + 2 / 3) / 3, np.nan])


def test_hand_summary(hand: MetricResult) -> None:
    summary = hand.summary()
    assert list(summary) == [
        "ndcg@3",
        "recall@3",
        "precision@3",
        "map@3",
        "mrr@3",
        "hit@3",
        "coverage@3",
        "gini@3",
        "novelty@3",
        "arp@3",
        "ild@3",
    ]
    assert summary["precision@3"] == pytest.approx((2 / 3 + 1 / 3 + 0 + 1 / 3) / 4)
    assert summary["map@3"] == pytest.approx((5 / 6 + 1 / 2 + 1) / 4)
    # Distinct items {7,1,3,5,0,9,8} of 10.
    assert summary["coverage@3"] == pytest.approx(0.7)
    # ILD: u3's NaN is left out of the mean.
    assert summary["ild@3"] == pytest.approx((2.5 / 3 + 1 + 7 / 9) / 3)
    # Exposure counts over the 10 items: three 0s, five 1s, two 2s (9 slots). Sum of |x_i - x_j|
    # over ordered pairs: 0-1: 30, 0-2: 24, 1-2: 20 -> 74; Gini = 74 / (2 * 10 * 9).
    assert summary["gini@3"] == pytest.approx(74 / 180)


def test_longtail_hits(hand: MetricResult) -> None:
    # Head = ceil(0.2 * 10) = 2 most popular: items 0 and 8 (pop 4). Hits: u0 {7,3} both tail;
    # u1 {0} head; u3 {8} head.
    np.testing.assert_array_equal(hand.n_longtail_hits, [2, 0, 0, 0])


def test_no_categories_no_ild() -> None:
    stats = CatalogStats(np.array(POP), 4, 10)
    result = compute_metrics(pad(RECS, 3), truth_matrix(TRUTH, 10), 3, stats)
    assert result.ild is None
    assert "ild@3" not in result.summary()
    assert "ild" not in result.per_user()


def test_only_first_k_columns_count() -> None:
    # Relevant item 2 sits in column 2, k = 2: no hit; coverage counts items 0, 1 only.
    stats = CatalogStats(np.ones(5, dtype=np.int64), 1, 5)
    result = compute_metrics(np.array([[0, 1, 2]]), truth_matrix([{2}], 5), 2, stats)
    assert result.hit[0] == 0.0
    assert result.coverage() == pytest.approx(2 / 5)


def test_empty_list_and_empty_categories() -> None:
    # u0 gets nothing: accuracy 0, novelty/ARP/ILD NaN. u1 lists two items with no categories:
    # Jaccard({}, {}) = 0, so ILD = 1.
    cats = category_matrix([set(), set(), {0}], 1)
    stats = CatalogStats(np.array([1, 2, 3]), 3, 3, cats)
    result = compute_metrics(pad([[], [0, 1]], 2), truth_matrix([{0}, {2}], 3), 2, stats)
    assert result.precision[0] == 0.0 and result.ndcg[0] == 0.0
    assert np.isnan(result.novelty[0]) and np.isnan(result.arp[0]) and np.isnan(result.ild[0])
    assert result.ild[1] == 1.0
    summary = result.summary()
    assert summary["arp@2"] == pytest.approx(1.5)  # u1 only: (1 + 2) / 2
    assert summary["novelty@2"] == pytest.approx((math.log2(3) + math.log2(3 / 2)) / 2)


def test_all_ild_nan_summary_is_nan() -> None:
    stats = CatalogStats(np.array([1, 1]), 1, 2, category_matrix([{0}, {0}], 1))
    result = compute_metrics(np.array([[0, PAD_IDX]]), truth_matrix([{0}], 2), 2, stats)
    assert math.isnan(result.summary()["ild@2"])


def test_explicit_zero_truth_is_not_relevant() -> None:
    truth = sp.csr_array((np.array([0.0, 1.0]), (np.array([0, 0]), np.array([0, 1]))), shape=(1, 3))
    stats = CatalogStats(np.ones(3, dtype=np.int64), 1, 3)
    result = compute_metrics(np.array([[0, 1]]), truth, 2, stats)
    # Only item 1 is relevant: rel = [0, 1], |T| = 1.
    assert result.recall[0] == 1.0 and result.mrr[0] == 0.5


def test_k_larger_than_truth_uses_min_normaliser() -> None:
    # |T| = 1, k = 5, hit at rank 1: NDCG ideal over min(5,1)=1 position -> 1; MAP / 1 -> 1.
    stats = CatalogStats(np.ones(6, dtype=np.int64), 1, 6)
    result = compute_metrics(np.array([[4, 0, 1, 2, 3]]), truth_matrix([{4}], 6), 5, stats)
    assert result.ndcg[0] == 1.0 and result.map[0] == 1.0 and result.precision[0] == 0.2


@pytest.mark.parametrize(
    ("recs", "k", "message"),
    [
        ([[0, 0]], 2, "twice"),
        ([[PAD_IDX, 1]], 2, "padding"),
        ([[0, 3]], 2, "outside"),
        ([[0, -2]], 2, "outside"),
        ([[0, 1]], 3, "k must be"),
        ([[0, 1]], 0, "k must be"),
        ([[0.0, 1.0]], 2, "integer"),
    ],
)
def test_bad_recs_raise(recs: Any, k: int, message: str) -> None:
    stats = CatalogStats(np.ones(3, dtype=np.int64), 1, 3)
    with pytest.raises(ValueError, match=message):
        compute_metrics(np.array(recs), truth_matrix([{0}], 3), k, stats)


def test_empty_truth_row_raises() -> None:
    stats = CatalogStats(np.ones(3, dtype=np.int64), 1, 3)
    with pytest.raises(ValueError, match="no relevant items"):
        compute_metrics(np.array([[0], [1]]), truth_matrix([{0}, set()], 3), 1, stats)


def test_truth_shape_mismatch_raises() -> None:
    stats = CatalogStats(np.ones(3, dtype=np.int64), 1, 3)
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(np.array([[0], [1]]), truth_matrix([{0}], 3), 1, stats)


def test_catalog_stats_validation() -> None:
    with pytest.raises(ValueError, match="shape"):
        CatalogStats(np.ones(3, dtype=np.int64), 1, 4)
    with pytest.raises(ValueError, match="n_train_users"):
        CatalogStats(np.ones(3, dtype=np.int64), 0, 3)
    with pytest.raises(ValueError, match="lie in"):
        CatalogStats(np.array([1, -1]), 1, 2)
    with pytest.raises(ValueError, match="lie in"):
        CatalogStats(np.array([1, 3]), 2, 2)  # 3 users on an item, only 2 train users
    with pytest.raises(ValueError, match="at least one item"):
        CatalogStats(np.zeros(0, dtype=np.int64), 1, 0)
    with pytest.raises(ValueError, match="rows"):
        CatalogStats(np.ones(3, dtype=np.int64), 1, 3, category_matrix([{0}], 1))


def test_catalog_stats_from_train_counts_distinct_users() -> None:
    # Users 0 and 2 interact (user 0 twice with item 1, value 5); user 1 has no train rows.
    train = sp.csr_array(
        (np.array([5.0, 1.0, 1.0, 1.0]), (np.array([0, 0, 0, 2]), np.array([1, 1, 3, 1]))),
        shape=(3, 4),
    )
    stats = CatalogStats.from_train(train)
    np.testing.assert_array_equal(stats.item_popularity, [0, 2, 0, 1])
    assert stats.n_train_users == 2 and stats.n_items == 4


def test_subset_keeps_rows() -> None:
    stats = CatalogStats(np.array(POP), 4, 10)
    result = compute_metrics(pad(RECS, 3), truth_matrix(TRUTH, 10), 3, stats)
    sub = result.subset(np.array([False, True, False, True]))
    assert sub.n_users == 2
    np.testing.assert_array_equal(sub.mrr, [0.5, 1.0])
    assert sub.coverage() == pytest.approx(3 / 10)  # items {5, 0, 8}


def test_zero_users_summary_is_nan() -> None:
    stats = CatalogStats(np.ones(3, dtype=np.int64), 1, 3)
    result = compute_metrics(np.zeros((0, 2), dtype=np.int64), sp.csr_array((0, 3)), 2, stats)
    assert all(math.isnan(v) for v in result.summary().values())


@pytest.mark.parametrize(
    ("pop", "share", "tail"),
    [
        ([1, 3, 3, 3, 0], 0.2, [True, False, True, True, True]),  # ties: lowest idx in the head
        ([1, 3, 3, 3, 0], 0.4, [True, False, False, True, True]),
        ([5, 1], 0.0, [True, True]),
        ([2, 1, 3], 0.2, [True, True, False]),  # ceil(0.6) = 1
        ([5, 1], 1.0, [False, False]),
        ([0] * 15, 0.2, [False] * 3 + [True] * 12),  # ceil(3.0) = 3
    ],
)
def test_longtail_items(pop: list[int], share: float, tail: list[bool]) -> None:
    np.testing.assert_array_equal(longtail_items(np.array(pop), share), tail)


# --- reference implementation (straight from the protocol text) -----------------------------


def reference_user(
    row: list[int], truth: set[int], k: int, pop: list[int], n_train: int, cats: list[set[int]]
) -> dict[str, float]:
    items = [i for i in row[:k] if i != PAD_IDX]
    rel = [1 if i in truth else 0 for i in items] + [0] * (k - len(items))
    hits = sum(rel)
    n_ideal = min(k, len(truth))
    dcg = sum(rel[i - 1] / math.log2(i + 1) for i in range(1, k + 1))
    idcg = sum(1 / math.log2(i + 1) for i in range(1, n_ideal + 1))
    ap = sum((sum(rel[:i]) / i) * rel[i - 1] for i in range(1, k + 1)) / n_ideal
    pairs = [(a, b) for n, a in enumerate(items) for b in items[n + 1 :]]

    def distance(a: int, b: int) -> float:
        union = cats[a] | cats[b]
        return 1 - (len(cats[a] & cats[b]) / len(union) if union else 0.0)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else math.nan

    return {
        "hit": float(hits > 0),
        "precision": hits / k,
        "recall": hits / len(truth),
        "ndcg": dcg / idcg,
        "map": ap,
        "mrr": 1 / (rel.index(1) + 1) if hits else 0.0,
        "novelty": mean([-math.log2(max(pop[i], 1) / n_train) for i in items]),
        "arp": mean([float(pop[i]) for i in items]),
        "ild": mean([distance(a, b) for a, b in pairs]),
    }


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    n_items = draw(st.integers(1, 12))
    n_users = draw(st.integers(1, 6))
    k = draw(st.integers(1, 6))
    width = k + draw(st.integers(0, 2))
    rows = []
    for _ in range(n_users):
        order = draw(st.permutations(range(n_items)))
        rows.append(list(order[: draw(st.integers(0, min(width, n_items)))]))
    truth = [draw(st.sets(st.integers(0, n_items - 1), min_size=1)) for _ in range(n_users)]
    n_train = draw(st.integers(1, 12))
    n_cats = draw(st.sampled_from([0, 1, 3, 5]))
    # Spreading category ids over a wide range exercises multi-word bitsets and the sparse path.
    spread = draw(st.sampled_from([1, 60, 80]))
    cats = [
        {c * spread for c in draw(st.sets(st.integers(0, max(n_cats - 1, 0))))}
        for _ in range(n_items)
    ]
    if n_cats == 0:
        cats = [set() for _ in range(n_items)]
    return {
        "rows": rows,
        "width": width,
        "truth": truth,
        "k": k,
        "pop": draw(st.lists(st.integers(0, n_train), min_size=n_items, max_size=n_items)),
        "n_train": n_train,
        "cats": cats,
        "n_cat_cols": max(n_cats * spread, 1),
    }


@settings(max_examples=300, deadline=None)
@given(cases())
def test_matches_reference(case: dict[str, Any]) -> None:
    n_items = len(case["pop"])
    cats = category_matrix(case["cats"], case["n_cat_cols"])
    stats = CatalogStats(np.array(case["pop"]), case["n_train"], n_items, cats)
    recs = pad(case["rows"], case["width"])
    result = compute_metrics(recs, truth_matrix(case["truth"], n_items), case["k"], stats)
    per_user = result.per_user()
    for u, row in enumerate(case["rows"]):
        expected = reference_user(
            row, case["truth"][u], case["k"], case["pop"], case["n_train"], case["cats"]
        )
        for name, value in expected.items():
            np.testing.assert_allclose(per_user[name][u], value, rtol=0, atol=1e-9, err_msg=name)
    top_items = {i for row in case["rows"] for i in row[: case["k"]]}
    assert result.summary()[f"coverage@{case['k']}"] == pytest.approx(
        len(top_items) / n_items, abs=1e-12
    )
    # Both ILD paths (bitset words and sparse Gram) agree with each other.
    top = recs[:, : case["k"]].astype(np.int64)
    safe = np.where(top != PAD_IDX, top, 0)
    np.testing.assert_allclose(
        _ild(safe, top != PAD_IDX, stats.item_categories, bitset_max=-1),
        _ild(safe, top != PAD_IDX, stats.item_categories, bitset_max=10**9),
        atol=1e-12,
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=30), st.sampled_from([0.1, 0.2, 0.5]))
def test_longtail_matches_reference(pop: list[int], share: float) -> None:
    tenths = round(share * 10)
    n_head = -(-len(pop) * tenths // 10)  # exact integer ceil
    head = sorted(range(len(pop)), key=lambda i: (-pop[i], i))[:n_head]
    expected = [i not in head for i in range(len(pop))]
    np.testing.assert_array_equal(longtail_items(np.array(pop), share), expected)
