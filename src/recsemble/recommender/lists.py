"""Per-request list operations on cached candidates: filter, session mix, backfill, new items.

All of them are small numpy operations over a few hundred entries: the request path's cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.recommender.items import ItemState, NewItem
from recsemble.recommender.model import ServingModel, ranked
from recsemble.recommender.requests import Answer, Recommendation
from recsemble.types import ItemList

I32 = npt.NDArray[np.int32]
F32 = npt.NDArray[np.float32]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Filter:
    """What one request may not show: blocked items, the user's seen items, exclusions, and
    (when categories are asked for) everything outside them."""

    blocked: Bool  # model idx: removed or unavailable (shared, read-only)
    seen: I32  # model idx the user has seen live (the pool already lacks the fitted ones)
    excluded: I32  # model idx excluded by the request
    categories: Bool | None  # model idx allowed by the category filter (None: all)
    excluded_ids: frozenset[str]  # ids excluded or seen that the model does not know
    wanted_categories: frozenset[str] | None

    def allowed(self, items: I32) -> Bool:
        ok: Bool = ~self.blocked[items]
        if self.seen.size:
            ok &= ~np.isin(items, self.seen)
        if self.excluded.size:
            ok &= ~np.isin(items, self.excluded)
        if self.categories is not None:
            ok &= self.categories[items]
        return ok

    def apply(self, items: ItemList) -> ItemList:
        if len(items) == 0:
            return items
        return items.take(np.flatnonzero(self.allowed(items.items)))

    def allows_new(self, item: NewItem) -> bool:
        if item.item_id in self.excluded_ids:
            return False
        return self.wanted_categories is None or bool(item.categories & self.wanted_categories)


def _ndcg_weights(n: int) -> npt.NDArray[np.float64]:
    return 1.0 / np.log2(np.arange(n, dtype=np.float64) + 2.0)


def mix(pool: ItemList, session: ItemList, weight: float) -> ItemList:
    """Pool and session candidates ranked by (1 - w) x pool weight + w x session weight, where
    an entry's weight is what NDCG gives its position (absent: 0): scale-free, like ranks."""
    if len(session) == 0 or weight == 0:
        return pool
    items = np.concatenate([pool.items, session.items])
    rel = np.concatenate(
        [(1 - weight) * _ndcg_weights(len(pool)), weight * _ndcg_weights(len(session))]
    )
    unique, first, inverse = np.unique(items, return_index=True, return_inverse=True)
    combined = np.zeros(unique.size)
    np.add.at(combined, inverse, rel)
    order = np.lexsort((first, -combined))  # ties: the pool's order first
    return ItemList(unique[order], combined[order].astype(np.float32))


def top_up(
    chosen: ItemList, fallback: ItemList, size: int, filt: Filter, also_seen: I32
) -> ItemList:
    """`chosen` followed by allowed `fallback` entries (unseen, not chosen yet) until it holds
    `size`. Appended entries keep the fallback's scores when `chosen` is empty, else their
    scores continue below its last one (the order stays the order)."""
    missing = size - len(chosen)
    if missing <= 0 or len(fallback) == 0:
        return chosen
    ok = filt.allowed(fallback.items)
    if len(chosen):
        ok &= ~np.isin(fallback.items, chosen.items)
    if also_seen.size:
        ok &= ~np.isin(fallback.items, also_seen)
    extra = fallback.take(np.flatnonzero(ok)[:missing])
    if len(chosen) == 0 or len(extra) == 0:
        return extra if len(chosen) == 0 else chosen
    last = float(chosen.scores[-1])
    step = 1e-3 * max(1.0, abs(last))
    scores = last - step * np.arange(1, len(extra) + 1)
    return ItemList(
        np.concatenate([chosen.items, extra.items]),
        np.concatenate([chosen.scores, scores.astype(np.float32)]),
    )


def best_new_item(
    state: ItemState, history: I32, filt: Filter, hidden: frozenset[str]
) -> tuple[NewItem, float] | None:
    """The new item closest in content to the user's latest items, neither `hidden` nor
    refused by the filter (None: none related)."""
    found = state.new_item_matrix()
    if found is None or history.size == 0:
        return None
    items, matrix = found
    content = state.content()
    profile = sp.csr_array(content.vectors[history[-10:]].sum(axis=0).reshape(1, -1))
    similarity = np.asarray((matrix @ profile.T).toarray(), dtype=np.float64).ravel()
    norm = float(np.sqrt(profile.multiply(profile).sum())) or 1.0
    for position in np.argsort(-similarity, kind="stable"):
        item = items[int(position)]
        if similarity[position] <= 0:
            return None
        if item.item_id not in hidden and filt.allows_new(item):
            return item, float(similarity[position] / norm)
    return None


def with_new_item(
    state: ItemState, answer: Answer, history: I32, filt: Filter, hidden: frozenset[str], k: int
) -> Answer:
    """An exploration slot: the last place goes to the new item (upserted after training)
    closest in content to the user's latest items, if any is related at all."""
    if not state.new_items or k < 2:
        return answer
    found = best_new_item(state, history, filt, hidden)
    if found is None:
        return answer
    item, similarity = found
    entry = Recommendation(item.item_id, similarity, item.title)
    items = [*answer.items[: k - 1], entry]
    return Answer(items, answer.model_version, answer.source, answer.user_known)


def request_filter(
    state: ItemState,
    seen: I32,
    exclude: Sequence[str],
    categories: Sequence[str] | None,
    hidden_ids: frozenset[str],
) -> Filter:
    """The filter of one request: blocked items, `seen` model items, the excluded ids, the
    categories asked for (None: any) and further ids to hide (seen new items)."""
    return Filter(
        blocked=state.blocked,
        seen=seen,
        excluded=state.to_idx(exclude),
        categories=None if categories is None else state.category_mask(categories),
        excluded_ids=frozenset(exclude) | hidden_ids,
        wanted_categories=None if categories is None else frozenset(categories),
    )


def similar_items(
    state: ItemState, serving: ServingModel, item_id: str, k: int
) -> tuple[ItemList, str]:
    """The k items most like `item_id` and where they come from: "model" (the item-item
    member's neighbours, topped up by content) or "content". Unknown or removed: KeyError."""
    idx = state.idx(item_id)
    new = state.new_items.get(item_id) if idx is None else None
    if (idx is None or state.removed[idx]) and new is None:
        raise KeyError(f"unknown item {item_id!r}")
    blocked = state.blocked
    found = ItemList(np.zeros(0, np.int32), np.zeros(0, np.float32))
    if idx is not None:
        neighbours = serving.similar(idx)
        found = neighbours.take(np.flatnonzero(~blocked[neighbours.items]))
    source = "model" if len(found) else "content"
    if len(found) < k:  # content similarity fills what the model's neighbours lack
        content = state.content()
        row = new.vector if new is not None else content.vectors[[idx or 0]]  # idx set here
        sims = content.similarities(row)
        sims[blocked | (sims <= 0)] = -np.inf
        if idx is not None:
            sims[idx] = -np.inf
        extra = ranked(sims, k + len(found))
        extra = extra.take(np.flatnonzero(~np.isin(extra.items, found.items)))
        found = ItemList(
            np.concatenate([found.items, extra.items]),
            np.concatenate([found.scores, extra.scores]),
        )
    return found.top(k), source
