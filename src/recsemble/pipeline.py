"""The Recommender: the one object the server calls. External ids in, external ids out.

Latency design: the request path never runs the model. `warm()` computes every known user's
pool (the model's best `[rerank] pool` candidates) in batch; a request filters its pool (seen
items including live events, removed items, exclusions, categories), runs the re-ranking
stages and tops the list up from the cold-start list when filters left it short.

Real time: `observe()` puts an event's item in the user's live seen set (gone from the next
answer at once), computes the session signal from the user's latest items (co-visitation, or
item-kNN) which is mixed into the pool, and queues a background refresh of the user's pool
with the new history folded in (one worker thread, rate-limited, newest first).

Cold start: a user without history gets segment popularity (from user attributes), else
trending, else global popularity, precomputed; `Answer.source` says which. Explanations are
recomputed from the model's candidates for the user (see recommender/explain.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsemble.config import RecsembleConfig
from recsemble.errors import DataError
from recsemble.ranking.ids import Catalog
from recsemble.ranking.persistence import LoadedModel, load_model
from recsemble.recommender.browse import recommender_stats
from recsemble.recommender.explain import (
    NEW_ITEM_TEXT,
    Evidence,
    Explainer,
    check_recommendable,
    explained_answer,
    explanation,
    new_item_explained,
)
from recsemble.recommender.items import ItemState, item_attributes
from recsemble.recommender.lists import (
    Filter,
    mix,
    request_filter,
    similar_items,
    top_up,
    with_new_item,
)
from recsemble.recommender.model import (
    SESSION_ITEMS,
    ColdLists,
    Pool,
    Segmenter,
    ServingModel,
)
from recsemble.recommender.requests import (
    MAX_K,
    Answer,
    Explanation,
    Recommendation,
    RequestOptions,
    check_k,
)
from recsemble.recommender.stages import Stages, apply, serving_dataset
from recsemble.recommender.users import LiveUser, LiveUsers, RefreshQueue
from recsemble.rerank import Query, Reranker
from recsemble.store.base import Event, Record
from recsemble.types import ItemList

log = logging.getLogger(__name__)
__all__ = [
    "MAX_K",
    "Answer",
    "Explanation",
    "Recommendation",
    "Recommender",
    "RequestOptions",
    "check_k",
]

#: Pool refreshes per second at most (each runs the model for one user: ~0.1 s of CPU).
REFRESH_PER_SECOND = 2.0
#: Share of the session signal when mixed into a pool that predates the user's live events.
SESSION_WEIGHT = 0.5


class Recommender:
    """A loaded model with the live state around it; thread-safe (see the module doc)."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        version: str = "",
        config: RecsembleConfig | None = None,
        refresh_per_second: float = REFRESH_PER_SECOND,
        session_weight: float = SESSION_WEIGHT,
    ) -> None:
        if loaded.catalog is None:
            raise DataError(
                "no ids.json: the model was saved without its ids", source=str(loaded.folder)
            )
        catalog: Catalog = loaded.catalog
        self.version = version or loaded.folder.name
        self.config = config or RecsembleConfig()
        self.session_weight = session_weight
        self.users = catalog.users
        self.serving = ServingModel(loaded.model, self.config.rerank.pool)
        attributes = item_attributes(catalog.items, catalog.item_attributes, catalog.titles)
        self.items = ItemState(catalog.items, attributes)
        dataset = serving_dataset(
            self.serving.histories,
            catalog.users,
            catalog.items,
            attributes,
            catalog.user_attributes,
            catalog.event_weights,
        )
        self.stages = Stages(self.config.rerank, dataset)
        table = catalog.user_attributes
        self.segmenter = Segmenter.for_model(self.serving, [] if table is None else table.columns)
        self.fitted_segments = self._fitted_segments(catalog)
        labelled = {u: s for u, s in enumerate(self.fitted_segments) if s is not None}
        self.cold = ColdLists(self.serving, labelled)
        weights = self.config.data.event_weights or catalog.event_weights
        self.live = LiveUsers(weights, self.config.rerank.seen.event_types)
        self.refreshed: dict[str, Pool] = {}
        self.refresh = RefreshQueue(self._refresh_pool, refresh_per_second)
        self.explainer = Explainer(self.serving)
        self.requests = 0

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        version: str = "",
        config: RecsembleConfig | None = None,
        verified: bool = False,
    ) -> Recommender:
        """Read a saved model folder (checksums verified unless `verified` says the caller just
        did; nothing unpickled)."""
        return cls(load_model(model_dir, verified=verified), version=version, config=config)

    def _fitted_segments(self, catalog: Catalog) -> list[str | None]:
        table = catalog.user_attributes
        if self.segmenter is None or table is None:
            return []
        return [self.segmenter.label(row) for row in table.iter_rows(named=True)]

    def warm(self, cache: Path | None = None) -> None:
        """Every known user's pool in batch (the model's one expensive call), item neighbour
        lists and the content index: after this, no request runs the model. `cache`: a file
        to reuse this version's warm-up from (and save it to)."""
        start = time.perf_counter()
        self.serving.warm(cache)
        self.items.content()
        log.info("warmed %d users in %.1f s", self.serving.n_users, time.perf_counter() - start)

    def close(self) -> None:
        """Stop the refresh worker (pending refreshes are dropped)."""
        self.refresh.close()

    # -- recommendations -------------------------------------------------------------------
    def recommend(self, user_id: str, options: RequestOptions) -> Answer:
        check_k(options.k)
        stages = self.stages.chain(options.rerank)
        self.requests += 1
        user = self._user_idx(user_id)
        live = self.live.get(user_id)
        candidates, pool, source = self._candidates(user_id, user, live)
        fallback, cold_source = self.cold.for_user(self._segment(user_id, user))
        if source == "cold":
            source = cold_source
        filt = self._filter(live, options)
        history = self._history_items(user, live)
        # Filters may leave the pool short: the cold list tops it up before the stages run.
        size = max(options.k, self.serving.pool)
        fitted = self.serving.fitted_items(user)
        candidates = top_up(filt.apply(candidates), fallback, size, filt, fitted)
        query = Query(user, self._moment(options), history, self._history_events(user, live))
        chosen = apply(stages, query, candidates, options.k)
        answer = self._answer(chosen, source, user >= 0 or live is not None)
        answer = self._with_new_item(answer, query, stages, filt, options.k)
        if options.explain:
            answer = self._explained(answer, user, pool, live)
        return answer

    def recommend_session(self, item_ids: Sequence[str], options: RequestOptions) -> Answer:
        """An anonymous session: its recent items (external ids, oldest first) are its history."""
        if isinstance(item_ids, str):  # each character would be read as an item id
            raise TypeError(f"item_ids takes a sequence of ids, got the single id {item_ids!r}")
        check_k(options.k)
        stages = self.stages.chain(options.rerank)
        items = self.items.to_idx(item_ids)
        # One second apart, ending at the model's "now": the list order is the time order.
        times = self.serving.now - np.arange(items.size, dtype=np.int64)[::-1]
        histories = self.serving.history(-1, items, times, np.ones(items.size, np.float32))
        session = self.serving.session(-1, histories) if items.size else None
        fallback, source = self.cold.for_user(None)
        candidates = fallback.top(0)
        if session is not None and len(session):
            candidates, source = session, "session"
        excluded = frozenset(options.exclude) | frozenset(item_ids)
        filt = self._filter(None, options, extra_seen=items, extra_ids=excluded)
        size = max(options.k, self.serving.pool)
        candidates = top_up(filt.apply(candidates), fallback, size, filt, items)
        query = Query(-1, self._moment(options), items)
        chosen = apply(stages, query, candidates, options.k)
        answer = self._answer(chosen, source, False)
        answer = self._with_new_item(answer, query, stages, filt, options.k)
        if not options.explain:
            return answer
        return self.explainer.explain_session(answer, histories, self.items)

    def _candidates(
        self, user_id: str, user: int, live: LiveUser | None
    ) -> tuple[ItemList, Pool | None, str]:
        """The user's cached pool (mixed with the session signal when it predates live
        events), the session signal alone, or nothing (cold)."""
        pool = self.refreshed.get(user_id) or self.serving.warm_pool(user)
        if pool is None and user >= 0:  # asked before warm(): computed now, once
            pool = self.serving.pool_for(user, None, 0)
            self.refreshed[user_id] = pool
        unfolded = live is not None and live.version > (0 if pool is None else pool.version)
        session = self._session(user_id, user, live) if unfolded and live is not None else None
        if pool is not None and pool.items.size:  # empty: a known user without history
            items = ItemList(pool.items, pool.scores)
            if session is not None:
                items = mix(items, session, self.session_weight)
            return items, pool, "model"
        if session is not None and len(session):
            return session, pool, "session"
        return ItemList(np.zeros(0, np.int32), np.zeros(0, np.float32)), pool, "cold"

    def _session(self, user_id: str, user: int, live: LiveUser) -> ItemList | None:
        """The session signal of the user's latest items, computed once per new event (on the
        first request after it: a batch of events costs its POST nothing)."""
        if live.session_version == live.version:
            return live.session
        if live.items.size == 0:
            return None
        latest = self.serving.history(user, live.items, live.times, live.weights, SESSION_ITEMS)
        session = self.serving.session(user, latest, self.serving.fitted_items(user))
        self.live.set_session(user_id, live.version, session)
        return session

    def _filter(
        self,
        live: LiveUser | None,
        options: RequestOptions,
        extra_seen: np.ndarray | None = None,
        extra_ids: frozenset[str] = frozenset(),
    ) -> Filter:
        seen = live.seen if live is not None else np.zeros(0, np.int32)
        seen_new = live.seen_new if live is not None else frozenset()
        if extra_seen is not None:
            seen = np.union1d(seen, extra_seen).astype(np.int32)
        return request_filter(
            self.items, seen, options.exclude, options.categories, seen_new | extra_ids
        )

    def with_new_item(self, user_id: str, answer: Answer, k: int) -> Answer:
        """A list computed before (a precomputed one) with the new-item slot that an on-line
        answer to a plain request for `k` items has now (explained when the list is)."""
        user, live = self._user_idx(user_id), self.live.get(user_id)
        filt = self._filter(live, RequestOptions(k=k))
        query = Query(user, int(time.time()), self._history_items(user, live))
        found = self._with_new_item(answer, query, self.stages.chain(None), filt, k)
        if found is answer or not any(r.explanation for r in answer.items):
            return found
        return new_item_explained(found)

    def _with_new_item(
        self, answer: Answer, query: Query, stages: Sequence[Reranker], filt: Filter, k: int
    ) -> Answer:
        """The new-item slot: the new item closest to the history that the request's filter
        (seen, excluded, categories) and filter stages (expiry, rules, quality) keep."""
        at = int(time.time()) if query.at is None else int(query.at)
        dropped = self.stages.rejected_new(stages, self.items, at)
        return with_new_item(self.items, answer, query.history, filt, dropped, k)

    def _answer(self, chosen: ItemList, source: str, known: bool) -> Answer:
        ids = [str(i) for i in self.items.ids.to_ids(chosen.items)] if len(chosen) else []
        items = [
            Recommendation(str(item_id), float(score), self.items.titles[int(idx)])
            for item_id, score, idx in zip(ids, chosen.scores.tolist(), chosen.items, strict=True)
        ]
        return Answer(items, self.version, source, known)

    # -- similar items ----------------------------------------------------------------------
    def similar(self, item_id: str, k: int) -> Answer:
        """Items like `item_id`: the model's item-item neighbours where it has them, else
        content similarity (also for items upserted after training). Unknown id: KeyError."""
        check_k(k)
        found, source = similar_items(self.items, self.serving, item_id, 2 * k + 10)
        at = Query(at=int(time.time()))  # an expired item or one a rule drops: not shown
        return self._answer(apply(self.stages.default_filters(), at, found, k), source, False)

    # -- explanations ---------------------------------------------------------------------
    def explain(self, user_id: str, item_id: str) -> Explanation:
        """Why `item_id` for `user_id`, from the model's own candidates and scores."""
        idx = self.items.idx(item_id)
        if idx is not None and self.items.removed[idx]:  # as GET /items/{id}/similar
            raise KeyError(f"unknown item {item_id!r} (deleted)")
        if idx is None and item_id not in self.items.new_items:
            raise KeyError(f"unknown item {item_id!r}")
        user = self._user_idx(user_id)
        live = self.live.get(user_id)
        seen = [self.serving.fitted_items(user), *([] if live is None else [live.seen])]
        seen_new = frozenset() if live is None else live.seen_new
        check_recommendable(self.items, item_id, user_id, np.concatenate(seen), seen_new)
        if idx is None:  # an item added after training
            return Explanation(item_id, {}, [], NEW_ITEM_TEXT)
        _, pool, source = self._candidates(user_id, user, live)
        if source == "cold":  # named as the answer names it ("cold:trending", ...)
            source = self.cold.for_user(self._segment(user_id, user))[1]
        evidence = self._evidence(user, pool, live, [idx])[0]
        return explanation(evidence, source, self.items)

    def _evidence(
        self, user: int, pool: Pool | None, live: LiveUser | None, items: list[int]
    ) -> list[Evidence]:
        """The evidence from the history the answer came from: the live events too, also
        those a refresh has not folded into the pool yet (the session signal showed them)."""
        if live is not None and live.version > (0 if pool is None else pool.version):
            histories = self._histories(user, live)
        elif pool is not None:
            histories = pool.histories
        else:
            histories = None if user >= 0 else self.serving.history(user, *_no_events())
        return self.explainer.evidence(user, histories, items, pool)

    def _explained(
        self, answer: Answer, user: int, pool: Pool | None, live: LiveUser | None
    ) -> Answer:
        model_items = [self.items.idx(r.item_id) for r in answer.items]
        wanted = [i for i in model_items if i is not None]
        found = {e.item: e for e in self._evidence(user, pool, live, wanted)} if wanted else {}
        return explained_answer(answer, found, model_items, self.items)

    # -- real time -------------------------------------------------------------------------
    def observe(self, events: Sequence[Event]) -> None:
        """Events already stored: their items are seen at once (and counted by exploration),
        the session signal follows on the next request, a refresh of the pool is queued.
        Events the model was trained with (same user, item and time) are not counted twice."""
        user, item, fitted = self._user_idx, self.items.idx, self.serving.is_fitted
        events = [e for e in events if not fitted(user(e.user_id), item(e.item_id), e.timestamp)]
        changed = self.live.observe(events, self.items.idx)
        self.stages.observe(events, self.items.idx)
        self.refresh.push(changed)

    def _refresh_pool(self, user_id: str) -> None:
        live = self.live.get(user_id)
        if live is None or live.items.size == 0:
            return
        user = self._user_idx(user_id)
        drop = None  # the model drops every history item, unless a viewed one may return:
        if self.live.seen_types is not None:  # a seen rule per event type
            drop = np.union1d(self.serving.fitted_items(user), live.seen).astype(np.int32)
        histories = self._histories(user, live)
        self.refreshed[user_id] = self.serving.pool_for(user, histories, live.version, drop)

    def upsert_items(self, records: Sequence[Record]) -> None:
        self.items.upsert(records)
        self.stages.catalog_changed(self.items.attributes)

    def remove_item(self, item_id: str) -> None:
        """Gone from every answer from now on (an unknown id is ignored)."""
        self.items.remove(item_id)

    def upsert_users(self, records: Sequence[Record]) -> None:
        self.live.upsert(records)

    def stats(self) -> dict[str, Any]:
        """Counters of the live state (users, pools, refreshes, requests, item changes)."""
        return recommender_stats(self)

    # -- helpers ---------------------------------------------------------------------------
    def _user_idx(self, user_id: str) -> int:
        try:
            return self.users.idx_of(str(user_id))
        except KeyError:
            return -1

    def _segment(self, user_id: str, user: int) -> str | None:
        if self.segmenter is None:
            return None
        attributes = self.live.attributes.get(user_id)
        if attributes is not None:
            return self.segmenter.label(attributes)
        return self.fitted_segments[user] if 0 <= user < len(self.fitted_segments) else None

    def _histories(self, user: int, live: LiveUser) -> Any:
        return self.serving.history(user, live.items, live.times, live.weights)

    def _history_items(self, user: int, live: LiveUser | None) -> np.ndarray:
        fitted = self.serving.fitted_items(user)
        return fitted if live is None else np.concatenate([fitted, live.items])

    def _history_events(self, user: int, live: LiveUser | None) -> tuple[str, ...]:
        fitted = ("",) * self.serving.fitted_items(user).size
        return fitted if live is None else fitted + live.types

    @staticmethod
    def _moment(options: RequestOptions) -> int:
        return int(time.time()) if options.at is None else int(options.at)


def _no_events() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float32)
