"""ExposureFloor (minimum protected share per list) and exposure_gini."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.evaluation.distribution import exposure_gini
from recsemble.evaluation.metrics import longtail_items
from recsemble.rerank.base import Query
from recsemble.rerank.catalog import Rule
from recsemble.rerank.fairness import ExposureFloor, FairConfig
from recsemble.types import ItemList

N_ITEMS = 30
SMALL_PROVIDER = Rule(attribute="provider", op="==", value="small")


def _catalog() -> Dataset:
    """Item i9jj is seen by 30 - jj users (so popularity falls with the id); every third item
    comes from a "small" provider."""
    rows = [
        (f"u{100 + u}", f"i{900 + j}", 1_000 + u)
        for j in range(N_ITEMS)
        for u in range(N_ITEMS - j)
    ]
    interactions = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    items = pl.DataFrame(
        {
            "item_id": [f"i{900 + j}" for j in range(N_ITEMS)],
            "provider": ["small" if j % 3 == 0 else "big" for j in range(N_ITEMS)],
        }
    )
    return Dataset.from_frames(interactions, items)


CATALOG = _catalog()
LONGTAIL = longtail_items(CATALOG.item_popularity, 0.2)
SMALL = np.array([CATALOG.items.id_of(i)[1:] for i in range(N_ITEMS)], dtype=int) % 3 == 0


def _items(positions: list[int]) -> ItemList:
    """Distinct item idx, best first, with descending scores and a feature column."""
    scores = np.linspace(2.0, -1.0, len(positions))
    return ItemList(
        np.array(positions, dtype=np.int32),
        scores,
        {"rank": np.arange(len(positions), dtype=np.float32)},
    )


def _fair(**config: object) -> ExposureFloor:
    return ExposureFloor(FairConfig.model_validate(config)).fit(CATALOG)


lists = st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=N_ITEMS)
shares = st.floats(0.01, 1.0)
kinds = st.sampled_from(["longtail", "rule"])


def _protected_mask(kind: str) -> np.ndarray:
    return LONGTAIL if kind == "longtail" else SMALL


def _config(kind: str, share: float) -> dict[str, object]:
    rules = [SMALL_PROVIDER] if kind == "rule" else []
    return {"protected": kind, "rules": rules, "min_share": share}


@settings(max_examples=150, deadline=None)
@given(positions=lists, k=st.integers(1, 15), share=shares, kind=kinds)
def test_floor_holds_on_every_list(positions: list[int], k: int, share: float, kind: str) -> None:
    items = _items(positions)
    stage = _fair(**_config(kind, share))
    out = stage.rerank(Query(user=3), items, k)
    n = min(k, len(items))
    assert len(out) == n
    assert len(set(out.items.tolist())) == len(out)
    where = [positions.index(i) for i in out.items.tolist()]
    assert where == sorted(where), "picks keep their input order"
    np.testing.assert_array_equal(out.scores, items.scores[where])
    np.testing.assert_array_equal(out.features["rank"], np.array(where, dtype=np.float32))
    protected = _protected_mask(kind)
    shown = int(protected[out.items].sum())
    available = int(protected[items.items].sum())
    assert shown >= min(available, share * n)
    again = stage.rerank(Query(user=3), items, k)
    np.testing.assert_array_equal(again.items, out.items)


@settings(max_examples=80, deadline=None)
@given(
    positions=st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=9),
    k=st.integers(1, 9),
    share=shares,
    kind=kinds,
)
def test_keeps_the_most_relevant_feasible_list(
    positions: list[int], k: int, share: float, kind: str
) -> None:
    """Brute force: no feasible list of the same length has a smaller sum of input positions."""
    items = _items(positions)
    out = _fair(**_config(kind, share)).rerank(Query(), items, k)
    protected = _protected_mask(kind)[items.items]
    n = min(k, len(items))
    floor = min(int(protected.sum()), share * n)
    feasible = [
        sum(subset)
        for subset in itertools.combinations(range(len(items)), n)
        if protected[list(subset)].sum() >= floor
    ]
    got = sum(positions.index(i) for i in out.items.tolist())
    assert got == min(feasible)


def test_swaps_lowest_unprotected_for_best_protected() -> None:
    # Items 0.. are the most popular (head); 20.. are long-tail.
    head, tail = [0, 1, 2, 3], [20, 21, 22]
    items = _items([head[0], head[1], head[2], tail[0], head[3], tail[1], tail[2]])
    out = _fair(min_share=0.5).rerank(Query(), items, 4)
    assert out.items.tolist() == [head[0], head[1], tail[0], tail[1]]


@pytest.mark.parametrize(("share", "k", "floor"), [(0.28, 25, 7), (0.1, 20, 2), (0.29, 24, 7)])
def test_floor_is_the_share_as_written(share: float, k: int, floor: int) -> None:
    """0.28 * 25 == 7.000000000000001 in floats and 0.1 is a little over 1/10 in binary: the
    floor is still ceil of the decimal product."""
    stage = _fair(min_share=share, head_share=0.7)  # 21 head items, 9 long-tail
    head = [int(i) for i in np.flatnonzero(~stage.protected_)]
    tail = [int(i) for i in np.flatnonzero(stage.protected_)]
    items = _items(head + tail)
    out = stage.rerank(Query(), items, k)
    assert int(stage.protected_[out.items].sum()) == floor
    assert out.items.tolist()[:3] == head[:3]


def test_returns_every_protected_item_when_there_are_too_few() -> None:
    items = _items([0, 1, 2, 3, 4, 25])
    out = _fair(min_share=1.0).rerank(Query(), items, 4)
    assert out.items.tolist() == [0, 1, 2, 25]


def test_longtail_group_follows_head_share() -> None:
    assert _fair(head_share=0.5).protected_.sum() == N_ITEMS // 2
    assert not _fair(head_share=1.0).protected_.any()
    np.testing.assert_array_equal(_fair().protected_, LONGTAIL)


def test_rule_group() -> None:
    np.testing.assert_array_equal(_fair(**_config("rule", 0.3)).protected_, SMALL)


@pytest.mark.parametrize(
    "config",
    [
        {"protected": "rule"},
        {"min_share": 0.0},
        {"min_share": 1.5},
        {"head_share": -0.1},
        {"protected": "longtail", "rules": [SMALL_PROVIDER]},  # the rules would be ignored
    ],
)
def test_bad_config_is_rejected(config: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FairConfig.model_validate(config)


# ------------------------------------------------------------------------------ Gini
@pytest.mark.parametrize("bad", [[[0, 5]], [[0, -2]]])
def test_gini_rejects_items_outside_the_catalog(bad: list[list[int]]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        exposure_gini(np.array(bad), 5)


def test_floor_lowers_exposure_gini() -> None:
    """Popularity-ordered lists concentrate exposure on the head; the floor spreads it."""
    rng = np.random.default_rng(0)
    stage = _fair(min_share=0.5)
    before, after = [], []
    for user in range(40):
        order = np.argsort(np.arange(N_ITEMS) + rng.normal(0, 4, N_ITEMS))
        items = _items(order.tolist())
        before.append(items.top(6).items)
        after.append(stage.rerank(Query(user=user), items, 6).items)
    gini_before = exposure_gini(np.array(before), N_ITEMS)
    gini_after = exposure_gini(np.array(after), N_ITEMS)
    assert gini_after < gini_before
    assert LONGTAIL[np.array(after)].mean() >= 0.5 > LONGTAIL[np.array(before)].mean()
