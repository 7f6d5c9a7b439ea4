"""ItemTimeline: as-of counts per item, so every feature sees only what was known at `at`.

Each item's first-interaction times (one per distinct user) are kept sorted in one array keyed
by (item, time); a count over any time window for any batch of (item, moment) pairs is two
`searchsorted` calls, with no Python loop over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from recsemble.data.dataset import Dataset

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
#: Time span per item in the combined key: 2^34 s is over 500 years.
_SPAN = np.int64(1) << np.int64(34)


@dataclass(frozen=True)
class ItemTimeline:
    """Sorted (item, first-interaction time of each user) keys, plus the global event times."""

    keys: I64  # item * _SPAN + (timestamp - origin), ascending
    times: I64  # every key's timestamp, all items together, ascending
    origin: int
    n_items: int

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> ItemTimeline:
        first = (
            dataset.interactions.group_by("user_idx", "item_idx")
            .agg(pl.col("timestamp").min())
            .select("item_idx", "timestamp")
        )
        item = first["item_idx"].to_numpy().astype(np.int64)
        ts = first["timestamp"].to_numpy().astype(np.int64)
        origin = int(ts.min()) - 1 if ts.size else 0
        keys = np.sort(item * _SPAN + (ts - origin))
        return cls(keys, np.sort(ts), origin, dataset.n_items)

    def _key(self, items: npt.ArrayLike, moments: npt.ArrayLike) -> I64:
        offset = np.clip(np.asarray(moments, np.int64) - self.origin, 0, int(_SPAN) - 1)
        out: I64 = np.asarray(items, np.int64) * _SPAN + offset
        return out

    def count_until(self, items: npt.ArrayLike, moments: npt.ArrayLike) -> I64:
        """Distinct users of each item with a first interaction at or before the moment."""
        item_arr = np.asarray(items, np.int64)
        upto = np.searchsorted(self.keys, self._key(item_arr, moments), side="right")
        start = np.searchsorted(self.keys, item_arr * _SPAN, side="left")
        out: I64 = upto - start
        return out

    def count_between(self, items: npt.ArrayLike, moments: npt.ArrayLike, window_s: float) -> I64:
        """Distinct users of each item who arrived in (moment - window, moment]."""
        moment_arr = np.asarray(moments, np.int64)
        lo = self.count_until(items, moment_arr - np.int64(window_s))
        out: I64 = self.count_until(items, moment_arr) - lo
        return out

    def total_between(self, moments: npt.ArrayLike, window_s: float) -> I64:
        """All items' arrivals in (moment - window, moment]: the activity level then."""
        moment_arr = np.asarray(moments, np.int64)
        hi = np.searchsorted(self.times, moment_arr, side="right")
        lo = np.searchsorted(self.times, moment_arr - np.int64(window_s), side="right")
        out: I64 = hi - lo
        return out

    def first_and_last(self, items: npt.ArrayLike, moments: npt.ArrayLike) -> tuple[F64, F64]:
        """Time of each item's first and latest arrival at or before the moment (NaN: none)."""
        item_arr = np.asarray(items, np.int64)
        start = np.searchsorted(self.keys, item_arr * _SPAN, side="left")
        upto = np.searchsorted(self.keys, self._key(item_arr, moments), side="right")
        has = upto > start
        size = self.keys.size
        first = self.keys[np.minimum(start, size - 1)] if size else np.zeros(item_arr.size)
        last = self.keys[np.maximum(upto - 1, 0)] if size else np.zeros(item_arr.size)
        base = item_arr * _SPAN - self.origin
        first_t = np.where(has, first - base, np.nan)
        last_t = np.where(has, last - base, np.nan)
        return first_t.astype(np.float64), last_t.astype(np.float64)
