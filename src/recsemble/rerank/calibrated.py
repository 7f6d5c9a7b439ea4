"""Calibrated lists (Steck 2018): the list's category mix follows the user's history.

Greedy: the next item maximises

    (1 - lambda) * sum of relevance in the list - lambda * KL(p || q~(list + item))

where p is the category mix of the user's history, q the mix of the list (each item's
categories share its weight equally) and q~ = (1 - alpha) q + alpha p. Lambda = 0 keeps the
input order; larger lambda follows the history more closely. Relevance is the ranker's score
scaled to [0, 1] within the list. A user without history categories gets the input order.
The KL is the one `recsemble evaluate` reports as calibration_kl, so the knob and the metric
mean the same thing.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.evaluation.distribution import (
    CALIBRATION_ALPHA,
    item_category_shares,
    kl_to_history,
)
from recsemble.rerank.base import Query, Reranker, RerankerConfig, relevance
from recsemble.types import ItemList

F64 = npt.NDArray[np.float64]


class CalibratedConfig(RerankerConfig):
    lambda_: float = Field(0.5, ge=0, le=1, alias="lambda")  # 0 = relevance only
    alpha: float = Field(CALIBRATION_ALPHA, gt=0, lt=1)


class Calibrated(Reranker):
    """Steck's calibrated re-ranking over item categories."""

    name: ClassVar[str] = "calibrated"
    Config: ClassVar[type[RerankerConfig]] = CalibratedConfig

    def _fit(self, dataset: Dataset) -> None:
        cats, _ = dataset.item_categories()
        if cats.shape[1] == 0:
            raise ConfigError("calibrated lists need item categories; this catalog has none")
        self.shares_ = np.asarray(item_category_shares(cats).toarray())

    def history_mix(self, query: Query) -> F64 | None:
        """The category mix of the user's history (each distinct item once), None if empty."""
        items = np.unique(query.history)
        weights = self.shares_[items].sum(axis=0)
        total = weights.sum()
        return None if total <= 0 else weights / total

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        assert isinstance(self.config, CalibratedConfig)
        weight, n_out = self.config.lambda_, min(k, len(items))
        target = self.history_mix(query)
        if weight == 0.0 or target is None or n_out == 0:
            return items.top(k)
        rel, shares = relevance(items), self.shares_[items.items]
        chosen: list[int] = []
        available = np.ones(len(items), dtype=np.bool_)
        list_weights = np.zeros(shares.shape[1])
        total_rel = 0.0
        for _ in range(n_out):
            mixes = list_weights + shares  # the list's category weights with each candidate
            sums = mixes.sum(axis=1, keepdims=True)
            mixes = np.divide(mixes, sums, out=np.zeros_like(mixes), where=sums > 0)
            kl = kl_to_history(np.broadcast_to(target, mixes.shape), mixes, self.config.alpha)
            objective = (1 - weight) * (total_rel + rel) - weight * kl
            best = int(np.argmax(np.where(available, objective, -np.inf)))
            chosen.append(best)
            available[best] = False
            list_weights += shares[best]
            total_rel += rel[best]
        return items.take(chosen)
