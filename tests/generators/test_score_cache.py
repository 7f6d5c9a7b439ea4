"""The fitted-score cache (generators/score_cache.py): cached answers equal computed ones, fresh
events are computed, the budget keeps the longest histories, time-decayed members keep none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.errors import DataError
from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.generators import score_cache as score_cache_module
from recsemble.generators.history import Histories

#: Members whose products go row by row: a cached row equals a one-user answer bit for bit.
SPARSE = ["ease", "ease-recent", "itemknn", "itemknn-recent", "userknn", "covisit"]
#: Dense BLAS products: equal to the last bit or so.
DENSE = ["ials", "bpr"]
#: Rows stored from its one-request (dense) path: equal to one-user answers bit for bit, to
#: its sparse batch path to the last bit or so.
ONE_ROW = ["content"]


def _dataset(seed: int = 0) -> Dataset:
    """60 users (u1000..) with 2..40 events over 90 items (i5000..), random times."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[Any]] = {"user_id": [], "item_id": [], "timestamp": []}
    for user in range(60):
        n = int(rng.integers(2, 41))
        items = rng.choice(
            90, n, replace=True, p=np.linspace(2, 1, 90) / np.linspace(2, 1, 90).sum()
        )
        rows["user_id"] += [f"u{1000 + user}"] * n
        rows["item_id"] += [f"i{5000 + i}" for i in items]
        rows["timestamp"] += sorted(rng.integers(1_700_000_000, 1_700_000_000 + 90 * 86_400, n))
    words = ["space", "war", "love", "city", "night", "river", "ghost", "robot", "king", "song"]
    items = pl.DataFrame(
        {
            "item_id": [f"i{5000 + i}" for i in range(90)],
            "title": [f"{words[i % 10]} {words[(i * 7) % 10]}" for i in range(90)],
            "text": [" ".join(words[(i + j) % 10] for j in range(i % 4 + 1)) for i in range(90)],
            "categories": [[words[i % 3]] for i in range(90)],
        }
    )
    interactions = pl.DataFrame(rows, schema_overrides={"timestamp": pl.Int64})
    return Dataset.from_frames(interactions, items)


def _fit(name: str, dataset: Dataset, **params: Any) -> CandidateGenerator:
    kind = GENERATORS[name]
    extra = {"iterations": 3, "factors": 8} if name in DENSE else {}
    return kind(kind.Config.model_validate({**extra, **params})).fit(dataset)


def _unmarked(hist: Histories) -> Histories:
    """The same events, not taken from the fitted histories: always computed."""
    detached = hist.detached()
    assert detached.origin is None and np.array_equal(detached.items, hist.items)
    return detached


