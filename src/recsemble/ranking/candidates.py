"""The candidate union: every member proposes its top-N per user; the union is what gets ranked.

A block of requests becomes flat (row, item) pairs with each member's score, its rank in that
member's top-N (NaN = not proposed) and a per-user standardised score. Members that can score a
candidate they did not propose still report that score: the ranker sees everything they know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recsemble.generators.topk import topk_rows
from recsemble.types import PAD_IDX

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]


@dataclass(frozen=True)
class Candidates:
    """Flat candidate pairs of a block of requests, ordered by (row, item)."""

    rows: npt.NDArray[np.int64]  # request row in the block
    items: npt.NDArray[np.int32]
    scores: F32  # (n, members): member's score, NaN where it cannot score
    ranks: F32  # (n, members): 1-based rank in the member's top-N, NaN = not proposed
    zscores: F32  # (n, members): score standardised over the member's top-N for the user
    members: tuple[str, ...]
    n_rows: int

    @property
    def size(self) -> int:
        return int(self.rows.size)

    def group_sizes(self) -> npt.NDArray[np.int64]:
        """Candidates per request row (rows without any have 0)."""
        return np.bincount(self.rows, minlength=self.n_rows).astype(np.int64)

    def best_ranks(self) -> F32:
        """Each pair's best (lowest) rank over the members that proposed it."""
        out: F32 = np.fmin.reduce(self.ranks, axis=1)
        return out

    def take(self, mask: npt.NDArray[np.bool_]) -> Candidates:
        """The pairs where mask holds (order kept)."""
        return Candidates(
            self.rows[mask],
            self.items[mask],
            self.scores[mask],
            self.ranks[mask],
            self.zscores[mask],
            self.members,
            self.n_rows,
        )


#: Member blocks are stacked for one top-N pass while they hold at most this many cells.
_STACK_CELLS = 4_000_000


def union(blocks: Sequence[F32], members: Sequence[str], top_n: Sequence[int]) -> Candidates:
    """Candidates from dense member score blocks (rows x items; -inf = cannot recommend).

    Seen items must already be -inf in the blocks. Each member proposes its top_n[m] per row.
    """
    n_rows = blocks[0].shape[0] if blocks else 0
    n_items = max(1, blocks[0].shape[1] if blocks else 1)
    tops = _member_tops(blocks, top_n)
    proposals = []
    for m, (items, _) in enumerate(tops):
        rows, slots = np.nonzero(items != PAD_IDX)
        proposals.append((rows, items[rows, slots], slots + 1, np.full(rows.size, m)))
    rows = np.concatenate([p[0] for p in proposals]).astype(np.int64)
    items = np.concatenate([p[1] for p in proposals]).astype(np.int32)
    ranks = np.concatenate([p[2] for p in proposals]).astype(np.float32)
    member = np.concatenate([p[3] for p in proposals]).astype(np.int64)
    unique_keys, pair = np.unique(rows * np.int64(n_items) + items, return_inverse=True)
    cand_rows = (unique_keys // n_items).astype(np.int64)
    cand_items = (unique_keys % n_items).astype(np.int32)
    rank_mat = np.full((unique_keys.size, len(blocks)), np.nan, dtype=np.float32)
    rank_mat[pair, member] = ranks
    score_mat = np.empty_like(rank_mat)
    z_mat = np.empty_like(rank_mat)
    for m, (block, (_, top_scores)) in enumerate(zip(blocks, tops, strict=True)):
        score_mat[:, m], z_mat[:, m] = _member_scores(block, top_scores, cand_rows, cand_items)
    return Candidates(cand_rows, cand_items, score_mat, rank_mat, z_mat, tuple(members), n_rows)


def _member_tops(blocks: Sequence[F32], top_n: Sequence[int]) -> list[tuple[I32, F32]]:
    """Each member's top_n (items, scores) per row. Small blocks (one request, a few) are
    stacked so that one top-N pass serves several members: per-call overhead dominates there."""
    out: list[tuple[I32, F32]] = []
    lo = 0
    while lo < len(blocks):
        hi, cells = lo + 1, blocks[lo].size
        while hi < len(blocks) and cells + blocks[hi].size <= _STACK_CELLS:
            cells += blocks[hi].size
            hi += 1
        n = max(top_n[lo:hi])
        stacked = blocks[lo] if hi == lo + 1 else np.concatenate(blocks[lo:hi])
        items, scores = topk_rows(stacked, n)
        n_rows = blocks[lo].shape[0]
        for m in range(lo, hi):
            part = slice((m - lo) * n_rows, (m - lo + 1) * n_rows)
            out.append((items[part, : top_n[m]], scores[part, : top_n[m]]))
        lo = hi
    return out


def _member_scores(
    block: F32, top_scores: F32, rows: npt.NDArray[np.int64], items: npt.NDArray[np.int32]
) -> tuple[F32, F32]:
    """The member's raw score per pair and the score standardised by its top-N per row."""
    raw = block[rows, items].astype(np.float32)
    raw[~np.isfinite(raw)] = np.nan
    if top_scores.shape[1] == 0:
        return raw, np.full_like(raw, np.nan)
    finite = np.isfinite(top_scores)
    count = np.maximum(finite.sum(axis=1), 1)
    top = np.where(finite, top_scores, 0.0).astype(np.float64)
    mean = top.sum(axis=1) / count
    var = np.where(finite, (top - mean[:, None]) ** 2, 0.0).sum(axis=1) / count
    z = (raw - mean[rows]) / (np.sqrt(var[rows]) + 1e-6)
    return raw, z.astype(np.float32)
