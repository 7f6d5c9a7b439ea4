"""How lists spread over the catalog and over categories: exposure Gini and calibration KL.

- Exposure Gini: inequality of how often each catalog item is shown across all lists (items
  never shown count as 0): 0 = every item shown equally often, towards 1 = a few items take
  every slot.
- Calibration KL (Steck 2018): KL(p || q~) between the category mix of the user's history p and
  that of the list q, with q~ = (1 - alpha) q + alpha p so an absent category costs a finite
  amount. An item's categories share its weight equally; items without categories are left out
  of the mix. Users whose history has no categories get NaN.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.types import PAD_IDX

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Steck's mixing weight: the list's mix is blended with the history's this much.
CALIBRATION_ALPHA = 0.01


def exposure_gini(top: npt.ArrayLike, n_items: int) -> float:
    """Gini of per-item exposure counts over the whole catalog (NaN when nothing is shown)."""
    lists = np.asarray(top)
    shown = lists[lists != PAD_IDX].astype(np.int64)
    if shown.size and (shown.min() < 0 or shown.max() >= n_items):
        raise ValueError(f"item idx out of range 0..{n_items - 1} (padding is {PAD_IDX})")
    if shown.size == 0:
        return math.nan
    counts = np.sort(np.bincount(shown, minlength=n_items).astype(np.float64))
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    # Closed form of the mean absolute difference over all pairs, from the sorted counts.
    return float((2 * ranks - n_items - 1) @ counts / (n_items * counts.sum()))


def item_category_shares(categories: sp.csr_array) -> sp.csr_array:
    """Items x categories, each item's row summing to 1 (0 for items without categories)."""
    cats = sp.csr_array(categories).astype(np.float64)
    cats.data[:] = 1.0
    sizes = np.diff(cats.indptr).astype(np.float64)
    cats.data /= np.repeat(np.maximum(sizes, 1.0), np.diff(cats.indptr))
    out: sp.csr_array = cats
    return out


def _as_mix(weights: F64) -> F64:
    """Rows scaled to sum to 1; all-zero rows become NaN."""
    totals = weights.sum(axis=1, keepdims=True)
    out: F64 = np.divide(weights, totals, out=np.full(weights.shape, np.nan), where=totals > 0)
    return out


def kl_to_history(history_mix: F64, list_mix: F64, alpha: float = CALIBRATION_ALPHA) -> F64:
    """Per row KL(p || (1 - alpha) q + alpha p); NaN where p is NaN, q NaN counts as all zero."""
    p = history_mix
    q = np.nan_to_num(list_mix, nan=0.0)
    blended = (1 - alpha) * q + alpha * p
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / blended), 0.0)
    out: F64 = np.where(np.isnan(p).any(axis=1), np.nan, terms.sum(axis=1))
    return out


def calibration_kl(
    safe: I64,
    valid: npt.NDArray[np.bool_],
    history: sp.csr_array,
    categories: sp.csr_array,
    alpha: float = CALIBRATION_ALPHA,
) -> F64:
    """Per user, the KL between the history's and the list's category mix.

    safe/valid: (users, k) item idx and which of them are real; history: users x items (any
    nonzero = in the history, counted once) aligned with the rows of safe."""
    shares = item_category_shares(categories)
    hist = sp.csr_array(history).astype(np.float64)
    hist.data[:] = 1.0
    history_mix = _as_mix(np.asarray((hist @ shares).toarray()))
    rows, cols = np.nonzero(valid)
    in_list = sp.csr_array(
        (np.ones(rows.size), (rows, safe[rows, cols])), shape=(safe.shape[0], shares.shape[0])
    )
    list_mix = _as_mix(np.asarray((in_list @ shares).toarray()))
    return kl_to_history(history_mix, list_mix, alpha)
