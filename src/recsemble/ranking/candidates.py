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
    # All members' proposals at once: (member, row, slot) over their top lists padded to one
    # width (one nonzero and one gather instead of one per member: a request pays per call).
    width = max((t[0].shape[1] for t in tops), default=0)
    top_items = np.full((len(tops), n_rows, width), PAD_IDX, dtype=np.int32)
    for m, (items, _) in enumerate(tops):
        top_items[m, :, : items.shape[1]] = items
    member, rows, slots = np.nonzero(top_items != PAD_IDX)
    keys = rows.astype(np.int64) * np.int64(n_items) + top_items[member, rows, slots]
    unique_keys, pair = np.unique(keys, return_inverse=True)
    cand_rows = (unique_keys // n_items).astype(np.int64)
    cand_items = (unique_keys % n_items).astype(np.int32)
    rank_mat = np.full((unique_keys.size, len(blocks)), np.nan, dtype=np.float32)
    rank_mat[pair, member] = (slots + 1).astype(np.float32)
    score_mat = np.empty_like(rank_mat)
    for m, block in enumerate(blocks):
        score_mat[:, m] = block[cand_rows, cand_items]
    score_mat[~np.isfinite(score_mat)] = np.nan
    z_mat = _standardised(score_mat, [t[1] for t in tops], cand_rows)
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


def _standardised(raw: F32, top_scores: Sequence[F32], rows: npt.NDArray[np.int64]) -> F32:
    """Each member's raw scores (pairs x members) standardised by its top-N of the pair's row.
    Members with the same N are done together (same row sums as one at a time)."""
    z = np.full_like(raw, np.nan)
    widths = [t.shape[1] for t in top_scores]
    for width in sorted(set(widths)):
        cols = [m for m, w in enumerate(widths) if w == width]
        if width == 0:
            continue
        top = np.stack([top_scores[m] for m in cols])  # (members, rows, width)
        finite = np.isfinite(top)
        count = np.maximum(finite.sum(axis=2), 1)
        values = np.where(finite, top, 0.0).astype(np.float64)
        mean = values.sum(axis=2) / count
        var = np.where(finite, (values - mean[:, :, None]) ** 2, 0.0).sum(axis=2) / count
        scaled = (raw[:, cols] - mean.T[rows]) / (np.sqrt(var.T[rows]) + 1e-6)
        z[:, cols] = scaled.astype(np.float32)
    return z
