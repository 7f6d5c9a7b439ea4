"""ItemTimeline's as-of counts and the candidate union, on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.ranking.candidates import union
from recsemble.ranking.timeline import ItemTimeline

DAY = 86_400


def _dataset() -> Dataset:
    # Disjoint id ranges: users u1xx, items i9xx.
    rows = [
        ("u100", "i900", 10 * DAY),
        ("u100", "i901", 11 * DAY),
        ("u101", "i900", 12 * DAY),
        ("u101", "i900", 30 * DAY),  # repeat of a pair: its first time counts
        ("u102", "i900", 20 * DAY),
        ("u102", "i902", 21 * DAY),
    ]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(frame)


def test_counts_are_as_of_the_moment() -> None:
    data = _dataset()
    tl = ItemTimeline.from_dataset(data)
    i900, i901, i902 = data.items.to_idx(["i900", "i901", "i902"])
    items = np.array([i900, i900, i900, i901, i902])
    at = np.array([9, 12, 25, 25, 20]) * DAY
    assert tl.count_until(items, at).tolist() == [0, 2, 3, 1, 0]
    assert tl.count_between(items, at, 5 * DAY).tolist() == [0, 2, 0, 0, 0]
    # Everything that arrived in (at - 2 days, at]
    assert tl.total_between(np.array([12 * DAY, 21 * DAY]), 2 * DAY).tolist() == [2, 2]


def test_first_and_last_arrival_before_the_moment() -> None:
    data = _dataset()
    tl = ItemTimeline.from_dataset(data)
    i900, i902 = data.items.to_idx(["i900", "i902"])
    first, last = tl.first_and_last(np.array([i900, i900, i902]), np.array([15, 40, 5]) * DAY)
    assert first[:2].tolist() == [10 * DAY, 10 * DAY]
    assert last[:2].tolist() == [12 * DAY, 20 * DAY]
    assert np.isnan(first[2]) and np.isnan(last[2])


def test_union_keeps_each_members_ranks_and_scores() -> None:
    inf = -np.inf
    a = np.array([[3.0, 2.0, 1.0, inf], [inf, inf, inf, inf]], dtype=np.float32)
    b = np.array([[inf, 1.0, 5.0, 4.0], [0.5, inf, inf, 0.7]], dtype=np.float32)
    cands = union([a, b], ["a", "b"], [2, 2])
    pairs = list(zip(cands.rows.tolist(), cands.items.tolist(), strict=True))
    assert pairs == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 3)]
    ranks = {p: r.tolist() for p, r in zip(pairs, cands.ranks, strict=True)}
    assert ranks[(0, 0)] == [1.0, pytest.approx(np.nan, nan_ok=True)]
    assert ranks[(0, 2)] == [pytest.approx(np.nan, nan_ok=True), 1.0]
    assert ranks[(1, 3)] == [pytest.approx(np.nan, nan_ok=True), 1.0]
    # A member's score is reported even where it did not propose the item (a scored item 2).
    assert cands.scores[pairs.index((0, 2)), 0] == 1.0
    # ... and is NaN where it cannot score at all.
    assert np.isnan(cands.scores[pairs.index((1, 0)), 0])
    assert cands.group_sizes().tolist() == [4, 2]


def test_union_of_nothing_is_empty() -> None:
    empty = np.full((2, 3), -np.inf, dtype=np.float32)
    cands = union([empty], ["a"], [5])
    assert cands.size == 0 and cands.group_sizes().tolist() == [0, 0]
