"""Score transforms: freshness boost with a half-life, boosts and demotions by attribute."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.rerank.base import Query, Reranker
from recsemble.rerank.transforms import (
    AttributeBoost,
    Boost,
    BoostConfig,
    FreshConfig,
    FreshnessBoost,
)
from recsemble.types import ItemList

DAY = 86_400
NOW = 100 * DAY  # the latest event: the moment of a request without `at`

# Items i900..i904: an old hit, a new release, one dated by its first interaction, one with no
# date at all, and one created at the very last moment.
LIBRARY_ITEMS = {
    "item_id": ["i900", "i901", "i902", "i903", "i904"],
    "created_at": [NOW - 60 * DAY, NOW - 1 * DAY, None, None, NOW],
    "categories": [["Drama"], ["Horror"], ["Comedy"], ["Horror", "Comedy"], []],
    "price": [30.0, 5.0, 10.0, None, 50.0],
}
LIBRARY_EVENTS = [
    ("u100", "i902", NOW - 10 * DAY),
    ("u100", "i902", NOW - 2 * DAY),
    ("u100", "i900", NOW - 5 * DAY),
    ("u101", "i901", NOW),
    ("u101", "i904", NOW),
]


@pytest.fixture(scope="module")
def library() -> Dataset:
    events = pl.DataFrame(LIBRARY_EVENTS, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(events, pl.DataFrame(LIBRARY_ITEMS, strict=False))


def _list(dataset: Dataset, scored: dict[str, float]) -> ItemList:
    """The given items (by id) in the given order with the given scores."""
    items = [dataset.items.idx_of(i) for i in scored]
    return ItemList(items, list(scored.values()), {"pos": np.arange(len(scored))})


def _ids(dataset: Dataset, out: ItemList) -> list[str]:
    return [dataset.items.id_of(int(i)) for i in out.items]


def _fresh_bonus(age_days: float, half_life: float, weight: float = 0.3) -> float:
    return weight * 2.0 ** (-age_days / half_life)


# ------------------------------------------------------------------ freshness
def test_fresh_scores_are_relevance_plus_the_decayed_boost(library: Dataset) -> None:
    items = _list(library, {"i900": 10.0, "i901": 9.0, "i902": 5.0, "i903": 0.0})
    out = FreshnessBoost().fit(library).rerank(Query(), items, 10)
    expected = {
        "i900": 1.0 + _fresh_bonus(60, 30),
        "i901": 0.9 + _fresh_bonus(1, 30),
        "i902": 0.5 + _fresh_bonus(10, 30),  # born at its first interaction
        "i903": 0.0,  # unknown birth: no boost
    }
    assert _ids(library, out) == sorted(expected, key=lambda i: -expected[i])
    np.testing.assert_allclose(out.scores, sorted(expected.values(), reverse=True), rtol=1e-6)
    # Each entry keeps its own features through the re-sort.
    np.testing.assert_array_equal(items.items[out.features["pos"].astype(int)], out.items)


def test_fresh_ordering_flips_as_the_half_life_shrinks(library: Dataset) -> None:
    # An old hit ahead of a new release; i903 (undated, last) anchors relevance at 0.
    items = _list(library, {"i900": 10.0, "i901": 9.0, "i903": 0.0})
    new_first = []
    # (A far longer half-life boosts both almost fully, and the hit leads again.)
    for half_life in (60.0, 30.0, 5.0, 1.0, 0.3, 0.1, 0.01):
        out = FreshnessBoost(half_life_days=half_life).fit(library).rerank(Query(), items, 2)
        new_first.append(_ids(library, out)[0] == "i901")
        expect_new = 0.9 + _fresh_bonus(1, half_life) > 1.0 + _fresh_bonus(60, half_life)
        assert new_first[-1] == expect_new, half_life
    assert new_first[0] and not new_first[-1]
    assert new_first == sorted(new_first, reverse=True)  # flips once, never back


def test_fresh_age_is_taken_at_the_request_moment(library: Dataset) -> None:
    items = _list(library, {"i900": 10.0, "i901": 9.0, "i903": 0.0})
    stage = FreshnessBoost(half_life_days=10).fit(library)
    later = stage.rerank(Query(at=NOW + 40 * DAY), items, 2)
    np.testing.assert_allclose(
        later.scores, [1.0 + _fresh_bonus(100, 10), 0.9 + _fresh_bonus(41, 10)], rtol=1e-6
    )
    assert _ids(library, stage.rerank(Query(), items, 2)) == ["i901", "i900"]
    assert _ids(library, later) == ["i900", "i901"]  # a month on, the new release is old too


def test_fresh_zero_weight_keeps_the_input_order_and_ties_stay_stable(library: Dataset) -> None:
    items = _list(library, {"i904": 3.0, "i901": 3.0, "i900": 2.0, "i903": 2.0, "i902": -1.0})
    out = FreshnessBoost(weight=0).fit(library).rerank(Query(), items, 10)
    assert _ids(library, out) == ["i904", "i901", "i900", "i903", "i902"]


def test_fresh_ties_keep_the_input_order() -> None:
    # i911 and i912 have neither created_at nor interactions: no boost, so equal scores tie.
    events = pl.DataFrame({"user_id": ["u100"], "item_id": ["i910"], "timestamp": [NOW]})
    dataset = Dataset.from_frames(events, pl.DataFrame({"item_id": ["i911", "i912"]}))
    stage = FreshnessBoost(weight=1.0).fit(dataset)
    for pair in (["i911", "i912"], ["i912", "i911"]):
        tied = _list(dataset, dict.fromkeys(pair, 1.0))
        out = stage.rerank(Query(), tied, 2)
        assert _ids(dataset, out) == pair
        np.testing.assert_array_equal(out.scores, [1.0, 1.0])


@pytest.mark.parametrize("stage", [FreshnessBoost(weight=0), AttributeBoost()])
def test_many_ties_keep_the_input_order(stage: Reranker) -> None:
    """A long list full of ties (numpy's default sort is only stable below ~16 entries)."""
    dataset = _random_catalog()[0]
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, dataset.n_items).astype(float)  # unsorted: the stage sorts
    many = ItemList(rng.permutation(dataset.n_items), scores)
    out = stage.fit(dataset).rerank(Query(), many, dataset.n_items)
    stable = sorted(range(len(many)), key=lambda position: -scores[position])
    assert out.items.tolist() == many.items[stable].tolist()


