"""Reranker: the last stage, (query, ordered ItemList) -> ItemList.

A reranker may drop items or change their order and scores; it never adds an item that was
not in its input. Each one has a typed, frozen config (unknown keys rejected), learns what it
needs about the catalog in `fit(dataset)` (fitted state ends in `_`), and answers one request
at a time: the lists are short (a few hundred candidates), so per-request numpy is fast enough
and keeps every stage easy to read.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict

from recsemble.data.dataset import Dataset
from recsemble.errors import NotFittedError
from recsemble.strict import StrictConfig
from recsemble.types import ItemList, integer_values

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
SECONDS_PER_DAY = 86_400.0


class RerankerConfig(StrictConfig):
    """Base of every reranker's config: frozen, unknown keys rejected, "none" = None."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _empty_items() -> I32:
    return np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class Query:
    """Whom a list is for, and when.

    user: user idx (-1: unknown or anonymous). at: the moment of the request in epoch seconds
    (None: the latest moment seen in fit). history: the user's item idx, oldest first, with the
    event type of each entry in history_events (empty strings when unknown).
    """

    user: int = -1
    at: int | None = None
    history: I32 = field(default_factory=_empty_items)
    history_events: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        history = np.array(integer_values(self.history, "Query history"), dtype=np.int32)
        history.flags.writeable = False
        object.__setattr__(self, "history", history)
        events = tuple(self.history_events) or ("",) * history.size
        if len(events) != history.size:
            raise ValueError(f"{history.size} history items but {len(events)} event types")
        object.__setattr__(self, "history_events", events)


class Reranker(ABC):
    """fit(dataset) -> self; rerank(query, items, k) -> at most k of `items`, best first."""

    name: ClassVar[str]
    Config: ClassVar[type[RerankerConfig]]

    def __init__(self, config: RerankerConfig | None = None, **overrides: Any) -> None:
        if config is not None and not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}")
        base = config if config is not None else self.Config()
        self.config = (
            self.Config.model_validate({**base.model_dump(), **overrides}) if overrides else base
        )

    def fit(self, dataset: Dataset) -> Self:
        """Learn what the stage needs about the catalog (item attributes, popularity, ...)."""
        self._fit(dataset)
        self.n_items_ = dataset.n_items
        self.latest_ = int(dataset.column("timestamp").max()) if dataset.n_interactions else 0
        return self

    def _fit(self, dataset: Dataset) -> None:  # noqa: B027 - most stages need nothing
        """Stage-specific fitting; the default learns nothing."""

    def reads_catalog(self) -> bool:
        """Whether the stage's answers depend on item attributes (most stages' do)."""
        return True

    def refit_catalog(self, dataset: Dataset) -> Reranker:
        """This stage for a changed item catalog (same interactions): a fitted copy, so a
        request holding this one finishes with it; a stage that reads no item attribute
        returns itself, one that learns live (explore's counts) keeps what it learned."""
        return copy.copy(self).fit(dataset) if self.reads_catalog() else self

    def rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        """At most k entries of `items`, in the stage's order."""
        if not hasattr(self, "n_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(dataset) first")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        for what, idx in (("item", items.items), ("history item", query.history)):
            if idx.size and (idx.min() < 0 or idx.max() >= self.n_items_):
                raise ValueError(f"{what} idx out of range 0..{self.n_items_ - 1}")
        return self._rerank(query, items, k)

    @abstractmethod
    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        """The stage itself; inputs are validated."""

    def moment(self, query: Query) -> int:
        """The request's moment: query.at, or the latest moment seen in fit."""
        return self.latest_ if query.at is None else int(query.at)


RelevanceScale = Literal["score", "rank"]


def relevance(items: ItemList, scale: RelevanceScale = "score") -> F64:
    """How much each entry is worth keeping, in [0, 1].

    "score": the scores; "rank": 1 / log2(position + 2), the weight NDCG gives the entry where
    the input put it, so moving a top item costs what it would cost in NDCG if it is relevant,
    whatever the score gaps. Either is min-max scaled within the list (all 1 when equal), so a
    trade-off knob means the same on every request and whatever scale the ranker has."""
    if scale == "rank":
        weights = 1.0 / np.log2(np.arange(len(items), dtype=np.float64) + 2.0)
        return _min_max(weights)
    return _min_max(items.scores.astype(np.float64))


def _min_max(scores: F64) -> F64:
    if scores.size == 0:
        return scores
    finite = np.isfinite(scores)
    if not finite.any():
        return np.ones_like(scores)
    low, high = scores[finite].min(), scores[finite].max()
    span = high - low
    scaled = (scores - low) / span if span > 0 else np.ones_like(scores)
    out: F64 = np.where(finite, scaled, 0.0)
    return out


def keep(items: ItemList, mask: npt.NDArray[np.bool_], k: int) -> ItemList:
    """The first k entries where mask is true, order kept (what every filter returns)."""
    return items.take(np.flatnonzero(mask)[:k])


def with_scores(items: ItemList, positions: npt.ArrayLike, scores: npt.ArrayLike) -> ItemList:
    """Entries at `positions` in that order, their scores replaced (features kept)."""
    picked = items.take(positions)
    return ItemList(picked.items, np.asarray(scores, dtype=np.float32), picked.features)
