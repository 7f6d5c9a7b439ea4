"""Filters, property tests: over random requests on a random catalog, each filter returns
exactly the first k items an independent brute force over the raw rows allows."""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsemble.data.dataset import Dataset
from recsemble.rerank.base import Query, Reranker
from recsemble.rerank.catalog import Rule
from recsemble.rerank.filters import AvailabilityFilter, QualityFilter, RuleFilter, SeenFilter
from recsemble.types import ItemList

N_USERS, N_ITEMS = 5, 24
EVENTS = ("view", "cart", "purchase")
CATS = ["a", "b", "c"]


def _maybe(rng: np.random.Generator, value: Any) -> Any:
    return None if rng.random() < 0.2 else value


def _random_raw() -> tuple[list[tuple[str, str, int, str]], list[dict[str, Any]]]:
    rng = np.random.default_rng(11)
    rows = [
        (f"u{100 + rng.integers(N_USERS)}", f"i{900 + rng.integers(N_ITEMS)}", int(t), str(e))
        for t, e in zip(rng.integers(0, 100, 70), rng.choice(EVENTS, 70), strict=True)
    ]
    items = [
        {
            "item_id": f"i{900 + j}",
            "categories": _maybe(rng, sorted({str(c) for c in rng.choice(CATS, rng.integers(3))})),
            "price": _maybe(rng, float(rng.integers(0, 100))),
            "brand": _maybe(rng, str(rng.choice(["x", "y"]))),
            "created_at": _maybe(rng, int(rng.integers(0, 100))),
            "available": _maybe(rng, bool(rng.random() < 0.8)),
            "expires_at": _maybe(rng, int(rng.integers(0, 130))),
            "quality": _maybe(rng, float(rng.random())),
        }
        for j in range(N_ITEMS)
    ]
    return rows, items


RAW_ROWS, RAW_ITEMS = _random_raw()
ATTRS = {item["item_id"]: item for item in RAW_ITEMS}
LATEST = max(t for _, _, t, _ in RAW_ROWS)


@cache
def _random_dataset() -> Dataset:
    events = pl.DataFrame(
        RAW_ROWS, schema=["user_id", "item_id", "timestamp", "event"], orient="row"
    )
    return Dataset.from_frames(events, pl.DataFrame(RAW_ITEMS))


_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le}
_COMPARE |= {">": operator.gt, ">=": operator.ge}


def _matches(value: Any, op: str, target: Any) -> bool:
    """The catalog's rule semantics, written out per item."""
    negative = op in ("!=", "not in")
    targets = target if isinstance(target, list) else [target]
    if isinstance(value, list):
        shares = any(v in targets for v in value)
        return not shares if negative else shares
    if value is None:
        return negative
    if op in ("in", "not in"):
        return (value in targets) != negative
    return bool(_COMPARE[op](value, target))


def _rules_forbid(exclude: list[Rule], include: list[Rule]) -> Callable[[Query, str], bool]:
    def forbidden(query: Query, item: str) -> bool:
        attrs = ATTRS[item]
        hit = any(_matches(attrs[r.attribute], r.op, r.value) for r in exclude)
        return hit or not all(_matches(attrs[r.attribute], r.op, r.value) for r in include)

    return forbidden


def _seen_forbid(types: list[str] | None) -> Callable[[Query, str], bool]:
    def forbidden(query: Query, item: str) -> bool:
        dataset = _random_dataset()
        user = dataset.users.id_of(query.user) if 0 <= query.user < N_USERS else None
        counted = [(u, i) for u, i, _, e in RAW_ROWS if types is None or e in types]
        history = zip(query.history.tolist(), query.history_events, strict=True)
        from_request = {dataset.items.id_of(i) for i, e in history if types is None or e in types}
        return (user, item) in counted or item in from_request

    return forbidden


def _unavailable(query: Query, item: str) -> bool:
    moment = LATEST if query.at is None else query.at
    expires = ATTRS[item]["expires_at"]
    return ATTRS[item]["available"] is False or (expires is not None and expires <= moment)


def _parity_score(idx: np.ndarray) -> np.ndarray:
    return (idx * 7 % 10) / 10.0


def _low_quality(query: Query, item: str) -> bool:
    score = ATTRS[item]["quality"]
    return score is not None and score < 0.4


def _low_parity(query: Query, item: str) -> bool:
    return (_random_dataset().items.idx_of(item) * 7 % 10) / 10.0 < 0.5


