"""Calibrated lists (Steck 2018): the list's category mix follows the user's history.

Greedy: the next item maximises

    (1 - lambda) * sum of relevance in the list - lambda * KL(p || q~(list + item))

where p is the category mix of the user's history, q the mix of the list (each item's
categories share its weight equally) and q~ = (1 - alpha) q + alpha p. Lambda = 0 keeps the
input order; larger lambda follows the history more closely. Relevance is `base.relevance`
(scores or input positions, scaled to [0, 1] within the list), optionally discounted by the
slot as in DCG. A user without history categories gets the input order.
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
from recsemble.evaluation.distribution import CALIBRATION_ALPHA, item_category_shares
from recsemble.rerank.base import Query, RelevanceScale, Reranker, RerankerConfig, relevance
from recsemble.types import ItemList

F64 = npt.NDArray[np.float64]


class CalibratedConfig(RerankerConfig):
    """Defaults: the trade-off measured on ml-latest-small (BENCHMARKS.md). Steck's original
    is relevance="score", position_discount=False."""

    lambda_: float = Field(0.17, ge=0, le=1, alias="lambda")  # 0 = relevance only
    alpha: float = Field(CALIBRATION_ALPHA, gt=0, lt=1)
    relevance: RelevanceScale = "rank"  # see base.relevance
    # Relevance counted as in DCG (slot t weighs 1 / log2(t + 2)): lower slots, which count
    # less in NDCG, lean more towards the history's mix.
    position_discount: bool = True


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
        rel = relevance(items, self.config.relevance)
        # KL(p || q~) = sum p log p - sum p log q~ over the history's categories: the first
        # term is the same for every candidate, so each step maximises the cross term only.
        support = target > 0
        p = target[support]
        shares = self.shares_[items.items][:, support]
        share_sums = self.shares_[items.items].sum(axis=1)
        alpha = self.config.alpha
        chosen: list[int] = []
        available = np.ones(len(items), dtype=np.bool_)
        list_weights, list_sum, total_rel = np.zeros(p.size), 0.0, 0.0
        for slot in range(n_out):
            discount = 1 / np.log2(slot + 2) if self.config.position_discount else 1.0
            sums = list_sum + share_sums  # the list's category weight with each candidate
            mixes = (list_weights + shares) / np.maximum(sums, 1e-12)[:, None]
            cross = np.log((1 - alpha) * mixes + alpha * p) @ p
            objective = (1 - weight) * (total_rel + discount * rel) + weight * cross
            best = int(np.argmax(np.where(available, objective, -np.inf)))
            chosen.append(best)
            available[best] = False
            list_weights += shares[best]
            list_sum += share_sums[best]
            total_rel += discount * rel[best]
        return items.take(chosen)
