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


def test_one_id_where_a_sequence_belongs_is_refused() -> None:
    idmap = IdMap(["1001", "1002"])
    with pytest.raises(TypeError, match="single id '1002'"):
        idmap.to_idx("1002")  # a str is a sequence of characters: it gave an empty array
    assert idmap.to_idx(["1002"]).tolist() == [1]


def test_id_of_outside_the_map_is_an_index_error() -> None:
    idmap = IdMap(["1001", "1002"])
    for idx in (-1, 2):
        with pytest.raises(IndexError, match=r"out of range 0\.\.1"):
            idmap.id_of(idx)  # -1 gave the last id


def test_integer_ids_are_read_as_text_and_fractions_refused() -> None:
    assert list(IdMap.from_unsorted(np.array([1003, 1001])).ids) == ["1001", "1003"]
    assert list(IdMap([7, 5]).extend([6]).ids) == ["7", "5", "6"]
    with pytest.raises(TypeError, match="strings or integers, not Float64"):
        IdMap([1.0, 2.0])


def test_padding_in_to_ids_says_what_it_is() -> None:
    idmap = IdMap(["5001", "5002"])
    with pytest.raises(IndexError, match=r"-1 pads a short top-k row: TopK\.row\(r\) drops it"):
        idmap.to_ids([1, -1])  # a TopK row with fewer items than k


def test_an_unknown_missing_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="missing must be 'error' or 'ignore'"):
        IdMap(["1001"]).to_idx(["1002"], missing="skip")  # type: ignore[arg-type]  (gave -1)
