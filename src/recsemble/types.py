"""Small value types passed between stages (numpy-only imports)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]

#: Item idx used to pad rows of a batch top-k result that have fewer than k items.
PAD_IDX = -1


def _frozen(array: npt.ArrayLike, dtype: npt.DTypeLike) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


def integer_values(array: npt.ArrayLike, what: str) -> np.ndarray:
    """`array` when it holds integers (idx); text or fractions are a TypeError, not idx."""
    out = np.asarray(array)
    if out.size and (out.dtype == np.bool_ or not np.issubdtype(out.dtype, np.integer)):
        raise TypeError(
            f"{what} must be integer idx, got {out.dtype} values such as {out.flat[0]!r} "
            f"(external ids are translated by IdMap.to_idx)"
        )
    return out


def _repeated(items: IntArray) -> list[int]:
    values, counts = np.unique(items, return_counts=True)
    return [int(v) for v in values[counts > 1][:5]]


@dataclass(frozen=True)
class ItemList:
    """An ordered list of item idx with scores and named feature columns: every stage's currency.

    Immutable: stages return a new ItemList rather than editing one.
    """

    items: IntArray
    scores: FloatArray
    features: Mapping[str, FloatArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        items = _frozen(integer_values(self.items, "ItemList items"), np.int32)
        scores = _frozen(self.scores, np.float32)
        if items.ndim != 1 or scores.shape != items.shape:
            raise ValueError(
                f"ItemList needs 1-d items and scores of one length, got {items.shape} "
                f"and {scores.shape}"
            )
        if np.unique(items).size != items.size:  # a stage would show the item twice
            raise ValueError(f"ItemList items repeat: {_repeated(items)}")
        features = {}
        for name, column in self.features.items():
            col = _frozen(column, np.float32)
            if col.shape != items.shape:
                raise ValueError(f"feature {name!r} has shape {col.shape}, items {items.shape}")
            features[name] = col
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "features", MappingProxyType(features))

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def top(self, k: int) -> ItemList:
        """The first k entries, in their current order."""
        return self.take(np.arange(min(k, len(self))))

    def take(self, positions: npt.ArrayLike) -> ItemList:
        """A new list holding the entries at `positions`, in that order."""
        pos = np.asarray(positions, dtype=np.intp)
        return ItemList(
            self.items[pos],
            self.scores[pos],
            {name: col[pos] for name, col in self.features.items()},
        )

    def sorted(self) -> ItemList:
        """Entries by descending score; ties keep their current order."""
        return self.take(np.argsort(-self.scores, kind="stable"))


@dataclass(frozen=True)
class TopK:
    """Batch top-k result: row r holds the items recommended to the r-th requested user.

    Rows with fewer than k items are padded with PAD_IDX and -inf scores.
    """

    items: IntArray
    scores: FloatArray

    def __post_init__(self) -> None:
        items = _frozen(self.items, np.int32)
        scores = _frozen(self.scores, np.float32)
        if items.ndim != 2 or items.shape != scores.shape:
            raise ValueError(f"TopK needs two equal 2-d arrays, got {items.shape}, {scores.shape}")
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)

    @property
    def k(self) -> int:
        return int(self.items.shape[1])

    def row(self, r: int) -> ItemList:
        """Row r as an ItemList without its padding."""
        keep = self.items[r] != PAD_IDX
        return ItemList(self.items[r][keep], self.scores[r][keep])


def check_k(k: object) -> int:
    """A list length asked for: a whole number >= 1 (TypeError / ValueError otherwise)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return int(k)


def idx_array(values: npt.ArrayLike, what: str, n: int | None = None) -> npt.NDArray[np.int64]:
    """Internal idx as a 1-d int64 array. Idx are integers 0..n-1 (IdMap.to_idx translates
    external ids): text or fractions are a TypeError, values outside 0..n-1 (n given) an
    IndexError.
    """
    arr = np.atleast_1d(integer_values(values, what))
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if n is not None and (arr.min() < 0 or arr.max() >= n):
        bad = arr[(arr < 0) | (arr >= n)][0]
        raise IndexError(f"{what} contain idx {bad}, outside 0..{n - 1}")
    return arr.reshape(-1).astype(np.int64, copy=False)


def user_idx(values: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """Requested users as int32 idx; any integer is allowed (one the model never saw gets its
    fallback answer) and one beyond int32 becomes -1, unknown, rather than wrapping around."""
    wanted = idx_array(values, "users")
    fits = (wanted >= 0) & (wanted <= np.iinfo(np.int32).max)
    return np.where(fits, wanted, -1).astype(np.int32)


def moments(at: npt.ArrayLike | None, n: int, default: int) -> npt.NDArray[np.int64]:
    """The moment of each of n requests in epoch seconds: one for all or one per request
    (numbers such as time.time(), or numpy datetimes); None is `default`."""
    if at is None:
        return np.full(n, default, dtype=np.int64)
    arr = np.asarray(at)
    if np.issubdtype(arr.dtype, np.datetime64):  # not its count of days or microseconds
        arr = arr.astype("datetime64[s]").astype(np.int64)
    elif arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.number) and arr.dtype.kind != "c"
    ):
        raise TypeError(f"at must be epoch seconds (numbers or datetime64), got {arr.dtype}")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ValueError(f"at must be one moment or one per user ({n}), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("at must be finite epoch seconds")
    return np.ascontiguousarray(np.broadcast_to(np.floor(arr).astype(np.int64), (n,)))