STAGES: dict[str, tuple[Callable[[], Reranker], Callable[[Query, str], bool]]] = {
    "seen-all": (SeenFilter, _seen_forbid(None)),
    "seen-purchase": (lambda: SeenFilter(event_types=["purchase"]), _seen_forbid(["purchase"])),
    "seen-view-cart": (
        lambda: SeenFilter(event_types=["view", "cart"]),
        _seen_forbid(["view", "cart"]),
    ),
    "available": (AvailabilityFilter, _unavailable),
    "quality-column": (lambda: QualityFilter(threshold=0.4), _low_quality),
    "quality-scorer": (lambda: QualityFilter(scorer=_parity_score), _low_parity),
}
_RULESETS = {
    "rules-1": (
        [Rule(attribute="categories", op="in", value=["a"])],
        [Rule(attribute="price", op="<", value=50)],
    ),
    "rules-2": (
        [Rule(attribute="brand", op="==", value="x"), Rule(attribute="price", op=">=", value=80)],
        [
            Rule(attribute="categories", op="not in", value=["c"]),
            Rule(attribute="created_at", op=">", value=20),
        ],
    ),
    "rules-3": ([Rule(attribute="categories", op="!=", value="b")], []),
    "rules-4": ([], [Rule(attribute="brand", op="in", value=["y"])]),
}
for _name, (_exclude, _include) in _RULESETS.items():
    STAGES[_name] = (
        lambda e=_exclude, i=_include: RuleFilter(exclude=e, include=i),
        _rules_forbid(_exclude, _include),
    )


@cache
def _fitted(name: str, copy: int) -> Reranker:
    """Fitted stage `name`; copy 0 and 1 are separate instances (determinism across fits)."""
    return STAGES[name][0]().fit(_random_dataset())


def _moments(items: list[int]) -> st.SearchStrategy[int | None]:
    """The latest moment, any moment, or exactly when a listed item expires (the edge case)."""
    listed = {_ids_of(i) for i in items}
    edges = sorted({ATTRS[i]["expires_at"] for i in listed} - {None})
    edge = st.sampled_from(edges) if edges else st.integers(0, 130)
    return st.none() | st.integers(0, 130) | edge


@st.composite
def requests(draw: st.DrawFn) -> tuple[Query, ItemList, int]:
    items = draw(st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=N_ITEMS))
    scores = draw(
        st.lists(st.floats(-1e3, 1e3, width=32), min_size=len(items), max_size=len(items))
    )
    history = draw(
        st.lists(st.tuples(st.integers(0, N_ITEMS - 1), st.sampled_from(("", *EVENTS))), max_size=6)
    )
    query = Query(
        user=draw(st.integers(-1, N_USERS + 1)),
        at=draw(_moments(items)),
        history=[i for i, _ in history],
        history_events=tuple(e for _, e in history),
    )
    listed = ItemList(items, scores, {"pos": np.arange(len(items))})
    return query, listed, draw(st.integers(1, N_ITEMS + 2))


@pytest.mark.parametrize("name", sorted(STAGES))
@settings(max_examples=50, deadline=None)
@given(request=requests())
def test_filters_return_exactly_the_first_k_allowed_items(
    request: tuple[Query, ItemList, int], name: str
) -> None:
    query, items, k = request
    out = _fitted(name, 0).rerank(query, items, k)
    ids = [_ids_of(int(i)) for i in out.items]
    forbidden = STAGES[name][1]
    assert not [item for item in ids if forbidden(query, item)]  # nothing filtered leaks
    assert set(out.items.tolist()) <= set(items.items.tolist())
    assert len(set(ids)) == len(ids) <= k
    allowed = [p for p, i in enumerate(items.items) if not forbidden(query, _ids_of(int(i)))]
    positions = out.features["pos"].astype(int).tolist()
    assert positions == allowed[:k]  # order kept, nothing dropped that should stay
    np.testing.assert_array_equal(out.scores, items.scores[positions])
    again = _fitted(name, 1).rerank(query, items, k)
    np.testing.assert_array_equal(again.items, out.items)


def _ids_of(idx: int) -> str:
    return _random_dataset().items.id_of(idx)


def test_random_catalog_exercises_every_filter() -> None:
    """The property test above is only meaningful if each stage drops something and keeps
    something on the full catalog at the latest moment for some user."""
    for name, (_, forbidden) in STAGES.items():
        verdicts = {
            forbidden(Query(user=u), _ids_of(i)) for u in range(N_USERS) for i in range(N_ITEMS)
        }
        assert verdicts == {True, False}, name
    assert _random_dataset().n_users == N_USERS and _random_dataset().n_items == N_ITEMS
