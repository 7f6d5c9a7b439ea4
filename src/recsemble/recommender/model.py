"""The loaded model as serving uses it: candidate pools, session signal, neighbours, cold lists.

The request path never runs the model: `warm()` computes every known user's pool (their
`pool` best candidates) in one batch call, a refresh recomputes one user's pool with live
events folded into the history, and what is left per request is filtering and re-ranking.
A single generator saved alone serves the same way, as a one-member ensemble.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recsemble.generators import CandidateGenerator
from recsemble.generators.history import Histories
from recsemble.ranking.ensemble import Ensemble
from recsemble.ranking.ids import UNKNOWN_USER_IDX
from recsemble.types import ItemList, TopK

I32 = npt.NDArray[np.int32]
F32 = npt.NDArray[np.float32]
log = logging.getLogger(__name__)

#: Members whose scores are item-item sums over the history: the session signal, "similar".
SESSION_MEMBERS = ("covisit", "itemknn-recent", "itemknn")
NEIGHBOUR_MEMBERS = ("itemknn", "itemknn-recent", "ease", "ease-recent", "covisit")
#: Latest items that define the session.
SESSION_ITEMS = 10
#: Session candidates mixed into a pool.
SESSION_CANDIDATES = 50
#: Neighbours kept per item for `similar`, and entries kept per cold-start list.
NEIGHBOURS = 100
COLD_ENTRIES = 2_000
#: Users scored per batch call in warm(): bounds the memory of one call.
WARM_BATCH = 2_048
#: Fewest fitted users a segment needs before its popularity is trusted.
MIN_SEGMENT_USERS = 20
#: The user attribute that defines segments when the model has no pop-segment member.
SEGMENT_ATTRIBUTE = "segment"


@dataclass(frozen=True)
class Pool:
    """One user's cached candidates, best first, and the live events folded into them."""

    items: I32
    scores: F32
    version: int  # live events the history held (0: the fitted history alone)
    histories: Histories | None  # what the model was handed (None: its fitted histories)


def _first_member(
    members: Mapping[str, CandidateGenerator], names: Sequence[str]
) -> tuple[str, CandidateGenerator] | None:
    """The first member (label, model) whose generator is one of `names`, in their order."""
    for name in names:
        for label, member in members.items():
            if member.name == name:
                return label, member
    return None


def ranked(scores: F32, limit: int) -> ItemList:
    """The `limit` best finite entries of a dense score row (ties: lower idx), as an ItemList."""
    if limit < scores.size:  # a partial sort: only the best `limit` are ordered
        best = np.argpartition(-scores, limit - 1)[:limit]
        best = best[np.lexsort((best, -scores[best]))]
    else:
        best = np.lexsort((np.arange(scores.size), -scores))
    best = best[np.isfinite(scores[best])]
    return ItemList(best.astype(np.int32), scores[best])


