"""ItemTimeline: as-of counts per item, so every feature sees only what was known at `at`.

Each item's first-interaction times (one per distinct user) are kept sorted in one array keyed
by (item, time); a count over any time window for any batch of (item, moment) pairs is two
`searchsorted` calls, with no Python loop over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import polars as pl

from recsemble.data.dataset import Dataset

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
#: Time span per item in the combined key: 2^34 s is over 500 years.
_SPAN = np.int64(1) << np.int64(34)


@dataclass(frozen=True)
class ItemsAsOf:
    """Per (item, moment) pair: arrivals so far, arrivals in each window, first and last
    arrival times (NaN: none yet)."""

    count: I64
    window_counts: list[I64]
    first: F64
    last: F64


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

    @cached_property
    def item_starts(self) -> I64:
        """Index of each item's first key (and the end of the last item's): no search needed."""
        bounds = np.arange(self.n_items + 1, dtype=np.int64) * _SPAN
        out: I64 = np.searchsorted(self.keys, bounds, side="left").astype(np.int64)
        return out

    def _key(self, items: npt.ArrayLike, moments: npt.ArrayLike) -> I64:
        offset = np.clip(np.asarray(moments, np.int64) - self.origin, 0, int(_SPAN) - 1)
        out: I64 = np.asarray(items, np.int64) * _SPAN + offset
        return out

    def _upto(self, items: I64, moments: npt.ArrayLike) -> I64:
        """Index one past each item's last key at or before the moment."""
        out: I64 = np.searchsorted(self.keys, self._key(items, moments), side="right")
        return out

    def _starts(self, items: I64) -> I64:
        # Items the timeline has never seen (added later) have no keys: start at the end.
        out: I64 = self.item_starts[np.minimum(items, self.n_items)]
        return out

    def count_until(self, items: npt.ArrayLike, moments: npt.ArrayLike) -> I64:
        """Distinct users of each item with a first interaction at or before the moment."""
        item_arr = np.asarray(items, np.int64)
        out: I64 = self._upto(item_arr, moments) - self._starts(item_arr)
        return out

    def count_between(self, items: npt.ArrayLike, moments: npt.ArrayLike, window_s: float) -> I64:
        """Distinct users of each item who arrived in (moment - window, moment]."""
        return self.as_of(items, moments, (window_s,)).window_counts[0]

    def as_of(
        self, items: npt.ArrayLike, moments: npt.ArrayLike, windows_s: tuple[float, ...] = ()
    ) -> ItemsAsOf:
        """Everything the features read about (item, moment) pairs, sharing the searches:
        one per window boundary plus one at the moment, none for the items' starts."""
        item_arr = np.asarray(items, np.int64)
        moment_arr = np.asarray(moments, np.int64)
        start, upto = self._starts(item_arr), self._upto(item_arr, moment_arr)
        windows = [upto - self._upto(item_arr, moment_arr - np.int64(w)) for w in windows_s]
        has = upto > start
        size = self.keys.size
        first = self.keys[np.minimum(start, size - 1)] if size else np.zeros(item_arr.size)
        last = self.keys[np.maximum(upto - 1, 0)] if size else np.zeros(item_arr.size)
        base = item_arr * _SPAN - self.origin
        return ItemsAsOf(
            upto - start,
            windows,
            np.where(has, first - base, np.nan).astype(np.float64),
            np.where(has, last - base, np.nan).astype(np.float64),
        )

    def total_between(self, moments: npt.ArrayLike, window_s: float) -> I64:
        """All items' arrivals in (moment - window, moment]: the activity level then."""
        moment_arr = np.asarray(moments, np.int64)
        hi = np.searchsorted(self.times, moment_arr, side="right")
        lo = np.searchsorted(self.times, moment_arr - np.int64(window_s), side="right")
        out: I64 = hi - lo
        return out

    def first_and_last(self, items: npt.ArrayLike, moments: npt.ArrayLike) -> tuple[F64, F64]:
        """Time of each item's first and latest arrival at or before the moment (NaN: none)."""
        found = self.as_of(items, moments)
        return found.first, found.last