def test_fresh_returns_the_first_k_of_the_new_order(library: Dataset) -> None:
    items = _list(library, {"i900": 10.0, "i903": 9.5, "i902": 9.0, "i901": 0.0, "i904": -5.0})
    stage = FreshnessBoost(weight=2.0).fit(library)
    full = stage.rerank(Query(), items, 10)
    top = stage.rerank(Query(), items, 2)
    assert _ids(library, top) == _ids(library, full)[:2]
    np.testing.assert_array_equal(top.scores, full.scores[:2])


@pytest.mark.parametrize(
    "bad",
    [{"half_life_days": 0}, {"half_life_days": -3}, {"weight": -0.1}, {"weight": float("nan")}],
)
def test_fresh_config_rejects_bad_values(bad: dict[str, float]) -> None:
    field = next(iter(bad))
    with pytest.raises(ValidationError, match=field):
        FreshConfig.model_validate(bad)
    with pytest.raises(ValidationError, match=field):
        FreshnessBoost(**bad)


def test_fresh_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="half_life"):
        FreshConfig.model_validate({"half_life": 7})


# ------------------------------------------------------------------ attribute boosts
def test_demotion_sends_matching_items_down_in_their_order(library: Dataset) -> None:
    items = _list(library, {"i901": 5.0, "i900": 4.0, "i903": 3.0, "i902": 2.0, "i904": 1.0})
    horror = Boost(attribute="categories", op="in", value=["Horror"], amount=-2.0)
    out = AttributeBoost(boosts=[horror]).fit(library).rerank(Query(), items, 10)
    assert _ids(library, out) == ["i900", "i902", "i904", "i901", "i903"]
    np.testing.assert_allclose(out.scores, [0.75, 0.25, 0.0, 1.0 - 2.0, 0.5 - 2.0])


def test_boosts_add_up_and_use_numeric_rules(library: Dataset) -> None:
    items = _list(library, {"i900": 5.0, "i901": 4.0, "i902": 3.0, "i903": 2.0, "i904": 1.0})
    boosts = [
        Boost(attribute="price", op="<", value=20, amount=0.5),  # i901, i902 (not null i903)
        Boost(attribute="categories", op="==", value="Comedy", amount=0.5),  # i902, i903
    ]
    out = AttributeBoost(boosts=boosts).fit(library).rerank(Query(), items, 3)
    expected = {"i900": 1.0, "i901": 0.75 + 0.5, "i902": 0.5 + 1.0, "i903": 0.25 + 0.5}
    assert _ids(library, out) == ["i902", "i901", "i900"]
    np.testing.assert_allclose(out.scores, [expected[i] for i in _ids(library, out)])


def test_no_boosts_keep_a_sorted_list_as_it_is(library: Dataset) -> None:
    items = _list(library, {"i903": 2.0, "i900": 2.0, "i901": 1.0, "i904": -1.0})
    out = AttributeBoost().fit(library).rerank(Query(), items, 10)
    assert _ids(library, out) == ["i903", "i900", "i901", "i904"]


def test_boost_on_an_unknown_attribute_names_the_columns(library: Dataset) -> None:
    stage = AttributeBoost(boosts=[Boost(attribute="brand", op="==", value="x", amount=1)])
    with pytest.raises(ConfigError, match=r"'brand'.*categories.*price"):
        stage.fit(library)


def test_boost_with_an_order_op_on_a_list_attribute_is_a_config_error(library: Dataset) -> None:
    stage = AttributeBoost(boosts=[Boost(attribute="categories", op="<", value="b", amount=1)])
    with pytest.raises(ConfigError, match="categories"):
        stage.fit(library)


