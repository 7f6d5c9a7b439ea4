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


def union(blocks: Sequence[F32], members: Sequence[str], top_n: Sequence[int]) -> Candidates:
    """Candidates from dense member score blocks (rows x items; -inf = cannot recommend).

    Seen items must already be -inf in the blocks. Each member proposes its top_n[m] per row.
    """
    n_rows = blocks[0].shape[0] if blocks else 0
    proposals = []
    for m, (block, n) in enumerate(zip(blocks, top_n, strict=True)):
        items, _ = topk_rows(block, n)
        rows, slots = np.nonzero(items != PAD_IDX)
        proposals.append((rows, items[rows, slots], slots + 1, np.full(rows.size, m)))
    rows = np.concatenate([p[0] for p in proposals]).astype(np.int64)
    items = np.concatenate([p[1] for p in proposals]).astype(np.int32)
    ranks = np.concatenate([p[2] for p in proposals]).astype(np.float32)
    member = np.concatenate([p[3] for p in proposals]).astype(np.int64)
    pair_key = rows * np.int64(max(1, blocks[0].shape[1] if blocks else 1)) + items
    unique_keys, pair = np.unique(pair_key, return_inverse=True)
    n_items = max(1, blocks[0].shape[1] if blocks else 1)
    cand_rows = (unique_keys // n_items).astype(np.int64)
    cand_items = (unique_keys % n_items).astype(np.int32)
    rank_mat = np.full((unique_keys.size, len(blocks)), np.nan, dtype=np.float32)
    rank_mat[pair, member] = ranks
    score_mat = np.empty_like(rank_mat)
    z_mat = np.empty_like(rank_mat)
    for m, (block, n) in enumerate(zip(blocks, top_n, strict=True)):
        score_mat[:, m], z_mat[:, m] = _member_scores(block, n, cand_rows, cand_items)
    return Candidates(cand_rows, cand_items, score_mat, rank_mat, z_mat, tuple(members), n_rows)


def _member_scores(
    block: F32, top_n: int, rows: npt.NDArray[np.int64], items: npt.NDArray[np.int32]
) -> tuple[F32, F32]:
    """The member's raw score per pair and the score standardised by its top-N per row."""
    raw = block[rows, items].astype(np.float32)
    raw[~np.isfinite(raw)] = np.nan
    n = min(top_n, block.shape[1])
    if n == 0:
        return raw, np.full_like(raw, np.nan)
    top = -np.partition(-block, n - 1, axis=1)[:, :n]
    finite = np.isfinite(top)
    count = np.maximum(finite.sum(axis=1), 1)
    mean = np.where(finite, top, 0.0).sum(axis=1) / count
    var = np.where(finite, (top - mean[:, None]) ** 2, 0.0).sum(axis=1) / count
    z = (raw - mean[rows]) / (np.sqrt(var[rows]) + 1e-6)
    return raw, z.astype(np.float32)
