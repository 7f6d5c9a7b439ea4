"""Diversity stages: MMR, greedy DPP MAP inference and per-category caps.

Both MMR and DPP trade the list's relevance (`base.relevance`: the ranker's scores, or the
NDCG weight of each input position, scaled to [0, 1] within the list) against how alike its
items are, with item similarity the cosine of `item_vectors` (categories, content or
collaborative embeddings). Each keeps the input scores: it changes the order, not what the
ranker believed.

- MMR (Carbonell & Goldstein 1998): the next item maximises
  lambda * relevance - (1 - lambda) * redundancy, the redundancy being the max (classic) or
  mean similarity to the items already chosen; with position_discount the relevance term of
  slot t is weighed by 1 / log2(t + 2), as NDCG weighs it. The defaults (rank relevance, mean,
  discount) gave the most ILD per NDCG lost on ml-latest-small (BENCHMARKS.md). With
  measure = "jaccard" the similarity is the Jaccard of the items' category sets, what ILD uses.
- DPP (Chen, Zhang & Zhou 2018, fast greedy MAP): kernel L = diag(q) S diag(q) with
  q = exp(alpha * relevance), alpha = theta / (2 (1 - theta)), so log det L_Y is
  theta * relevance + (1 - theta) * log det S_Y up to scale; each step picks the item with the
  largest gain in log det through an incremental Cholesky factor, O(n (d + k)) per step.
  S = (1 - jitter) V V^T off the diagonal and 1 on it keeps S positive definite, so near-
  duplicates are penalised rather than making the determinant vanish.
Lambda = 1 and theta = 1 give the input order exactly.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from recsemble.data.dataset import Dataset
from recsemble.rerank.base import Query, RelevanceScale, Reranker, RerankerConfig, relevance
from recsemble.rerank.catalog import category_matrix
from recsemble.rerank.similarity import Source, category_sets, item_vectors
from recsemble.types import ItemList

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class MMRConfig(RerankerConfig):
    """Defaults: the best NDCG / ILD trade-off measured on ml-latest-small (BENCHMARKS.md).

    Classic MMR is relevance="score", redundancy="max", position_discount=False."""

    lambda_: float = Field(0.9, ge=0, le=1, alias="lambda")  # 1 = relevance only
    similarity: Source = "category"
    dims: int = Field(64, ge=2, le=1024)  # content / embedding vector size
    relevance: RelevanceScale = "rank"  # see base.relevance
    # max: penalise the closest item already chosen (classic MMR); mean: the average
    # similarity to them, i.e. the greedy step of intra-list diversity itself.
    redundancy: Literal["max", "mean"] = "mean"
    # Weigh relevance by the slot's rank discount 1 / log2(slot + 2): lower slots, which count
    # less in NDCG, lean more towards diversity.
    position_discount: bool = True
    # "cosine" of the source's vectors, or "jaccard" of the items' category sets: with mean
    # redundancy, the greedy step of ILD over categories exactly (ILD is 1 - Jaccard).
    measure: Literal["cosine", "jaccard"] = "cosine"

    @model_validator(mode="after")
    def _jaccard_compares_categories(self) -> MMRConfig:
        if self.measure == "jaccard" and self.similarity != "category":
            raise ValueError(
                "measure = 'jaccard' compares category sets: it needs similarity = 'category', "
                f"got {self.similarity!r}"
            )
        return self


class DPPConfig(RerankerConfig):
    theta: float = Field(0.8, ge=0, le=1)  # 1 = relevance only
    similarity: Source = "category"
    relevance: RelevanceScale = "score"  # see base.relevance
    dims: int = Field(64, ge=2, le=1024)
    jitter: float = Field(0.1, gt=0, le=1)  # share of self-similarity no other item can explain


class CapConfig(RerankerConfig):
    max_per_category: int = Field(3, ge=1)
    fill: bool = False  # True: top up a short list with the capped items, in input order


class _VectorStage(Reranker):
    """A stage that compares items through unit vectors from `item_vectors`."""

    def _fit(self, dataset: Dataset) -> None:
        config = self.config
        assert isinstance(config, MMRConfig | DPPConfig)
        self.vectors_ = item_vectors(dataset, config.similarity, config.dims)

    def reads_catalog(self) -> bool:
        """Category vectors follow the catalog. Content vectors (TF-IDF and SVD: 10 s on 9,700
        items) stay as fitted, so an item PUT does not stall the server; embeddings come from
        the interactions alone."""
        assert isinstance(self.config, MMRConfig | DPPConfig)
        return self.config.similarity == "category"

    def _vectors(self, items: ItemList) -> F64:
        return self.vectors_[items.items].astype(np.float64)


class MMR(_VectorStage):
    """Maximal marginal relevance."""

    name: ClassVar[str] = "mmr"
    Config: ClassVar[type[RerankerConfig]] = MMRConfig

    def _fit(self, dataset: Dataset) -> None:
        assert isinstance(self.config, MMRConfig)
        self.set_sizes_: F64 | None = None
        if self.config.measure == "cosine":
            super()._fit(dataset)
            return
        # Category sets as 0/1 rows: a dot product counts shared categories.
        self.vectors_ = category_sets(dataset)
        self.set_sizes_ = self.vectors_.sum(axis=1, dtype=np.float64)

    def _similarity_to(self, vectors: F64, sizes: F64 | None, best: int) -> F64:
        """Each item's similarity to item `best` of the list (cosine or Jaccard)."""
        shared: F64 = vectors @ vectors[best]
        if sizes is None:
            return shared
        union = sizes + sizes[best] - shared
        out: F64 = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
        return out

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        assert isinstance(self.config, MMRConfig)
        n_out = min(k, len(items))
        weight = self.config.lambda_
        if weight == 1.0 or n_out == 0:
            return items.top(k)
        rel, vectors = relevance(items, self.config.relevance), self._vectors(items)
        sizes = None if self.set_sizes_ is None else self.set_sizes_[items.items]
        redundancy = np.zeros(len(items))
        available = np.ones(len(items), dtype=np.bool_)
        chosen = np.empty(n_out, dtype=np.int64)
        use_mean = self.config.redundancy == "mean"
        for slot in range(n_out):
            gain = weight / np.log2(slot + 2) if self.config.position_discount else weight
            objective = np.where(available, gain * rel - (1 - weight) * redundancy, -np.inf)
            best = int(np.argmax(objective))  # first maximum: the better-placed item
            chosen[slot] = best
            available[best] = False
            similarity = self._similarity_to(vectors, sizes, best)
            if use_mean:  # running mean over the slot + 1 items chosen so far
                redundancy += (similarity - redundancy) / (slot + 1)
            else:
                np.maximum(redundancy, similarity, out=redundancy)
        return items.take(chosen)


