from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsemble.data.idmap import IdMap
from recsemble.errors import DataError

ids_strategy = st.lists(st.text(min_size=1, max_size=8), min_size=0, max_size=60)


@given(ids_strategy)
def test_round_trip_and_bijection(ids: list[str]) -> None:
    idmap = IdMap.from_unsorted(ids)
    distinct = sorted(set(ids))
    assert len(idmap) == len(distinct)
    assert list(idmap.ids) == distinct
    if ids:
        idx = idmap.to_idx(ids)
        assert list(idmap.to_ids(idx)) == ids
        assert all(idmap.idx_of(x) == i for x, i in zip(ids, idx, strict=True))


@given(ids_strategy, ids_strategy)
def test_extend_never_renumbers(first: list[str], more: list[str]) -> None:
    base = IdMap.from_unsorted(first)
    extended = base.extend(more)
    assert list(extended.ids[: len(base)]) == list(base.ids)
    assert set(extended.ids) == set(first) | set(more)
    assert len(extended) == len(set(first) | set(more))


@given(ids_strategy)
def test_input_order_does_not_change_numbering(ids: list[str]) -> None:
    assert IdMap.from_unsorted(ids) == IdMap.from_unsorted(list(reversed(ids)))


def test_unknown_ids() -> None:
    idmap = IdMap.from_unsorted(["u1", "u2"])
    with pytest.raises(KeyError, match="u9"):
        idmap.to_idx(["u1", "u9"])
    assert idmap.to_idx(["u9", "u2"], missing="ignore").tolist() == [-1, 1]
    assert "u1" in idmap and "u9" not in idmap
    with pytest.raises(IndexError):
        idmap.to_ids(np.array([2]))


def test_duplicates_and_nulls_rejected() -> None:
    with pytest.raises(DataError, match="duplicated"):
        IdMap(["a", "b", "a"])


def test_ids_are_read_only() -> None:
    idmap = IdMap.from_unsorted(["a"])
    with pytest.raises(ValueError):
        idmap.ids[0] = "b"


def test_subset_renumbers() -> None:
    idmap = IdMap.from_unsorted(["a", "b", "c"])
    sub = idmap.subset([2, 0])
    assert list(sub.ids) == ["c", "a"]
    assert sub.idx_of("a") == 1
