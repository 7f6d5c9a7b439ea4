"""Filters: rerankers that only drop items, never reorder them.

Each filter learns a per-item (or per-user) mask in `_fit` and answers a request with
`keep(items, allowed, k)`: the first k allowed entries, in their input order and with their
input scores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp
from pydantic import Field

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.rerank.base import I32, Query, Reranker, RerankerConfig, keep
from recsemble.rerank.catalog import Rule, all_rules_mask, check_event_types, rule_mask
from recsemble.types import ItemList

Bool = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]
#: A quality model: item idx (int32) -> one score per item (higher is better).
QualityScorer = Callable[[I32], npt.ArrayLike]


# ---------------------------------------------------------------------------------- seen
class SeenConfig(RerankerConfig):
    """event_types: the event types that make an item 'seen' (None: every type).

    A re-watchable song wants ["purchase"] or nothing; a fridge once bought should not come back.
    """

    event_types: list[str] | None = Field(default=None, min_length=1)


class SeenFilter(Reranker):
    """Drops items the user already interacted with through one of the chosen event types.

    Two sources count: the user's events in the fitted dataset, and the request's own
    history (query.history / history_events). A history entry with an unknown ("") event type
    counts only when every event type does (event_types is None).
    """

    name: ClassVar[str] = "seen"
    Config: ClassVar[type[RerankerConfig]] = SeenConfig
    config: SeenConfig

    def _fit(self, dataset: Dataset) -> None:
        events = dataset.column("event")
        chosen = self.config.event_types
        if chosen is None:
            counted = np.ones(events.size, dtype=np.bool_)
        else:
            check_event_types(dataset, chosen, "seen.event_types")
            counted = np.isin(events, chosen)
        rows = dataset.column("user_idx")[counted]
        cols = dataset.column("item_idx")[counted]
        ones = np.ones(rows.size, dtype=np.bool_)
        shape = (dataset.n_users, dataset.n_items)
        seen = sp.coo_array((ones, (rows, cols)), shape=shape).tocsr()
        seen.sum_duplicates()
        self.seen_: sp.csr_array = seen

    def reads_catalog(self) -> bool:
        return False  # what a user has seen does not depend on item attributes

    def _history_seen(self, query: Query) -> I32:
        chosen = self.config.event_types
        if chosen is None:
            return query.history
        counted = np.fromiter((e in chosen for e in query.history_events), dtype=np.bool_)
        picked: I32 = query.history[counted]
        return picked

    def seen_items(self, query: Query) -> I32:
        """Item idx the user has seen, from the dataset and the request (may repeat)."""
        from_request = self._history_seen(query)
        if not 0 <= query.user < self.seen_.shape[0]:
            return from_request
        lo, hi = self.seen_.indptr[query.user], self.seen_.indptr[query.user + 1]
        from_data = self.seen_.indices[lo:hi].astype(np.int32)
        return np.concatenate([from_data, from_request])

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        return keep(items, ~np.isin(items.items, self.seen_items(query)), k)


# ---------------------------------------------------------------------------------- availability
class AvailabilityConfig(RerankerConfig):
    """expires_attribute: item column with an expiry moment (epoch seconds or a datetime).

    A catalog without that column has nothing that expires; a null expiry never expires."""

    expires_attribute: str = Field(default="expires_at", min_length=1)


def _epoch_seconds(column: pl.Series) -> F64:
    """A numeric or datetime column as float epoch seconds (NaN where null)."""
    if column.dtype == pl.Date or isinstance(column.dtype, pl.Datetime):
        column = column.cast(pl.Datetime("us")).dt.epoch("s")
    try:
        values: F64 = column.cast(pl.Float64).to_numpy().astype(np.float64)
    except pl.exceptions.PolarsError as exc:
        raise ConfigError(
            f"expiry attribute {column.name!r} must hold epoch seconds, not {column.dtype}: {exc}"
        ) from None
    return values


class AvailabilityFilter(Reranker):
    """Drops unavailable items and items expired at the request's moment (expiry <= moment)."""

    name: ClassVar[str] = "available"
    Config: ClassVar[type[RerankerConfig]] = AvailabilityConfig
    config: AvailabilityConfig

    def _fit(self, dataset: Dataset) -> None:
        attrs = dataset.item_attributes
        available = attrs["available"].fill_null(True).to_numpy().astype(np.bool_)
        self.available_: Bool = available
        column = self.config.expires_attribute
        if column in attrs.columns:
            self.expires_: F64 = _epoch_seconds(attrs[column])
        else:
            self.expires_ = np.full(dataset.n_items, np.nan)

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        expires = self.expires_[items.items]
        # NaN (no expiry) compares False, so such items never expire.
        expired = expires <= self.moment(query)
        return keep(items, self.available_[items.items] & ~expired, k)


