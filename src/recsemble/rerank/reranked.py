"""A model followed by re-ranking stages: what `evaluate --rerank` measures and serving runs.

The model hands every request its `pool` best candidates; the stages run in order, each but
the last reordering (or filtering) the whole list so later stages still have a choice, the
last cutting it to k. With a "seen" stage in the chain the model is asked not to drop seen
items itself, so the stage's per-event-type rule decides (a re-watchable song may return).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from recsemble.data.dataset import Dataset
from recsemble.generators.history import Histories
from recsemble.rerank.base import Query, Reranker
from recsemble.rerank.filters import SeenFilter
from recsemble.types import PAD_IDX, ItemList, TopK, check_k, idx_array

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


class Reranked:
    """model.recommend(pool) -> stages -> top k, per request."""

    def __init__(
        self, model: Any, stages: Sequence[Reranker], pool: int = 100, refit_model: bool = True
    ) -> None:
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        self.model = model
        self.stages = list(stages)
        self.pool = pool
        self.refit_model = refit_model  # False: the model was fitted already (shared)

    def fit(self, dataset: Dataset) -> Self:
        if self.refit_model:
            self.model.fit(dataset)
        for stage in self.stages:
            stage.fit(dataset)
        self._index_histories(dataset)
        self.n_items_ = dataset.n_items
        return self

    def _longest_history(self, users: I64) -> int:
        """Room for the seen items the seen stage will drop from the candidates."""
        known = users[(users >= 0) & (users < self.history_ptr_.size - 1)]
        lengths = self.history_ptr_[known + 1] - self.history_ptr_[known]
        return int(lengths.max()) if lengths.size else 0

    def _index_histories(self, dataset: Dataset) -> None:
        """Each user's items and event types, oldest first, for the stages' queries."""
        users = dataset.column("user_idx")
        order = np.lexsort((dataset.column("item_idx"), dataset.column("timestamp"), users))
        self.history_items_ = dataset.column("item_idx")[order].astype(np.int32)
        self.history_events_ = dataset.column("event")[order]
        counts = np.bincount(users, minlength=dataset.n_users)
        self.history_ptr_ = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)

    def query(self, user: int, at: int | None, histories: Histories | None, row: int) -> Query:
        """The stages' view of one request; request-time histories replace the fitted ones."""
        if histories is not None:
            lo, hi = histories.indptr[row], histories.indptr[row + 1]
            return Query(user, at, histories.items[lo:hi])
        if not 0 <= user < self.history_ptr_.size - 1:
            return Query(-1, at)
        lo, hi = self.history_ptr_[user], self.history_ptr_[user + 1]
        events = tuple(str(e) for e in self.history_events_[lo:hi])
        return Query(user, at, self.history_items_[lo:hi], events)

    def rerank_lists(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
    ) -> list[ItemList]:
        """Each user's final list with every stage's score and feature columns."""
        k = check_k(k)
        user_arr = idx_array(users, "users")
        at_arr = None if at is None else np.broadcast_to(np.asarray(at), user_arr.shape)
        stage_drops_seen = exclude_seen and any(isinstance(s, SeenFilter) for s in self.stages)
        extra = 0
        if stage_drops_seen:
            extra = self._longest_history(user_arr)
            if histories is not None and histories.n_rows:
                extra = max(extra, int(histories.lengths.max()))
        size = max(k, self.pool) + extra
        top = self.model.recommend(
            user_arr,
            min(size, self.n_items_),
            exclude_seen=exclude_seen and not stage_drops_seen,
            at=at,
            histories=histories,
        )
        lists = []
        for row, user in enumerate(user_arr):
            moment = None if at_arr is None else int(at_arr[row])
            query = self.query(int(user), moment, histories, row)
            lists.append(self._apply(query, top.row(row), k))
        return lists

    def _apply(self, query: Query, items: ItemList, k: int) -> ItemList:
        for position, stage in enumerate(self.stages):
            last = position == len(self.stages) - 1
            items = stage.rerank(query, items, k if last else max(len(items), 1))
        return items.top(k)

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
    ) -> TopK:
        lists = self.rerank_lists(users, k, exclude_seen=exclude_seen, at=at, histories=histories)
        items = np.full((len(lists), k), PAD_IDX, dtype=np.int32)
        scores = np.full((len(lists), k), -np.inf, dtype=np.float32)
        for row, final in enumerate(lists):
            items[row, : len(final)] = final.items
            scores[row, : len(final)] = final.scores
        return TopK(items, scores)


class PoolCache:
    """A fitted model whose candidate pools are computed once and shared by many chains.

    A sweep re-ranks the same pools with every knob value; asking the model again for each
    would repeat its whole candidate generation. Requests with request-time histories are not
    cached (they are one-off by nature); the cache stops growing at `max_cells` entries.
    """

    def __init__(self, model: Any, max_cells: int = 50_000_000) -> None:
        self.model = model
        self.max_cells = max_cells
        self._pools: dict[tuple[bytes, int, bool, bytes | None], TopK] = {}
        self._cells = 0

    def fit(self, dataset: Dataset) -> Self:
        self.model.fit(dataset)
        self._pools.clear()
        self._cells = 0
        return self

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
    ) -> TopK:
        user_arr = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if histories is not None:
            return self._ask(user_arr, k, exclude_seen, at, histories)
        moments = None if at is None else np.asarray(at, dtype=np.int64).tobytes()
        key = (user_arr.tobytes(), k, exclude_seen, moments)
        if key not in self._pools:
            top = self._ask(user_arr, k, exclude_seen, at, None)
            if self._cells + top.items.size > self.max_cells:
                return top
            self._pools[key] = top
            self._cells += top.items.size
        return self._pools[key]

    def _ask(
        self,
        users: I64,
        k: int,
        exclude_seen: bool,
        at: npt.ArrayLike | None,
        histories: Histories | None,
    ) -> TopK:
        top: TopK = self.model.recommend(
            users, k, exclude_seen=exclude_seen, at=at, histories=histories
        )
        return top
