"""Dense scores of the longest fitted histories, kept so that their requests skip the product.

A member whose scores depend on the user's history alone (not on the moment of the request)
can answer a request that carries a fitted user's unchanged history from a stored row. For a
long history the product reads one row of the model per event (EASE: a catalog-wide row of B),
the stored row is one copy: the heavy users who set a member's p99 latency cost what light ones
do. The rows come from the member's own batch scoring of the same histories: a cached answer is
what a batch request for those users computes, and for the sparse members (EASE, kNN,
co-visitation: products row by row, in the same order) what a one-user request computes, bit
for bit; a dense BLAS product (factor models) may differ from its one-row form in the last bit.
A request with fresh events (a Histories not taken from the fitted ones) is always computed.
The rows are saved with the member (its arrays.npz): loading a model does not score them again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recsemble.generators.history import Histories

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

#: float32 cells a member keeps (64 MiB): the longest histories first. A stored row is
#: worth it at any length: a one-request product carries ~0.5 ms of fixed cost per member.
CACHE_CELLS = 1 << 24
#: The shortest history given a row.
MIN_EVENTS = 1
#: float32 cells scored at once while filling the cache.
_FILL_CELLS = 1 << 24


@dataclass(frozen=True)
class ScoreCache:
    """slot[u]: fitted user row u's row in `scores`, -1 when not kept."""

    slot: I64
    scores: F32

    @classmethod
    def loaded(cls, slot: npt.NDArray[np.int64], scores: F32, fitted: Histories) -> ScoreCache:
        """A saved cache, checked against the member's fitted histories."""
        rows, width = scores.shape if scores.ndim == 2 else (-1, -1)
        if (
            slot.shape != (fitted.n_rows,)
            or width != fitted.n_items
            or (slot.size and (slot.max() >= rows or slot.min() < -1))
        ):
            raise ValueError(
                f"the saved score cache ({slot.shape[0]} users, scores {scores.shape}) does not "
                f"fit the model's {fitted.n_rows} users x {fitted.n_items} items"
            )
        return cls(slot.astype(np.int64, copy=False), scores)

    @classmethod
    def build(
        cls,
        fitted: Histories,
        score: Callable[[I64], F32],
        cells: int | None = None,
        min_events: int | None = None,
    ) -> ScoreCache | None:
        """score(rows) gives the fitted rows' scores; it is called for the longest fitted
        histories (at least min_events, within `cells`). None when no history qualifies."""
        cells = CACHE_CELLS if cells is None else cells
        min_events = MIN_EVENTS if min_events is None else min_events
        lengths = fitted.lengths
        room = cells // max(1, fitted.n_items)
        longest = np.argsort(-lengths, kind="stable")[:room]
        kept = np.sort(longest[lengths[longest] >= min_events])
        if kept.size == 0:
            return None
        scores = np.empty((kept.size, fitted.n_items), dtype=np.float32)
        step = max(1, _FILL_CELLS // max(1, fitted.n_items))
        for lo in range(0, kept.size, step):
            scores[lo : lo + step] = score(kept[lo : lo + step])
        slot = np.full(fitted.n_rows, -1, dtype=np.int64)
        slot[kept] = np.arange(kept.size)
        return cls(slot, scores)

    def answer(
        self, histories: Histories, fitted: Histories, compute: Callable[[I64 | None], F32]
    ) -> F32:
        """The request rows' scores: rows taken unchanged from `fitted` (the member's own
        histories) and kept here are copied; compute(rows) scores the others (None: all)."""
        rows = histories.origin_rows
        if histories.origin is not fitted or rows is None:
            return compute(None)
        known = rows >= 0
        slots = np.where(known, self.slot[np.where(known, rows, 0)], -1)
        hit = slots >= 0
        if not hit.any():
            return compute(None)
        out = np.empty((histories.n_rows, self.scores.shape[1]), dtype=np.float32)
        out[hit] = self.scores[slots[hit]]
        missed = np.flatnonzero(~hit)
        if missed.size:
            out[missed] = compute(missed)
        return out
