"""Row-wise top-k selection over dense score blocks, deterministic under ties."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.types import PAD_IDX, TopK


def mask_seen(block: npt.NDArray[np.float32], seen: sp.csr_array) -> None:
    """Set block[r, i] = -inf wherever seen (rows aligned with block) has an entry."""
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    block[rows, seen.indices] = -np.inf


#: Rows at least this many times wider than k get a one-pass bound of their k-th best score.
_WIDE = 256
_LOWEST = np.float32(np.finfo(np.float32).min)


def topk_rows(
    scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Row-wise top-k by (score desc, column asc); -inf entries become padding.

    Only entries at or above a lower bound of each row's k-th best score can be picked, so just
    those few are sorted: the answer is a full sort's, at a fraction of its cost.
    """
    n_rows, n_cols = scores.shape
    kk = min(k, n_cols)
    items = np.full((n_rows, k), PAD_IDX, dtype=np.int32)
    vals = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if n_rows == 0 or kk == 0:
        return items, vals
    # -inf entries are padding: a bound of at least the lowest finite float leaves them out.
    bound = np.maximum(_kth_best_lower_bound(scores, kk), _LOWEST)
    flat = np.flatnonzero(scores >= bound[:, None])
    rows, cols = np.divmod(flat, n_cols)
    picked = scores[rows, cols]
    above = picked > bound[rows]
    # Entries above the bound: sorted by (row, score desc, column asc); flat order is (row, col).
    by_score = np.argsort(-picked[above], kind="stable")
    order = np.flatnonzero(above)[by_score[np.argsort(rows[above][by_score], kind="stable")]]
    n_above = np.bincount(rows[above], minlength=n_rows)
    slot = _rank_in_row(rows[order])
    # Entries equal to the bound come after them, lowest columns first (flat order already).
    at_bound = np.flatnonzero(~above)
    slot = np.concatenate([slot, n_above[rows[at_bound]] + _rank_in_row(rows[at_bound])])
    order = np.concatenate([order, at_bound])
    take = slot < kk
    order, slot = order[take], slot[take]
    items[rows[order], slot] = cols[order]
    vals[rows[order], slot] = picked[order]
    padding = ~np.isfinite(vals)
    items[padding] = PAD_IDX
    vals[padding] = -np.inf
    return items, vals


def _kth_best_lower_bound(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.float32]:
    """Per row, a value at most its k-th best score (exactly it for narrow rows)."""
    n_rows, n_cols = scores.shape
    if n_cols < _WIDE * k:
        exact: npt.NDArray[np.float32] = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k]
        return exact
    # The maxima of k disjoint column groups are k of the row's entries, so the smallest of
    # them is at most its k-th best: one pass, and unlike a partition not slowed by repeats.
    width = n_cols // k
    groups = scores[:, : k * width].reshape(n_rows, k, width)
    bound: npt.NDArray[np.float32] = groups.max(axis=2).min(axis=1)
    return bound


def _rank_in_row(rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """0, 1, 2, ... within each run of equal values of a sorted `rows`."""
    return np.arange(rows.size) - np.searchsorted(rows, rows)


def top_similar(items: npt.NDArray[np.intp], sims: npt.NDArray[np.float32], k: int) -> TopK:
    """similar_items' answer: row r of `sims` scores every item against items[r]; the item itself
    is excluded, then the k best are kept."""
    sims[np.arange(items.size), items] = -np.inf
    return TopK(*topk_rows(sims, k))
