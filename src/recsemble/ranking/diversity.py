"""Diversity-aware top-k: trade some accuracy for lists whose items are less alike.

Greedy re-ranking (maximal marginal relevance) of each request's best candidates: the next
item is the one with the highest

    normalised score - strength * redundancy(item, items already chosen)

where the score is the ranker's, min-max normalised over the request's candidate pool (so one
strength means the same on every request and every ranker), and redundancy is the max (or mean)
similarity to the chosen items. Similarity is the Jaccard overlap of item categories (what ILD
measures), of the sets of members that proposed the two candidates (two items found by the same
members are likely the same kind of suggestion), or the mean of both.

All requests advance together: the loop runs over the k positions, never over users. Item sets
are packed into 64-bit words, so a Jaccard is a few popcounts.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.ranking.candidates import Candidates

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
Bits = npt.NDArray[np.uint64]
Similarity = Literal["category", "members", "both"]
Redundancy = Literal["max", "mean"]


def pack_bits(members: npt.NDArray[np.bool_]) -> Bits:
    """(n, m) booleans -> (n, ceil(m / 64)) words, bit j of word w = column 64 w + j."""
    n, m = members.shape
    n_words = max(1, -(-m // 64))
    padded = np.zeros((n, n_words * 64), dtype=np.uint64)
    padded[:, :m] = members
    shifts = np.arange(64, dtype=np.uint64)
    words: Bits = (padded.reshape(n, n_words, 64) << shifts).sum(axis=2, dtype=np.uint64)
    return words


def bit_jaccard(a: Bits, b: Bits) -> F64:
    """Jaccard of the sets in the last axis of a and b (broadcast); 0 when both are empty."""
    inter = np.bitwise_count(a & b).sum(axis=-1, dtype=np.int64)
    union = np.bitwise_count(a | b).sum(axis=-1, dtype=np.int64)
    out: F64 = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    return out


def candidate_sets(
    cands: Candidates, similarity: Similarity, item_categories: sp.csr_array | None
) -> list[Bits]:
    """Per candidate pair, the packed sets whose Jaccard defines similarity."""
    sets = []
    if similarity in ("category", "both"):
        if item_categories is None:
            if similarity == "category":
                raise ValueError("category similarity needs item categories")
        else:
            dense = sp.csr_array(item_categories).toarray() > 0
            sets.append(pack_bits(dense)[cands.items])
    if similarity in ("members", "both"):
        sets.append(pack_bits(np.isfinite(cands.ranks)))
    return sets


def candidate_pool(cands: Candidates, scores: F32, size: int) -> I64:
    """(rows, width) flat index of each row's `size` best candidates, best first; -1 pads.

    Order as the plain top-k's: score descending, ties to the lower item."""
    order = np.lexsort((cands.items, -scores, cands.rows))
    rows = cands.rows[order]
    slot = np.arange(rows.size) - np.searchsorted(rows, rows)
    width = int(min(size, slot.max() + 1)) if slot.size else 0
    keep = slot < width
    pool = np.full((cands.n_rows, width), -1, dtype=np.int64)
    pool[rows[keep], slot[keep]] = order[keep]
    return pool


def _normalised(scores: F32, pool: I64) -> F64:
    """Scores min-max scaled to [0, 1] within each row's pool (0 where a row's are all equal)."""
    valid = pool >= 0
    values = np.where(valid, scores[np.maximum(pool, 0)].astype(np.float64), np.nan)
    with np.errstate(all="ignore"):
        low = np.nanmin(np.where(valid, values, np.inf), axis=1, keepdims=True)
        high = np.nanmax(np.where(valid, values, -np.inf), axis=1, keepdims=True)
        span = high - low
        out: F64 = np.where(valid & (span > 0), (values - low) / span, 0.0)
    return out


def diversified_top_per_row(
    cands: Candidates,
    scores: F32,
    k: int,
    strength: float,
    *,
    item_categories: sp.csr_array | None = None,
    similarity: Similarity = "both",
    redundancy: Redundancy = "max",
    pool_size: int = 100,
) -> tuple[I64, I64, I32, F32]:
    """(row, slot, item, ranker score) of each row's k picks, like the plain top-k's output.

    strength 0 gives exactly the plain top-k (score descending, ties to the lower item)."""
    if k < 1 or pool_size < k:
        raise ValueError(f"need 1 <= k <= pool_size, got k={k}, pool_size={pool_size}")
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    if similarity not in ("category", "members", "both") or redundancy not in ("max", "mean"):
        raise ValueError(f"unknown similarity {similarity!r} or redundancy {redundancy!r}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    pool = candidate_pool(cands, scores, pool_size)
    sets = [s[np.maximum(pool, 0)] for s in candidate_sets(cands, similarity, item_categories)]
    picks = _greedy(_normalised(scores, pool), pool >= 0, sets, k, strength, redundancy)
    rows, slots = np.nonzero(picks >= 0)
    chosen = pool[rows, picks[rows, slots]]
    return rows.astype(np.int64), slots.astype(np.int64), cands.items[chosen], scores[chosen]


def _greedy(
    norm: F64, valid: npt.NDArray[np.bool_], sets: list[Bits], k: int, strength: float, how: str
) -> I64:
    """(rows, k) pool positions picked at each slot; -1 once a row's pool is exhausted."""
    n_rows = norm.shape[0]
    every = np.arange(n_rows)
    available = valid.copy()
    redundancy = np.zeros_like(norm)
    picks = np.full((n_rows, k), -1, dtype=np.int64)
    for slot in range(min(k, norm.shape[1])):
        objective = np.where(available, norm - strength * redundancy, -np.inf)
        best = np.argmax(objective, axis=1)  # first maximum: the better-ranked candidate
        found = available[every, best]
        picks[found, slot] = best[found]
        available[every[found], best[found]] = False
        if not sets:
            continue
        similarity = np.mean([bit_jaccard(s, s[every, best][:, None, :]) for s in sets], axis=0)
        if how == "max":
            redundancy = np.maximum(redundancy, similarity)
        else:  # running mean over the slot + 1 items chosen so far
            redundancy += (similarity - redundancy) / (slot + 1)
    return picks
