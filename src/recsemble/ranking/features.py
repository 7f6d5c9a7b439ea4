"""Features of each (user, candidate) pair for the meta-ranker, computed in batch and causally.

Everything about an item or a user is read as of the moment of the recommendation (`at`):
popularity counts only arrivals at or before it, item age is measured from it, the user's
history is what the request carries. Members' scores and ranks come with the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.generators.history import Histories
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.timeline import ItemTimeline

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
_DAY = 86_400.0
#: Recent items that define the user's "current" taste for the category match.
_RECENT_ITEMS = 5
#: Up to this many categories (genres), category matches are computed with dense arrays.
_DENSE_CATEGORIES = 256


@dataclass(frozen=True)
class FeatureTable:
    """A (pairs x features) float32 matrix with its column names; NaN = unknown."""

    values: F32
    names: tuple[str, ...]

    def column(self, name: str) -> F32:
        return self.values[:, self.names.index(name)]


class FeatureBuilder:
    """Learns item timelines and attributes from a Dataset; builds features for candidates."""

    def __init__(self, windows_days: tuple[float, ...] = (1.0, 7.0, 30.0, 365.0)) -> None:
        self.windows_days = windows_days

    def fit(self, dataset: Dataset) -> FeatureBuilder:
        self.timeline_ = ItemTimeline.from_dataset(dataset)
        categories, names = dataset.item_categories()
        self.categories_: sp.csr_array | None = categories if len(names) else None
        created = dataset.item_attributes["created_at"].cast(pl.Float64).to_numpy()
        self.created_at_: F64 | None = created if np.isfinite(created).any() else None
        return self

    def feature_names(self, members: tuple[str, ...]) -> tuple[str, ...]:
        names = [f"{m}:{kind}" for m in members for kind in ("score", "rank", "z")]
        names += ["n_proposed", "best_rank", "pop_all"]
        for w in self.windows_days:
            names += [f"pop_{w:g}d", f"pop_share_{w:g}d"]
        names += ["item_age_days", "item_idle_days", "user_len", "user_idle_days"]
        names += ["user_mean_pop", "pop_vs_user"]
        if self.created_at_ is not None:
            names.append("item_created_days")
        if self.categories_ is not None:
            names += ["cat_match_all", "cat_match_recent"]
        return tuple(names)

    def build(
        self, cands: Candidates, histories: Histories, at: npt.NDArray[np.int64]
    ) -> FeatureTable:
        """Features of every candidate pair; histories and at have one entry per request row."""
        names = self.feature_names(cands.members)
        cols: list[F64 | F32] = []
        for m in range(len(cands.members)):
            cols += [cands.scores[:, m], cands.ranks[:, m], cands.zscores[:, m]]
        proposed = np.isfinite(cands.ranks)
        cols.append(proposed.sum(axis=1).astype(np.float64))
        cols.append(np.where(proposed, cands.ranks, np.inf).min(axis=1))
        pair_at = at[cands.rows]
        item_cols = self._item_columns(cands, at)
        cols += item_cols
        cols += self._user_columns(cands, histories, at, item_cols[0])
        if self.created_at_ is not None:
            cols.append((pair_at - self.created_at_[cands.items]) / _DAY)
        if self.categories_ is not None:
            cols += self._category_columns(cands, histories)
        values = np.column_stack(cols).astype(np.float32) if cols else np.zeros((0, 0), np.float32)
        values[~np.isfinite(values)] = np.nan
        return FeatureTable(values.reshape(cands.size, len(names)), names)

    def _item_columns(self, cands: Candidates, at: npt.NDArray[np.int64]) -> list[F64]:
        """Popularity as of `at`, all time and per window, item age and idle time; the window
        totals depend only on the request, so they are counted per request row."""
        tl, rows = self.timeline_, cands.rows
        windows = tuple(w * _DAY for w in self.windows_days)
        pair_at = at[rows]
        found = tl.as_of(cands.items, pair_at, windows)
        cols = [np.log1p(found.count.astype(np.float64))]
        for w, count in zip(windows, found.window_counts, strict=True):
            total = tl.total_between(at, w)[rows].astype(np.float64)
            cols += [np.log1p(count.astype(np.float64)), count / np.maximum(total, 1.0)]
        cols += [(pair_at - found.first) / _DAY, (pair_at - found.last) / _DAY]
        return cols

    def _user_columns(
        self, cands: Candidates, histories: Histories, at: npt.NDArray[np.int64], item_pop: F64
    ) -> list[F64]:
        lengths = histories.lengths.astype(np.float64)
        last_idx = np.maximum(histories.indptr[1:] - 1, 0)
        last_t = np.where(
            lengths > 0, histories.timestamps[last_idx] if histories.items.size else 0, np.nan
        )
        event_at = at[histories.row_of_event]
        event_pop = np.log1p(self.timeline_.count_until(histories.items, event_at))
        pop_sum = np.bincount(histories.row_of_event, event_pop, minlength=histories.n_rows)
        mean_pop = np.where(lengths > 0, pop_sum / np.maximum(lengths, 1.0), np.nan)
        rows = cands.rows
        return [
            lengths[rows],
            ((at - last_t) / _DAY)[rows],
            mean_pop[rows],
            item_pop - mean_pop[rows],
        ]

    def _category_columns(self, cands: Candidates, histories: Histories) -> list[F64]:
        assert self.categories_ is not None
        cats = self.categories_
        if cats.shape[1] <= _DENSE_CATEGORIES:
            return self._dense_category_columns(cands, histories)
        profile_all = _normalise_rows(histories.matrix(binary=True) @ cats)
        recent = _recent_rows(histories, _RECENT_ITEMS)
        profile_recent = _normalise_rows(recent.matrix(binary=True) @ cats)
        item_cats = cats[cands.items]
        return [
            _rowwise_dot(profile_all[cands.rows], item_cats),
            _rowwise_dot(profile_recent[cands.rows], item_cats),
        ]

    def _dense_category_columns(self, cands: Candidates, histories: Histories) -> list[F64]:
        """Same values as the sparse path, with small dense arrays (far less overhead)."""
        assert self.categories_ is not None
        dense = getattr(self, "_dense_categories", None)
        if dense is None:
            dense = self._dense_categories = self.categories_.toarray().astype(np.float64)
        item_cats = dense[cands.items]
        out = []
        for hist in (histories, _recent_rows(histories, _RECENT_ITEMS)):
            profile = _category_sums(hist, dense)
            profile /= np.maximum(profile.sum(axis=1, keepdims=True), 1e-12)
            out.append((profile[cands.rows] * item_cats).sum(axis=1))
        return out


def _category_sums(hist: Histories, dense: F64) -> F64:
    """rows x categories: the categories of each row's distinct items, summed in item order
    (what the binary history matrix times `dense` gives, without building the matrix)."""
    keys = np.unique(hist.row_of_event * np.int64(hist.n_items) + hist.items)
    rows, items = np.divmod(keys, np.int64(hist.n_items))
    out = np.zeros((hist.n_rows, dense.shape[1]), dtype=np.float64)
    if keys.size:
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        out[rows[starts]] = np.add.reduceat(dense[items], starts, axis=0)
    return out


def _normalise_rows(mat: Any) -> sp.csr_array:
    """Rows scaled to sum 1 (a distribution over categories); empty rows stay empty."""
    csr = sp.csr_array(mat).astype(np.float64)
    sums = np.asarray(csr.sum(axis=1)).ravel()
    scale = 1.0 / np.maximum(sums, 1e-12)
    return sp.csr_array(sp.diags_array(scale) @ csr)


def _rowwise_dot(a: sp.csr_array, b: sp.csr_array) -> F64:
    return np.asarray(a.multiply(b).sum(axis=1), dtype=np.float64).ravel()


def _recent_rows(histories: Histories, n: int) -> Histories:
    """Each row's last n events."""
    lengths = histories.lengths
    keep_from = histories.indptr[1:] - np.minimum(lengths, n)
    position = np.arange(histories.items.size)
    mask = position >= keep_from[histories.row_of_event]
    kept = np.bincount(histories.row_of_event[mask], minlength=histories.n_rows)
    indptr = np.concatenate(([0], np.cumsum(kept))).astype(np.int64)
    return Histories(
        indptr,
        histories.items[mask],
        histories.timestamps[mask],
        histories.weights[mask],
        histories.n_items,
    )