class ServingModel:
    """An Ensemble (or a lone generator) with the batch and one-user calls serving needs."""

    def __init__(self, model: Ensemble | CandidateGenerator, pool: int) -> None:
        self.model = model
        self.pool = pool
        if isinstance(model, Ensemble):
            self.members: dict[str, CandidateGenerator] = dict(model.members_)
            self.histories: Histories = model.histories_
        else:
            self.members = {model.name: model}
            self.histories = model.histories_
        self.n_users, self.n_items = int(model.n_users_), int(model.n_items_)
        self.now = int(model.now_)
        self.session_member = _first_member(self.members, SESSION_MEMBERS)
        self.neighbour_member = _first_member(self.members, NEIGHBOUR_MEMBERS)
        self.pools: TopK | None = None
        self.neighbours: TopK | None = None

    @property
    def is_ensemble(self) -> bool:
        return isinstance(self.model, Ensemble)

    # -- histories -------------------------------------------------------------------------
    def fitted_items(self, user: int) -> I32:
        """The user's fitted history items, oldest first (empty for unknown users)."""
        if not 0 <= user < self.histories.n_rows:
            return np.zeros(0, np.int32)
        lo, hi = self.histories.indptr[user], self.histories.indptr[user + 1]
        return self.histories.items[lo:hi]

    def is_fitted(self, user: int, item: int | None, timestamp: int | None) -> bool:
        """Whether the fitted history holds this (item, time) for the user: a store event that
        was in the training files too (a model trained offline on what the store holds)."""
        if item is None or not timestamp or not 0 <= user < self.histories.n_rows:
            return False
        lo, hi = int(self.histories.indptr[user]), int(self.histories.indptr[user + 1])
        same_item = self.histories.items[lo:hi] == item
        return bool(np.any(self.histories.timestamps[lo:hi][same_item] == timestamp))

    def history(
        self,
        user: int,
        items: I32,
        times: npt.NDArray[np.int64],
        weights: F32,
        latest: int | None = None,
    ) -> Histories:
        """One row: the fitted history of `user` with the given live events, in time order
        (only the `latest` events when given)."""
        lo, hi = 0, 0
        if 0 <= user < self.histories.n_rows:
            lo, hi = int(self.histories.indptr[user]), int(self.histories.indptr[user + 1])
        if latest is not None:  # fitted events are in time order: their tail is enough
            lo = max(lo, hi - latest)
        all_items = np.concatenate([self.histories.items[lo:hi], items])
        all_times = np.concatenate([self.histories.timestamps[lo:hi], times])
        all_weights = np.concatenate([self.histories.weights[lo:hi], weights])
        order = np.lexsort((all_items, all_times))
        if latest is not None:
            order = order[-latest:]
        return Histories(
            np.array([0, order.size], np.int64),
            all_items[order],
            all_times[order],
            all_weights[order],
            self.n_items,
        )

    # -- pools -----------------------------------------------------------------------------
    def top(self, users: I32, histories: Histories | None = None) -> TopK:
        """The model's `pool` best unseen items per user (the expensive call)."""
        return self.model.recommend(users, min(self.pool, self.n_items), histories=histories)

    def warm(self, cache: Path | None = None) -> None:
        """Every known user's pool, in batch calls; then the item neighbour lists.

        cache: a file where this exact warm-up was saved before (same version, pool size and
        moment: the result is deterministic), loaded instead of recomputed; written when
        missing. A hot swap back to a version seen before then takes seconds, not minutes."""
        if cache is not None and self._load_warm(cache):
            return
        parts = [
            self.top(np.arange(lo, min(self.n_users, lo + WARM_BATCH), dtype=np.int32))
            for lo in range(0, self.n_users, WARM_BATCH)
        ]
        if parts:
            self.pools = TopK(
                np.concatenate([p.items for p in parts]), np.concatenate([p.scores for p in parts])
            )
        self.neighbours = self._neighbour_lists()
        if cache is not None:
            self._save_warm(cache)

    def _warm_key(self) -> npt.NDArray[np.int64]:
        return np.array([self.n_users, self.n_items, self.pool, self.now], dtype=np.int64)

    def _load_warm(self, cache: Path) -> bool:
        try:
            with np.load(cache, allow_pickle=False) as npz:
                if not np.array_equal(npz["key"], self._warm_key()):
                    return False
                self.pools = TopK(npz["pool_items"], npz["pool_scores"])
                if "neighbour_items" in npz.files:
                    self.neighbours = TopK(npz["neighbour_items"], npz["neighbour_scores"])
                else:
                    self.neighbours = None
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # recompute
            log.info("warm cache %s not used: %s", cache, exc)
            return False
        return True

    def _save_warm(self, cache: Path) -> None:
        if self.pools is None:
            return
        arrays = {"key": self._warm_key(), "pool_items": self.pools.items,
                  "pool_scores": self.pools.scores}  # fmt: skip
        if self.neighbours is not None:
            arrays["neighbour_items"] = self.neighbours.items
            arrays["neighbour_scores"] = self.neighbours.scores
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".partial.npz")
        np.savez(partial, **arrays)  # type: ignore[arg-type]
        os.replace(partial, cache)  # atomic: a reader never sees half a file

    def warm_pool(self, user: int) -> Pool | None:
        """The pool warm() computed for a known user (None before warm() or for others)."""
        pools = self.pools
        if pools is None or not 0 <= user < pools.items.shape[0]:
            return None
        row = pools.row(user)
        return Pool(row.items, row.scores, 0, None)

    def pool_for(
        self, user: int, histories: Histories | None, version: int, drop: I32 | None = None
    ) -> Pool:
        """One user's pool computed now (a refresh, or a request that came before warm()).
        drop: the items to leave out (the fitted ones and those a seen rule per event type
        counts), the other history items staying candidates; None: every history item."""
        users = np.array([user], np.int32)
        if drop is None:
            row = self.top(users, histories).row(0)
        else:
            wanted = min(self.pool + drop.size, self.n_items)
            top = self.model.recommend(users, wanted, exclude_seen=False, histories=histories)
            row = top.row(0)
            row = row.take(np.flatnonzero(~np.isin(row.items, drop))).top(self.pool)
        return Pool(row.items, row.scores, version, histories)

    # -- session ----------------------------------------------------------------------------
    def session(self, user: int, histories: Histories, seen: I32 | None = None) -> ItemList | None:
        """Items the session member reaches from the latest items of the (one-row) history,
        best first; the history's items and `seen` (the user's older items) are left out."""
        if self.session_member is None:
            return None
        _, member = self.session_member
        start = max(0, histories.items.size - SESSION_ITEMS)
        latest = histories.rows([0]) if start == 0 else _tail(histories, start, self.n_items)
        row = member.score_catalog(np.array([user], np.int32), histories=latest)[0]
        row[histories.items] = -np.inf
        if seen is not None:
            row[seen] = -np.inf
        return ranked(row, SESSION_CANDIDATES)

    # -- neighbours -------------------------------------------------------------------------
    def _neighbour_lists(self) -> TopK | None:
        if self.neighbour_member is None:
            return None
        label, member = self.neighbour_member
        k = min(NEIGHBOURS, max(1, self.n_items - 1))
        step = max(1, 4_000_000 // max(1, self.n_items))
        parts = []
        try:
            for lo in range(0, self.n_items, step):
                items = np.arange(lo, min(self.n_items, lo + step))
                parts.append(member.similar_items(items, k))
        except NotImplementedError:
            log.warning("member %r has no item similarity: /similar uses content", label)
            return None
        return TopK(
            np.concatenate([p.items for p in parts]), np.concatenate([p.scores for p in parts])
        )

    def similar(self, item: int) -> ItemList:
        """The item's stored neighbours, best first; before warm() the member is asked for this
        item alone (as a pool is computed for a user asked before warm()); empty without them."""
        if self.neighbours is not None:
            return self.neighbours.row(item)
        if self.pools is None and self.neighbour_member is not None:
            k = min(NEIGHBOURS, max(1, self.n_items - 1))
            try:
                return self.neighbour_member[1].similar_items([item], k).row(0)
            except NotImplementedError:
                pass
        return ItemList(np.zeros(0, np.int32), np.zeros(0, np.float32))


@dataclass(frozen=True)
class Segmenter:
    """A user's segment from their attributes: the attribute's value, or its bin if binned."""

    attribute: str
    bins: tuple[float, ...] | None = None

    @classmethod
    def for_model(cls, serving: ServingModel, columns: Sequence[str]) -> Segmenter | None:
        """The pop-segment member's attribute, else a "segment" attribute, else None."""
        member = _first_member(serving.members, ("pop-segment",))
        if member is not None:
            config: Any = member[1].config
            if config.attribute is not None:
                bins = None if config.bins is None else tuple(float(b) for b in config.bins)
                return cls(str(config.attribute), bins)
        return cls(SEGMENT_ATTRIBUTE) if SEGMENT_ATTRIBUTE in columns else None

    def label(self, attributes: Mapping[str, Any] | None) -> str | None:
        value = None if attributes is None else attributes.get(self.attribute)
        if value is None or isinstance(value, (list, dict)):
            return None
        if self.bins is None:
            return str(value)
        try:
            return f"bin{int(np.digitize(float(value), self.bins))}"
        except (TypeError, ValueError):
            return None


def _tail(histories: Histories, start: int, n_items: int) -> Histories:
    """A one-row history's events from position `start` on."""
    return Histories(
        np.array([0, histories.items.size - start], np.int64),
        histories.items[start:],
        histories.timestamps[start:],
        histories.weights[start:],
        n_items,
    )


class ColdLists:
    """Answers for users without history: segment popularity, trending, global popularity."""

    def __init__(self, serving: ServingModel, user_segments: Mapping[int, str] | None) -> None:
        members = serving.members
        unknown = np.array([UNKNOWN_USER_IDX], np.int32)
        trending = _first_member(members, ("pop-trending",))
        self.trending = (
            None
            if trending is None
            else ranked(trending[1].score_catalog(unknown, exclude_seen=False)[0], COLD_ENTRIES)
        )
        popular = _first_member(members, ("pop",))
        if popular is not None:
            scores = popular[1].score_catalog(unknown, exclude_seen=False)[0]
        else:
            scores = _distinct_users_per_item(serving.histories).astype(np.float32)
        self.popular = ranked(scores, COLD_ENTRIES)
        self.segments = _segment_lists(serving, user_segments or {})

    def for_user(self, segment: str | None) -> tuple[ItemList, str]:
        """The list for a user in `segment` (None: no segment) and its source label."""
        if segment is not None and segment in self.segments:
            return self.segments[segment], "cold:segment"
        if self.trending is not None:
            return self.trending, "cold:trending"
        return self.popular, "cold:popular"


def _distinct_users_per_item(
    histories: Histories, rows: I32 | None = None
) -> npt.NDArray[np.int64]:
    """How many distinct users (of `rows`, default all) have each item."""
    part = histories if rows is None else histories.rows(rows)
    seen = part.seen_matrix()
    return np.bincount(seen.indices, minlength=histories.n_items).astype(np.int64)


def _segment_lists(serving: ServingModel, segments: Mapping[int, str]) -> dict[str, ItemList]:
    """Popularity within each user segment with enough users (fitted users' segment labels)."""
    by_segment: dict[str, list[int]] = {}
    for user, label in segments.items():
        by_segment.setdefault(label, []).append(user)
    member = _first_member(serving.members, ("pop-segment",))
    config: Any = None if member is None else member[1].config
    smallest = MIN_SEGMENT_USERS if config is None else int(config.min_segment_users)
    out = {}
    for label, users in by_segment.items():
        if len(users) < smallest:
            continue
        if member is not None:  # the member's own segment scores for one of its users
            row = member[1].score_catalog(np.array(users[:1], np.int32), exclude_seen=False)[0]
        else:
            counts = _distinct_users_per_item(serving.histories, np.array(users, np.int32))
            row = np.where(counts > 0, counts, -np.inf).astype(np.float32)
        out[label] = ranked(row, COLD_ENTRIES)
    return out
