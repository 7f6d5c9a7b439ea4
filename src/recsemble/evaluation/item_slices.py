"""Metrics by item popularity: how a model does on the head and on the long tail of the catalog.

The user slices (slices.py) ask "for whom does it work"; these ask "on which items". Head =
the top 20% of items by train popularity (the protocol's long-tail definition, shared with
`longtail_hit_share`), tail = the rest. Per group: recall@k (test interactions on the group's
items that were recommended / all test interactions on them) and list_share@k (the share of
filled recommendation slots holding the group's items).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.evaluation.metrics import longtail_items
from recsemble.types import PAD_IDX

#: Group names in report order.
ITEM_GROUPS = ("head", "tail")


def item_popularity_slices(
    lists: npt.NDArray[np.integer[Any]],
    truth: sp.csr_array,
    item_popularity: npt.ArrayLike,
    ks: tuple[int, ...],
) -> dict[str, dict[str, float | int | None]]:
    """{"head": {...}, "tail": {...}} for the rows of `lists` (users x max k, PAD_IDX padded)
    against `truth` (users x items, binary test interactions), at every k in `ks`."""
    tail = longtail_items(item_popularity)
    out: dict[str, dict[str, float | int | None]] = {}
    for group, members in (("head", ~tail), ("tail", tail)):
        test_on_group = truth[:, members] if truth.shape[0] else truth
        entry: dict[str, float | int | None] = {
            "n_items": int(members.sum()),
            "n_test_interactions": int(test_on_group.sum()) if truth.shape[0] else 0,
        }
        for k in ks:
            entry.update(_group_figures(lists[:, :k], truth, members, k))
        out[group] = entry
    return out


def _group_figures(
    lists: npt.NDArray[np.integer[Any]], truth: sp.csr_array, members: npt.NDArray[np.bool_], k: int
) -> dict[str, float | None]:
    filled = lists != PAD_IDX
    safe = np.where(filled, lists, 0)
    in_group = filled & members[safe]
    rows = np.broadcast_to(np.arange(lists.shape[0])[:, None], lists.shape)
    hit = np.zeros(lists.shape, dtype=np.bool_)
    if filled.any():
        hit[filled] = np.asarray(truth[rows[filled], safe[filled]]).ravel() > 0
    relevant = int(truth[:, members].sum()) if truth.shape[0] else 0
    slots = int(filled.sum())
    return {
        f"recall@{k}": int((hit & in_group).sum()) / relevant if relevant else None,
        f"list_share@{k}": int(in_group.sum()) / slots if slots else None,
    }
