"""User-kNN with neighbours chosen per item: an item's score is the summed similarity of the k
fitted users most similar to the request among those who have the item (LensKit's user-kNN
rule), instead of one global top-k neighbourhood voting for every item.

Items with at most k raters sum every positive similarity (a sparse product); the others keep
their raters in a padded (items x width) table, so the k best are one partition per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

#: float32 cells of the (rows x wide items x width) table gathered at once.
_GATHER_CELLS = 1 << 24


@dataclass(frozen=True)
class RaterLists:
    """Who has each item, split by whether the item has more than k raters."""

    k: int
    narrow: sp.csr_array  # users x items, 1 where a user has an item with <= k raters
    # Items with more than k raters, in groups of similar rater counts (little padding): each
    # (items, their raters as a (items x width) table padded with n_users, similarity 0).
    wide: tuple[tuple[I64, I64], ...]

    @classmethod
    def build(cls, matrix: sp.csr_array, k: int) -> RaterLists:
        """matrix: fitted users x items (any stored value counts as having the item)."""
        n_users, n_items = matrix.shape
        by_item = sp.csc_array(matrix)
        by_item.sort_indices()
        counts = np.diff(by_item.indptr)
        item_of = np.repeat(np.arange(n_items), counts)
        is_wide = counts > k
        keep = ~is_wide[item_of]
        narrow = sp.csr_array(
            (np.ones(int(keep.sum()), np.float32), (by_item.indices[keep], item_of[keep])),
            shape=(n_users, n_items),
        )
        wide_items = np.flatnonzero(is_wide)
        wide_items = wide_items[np.argsort(counts[wide_items], kind="stable")]
        groups = []
        lo = 0
        while lo < wide_items.size:  # widths within 2x of the group's narrowest item
            hi = int(np.searchsorted(counts[wide_items], 2 * counts[wide_items[lo]], "right"))
            items = wide_items[lo:hi].astype(np.int64)
            groups.append((items, _rater_table(by_item, items, int(counts[items].max()))))
            lo = hi
        return cls(k, narrow, tuple(groups))

    def scores(self, sims: F32) -> F32:
        """(rows x items) summed similarity of each item's k most similar raters; items no
        positively similar user has are -inf (no evidence)."""
        positive = np.maximum(sims, np.float32(0))
        out = np.asarray(positive @ self.narrow, dtype=np.float32)
        padded = np.concatenate([positive, np.zeros((sims.shape[0], 1), np.float32)], axis=1)
        for items, table in self.wide:
            step = max(1, _GATHER_CELLS // max(1, table.size))
            for lo in range(0, sims.shape[0], step):
                out[lo : lo + step, items] = self._best_sums(padded[lo : lo + step], table)
        out[out <= 0] = -np.inf
        return out

    def _best_sums(self, padded: F32, table: I64) -> F32:
        width = table.shape[1]
        gathered = padded[:, table]  # rows x items x width
        best: F32 = np.partition(gathered, width - self.k, axis=2)[:, :, width - self.k :]
        sums: F32 = best.sum(axis=2, dtype=np.float32)
        return sums


def _rater_table(by_item: sp.csc_array, items: I64, width: int) -> I64:
    """(items x width) each item's raters, padded with the number of users."""
    n_users = by_item.shape[0]
    table = np.full((items.size, width), n_users, dtype=np.int64)
    for row, item in enumerate(items.tolist()):
        raters = by_item.indices[by_item.indptr[item] : by_item.indptr[item + 1]]
        table[row, : raters.size] = raters
    return table
