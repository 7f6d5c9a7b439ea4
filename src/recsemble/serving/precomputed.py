"""The precomputed cache on the request path: a user's batch list, served first when it is
still the answer.

`recsemble batch` computes every user's list with the served pipeline and `recsemble
load-recs` stores it (store/precomputed.py) with the marker of the history it came from. A
request gets the cached list when all of these hold, else the on-line answer as before:

- it asks for what the batch computed: k no larger than the cached list, no exclusions,
  categories, re-ranking stages or moment of its own (explanations are cached too);
- the batch re-ranked with the stages and settings the server applies by default (`recsemble
  batch --config` as `serve --config`; lists loaded without that record are not served);
- the store has a list for the user under the version being served;
- the user's history marker is unchanged: the events the server holds for the user (fitted
  plus live, counted as they arrive) and the latest timestamp equal the cached marker;
- none of the cached items has been removed, made unavailable or (with the `available` stage)
  expired since, nor, when the served re-ranking stages read item attributes (rules, expiry,
  caps, ...), been PUT at all: the batch judged it by the catalog the model was saved with.

An item added after training takes the last place of a cached list as it does on line.

Store errors never fail a request: the request is answered on line and the error logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np

from recsemble.pipeline import Answer, Explanation, Recommendation, Recommender, RequestOptions
from recsemble.store.base import Store
from recsemble.store.precomputed import CachedList

log = logging.getLogger("recsemble.serving")


def cacheable(options: RequestOptions) -> bool:
    """The request asks for nothing the batch did not compute (k is checked per list)."""
    return (
        not options.exclude
        and options.categories is None
        and options.rerank is None
        and options.at is None
    )


def history_marker(recommender: Recommender, user_id: str, user: int) -> tuple[int, int]:
    """(events, latest timestamp) of the history the server holds for a known user."""
    serving = recommender.serving
    lo, hi = int(serving.histories.indptr[user]), int(serving.histories.indptr[user + 1])
    events = hi - lo
    latest = int(serving.histories.timestamps[hi - 1]) if hi > lo else 0
    live = recommender.live.get(user_id)
    if live is not None:
        events += live.version  # every event observed, also those on items the model lacks
        if live.times.size:
            latest = max(latest, int(live.times.max()))
    return events, latest


class PrecomputedLists:
    """Cached answers from the store, with hit and miss counts (GET /stats-style figures)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.hits = 0
        self.misses = 0  # cacheable requests answered on line (no list, stale, too short)
        self._lock = threading.Lock()

    def counts(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def answer(
        self, recommender: Recommender, user_id: str, options: RequestOptions
    ) -> Answer | None:
        """The cached answer when it may be served (see the module docstring), else None."""
        if not cacheable(options):
            return None
        found = self._usable(recommender, user_id, options)
        with self._lock:
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
        if found is None:
            return None
        # Items added since the batch: the on-line answer's new-item slot, as it has it now.
        return recommender.with_new_item(user_id, _answer(recommender, found, options), options.k)

    def _usable(
        self, recommender: Recommender, user_id: str, options: RequestOptions
    ) -> CachedList | None:
        try:
            user = recommender.users.idx_of(user_id)
        except KeyError:
            return None
        try:
            cached = self.store.precomputed(recommender.version, user_id)
        except Exception as exc:  # the cache is an optimisation: never a failed request
            log.warning("precomputed list of %r not read: %s", user_id, exc)
            return None
        if cached is None or len(cached.entries) < options.k:
            return None
        if cached.rerank != recommender.stages.signature:
            return None
        if options.explain and any(e.explanation is None for e in cached.entries[: options.k]):
            return None
        if (cached.history_events, cached.history_latest) != history_marker(
            recommender, user_id, user
        ):
            return None
        idx = [recommender.items.idx(e.item_id) for e in cached.entries[: options.k]]
        if any(i is None for i in idx):
            return None
        positions = np.asarray(idx, np.int64)
        if bool(recommender.items.blocked[positions].any()):
            return None
        if recommender.stages.default_expired(positions, int(time.time())):
            return None  # expired since the batch, which judged the items at its own moment
        if (
            recommender.stages.default_reads_catalog()
            and recommender.items.changed[positions].any()
        ):
            return None
        return cached


def _answer(recommender: Recommender, cached: CachedList, options: RequestOptions) -> Answer:
    items = []
    for entry in cached.entries[: options.k]:
        idx = recommender.items.idx(entry.item_id)
        title = None if idx is None else recommender.items.titles[idx]
        explanation = _explanation(entry.item_id, entry.explanation) if options.explain else None
        items.append(Recommendation(entry.item_id, entry.score, title, explanation))
    return Answer(items, recommender.version, "model", True)


def _explanation(item_id: str, text: str | None) -> Explanation | None:
    if text is None:
        return None
    data = json.loads(text)
    because = [(str(item), float(weight)) for item, weight in data.get("because", [])]
    members = {str(k): float(v) for k, v in data.get("members", {}).items()}
    return Explanation(item_id, members, because, str(data.get("text", "")))
