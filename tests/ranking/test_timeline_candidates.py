"""ItemTimeline's as-of counts and the candidate union, on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.ranking import candidates
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


def test_as_of_shares_its_searches_and_agrees_with_each_count() -> None:
    data = _dataset()
    tl = ItemTimeline.from_dataset(data)
    items = np.array([0, 0, 1, 2, 2])
    at = np.array([9, 25, 25, 20, 40]) * DAY
    found = tl.as_of(items, at, (2 * DAY, 15 * DAY))
    assert found.count.tolist() == tl.count_until(items, at).tolist()
    for window, counts in zip((2 * DAY, 15 * DAY), found.window_counts, strict=True):
        assert counts.tolist() == tl.count_between(items, at, window).tolist()
    first, last = tl.first_and_last(items, at)
    np.testing.assert_array_equal(found.first, first)
    np.testing.assert_array_equal(found.last, last)
    # An item added after the timeline was built has no arrivals yet.
    new = np.array([data.n_items, data.n_items + 3])
    assert tl.count_until(new, np.array([40, 40]) * DAY).tolist() == [0, 0]
    assert np.isnan(tl.as_of(new, np.array([40, 40]) * DAY).first).all()


def test_union_stacked_for_one_pass_equals_member_by_member(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    blocks = [rng.random((3, 40)).astype(np.float32) for _ in range(4)]
    blocks[1][:, ::3] = -np.inf
    blocks[2][0] = np.round(blocks[2][0], 1)  # ties: the lower item first in both ways
    top_n = [5, 12, 3, 40]
    stacked = union(blocks, ["a", "b", "c", "d"], top_n)
    monkeypatch.setattr(candidates, "_STACK_CELLS", 1)  # one member per top-N pass
    alone = union(blocks, ["a", "b", "c", "d"], top_n)
    for field in ("rows", "items", "scores", "ranks", "zscores"):
        np.testing.assert_array_equal(getattr(stacked, field), getattr(alone, field))
    assert np.nanmax(stacked.ranks, axis=0).tolist() == [5, 12, 3, 40]