@pytest.mark.parametrize("name", SPARSE + DENSE + ONE_ROW)
def test_cached_rows_equal_computed_ones(name: str) -> None:
    dataset = _dataset()
    model = _fit(name, dataset)
    assert model.score_cache_ is not None
    users = np.arange(dataset.n_users, dtype=np.int32)
    assert np.isfinite(model.score_cache_.scores).mean() > 0.2  # real scores, not all -inf
    for user in users[:12]:  # one-user requests, the serving path
        one = users[user : user + 1]
        cached = model.score_catalog(one, exclude_seen=False)
        computed = model.score_catalog(
            one, exclude_seen=False, histories=_unmarked(model.histories_.rows(one))
        )
        if name not in DENSE:
            np.testing.assert_array_equal(cached, computed)
        else:
            np.testing.assert_allclose(cached, computed, rtol=1e-5, atol=1e-6)
    batch = model.score_catalog(users, exclude_seen=False)
    batch_computed = model.score_catalog(
        users, exclude_seen=False, histories=_unmarked(model.histories_.rows(users))
    )
    if name in ONE_ROW:
        np.testing.assert_allclose(batch, batch_computed, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(batch, batch_computed)


@pytest.mark.parametrize("name", ["ease", "itemknn", "ials"])
def test_fresh_events_are_computed(name: str) -> None:
    dataset = _dataset()
    model = _fit(name, dataset)
    hist = model.histories_.rows([3])
    fresh = Histories(
        np.array([0, hist.items.size + 1]),
        np.append(hist.items, 77),
        np.append(hist.timestamps, hist.timestamps.max() + 60),
        np.append(hist.weights, 1.0),
        hist.n_items,
    )
    answer = model.score_catalog([3], exclude_seen=False, histories=fresh)
    model.score_cache_ = None
    np.testing.assert_array_equal(
        answer, model.score_catalog([3], histories=fresh, exclude_seen=False)
    )
    assert not np.array_equal(answer, model.score_catalog([3], exclude_seen=False))


def test_budget_keeps_the_longest_histories(monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = _dataset()
    monkeypatch.setattr(score_cache_module, "CACHE_CELLS", 5 * dataset.n_items)
    monkeypatch.setattr(score_cache_module, "MIN_EVENTS", 3)
    model = _fit("ease", dataset)
    cache = model.score_cache_
    assert cache is not None
    lengths = model.histories_.lengths
    kept = np.flatnonzero(cache.slot >= 0)
    assert kept.size == 5
    assert lengths[kept].min() >= np.sort(lengths)[-5]
    # Rows outside the cache (and unknown users) are computed; the answers are unchanged.
    users = np.array([0, 1, 2, kept[0], dataset.n_users + 5], dtype=np.int32)
    answer = model.score_catalog(users, exclude_seen=False)
    model.score_cache_ = None
    np.testing.assert_array_equal(answer, model.score_catalog(users, exclude_seen=False))


def test_no_cache_when_scores_move_with_time() -> None:
    dataset = _dataset()
    assert _fit("ease", dataset, half_life_days=7.0).score_cache_ is None
    assert _fit("itemknn", dataset, half_life_days=7.0).score_cache_ is None
    assert _fit("pop", dataset).score_cache_ is None


def test_the_cache_is_saved_and_loaded(tmp_path: Path) -> None:
    dataset = _dataset()
    model = _fit("userknn", dataset)
    loaded = CandidateGenerator.load(model.save(tmp_path / "m"))
    assert loaded.score_cache_ is not None
    np.testing.assert_array_equal(loaded.score_cache_.slot, model.score_cache_.slot)
    np.testing.assert_array_equal(loaded.score_cache_.scores, model.score_cache_.scores)
    users = np.arange(dataset.n_users, dtype=np.int32)
    np.testing.assert_array_equal(
        loaded.score_catalog(users, exclude_seen=False),
        model.score_catalog(users, exclude_seen=False),
    )


def test_one_row_of_histories_equals_the_gathered_row() -> None:
    hist = Histories.from_dataset(_dataset())
    for row in (0, 7, hist.n_rows - 1, hist.n_rows + 3, -1):
        one, gathered = hist.rows([row]), hist.rows([row, row])
        assert one.n_rows == 1
        np.testing.assert_array_equal(one.items, gathered.items[: one.items.size])
        np.testing.assert_array_equal(one.timestamps, gathered.timestamps[: one.items.size])
        np.testing.assert_array_equal(one.origin_rows, gathered.origin_rows[:1])
        assert not one.items.flags.writeable and not one.indptr.flags.writeable
    nested = hist.rows([4, 9]).rows([1])
    assert nested.origin is hist and nested.origin_rows.tolist() == [9]
    np.testing.assert_array_equal(nested.items, hist.rows([9]).items)


def test_a_model_saved_without_the_cache_builds_it_at_load(tmp_path: Path) -> None:
    model = _fit("ease", _dataset())
    expected = model.score_cache_
    model.score_cache_ = None
    loaded = CandidateGenerator.load(model.save(tmp_path / "old"))
    assert loaded.score_cache_ is not None and expected is not None
    np.testing.assert_array_equal(loaded.score_cache_.scores, expected.scores)


def test_a_cache_that_does_not_fit_the_model_is_refused(tmp_path: Path) -> None:
    model = _fit("ease", _dataset())
    assert model.score_cache_ is not None
    model.score_cache_ = score_cache_module.ScoreCache(
        model.score_cache_.slot[:-1], model.score_cache_.scores
    )
    folder = model.save(tmp_path / "bad")
    with pytest.raises(DataError, match="score cache"):
        CandidateGenerator.load(folder)


def test_item_neighbourhood_user_knn_rows_equal_computed_ones() -> None:
    dataset = _dataset()
    model = _fit("userknn", dataset, neighbourhood="item", neighbors=5)
    assert model.score_cache_ is not None
    for user in range(10):
        one = np.array([user], dtype=np.int32)
        hist = _unmarked(model.histories_.rows(one))
        np.testing.assert_array_equal(
            model.score_catalog(one, exclude_seen=False),
            model.score_catalog(one, exclude_seen=False, histories=hist),
        )


def test_member_latency_times_the_computing_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsemble.ranking.selection import member_latency_ms

    model = _fit("ease", _dataset())
    calls = []
    compute = model._score_block
    monkeypatch.setattr(model, "_score_block", lambda *a: calls.append(1) or compute(*a))
    users = np.array([0, 1, 2], dtype=np.int32)  # fewer users than the warm-up batch
    ms = member_latency_ms({"ease": model}, users, np.zeros(3, np.int64), repeats=2)
    assert ms["ease"] > 0 and len(calls) == 3  # warm-up + 2 repeats, none read stored rows
