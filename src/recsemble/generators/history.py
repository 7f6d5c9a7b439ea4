"""Histories: users' interactions in time order, the input every history-based member scores.

A batch of histories is laid out like a CSR matrix (indptr over users, then per-event arrays),
so members can turn it into profile vectors without Python loops. Histories come from the fitted
dataset, or from the caller when a user's history changed after fit (new events folded in at
request time) or belongs to a user the model never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.generators.config import RecencyConfig
from recsemble.types import integer_values

#: the smallest recency factor: far above float32's underflow, far below any weight that counts.
_FADED = 1e-30


def _readonly(array: npt.ArrayLike, dtype: npt.DTypeLike) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=dtype)
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class Histories:
    """Row r holds events indptr[r]:indptr[r+1], ordered by timestamp (ties: item idx)."""

    indptr: npt.NDArray[np.int64]
    items: npt.NDArray[np.int32]
    timestamps: npt.NDArray[np.int64]
    weights: npt.NDArray[np.float32]
    n_items: int
    # Set by rows(): the Histories the rows were taken from and each row's index there (-1:
    # an empty row for an unknown user), so a model can tell its own fitted histories (and
    # what it precomputed for them) from request data.
    origin: Histories | None = field(default=None, compare=False, repr=False)
    origin_rows: npt.NDArray[np.int64] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        integer_values(self.items, "history items")  # not ids, not fractions
        object.__setattr__(self, "indptr", _readonly(self.indptr, np.int64))
        for name, dtype in (("items", np.int32), ("timestamps", np.int64), ("weights", np.float32)):
            object.__setattr__(self, name, _readonly(getattr(self, name), dtype))
        n = self.items.shape[0]
        if self.indptr[0] != 0 or self.indptr[-1] != n or np.any(np.diff(self.indptr) < 0):
            raise ValueError("indptr must rise from 0 to the number of events")
        if self.timestamps.shape != (n,) or self.weights.shape != (n,):
            raise ValueError("items, timestamps and weights must have one entry per event")
        if n and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise ValueError(f"item idx out of range 0..{self.n_items - 1}")
        if n and not (np.isfinite(self.weights).all() and self.weights.min() >= 0):
            raise ValueError("event weights must be finite numbers >= 0 (as a Dataset's are)")

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> Histories:
        """Every user's events (all event types, duplicates kept), one row per user idx."""
        order = _history_order(dataset)
        counts = np.bincount(dataset.column("user_idx"), minlength=dataset.n_users)
        indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        items, ts = dataset.column("item_idx")[order], dataset.column("timestamp")[order]
        return cls(indptr, items, ts, dataset.column("weight")[order], dataset.n_items)

    @classmethod
    def from_lists(
        cls,
        items: list[list[int]],
        n_items: int,
        timestamps: list[list[int]] | None = None,
        weights: list[list[float]] | None = None,
    ) -> Histories:
        """Small batches built by hand (e.g. an anonymous session's recent items)."""
        lengths = [len(row) for row in items]
        for name, given in (("timestamps", timestamps), ("weights", weights)):
            if given and [len(row) for row in given] != lengths:
                raise ValueError(f"{name} need one row per history and one entry per item")
        flat_ts = (
            [t for row in timestamps for t in row]
            if timestamps is not None
            else [i for n in lengths for i in range(n)]  # list order as time order
        )
        flat_w = [w for row in weights for w in row] if weights else [1.0] * sum(lengths)
        indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        flat = integer_values([i for row in items for i in row], "history items")
        flat_items = flat.astype(np.int32)
        ts = np.array(flat_ts, dtype=np.int64)
        order = np.lexsort((flat_items, ts, np.repeat(np.arange(len(items)), lengths)))
        return cls(indptr, flat_items[order], ts[order], np.array(flat_w)[order], n_items)

    def check_batch(self, n_rows: int, n_items: int) -> None:
        """Request histories: one row per requested user, over the model's catalog."""
        if self.n_rows != n_rows or self.n_items != n_items:
            raise ValueError(
                f"histories must have one row per user ({n_rows}) over {n_items} items; "
                f"got {self.n_rows} rows, {self.n_items} items"
            )

    @property
    def n_rows(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(self.indptr)

    @property
    def row_of_event(self) -> npt.NDArray[np.int64]:
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.lengths)

    def rows(self, rows: npt.ArrayLike) -> Histories:
        """The histories of the given rows; a row outside 0..n_rows-1 (unknown user) is empty."""
        wanted = np.asarray(rows, dtype=np.int64)
        root = self if self.origin is None else self.origin
        if wanted.size == 1:  # one request: slices of this batch's arrays, no gather
            return self._one_row(int(wanted.reshape(-1)[0]), root)
        known = (wanted >= 0) & (wanted < self.n_rows)
        safe = np.where(known, wanted, 0)
        padded_lengths = np.append(self.lengths, 0)  # one spare entry: fine with 0 rows
        starts = np.where(known, self.indptr[safe], 0)
        lengths = np.where(known, padded_lengths[safe], 0)
        indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        take = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        mapped = wanted if self.origin_rows is None else self.origin_rows[safe]
        return self._derived(
            indptr,
            take,
            root,
            np.where(known, mapped, -1).astype(np.int64),
        )

    def detached(self) -> Histories:
        """The same events as request data, not marked as taken from fitted histories: a
        member computes its answer from them instead of reading a stored row."""
        return Histories(self.indptr, self.items, self.timestamps, self.weights, self.n_items)

    def _one_row(self, row: int, root: Histories) -> Histories:
        known = 0 <= row < self.n_rows
        lo, hi = (int(self.indptr[row]), int(self.indptr[row + 1])) if known else (0, 0)
        mapped = row if self.origin_rows is None or not known else int(self.origin_rows[row])
        return self._derived(
            np.array([0, hi - lo], dtype=np.int64),
            slice(lo, hi),
            root,
            np.array([mapped if known else -1], dtype=np.int64),
        )

    def _derived(
        self,
        indptr: npt.NDArray[np.int64],
        take: npt.NDArray[np.int64] | slice,
        origin: Histories,
        origin_rows: npt.NDArray[np.int64],
    ) -> Histories:
        """Rows taken from this (checked) batch: valid by construction, so the checks of
        __post_init__ are skipped; they cost more than the gather for one request."""
        out = object.__new__(Histories)
        values: dict[str, np.ndarray] = {
            "indptr": indptr,
            "items": self.items[take],
            "timestamps": self.timestamps[take],
            "weights": self.weights[take],
            "origin_rows": origin_rows,
        }
        for name, array in values.items():
            array.flags.writeable = False  # slices of read-only arrays are read-only already
            object.__setattr__(out, name, array)
        object.__setattr__(out, "n_items", self.n_items)
        object.__setattr__(out, "origin", origin)
        return out

    def recency_factors(
        self,
        half_life_events: float | None = None,
        half_life_seconds: float | None = None,
        at: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Per-event multiplier 2^(-age / half-life); 1 when no half-life is given.

        Age in events counts distinct later timestamps (simultaneous events share an age);
        age in time is measured from `at` (per row) or the row's last event.
        """
        factor = np.ones(self.items.shape[0], dtype=np.float64)
        rows = self.row_of_event
        if half_life_events is not None and self.items.size:
            factor *= 2.0 ** (-self._steps_from_end(rows) / half_life_events)
        if half_life_seconds is not None and self.items.size:
            last = self.timestamps[np.maximum(self.indptr[1:] - 1, 0)]
            ref = last if at is None else np.asarray(at, dtype=np.int64)
            age = np.maximum(ref[rows] - self.timestamps, 0)
            factor *= 2.0 ** (-age / half_life_seconds)
        # An old event fades but is not erased: in float32, 2^-(450 / 3) would round to 0 and
        # the item would drop out of the profile (iALS would read it as a negative).
        return np.maximum(factor, _FADED).astype(np.float32)

    def _steps_from_end(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """For each event: how many distinct later timestamps its user has."""
        new_step = np.ones(self.items.shape[0], dtype=np.int64)
        same = (rows[1:] == rows[:-1]) & (self.timestamps[1:] == self.timestamps[:-1])
        new_step[1:][same] = 0
        step = np.cumsum(new_step)
        last_step = step[np.maximum(self.indptr[1:] - 1, 0)]
        return (last_step[rows] - step).astype(np.float64)

    def matrix(self, factors: npt.ArrayLike | None = None, binary: bool = False) -> sp.csr_array:
        """rows x items profile matrix: summed event weights (times `factors`), or 1 per pair."""
        data = np.ones_like(self.weights) if binary else self.weights.copy()
        if factors is not None:
            data = data * np.asarray(factors, dtype=np.float32)
        # The events are already laid out row by row: build the CSR directly (no COO pass).
        mat = sp.csr_array(
            (data, self.items.copy(), self.indptr.copy()), shape=(self.n_rows, self.n_items)
        )
        mat.sum_duplicates()
        if binary and factors is None:
            mat.data[:] = 1.0
        return mat

    def seen_matrix(self) -> sp.csr_array:
        return self.matrix(binary=True)

    def mask_seen(self, *blocks: npt.NDArray[np.float32]) -> None:
        """Set block[r, item] = -inf for every event of row r, in each (rows x items) block:
        what seen_matrix() would mask, without building it (repeated items mask twice)."""
        rows = self.row_of_event
        for block in blocks:
            block[rows, self.items] = -np.inf


def profile_matrix(
    histories: Histories, config: RecencyConfig, at: npt.NDArray[np.int64] | None = None
) -> sp.csr_array:
    """rows x items profile: event weights (or 1s) times recency factors, summed per item."""
    factors = histories.recency_factors(
        config.half_life_events,
        None if config.half_life_days is None else config.half_life_days * 86_400.0,
        at,
    )
    if config.binary:
        return histories.matrix(factors=factors, binary=True)
    return histories.matrix(factors=factors)


def _history_order(dataset: Dataset) -> npt.NDArray[np.int64]:
    """The order of a dataset's events in Histories.from_dataset: user, time, item idx."""
    users, items = dataset.column("user_idx"), dataset.column("item_idx")
    return np.lexsort((items, dataset.column("timestamp"), users))


def history_values(dataset: Dataset) -> npt.NDArray[np.float32] | None:
    """The events' explicit values (ratings) in Histories.from_dataset's order, NaN where an
    event has none; None when no event has one. Kept beside a saved model's histories so
    that retraining from them keeps the ratings."""
    values = dataset.interactions["value"]
    if values.null_count() == values.len():
        return None
    filled = values.cast(pl.Float32).fill_null(float("nan")).to_numpy()
    return np.ascontiguousarray(filled[_history_order(dataset)], dtype=np.float32)
