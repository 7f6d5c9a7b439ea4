"""IdMap: the frozen bijection between external string ids and dense internal idx 0..n-1."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from recsemble.errors import DataError

IdsLike = Iterable[str] | Iterable[int] | pl.Series | npt.NDArray[Any]


def _id_series(ids: IdsLike) -> pl.Series:
    """Ids as a polars String series: text, or integers written as text; one id given where a
    sequence belongs, or fractional ids, are TypeErrors (not an empty or "1.0" id)."""
    if isinstance(ids, str | bytes):
        raise TypeError(f"expected a sequence of ids, got the single id {ids!r}")
    if isinstance(ids, pl.Series):
        series = ids
    else:
        values = ids if isinstance(ids, np.ndarray) else list(ids)
        series = pl.Series("id", values, strict=False)
    if series.dtype.is_float():
        raise TypeError(f"ids must be strings or integers, not {series.dtype}")
    return series.cast(pl.String).rename("id")


class IdMap:
    """External id (str) <-> internal idx (int32, 0..n-1).

    Frozen: `extend` returns a new map that keeps every existing idx and appends new ids.
    Only IdMap and Dataset translate between the two vocabularies.
    """

    __slots__ = ("_frame", "_ids", "_lookup")

    def __init__(self, ids: IdsLike) -> None:
        series = _id_series(ids)
        if series.null_count():
            raise DataError("ids must not be null")
        if series.n_unique() != series.len():
            dupes = series.filter(series.is_duplicated()).unique().head(3).to_list()
            raise DataError(f"ids must be unique; duplicated: {dupes}")
        self._ids: npt.NDArray[np.object_] = series.to_numpy().astype(object)
        self._ids.flags.writeable = False
        self._frame = pl.DataFrame(
            {"id": series, "idx": pl.int_range(0, series.len(), dtype=pl.Int32, eager=True)}
        )
        self._lookup: dict[str, int] | None = None

    @classmethod
    def from_unsorted(cls, ids: IdsLike) -> IdMap:
        """A map over the distinct ids, numbered in sorted (string) order, so that the same set of
        ids always gets the same numbering whatever the input order."""
        return cls(_id_series(ids).drop_nulls().unique().sort())

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:
        return hash(tuple(self._ids[:16])) ^ len(self)

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._ids[:3])
        return f"IdMap(n={len(self)}, ids=[{head}{', ...' if len(self) > 3 else ''}])"

    @property
    def ids(self) -> npt.NDArray[np.object_]:
        """External ids in idx order (read-only)."""
        return self._ids

    def as_series(self) -> pl.Series:
        return self._frame["id"]

    def id_of(self, idx: int) -> str:
        """The id at one idx; IndexError outside 0..len-1 (-1 is not the last id)."""
        if not 0 <= idx < len(self):
            raise IndexError(f"idx {idx} out of range 0..{len(self) - 1}")
        return str(self._ids[idx])

    def idx_of(self, id_: str) -> int:
        """The idx of one id; KeyError when unknown."""
        if self._lookup is None:
            self._lookup = {str(x): i for i, x in enumerate(self._ids)}
        return self._lookup[str(id_)]

    def __contains__(self, id_: object) -> bool:
        try:
            self.idx_of(str(id_))
        except KeyError:
            return False
        return True

    def to_ids(self, idx: npt.ArrayLike) -> npt.NDArray[np.object_]:
        """External ids for an array of idx (any shape)."""
        arr = np.asarray(idx)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            padding = (
                " (-1 pads a short top-k row: TopK.row(r) drops it)" if arr.min() == -1 else ""
            )
            raise IndexError(f"idx out of range 0..{len(self) - 1}{padding}")
        out: npt.NDArray[np.object_] = self._ids[arr]
        return out

    def to_idx(
        self,
        ids: IdsLike,
        missing: Literal["error", "ignore"] = "error",
    ) -> npt.NDArray[np.int32]:
        """Idx for an array of external ids (vectorized through a hash join; idx_of takes one).

        missing="error" raises KeyError naming an unknown id; "ignore" returns -1 for it.
        """
        if missing not in ("error", "ignore"):  # anything else acted as "ignore"
            raise ValueError(f"missing must be 'error' or 'ignore', not {missing!r}")
        query = pl.DataFrame({"id": _id_series(ids)})
        joined = query.join(self._frame, on="id", how="left", maintain_order="left")
        idx = joined["idx"]
        if idx.null_count():
            if missing == "error":
                unknown = joined.filter(pl.col("idx").is_null())["id"].head(3).to_list()
                raise KeyError(f"unknown ids: {unknown}")
            idx = idx.fill_null(-1)
        return idx.to_numpy().astype(np.int32, copy=False)

    def extend(self, ids: IdsLike) -> IdMap:
        """A new map with the unseen ids appended (sorted among themselves); never renumbers."""
        new = _id_series(ids).drop_nulls().unique().sort()
        new = new.filter(~new.is_in(self._frame["id"].implode()))
        if new.len() == 0:
            return self
        return IdMap(pl.concat([self._frame["id"], new.rename("id")]))

    def subset(self, idx: npt.ArrayLike) -> IdMap:
        """A new map over the ids at `idx` (in that order), renumbered 0..len-1."""
        return IdMap(pl.Series("id", self._ids[np.asarray(idx)], dtype=pl.String))
