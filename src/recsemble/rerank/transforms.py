"""Score transforms: add a bonus to each item's relevance and re-sort.

The ranker's scores have any scale, so a bonus is added to `relevance(items)` (the scores
min-max scaled to [0, 1] within the list): a weight of 0.3 then means "up to 30% of the list's
score range" on every request. The returned list carries the new scores, so a later stage
(diversity, calibration) trades off against what this stage decided.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
from pydantic import Field

from recsemble.data.dataset import Dataset
from recsemble.rerank.base import F64, Query, Reranker, RerankerConfig, relevance, with_scores
from recsemble.rerank.catalog import Rule, age_days, first_interactions, item_birth, rule_mask
from recsemble.types import ItemList


def _resorted(items: ItemList, scores: F64, k: int) -> ItemList:
    """The k best entries by `scores` (ties keep input order), carrying those scores."""
    order = np.argsort(-scores, kind="stable")[:k]
    return with_scores(items, order, scores[order])


# ---------------------------------------------------------------------------------- freshness
class FreshConfig(RerankerConfig):
    """half_life_days: age at which the boost halves. weight: the boost of a brand-new item."""

    half_life_days: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    weight: float = Field(default=0.3, ge=0, allow_inf_nan=False)


class FreshnessBoost(Reranker):
    """relevance + weight * 2^(-age / half_life), age in days at the request's moment.

    An item's birth is its created_at, else its first interaction; an item with neither gets no
    boost (it is treated as infinitely old rather than guessed new).
    """

    name: ClassVar[str] = "fresh"
    Config: ClassVar[type[RerankerConfig]] = FreshConfig
    config: FreshConfig

    def _fit(self, dataset: Dataset) -> None:
        self.first_: F64 = first_interactions(dataset)
        self.born_: F64 = item_birth(dataset, self.first_)

    def refit_catalog(self, dataset: Dataset) -> Reranker:
        fresh = copy.copy(self)  # the interactions are the same: only created_at is read again
        fresh.born_ = item_birth(dataset, self.first_)
        return fresh

    def boost(self, query: Query, items: ItemList) -> F64:
        """Each entry's freshness bonus at the request's moment."""
        ages = age_days(self.born_, items.items, self.moment(query))
        bonus: F64 = self.config.weight * np.exp2(-ages / self.config.half_life_days)
        return bonus

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        return _resorted(items, relevance(items) + self.boost(query, items), k)


# ---------------------------------------------------------------------------------- attributes
class Boost(Rule):
    """A rule plus the amount added to the relevance of items matching it (negative: demote)."""

    amount: float = Field(allow_inf_nan=False)


class BoostConfig(RerankerConfig):
    """boosts: e.g. `{attribute = "categories", op = "in", value = ["Sale"], amount = 0.2}`.

    An item matching several rules gets the sum of their amounts."""

    boosts: list[Boost] = Field(default_factory=list)


class AttributeBoost(Reranker):
    """relevance + the summed amounts of the boosts the item matches; masks built at fit."""

    name: ClassVar[str] = "boost"
    Config: ClassVar[type[RerankerConfig]] = BoostConfig
    config: BoostConfig

    def _fit(self, dataset: Dataset) -> None:
        bonus = np.zeros(dataset.n_items, dtype=np.float64)
        for boost in self.config.boosts:
            bonus += boost.amount * rule_mask(dataset, boost)
        self.bonus_: F64 = bonus

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        return _resorted(items, relevance(items) + self.bonus_[items.items], k)
