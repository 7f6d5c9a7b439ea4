"""Exposure fairness: a floor on the share of each list given to a protected group of items.

Recommenders feed on their own popularity: the items shown get the clicks that get them shown
again. `ExposureFloor` reserves a minimum share of every list for a protected group (the long
tail by default, or items matching attribute rules, e.g. an under-exposed provider) at the
smallest cost in relevance. `recsemble evaluate` reports the exposure Gini of the lists
(gini@k, evaluation/distribution.py), so its effect shows before and after the stage.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from recsemble.data.dataset import Dataset
from recsemble.evaluation.metrics import longtail_items
from recsemble.rerank.base import Query, Reranker, RerankerConfig
from recsemble.rerank.catalog import Rule, all_rules_mask
from recsemble.types import ItemList

Bool = npt.NDArray[np.bool_]


class FairConfig(RerankerConfig):
    """protected: which items the floor protects.

    "longtail": every item outside the `head_share` most popular share of the catalog (the
    long-tail definition the metrics use). "rule": items matching every rule in `rules`.
    min_share: the least share of each list that goes to protected items.
    """

    protected: Literal["longtail", "rule"] = "longtail"
    head_share: float = Field(0.2, ge=0.0, le=1.0)
    rules: list[Rule] = Field(default_factory=list)
    min_share: float = Field(0.3, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _rules_when_protected_by_rule(self) -> FairConfig:
        if self.protected == "rule" and not self.rules:
            raise ValueError(
                'protected = "rule" needs at least one rule in `rules`, e.g. '
                '{attribute = "provider", op = "in", value = ["small"]}'
            )
        if self.protected == "longtail" and self.rules:
            raise ValueError(
                'rules apply with protected = "rule"; with "longtail" they would be ignored'
            )
        return self


def protected_floor(min_share: float, n: int) -> int:
    """ceil(min_share * n) for the share as written: 0.28 * 25 is 7.000000000000001 in floats
    and Fraction(0.1) * 10 is a little over 1, so both would ask one item too many."""
    return math.ceil(Fraction(repr(min_share)) * n)


class ExposureFloor(Reranker):
    """At least ceil(min_share * n) of the n returned items are protected.

    n = min(k, len(input)); when the input holds fewer protected items than the floor, all of
    them are returned. Starting from the input's top n, the lowest-placed unprotected picks
    make room for the best-placed protected items not picked yet: per swap this keeps the most
    relevant items, so the floor is met at the least loss of relevance. The picks come back in
    input order with their input scores.
    """

    name: ClassVar[str] = "fair"
    Config: ClassVar[type[RerankerConfig]] = FairConfig
    config: FairConfig

    def reads_catalog(self) -> bool:
        return self.config.protected == "rule"  # the long tail comes from the interactions

    def _fit(self, dataset: Dataset) -> None:
        if self.config.protected == "longtail":
            mask = longtail_items(dataset.item_popularity, self.config.head_share)
        else:
            mask = all_rules_mask(dataset, self.config.rules)
        self.protected_: Bool = mask

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        n = min(k, len(items))
        protected = self.protected_[items.items]
        picked = np.zeros(len(items), dtype=np.bool_)
        picked[:n] = True
        wanted = min(protected_floor(self.config.min_share, n), int(protected.sum()))
        missing = wanted - int(protected[:n].sum())
        if missing > 0:
            # Enough of both exist: n - (protected in top n) >= wanted - (protected in top n).
            unprotected_picks = np.flatnonzero(~protected[:n])
            picked[unprotected_picks[::-1][:missing]] = False
            picked[n + np.flatnonzero(protected[n:])[:missing]] = True
        return items.take(np.flatnonzero(picked))