class DPP(_VectorStage):
    """Greedy MAP inference of a quality x similarity determinantal point process."""

    name: ClassVar[str] = "dpp"
    Config: ClassVar[type[RerankerConfig]] = DPPConfig

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        assert isinstance(self.config, DPPConfig)
        n_out = min(k, len(items))
        if self.config.theta == 1.0 or n_out == 0:
            return items.top(k)
        rel = relevance(items, self.config.relevance)
        chosen = greedy_dpp(rel, self._vectors(items), n_out, self.config.theta, self.config.jitter)
        return items.take(chosen)


def greedy_dpp(rel: F64, vectors: F64, n_out: int, theta: float, jitter: float) -> I64:
    """Positions of the n_out items chosen by Chen et al.'s incremental-Cholesky greedy MAP."""
    n = rel.size
    if theta >= 1.0:
        return np.arange(min(n_out, n), dtype=np.int64)
    alpha = theta / (2 * (1 - theta))
    quality = np.exp(alpha * (rel - 1.0))  # scaled so the best item has 1: no overflow
    gains = quality**2  # d_i^2, the gain in det of adding item i; S has a unit diagonal
    factors = np.zeros((n_out, n))
    available = np.ones(n, dtype=np.bool_)
    chosen: list[int] = []
    for slot in range(n_out):
        masked = np.where(available, gains, -np.inf)
        best = int(np.argmax(masked))
        if not masked[best] > 1e-300:  # nothing adds volume any more: rank by relevance
            break
        chosen.append(best)
        available[best] = False
        kernel_row = quality[best] * quality * ((1 - jitter) * (vectors @ vectors[best]))
        kernel_row[best] = quality[best] ** 2
        e = (kernel_row - factors[:slot, best] @ factors[:slot]) / np.sqrt(gains[best])
        factors[slot] = e
        gains = np.maximum(gains - e**2, 0.0)
    rest = np.flatnonzero(available)[: n_out - len(chosen)]
    return np.concatenate([np.array(chosen, dtype=np.int64), rest.astype(np.int64)])


class CategoryCap(Reranker):
    """At most max_per_category items of any one category, in input order."""

    name: ClassVar[str] = "cap"
    Config: ClassVar[type[RerankerConfig]] = CapConfig

    def _fit(self, dataset: Dataset) -> None:
        self.categories_ = category_matrix(dataset) > 0

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        assert isinstance(self.config, CapConfig)
        cats = self.categories_[items.items]
        counts = np.zeros(cats.shape[1], dtype=np.int64)
        picked: list[int] = []
        skipped: list[int] = []
        for pos in range(len(items)):
            if len(picked) == k:
                break
            if (counts[cats[pos]] >= self.config.max_per_category).any():
                skipped.append(pos)
                continue
            picked.append(pos)
            counts[cats[pos]] += 1
        if self.config.fill:
            picked = sorted(picked + skipped[: k - len(picked)])
        return items.take(picked)
