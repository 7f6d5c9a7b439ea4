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


def topk_rows(
    scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Row-wise top-k by (score desc, column asc); -inf entries become padding."""
    n_rows, n_cols = scores.shape
    kk = min(k, n_cols)
    items = np.full((n_rows, k), PAD_IDX, dtype=np.int32)
    vals = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if n_rows == 0 or kk == 0:
        return items, vals
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    kth = scores[np.arange(n_rows)[:, None], part].min(axis=1)
    # Strictly better than the k-th value: always in. Equal to it: lowest columns fill the rest.
    gt_rows, gt_cols = np.nonzero(scores > kth[:, None])
    need = kk - np.bincount(gt_rows, minlength=n_rows)
    eq_rows, eq_cols = np.nonzero(scores == kth[:, None])
    eq_rank = np.arange(eq_rows.size) - np.searchsorted(eq_rows, eq_rows)
    take = eq_rank < need[eq_rows]
    rows = np.concatenate([gt_rows, eq_rows[take]])
    cols = np.concatenate([gt_cols, eq_cols[take]])
    picked = scores[rows, cols]
    order = np.lexsort((cols, -picked, rows))
    rows, cols, picked = rows[order], cols[order], picked[order]
    slot = np.arange(rows.size) - np.searchsorted(rows, rows)
    items[rows, slot] = cols
    vals[rows, slot] = picked
    padding = ~np.isfinite(vals)
    items[padding] = PAD_IDX
    vals[padding] = -np.inf
    return items, vals


def top_similar(items: npt.NDArray[np.intp], sims: npt.NDArray[np.float32], k: int) -> TopK:
    """similar_items' answer: row r of `sims` scores every item against items[r]; the item itself
    is excluded, then the k best are kept."""
    sims[np.arange(items.size), items] = -np.inf
    return TopK(*topk_rows(sims, k))
