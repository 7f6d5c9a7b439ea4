"""Histories built by hand (request-time fold-in): bad input is refused by name."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.generators import GENERATORS
from recsemble.generators.history import Histories


def _data() -> Dataset:
    rows = [(f"u{u}", f"i{(u * 3 + j) % 8}", 10 * j) for u in range(6) for j in range(4)]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(frame)


def test_hand_built_histories_fold_in() -> None:
    data = _data()
    model = GENERATORS["itemknn"]().fit(data)
    top = model.recommend([-1], 3, histories=Histories.from_lists([[1, 2]], data.n_items))
    assert (top.items[0] >= 0).all() and not np.isin(top.items[0], [1, 2]).any()


@pytest.mark.parametrize(
    ("weights", "message"),
    [([[float("nan"), 1.0]], "finite numbers >= 0"), ([[-1.0, 1.0]], "finite numbers >= 0")],
)
def test_bad_event_weights_are_refused(weights: list[list[float]], message: str) -> None:
    # NaN made every score NaN: the user got an empty list without a word.
    with pytest.raises(ValueError, match=message):
        Histories.from_lists([[1, 2]], 8, weights=weights)


def test_ids_or_fractions_in_place_of_item_idx_are_refused() -> None:
    with pytest.raises(TypeError, match="history items must be integer idx"):
        Histories.from_lists([["i1"]], 8)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="got float64"):
        Histories.from_lists([[1.5]], 8)  # type: ignore[list-item]  (was item 1)


@pytest.mark.parametrize("field", ["timestamps", "weights"])
def test_rows_of_another_shape_are_named(field: str) -> None:
    # They failed inside numpy (lexsort: "all keys need to be the same shape", IndexError).
    with pytest.raises(ValueError, match=f"{field} need one row per history"):
        Histories.from_lists([[1, 2]], 8, **{field: [[1]]})  # type: ignore[arg-type]
