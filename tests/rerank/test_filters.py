"""Filters: seen (per event type), availability/expiry, attribute rules, quality hook."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError, NotFittedError
from recsemble.rerank.base import Query
from recsemble.rerank.catalog import Rule
from recsemble.rerank.filters import (
    AvailabilityFilter,
    QualityFilter,
    RuleFilter,
    RulesConfig,
    SeenConfig,
    SeenFilter,
)
from recsemble.types import ItemList

# ------------------------------------------------------------------ a small, hand-checked shop
# Users u100..u102, items i900..i905 (disjoint ranges so idx/id mix-ups show). Latest event: 80.
SHOP_EVENTS = [
    ("u100", "i900", 10, "view"),
    ("u100", "i901", 20, "purchase"),
    ("u100", "i902", 30, "view"),
    ("u101", "i903", 40, "cart"),
    ("u101", "i904", 60, "purchase"),
    ("u102", "i905", 80, "view"),
]
SHOP_ITEMS = {
    "item_id": ["i900", "i901", "i902", "i903", "i904", "i905"],
    "categories": [["Horror"], ["Comedy"], ["Horror", "Comedy"], [], None, ["Drama"]],
    "price": [10.0, 25.0, None, 5.0, 15.0, 30.0],
    "available": [True, False, True, None, True, True],
    "expires_at": [None, None, 50, 100, None, 49],
    "quality": [0.9, 0.2, None, 0.5, 0.7, 0.1],
}


def _shop(**replace: list[Any]) -> Dataset:
    events = pl.DataFrame(
        SHOP_EVENTS, schema=["user_id", "item_id", "timestamp", "event"], orient="row"
    )
    items = pl.DataFrame({**SHOP_ITEMS, **replace}, strict=False)
    return Dataset.from_frames(events, items)


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return _shop()


def _catalog(dataset: Dataset) -> ItemList:
    """Every item, best first, with distinct descending scores."""
    n = dataset.n_items
    return ItemList(np.arange(n), np.linspace(1.0, -1.0, n), {"f": np.arange(n) * 2.0})


def _ids(dataset: Dataset, out: ItemList) -> list[str]:
    return [dataset.items.id_of(int(i)) for i in out.items]


def _user(dataset: Dataset, user_id: str) -> int:
    return dataset.users.idx_of(user_id)


# ------------------------------------------------------------------ seen
def test_seen_drops_every_interacted_item_by_default(shop: Dataset) -> None:
    stage = SeenFilter().fit(shop)
    out = stage.rerank(Query(user=_user(shop, "u100")), _catalog(shop), 10)
    assert _ids(shop, out) == ["i903", "i904", "i905"]


def test_seen_keeps_order_scores_and_features_and_truncates(shop: Dataset) -> None:
    items = _catalog(shop)
    out = SeenFilter().fit(shop).rerank(Query(user=_user(shop, "u101")), items, 2)
    assert _ids(shop, out) == ["i900", "i901"]
    np.testing.assert_array_equal(out.scores, items.scores[:2])
    np.testing.assert_array_equal(out.features["f"], items.features["f"][:2])


def test_seen_per_event_type_lets_a_viewed_item_come_back_but_not_a_bought_one(
    shop: Dataset,
) -> None:
    stage = SeenFilter(event_types=["purchase"]).fit(shop)
    out = stage.rerank(Query(user=_user(shop, "u100")), _catalog(shop), 10)
    assert "i901" not in _ids(shop, out)  # bought
    assert {"i900", "i902"} <= set(_ids(shop, out))  # only viewed


def test_seen_counts_request_history_by_event_type(shop: Dataset) -> None:
    i903, i904, i905 = (shop.items.idx_of(i) for i in ("i903", "i904", "i905"))
    query = Query(
        user=_user(shop, "u102"),
        history=[i903, i904, i905],
        history_events=("purchase", "view", ""),
    )
    purchases = SeenFilter(event_types=["purchase"]).fit(shop).rerank(query, _catalog(shop), 10)
    # i903 bought in the request; i904 only viewed; "" is no known type so it does not count.
    assert _ids(shop, purchases) == ["i900", "i901", "i902", "i904", "i905"]
    everything = SeenFilter().fit(shop).rerank(query, _catalog(shop), 10)
    assert _ids(shop, everything) == ["i900", "i901", "i902"]


def test_seen_history_without_event_types_counts_only_for_every_type(shop: Dataset) -> None:
    i900 = shop.items.idx_of("i900")
    query = Query(user=-1, history=[i900])  # events unknown
    assert "i900" not in _ids(shop, SeenFilter().fit(shop).rerank(query, _catalog(shop), 10))
    views = SeenFilter(event_types=["view"]).fit(shop).rerank(query, _catalog(shop), 10)
    assert "i900" in _ids(shop, views)


def test_external_ids_in_place_of_idx_are_refused(shop: Dataset) -> None:
    stage = SeenFilter().fit(shop)
    with pytest.raises(TypeError, match="Query history must be integer idx"):
        Query(user=0, history=["i903"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ItemList items must be integer idx"):
        ItemList(np.array(["i903"]), np.ones(1))  # both were read as numbers, or failed in numpy
    with pytest.raises(TypeError, match="integer idx, got float64"):
        ItemList([1.7], [1.0])  # was item 1
    with pytest.raises(ValueError, match=r"ItemList items repeat: \[3\]"):
        ItemList([3, 1, 3], [0.9, 0.5, 0.1])  # a list a stage would show item 3 twice in
    with pytest.raises(ValueError, match="history item idx out of range"):
        stage.rerank(Query(user=0, history=[903]), _catalog(shop), 3)  # was silently nothing


@pytest.mark.parametrize("user", [-1, 3, 1000])
def test_seen_unknown_user_has_no_fitted_history(shop: Dataset, user: int) -> None:
    out = SeenFilter().fit(shop).rerank(Query(user=user), _catalog(shop), 10)
    assert len(out) == shop.n_items


def test_seen_unknown_event_type_names_the_known_ones(shop: Dataset) -> None:
    with pytest.raises(ConfigError, match=r"\['purchse'\].*cart.*purchase.*view"):
        SeenFilter(event_types=["purchase", "purchse"]).fit(shop)


def test_seen_config_rejects_empty_list_and_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="event_types"):
        SeenConfig(event_types=[])
    with pytest.raises(ValidationError, match="extra"):
        SeenConfig(event_type=["view"])  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SeenFilter(bogus=1)
    with pytest.raises(TypeError, match="SeenConfig"):
        SeenFilter(RulesConfig())


def test_filter_must_be_fitted(shop: Dataset) -> None:
    with pytest.raises(NotFittedError):
        SeenFilter().rerank(Query(), _catalog(shop), 3)


# ------------------------------------------------------------------ availability
def test_availability_drops_unavailable_and_expired_at_the_latest_moment(shop: Dataset) -> None:
    out = AvailabilityFilter().fit(shop).rerank(Query(), _catalog(shop), 10)
    # i901 unavailable; at the latest event (80) i902 (expires 50) and i905 (49) have expired;
    # i903 (available null = available, expires 100) stays.
    assert _ids(shop, out) == ["i900", "i903", "i904"]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (48, ["i900", "i902", "i903", "i904", "i905"]),
        (49, ["i900", "i902", "i903", "i904"]),  # expiry at the moment itself counts
        (50, ["i900", "i903", "i904"]),
        (100, ["i900", "i904"]),
    ],
)
def test_expiry_is_relative_to_the_request_moment(
    shop: Dataset, at: int, expected: list[str]
) -> None:
    out = AvailabilityFilter().fit(shop).rerank(Query(at=at), _catalog(shop), 10)
    assert _ids(shop, out) == expected


def test_no_expiry_column_means_nothing_expires() -> None:
    items = {k: v for k, v in SHOP_ITEMS.items() if k != "expires_at"}
    dataset = Dataset.from_frames(
        pl.DataFrame(
            SHOP_EVENTS, schema=["user_id", "item_id", "timestamp", "event"], orient="row"
        ),
        pl.DataFrame(items, strict=False),
    )
    out = AvailabilityFilter().fit(dataset).rerank(Query(at=10**9), _catalog(dataset), 10)
    assert _ids(dataset, out) == ["i900", "i902", "i903", "i904", "i905"]


def test_expiry_column_can_be_renamed_and_be_a_datetime(shop: Dataset) -> None:
    epoch = dt.datetime(1970, 1, 1)
    ends = [None, None, epoch + dt.timedelta(seconds=20), None, None, None]
    dataset = _shop(ends=ends)
    stage = AvailabilityFilter(expires_attribute="ends").fit(dataset)
    # expires_at is ignored now: only i901 (unavailable) and i902 (ends at 20) go at moment 30.
    out = stage.rerank(Query(at=30), _catalog(dataset), 10)
    assert _ids(dataset, out) == ["i900", "i903", "i904", "i905"]


def test_expiry_column_that_is_not_a_moment_is_a_config_error() -> None:
    dataset = _shop(expires_at=["soon", None, None, None, None, "never"])
    with pytest.raises(ConfigError, match="expires_at"):
        AvailabilityFilter().fit(dataset)


# ------------------------------------------------------------------ rules
def test_rules_exclude_any_on_a_list_attribute(shop: Dataset) -> None:
    stage = RuleFilter(
        exclude=[
            Rule(attribute="categories", op="in", value=["Horror"]),
            Rule(attribute="price", op=">=", value=30),
        ]
    ).fit(shop)
    out = stage.rerank(Query(), _catalog(shop), 10)
    assert _ids(shop, out) == ["i901", "i903", "i904"]


def test_rules_include_all_on_numeric_and_list_attributes(shop: Dataset) -> None:
    stage = RuleFilter(
        include=[
            Rule(attribute="price", op="<", value=20),  # missing price (i902) fails
            Rule(attribute="categories", op="not in", value=["Horror"]),
        ]
    ).fit(shop)
    assert _ids(shop, stage.rerank(Query(), _catalog(shop), 10)) == ["i903", "i904"]


def test_rules_include_and_exclude_combine(shop: Dataset) -> None:
    stage = RuleFilter(
        include=[Rule(attribute="price", op="<=", value=25)],
        exclude=[Rule(attribute="categories", op="==", value="Comedy")],
    ).fit(shop)
    assert _ids(shop, stage.rerank(Query(), _catalog(shop), 10)) == ["i900", "i903", "i904"]


def test_no_rules_keep_everything(shop: Dataset) -> None:
    assert len(RuleFilter().fit(shop).rerank(Query(), _catalog(shop), 10)) == shop.n_items


def test_rule_on_an_unknown_attribute_names_the_columns(shop: Dataset) -> None:
    stage = RuleFilter(exclude=[Rule(attribute="colour", op="==", value="red")])
    with pytest.raises(ConfigError, match=r"'colour'.*price"):
        stage.fit(shop)


def test_a_number_is_not_ordered_against_text() -> None:
    # Prices kept as text: as text "10" and "15" are < "20" but "5" is not, so the rule
    # price < 20 excluded 10 and 15 and kept the item costing 5, silently.
    shop = _shop(price=["10", "25", None, "5", "15", "30"])
    stage = RuleFilter(exclude=[Rule(attribute="price", op="<", value=20)])
    with pytest.raises(ConfigError, match="'price' holds text, which would be compared as text"):
        stage.fit(shop).rerank(Query(user=-1), _catalog(shop), 6)


@pytest.mark.parametrize(
    "bad",
    [
        {"exclude": [{"attribute": "price", "op": "~", "value": 3}]},
        {"exclude": [{"attribute": "price", "op": "<", "value": 3, "unit": "EUR"}]},
        {"include": [{"attribute": "price", "op": "<"}]},
        {"includes": []},
    ],
)
def test_rules_config_rejects_bad_rules(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RulesConfig.model_validate(bad)


# ------------------------------------------------------------------ quality
def test_quality_from_column_keeps_missing_scores_and_the_threshold(shop: Dataset) -> None:
    out = QualityFilter().fit(shop).rerank(Query(), _catalog(shop), 10)
    # 0.2 and 0.1 are under 0.5; i903 sits on it, i902 has no score.
    assert _ids(shop, out) == ["i900", "i902", "i903", "i904"]
    stricter = QualityFilter(threshold=0.8).fit(shop).rerank(Query(), _catalog(shop), 10)
    assert _ids(shop, stricter) == ["i900", "i902"]


def test_quality_from_a_callable_called_once_over_the_catalog(shop: Dataset) -> None:
    calls: list[np.ndarray] = []

    def clickbait_free(items: np.ndarray) -> np.ndarray:
        calls.append(items)
        return np.where(items % 2 == 0, 1.0, 0.0)  # odd idx are click-bait

    stage = QualityFilter(scorer=clickbait_free).fit(shop)
    for user in (-1, 0, 1):
        out = stage.rerank(Query(user=user), _catalog(shop), 10)
        assert out.items.tolist() == [0, 2, 4]
    assert len(calls) == 1
    assert calls[0].dtype == np.int32 and calls[0].tolist() == list(range(shop.n_items))


def test_quality_scorer_wins_over_the_column(shop: Dataset) -> None:
    stage = QualityFilter(attribute="quality", scorer=lambda idx: np.ones(idx.size)).fit(shop)
    assert len(stage.rerank(Query(), _catalog(shop), 10)) == shop.n_items


@pytest.mark.parametrize(
    ("scorer", "message"),
    [
        (lambda idx: np.ones(idx.size - 1), "shape"),
        (lambda idx: np.ones((idx.size, 1)), "shape"),
        (lambda idx: np.where(idx == 3, np.nan, 1.0), "NaN.*3"),
        (lambda idx: np.array(["good"] * idx.size), "non-numeric"),
    ],
)
def test_quality_scorer_misbehaving_is_a_value_error(
    shop: Dataset, scorer: Callable[[np.ndarray], Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        QualityFilter(scorer=scorer).fit(shop)


@pytest.mark.parametrize("attribute", [None, "spamminess"])
def test_quality_without_scorer_or_column_names_the_columns(
    shop: Dataset, attribute: str | None
) -> None:
    with pytest.raises(ConfigError, match=r"scorer.*price.*quality"):
        QualityFilter(attribute=attribute).fit(shop)


def test_quality_column_must_be_numeric(shop: Dataset) -> None:
    with pytest.raises(ConfigError, match="not numeric"):
        QualityFilter(attribute="title").fit(_shop(title=["a", "b", "c", "d", "e", "f"]))


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), "high"])
def test_quality_threshold_must_be_a_finite_number(threshold: Any) -> None:
    with pytest.raises(ValidationError, match="threshold"):
        QualityFilter(threshold=threshold)