# ---------------------------------------------------------------------------------- rules
class RulesConfig(RerankerConfig):
    """exclude: drop an item matching any of these. include: keep only items matching all.

    Example: exclude `{attribute = "categories", op = "in", value = ["Horror"]}`, include
    `{attribute = "created_at", op = ">", value = 1.6e9}`.
    """

    exclude: list[Rule] = Field(default_factory=list)
    include: list[Rule] = Field(default_factory=list)


class RuleFilter(Reranker):
    """Business rules on item attributes, evaluated once over the catalog at fit."""

    name: ClassVar[str] = "rules"
    Config: ClassVar[type[RerankerConfig]] = RulesConfig
    config: RulesConfig

    def _fit(self, dataset: Dataset) -> None:
        excluded = np.zeros(dataset.n_items, dtype=np.bool_)
        for rule in self.config.exclude:
            excluded |= rule_mask(dataset, rule)
        self.allowed_: Bool = all_rules_mask(dataset, self.config.include) & ~excluded

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        return keep(items, self.allowed_[items.items], k)


# ---------------------------------------------------------------------------------- quality
class QualityConfig(RerankerConfig):
    """attribute: item column holding a quality score, used when no scorer is given (None: the
    scorer is required). threshold: items scoring under it are dropped."""

    attribute: str | None = "quality"
    threshold: float = Field(default=0.5, allow_inf_nan=False)


class QualityFilter(Reranker):
    """The hook for a quality classifier (a click-bait detector, a spam model, ...).

    Scores come from `scorer` (called once at fit with every item idx) or else from the item
    column `config.attribute`. Items scoring under the threshold are dropped; items with a
    missing score (a null in the column) are kept, since no evidence is not bad evidence.
    """

    name: ClassVar[str] = "quality"
    Config: ClassVar[type[RerankerConfig]] = QualityConfig
    config: QualityConfig

    def __init__(
        self,
        config: RerankerConfig | None = None,
        *,
        scorer: QualityScorer | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, **overrides)
        self.scorer = scorer

    def reads_catalog(self) -> bool:
        return self.scorer is None  # a scorer judges items by idx, not by their attributes

    def _fit(self, dataset: Dataset) -> None:
        scores = self._scores(dataset)
        # NaN (missing) compares False, so missing scores are kept.
        self.allowed_: Bool = ~(scores < self.config.threshold)
        self.quality_: F64 = scores

    def _scores(self, dataset: Dataset) -> F64:
        if self.scorer is not None:
            return _called_scores(self.scorer, dataset.n_items)
        attrs = dataset.item_attributes
        column = self.config.attribute
        if column is None or column not in attrs.columns:
            raise ConfigError(
                f"quality filter needs a scorer or an item attribute column; "
                f"attribute {column!r} is not one of {', '.join(attrs.columns)}"
            )
        try:
            values: F64 = attrs[column].cast(pl.Float64).to_numpy().astype(np.float64)
        except pl.exceptions.PolarsError as exc:
            raise ConfigError(
                f"quality attribute {column!r} is not numeric ({attrs[column].dtype}): {exc}"
            ) from None
        return values

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        return keep(items, self.allowed_[items.items], k)


def _called_scores(scorer: QualityScorer, n_items: int) -> F64:
    """The scorer's answer for the whole catalog, checked: one finite-or-inf number per item."""
    raw = np.asarray(scorer(np.arange(n_items, dtype=np.int32)))
    if raw.shape != (n_items,):
        raise ValueError(
            f"quality scorer must return one score per item, shape ({n_items},), got {raw.shape}"
        )
    try:
        scores = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"quality scorer returned non-numeric scores: {exc}") from None
    if np.isnan(scores).any():
        first = int(np.flatnonzero(np.isnan(scores))[0])
        raise ValueError(f"quality scorer returned NaN (first at item idx {first})")
    return scores