@pytest.mark.parametrize(
    "bad",
    [
        {"attribute": "price", "op": "<", "value": 3},  # no amount
        {"attribute": "price", "op": "<", "value": 3, "amount": float("inf")},
        {"attribute": "price", "op": "<", "value": 3, "amount": 1, "weight": 2},
        {"attribute": "price", "op": "=", "value": 3, "amount": 1},
    ],
)
def test_boost_config_rejects_bad_boosts(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BoostConfig.model_validate({"boosts": [bad]})


# ------------------------------------------------------------------ properties
N_ITEMS = 30


@cache
def _random_catalog() -> tuple[Dataset, np.ndarray, np.ndarray]:
    """A seeded catalog plus, per item idx, its birth (NaN: unknown) and its boost bonus."""
    rng = np.random.default_rng(3)
    created = [
        None if rng.random() < 0.3 else int(rng.integers(0, 200 * DAY)) for _ in range(N_ITEMS)
    ]
    categories = [[str(c) for c in rng.choice(["a", "b"], rng.integers(3))] for _ in range(N_ITEMS)]
    prices = [None if rng.random() < 0.2 else float(rng.integers(100)) for _ in range(N_ITEMS)]
    ids = [f"i{900 + j}" for j in range(N_ITEMS)]
    rated = rng.choice(N_ITEMS, 10, replace=False)  # a few have only interactions to date them
    first_seen = {int(j): int(rng.integers(0, 200 * DAY)) for j in rated}
    rows = [("u100", ids[j], t) for j, t in first_seen.items()]
    rows += [("u100", ids[j], t + DAY) for j, t in first_seen.items()]  # later repeats
    dataset = Dataset.from_frames(
        pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row"),
        pl.DataFrame(
            {"item_id": ids, "created_at": created, "categories": categories, "price": prices}
        ),
    )
    birth = np.array(
        [c if c is not None else first_seen.get(j, np.nan) for j, c in enumerate(created)], float
    )
    bonus = np.array(
        [
            0.4 * ("a" in cats) - 0.7 * (p is not None and p < 50)
            for cats, p in zip(categories, prices, strict=True)
        ]
    )
    return dataset, birth, bonus


def _brute_relevance(scores: np.ndarray) -> np.ndarray:
    scores = scores.astype(float)
    finite = np.isfinite(scores)
    if not finite.any():
        return np.ones_like(scores)
    low, high = scores[finite].min(), scores[finite].max()
    scaled = (scores - low) / (high - low) if high > low else np.ones_like(scores)
    return np.where(finite, scaled, 0.0)


def _brute_fresh(items: np.ndarray, at: int) -> np.ndarray:
    _, birth, _ = _random_catalog()
    out = np.zeros(items.size)
    for n, item in enumerate(items):
        if not np.isnan(birth[item]):
            out[n] = 0.3 * 2.0 ** (-max(at - birth[item], 0.0) / DAY / 30.0)
    return out


STAGES: dict[str, Any] = {
    "fresh": (
        lambda: FreshnessBoost(half_life_days=30, weight=0.3),
        lambda items, at: _brute_fresh(items, at),
    ),
    "boost": (
        lambda: AttributeBoost(
            boosts=[
                Boost(attribute="categories", op="in", value=["a"], amount=0.4),
                Boost(attribute="price", op="<", value=50, amount=-0.7),
            ]
        ),
        lambda items, at: _random_catalog()[2][items],
    ),
}


@cache
def _fitted(name: str, copy: int) -> Reranker:
    stage: Reranker = STAGES[name][0]()
    return stage.fit(_random_catalog()[0])


@st.composite
def requests(draw: st.DrawFn) -> tuple[Query, ItemList, int]:
    items = draw(st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=N_ITEMS))
    score = st.floats(-50, 50, width=32) | st.just(float("-inf")) | st.just(0.0)
    scores = draw(st.lists(score, min_size=len(items), max_size=len(items)))
    at = draw(st.integers(0, 220 * DAY))
    listed = ItemList(items, scores, {"pos": np.arange(len(items))})
    return Query(user=draw(st.integers(-1, 2)), at=at), listed, draw(st.integers(1, N_ITEMS + 2))


@pytest.mark.parametrize("name", sorted(STAGES))
@settings(max_examples=120, deadline=None)
@given(request=requests())
def test_transforms_return_the_top_k_by_the_new_scores(
    request: tuple[Query, ItemList, int], name: str
) -> None:
    query, items, k = request
    assert query.at is not None
    out = _fitted(name, 0).rerank(query, items, k)
    assert len(out) == min(k, len(items))
    assert set(out.items.tolist()) <= set(items.items.tolist())
    assert len(set(out.items.tolist())) == len(out)
    positions = out.features["pos"].astype(int)
    np.testing.assert_array_equal(items.items[positions], out.items)  # features travel along
    expected = _brute_relevance(items.scores) + STAGES[name][1](items.items, query.at)
    np.testing.assert_allclose(out.scores, expected[positions], rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(out.scores) <= 0)
    left_out = np.setdiff1d(np.arange(len(items)), positions)
    if left_out.size:
        assert expected[left_out].max() <= expected[positions].min() + 1e-6
    again = _fitted(name, 1).rerank(query, items, k)
    np.testing.assert_array_equal(again.items, out.items)
    np.testing.assert_array_equal(again.scores, out.scores)
