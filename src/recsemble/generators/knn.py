"""Neighbourhood members: item-kNN (plain and recency-weighted) and user-kNN.

Both compare sparse vectors with a shrunk cosine (cosine.py), sim = dot / (norm_a * norm_b +
shrink), after an optional BM25 / TF-IDF weighting of the train matrix. Item-kNN keeps a sparse
item x item matrix S (top `neighbors` per item) and scores profile @ S; user-kNN compares each
requested profile with the fitted users' rows at request time. Both score from the histories
they are handed, so events passed at request time (or users never seen) are folded in without
refitting. Like EASE, the neighbourhoods come from every fitted interaction: they are not
recomputed as of each `at`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field

from recsemble.data.dataset import Dataset, MatrixValues
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.config import GeneratorConfig, RecencyConfig
from recsemble.generators.cosine import (
    BLOCK_CELLS,
    MIN_DENOMINATOR,
    Weighting,
    as_csr,
    binary,
    blocks,
    csr32,
    dense_scores,
    dense_top_per_row,
    divide_shrunk,
    row_sq_norms,
    stack_rows,
    term_stats,
    thread_count,
    weigh,
)
from recsemble.generators.history import Histories, profile_matrix
from recsemble.generators.rater_lists import RaterLists
from recsemble.generators.sparse_rows import sparse_product, top_per_row
from recsemble.generators.topk import topk_rows
from recsemble.types import TopK

#: Requests of fewer rows are scored on the calling thread.
_THREADED_ROWS = 32
Arrays = dict[str, npt.NDArray[Any]]
F32 = npt.NDArray[np.float32]


class KNNConfig(RecencyConfig):
    """Options shared by item- and user-kNN (recency keys apply to the scored profile)."""

    neighbors: int = Field(200, ge=1)  # kept per item (item-kNN) / per request (user-kNN)
    shrink: float = Field(10.0, ge=0)  # damps similarities resting on little overlap
    weighting: Weighting = "tfidf"  # of the train matrix before comparing vectors
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)
    min_support: int = Field(1, ge=1)  # co-occurrences (shared users / items) a pair needs
    fit_binary: bool = True  # similarities from 1 per (user, item) pair, not summed weights


class ItemKNNConfig(KNNConfig):
    # sim(i -> j) = dot / (|i|^(2 alpha) |j|^(2 (1 - alpha)) + shrink); 0.5 = cosine. i is the
    # history item, j the candidate: alpha > 0.5 discounts popular history items.
    alpha: float = Field(0.5, ge=0, le=1)
    # "target": each candidate keeps its `neighbors` best history items (classic item-kNN);
    # "source": each history item passes score to its `neighbors` most similar items only.
    prune: Literal["target", "source"] = "target"


class ItemKNNRecentConfig(ItemKNNConfig):
    half_life_events: float | None = Field(2.0, gt=0)


class UserKNNConfig(KNNConfig):
    neighbors: int = Field(50, ge=1)
    weighting: Weighting = "none"
    # "user": one top-`neighbors` neighbourhood votes for every item; "item": each item is
    # scored by the `neighbors` most similar users who have it (LensKit's rule, rater_lists.py).
    neighbourhood: Literal["user", "item"] = "user"


# -- item-kNN -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _SimilarityRows:
    """One block of rows of the pruned item-item matrix (run on several threads: the sparse
    matmul and the partition release the GIL). Items come reordered: `item_ids` maps back."""

    weighted: sp.csr_array  # items x users
    users_items: sp.csr_array
    row_den: F32
    col_den: F32
    support: tuple[sp.csr_array, sp.csr_array] | None
    item_ids: npt.NDArray[np.intp]
    config: ItemKNNConfig

    def __call__(self, bounds: tuple[int, int]) -> sp.csr_array:
        lo, hi = bounds
        # Kept sparse: most item pairs never share a user, and only stored pairs can be kept.
        sims = sparse_product(self.weighted[lo:hi], self.users_items)  # a fresh product
        lengths = np.diff(sims.indptr)
        # Same float32 operations as a dense row_den x col_den + shrink division.
        den = np.repeat(self.row_den[lo:hi], lengths)
        den *= self.col_den.take(sims.indices)
        den += np.float32(self.config.shrink)
        if self.config.shrink < MIN_DENOMINATOR:  # else the floor below can never bind
            np.maximum(den, np.float32(MIN_DENOMINATOR), out=den)
        sims.data /= den
        own = np.repeat(np.arange(lo, hi, dtype=sims.indices.dtype), lengths)
        sims.data[sims.indices == own] = 0.0  # an item is not its own neighbour
        if self.support is not None:
            counts = as_csr(self.support[0][lo:hi] @ self.support[1])
            counts.data = (counts.data >= self.config.min_support).astype(np.float32)
            sims = csr32(sims.multiply(counts))
        return top_per_row(sims, self.config.neighbors, self.item_ids)


def item_similarities(train: sp.csr_array, config: ItemKNNConfig) -> sp.csr_array:
    """items x items S: S[i, j] is what history item i adds to candidate j's score.

    Computed in blocks of item rows, each a sparse matmul pruned to its top-k per row, so memory
    stays at a few blocks of co-occurring pairs however large the catalog.
    """
    docs = csr32(train.T)  # items x users: an item is a document
    # Most-seen items first: the product's running sums are then mostly touched near their
    # start (a fifth faster). Each pair's terms still add up in the same (user) order, and ties
    # are broken by the original idx, so S is the same.
    item_ids = np.argsort(-np.diff(docs.indptr), kind="stable")
    weighted = weigh(docs, term_stats(docs, config.weighting), config)[item_ids]
    sq = row_sq_norms(weighted)
    support = None
    if config.min_support > 1:
        support = (binary(docs[item_ids]), csr32(binary(docs[item_ids]).T))
    # Row a of a block is item a against every item c; which one is the history item depends
    # on the pruning direction (the kept top-k is per candidate or per history item).
    alpha = config.alpha
    row_exp, col_exp = (1.0 - alpha, alpha) if config.prune == "target" else (alpha, 1.0 - alpha)
    block = _SimilarityRows(
        as_csr(weighted),
        csr32(weighted.T),
        (sq**row_exp).astype(np.float32),
        (sq**col_exp).astype(np.float32),
        support,
        item_ids,
        config,
    )
    n_items = weighted.shape[0]
    with ThreadPoolExecutor(thread_count()) as pool:
        parts = list(pool.map(block, blocks(n_items, n_items, BLOCK_CELLS // 4)))
    # Back to the original idx; with target pruning the rows are candidates, S's columns.
    return _reorder(stack_rows(parts, n_items), item_ids, transpose=config.prune == "target")


def _reorder(mat: sp.csr_array, ids: npt.NDArray[np.intp], transpose: bool) -> sp.csr_array:
    """mat with row and column r renamed ids[r] (and transposed when asked), indices sorted."""
    back = np.empty_like(ids)
    back[ids] = np.arange(ids.size)
    rows = as_csr(mat[back])  # row ids[r] is mat's row r
    renamed = ids.astype(rows.indices.dtype)[rows.indices]
    out = sp.csr_array((rows.data, renamed, rows.indptr), shape=mat.shape)
    out = as_csr(out.T.tocsr()) if transpose else out
    out.sort_indices()  # already sorted after a transpose
    return out


class ItemKNN(CandidateGenerator):
    """Item-based collaborative filtering: score(u, j) = sum over history items i of p_ui S[i, j].

    p_u is the user's profile (event weights or 1s, times recency factors) built from the
    histories handed to the request.
    """

    name: ClassVar[str] = "itemknn"
    Config: ClassVar[type[GeneratorConfig]] = ItemKNNConfig
    config: ItemKNNConfig
    history_only_scores: ClassVar[bool] = True

    def _fit(self, dataset: Dataset) -> None:
        values: MatrixValues = "binary" if self.config.fit_binary else "weight"
        self.similarity_ = item_similarities(dataset.user_item_matrix(values), self.config)

    def _state(self) -> Arrays:
        sim = self.similarity_
        return {"indptr": sim.indptr, "indices": sim.indices, "data": sim.data}

    def _set_state(self, state: Arrays) -> None:
        shape = (self.n_items_, self.n_items_)
        self.similarity_ = sp.csr_array(
            (state["data"], state["indices"], state["indptr"]), shape=shape
        )

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> F32:
        profile = csr32(profile_matrix(histories, self.config, at))
        out = np.empty((profile.shape[0], self.n_items_), dtype=np.float32)

        def fill(bounds: tuple[int, int]) -> None:
            lo, hi = bounds
            dense_scores(sparse_product(profile[lo:hi], self.similarity_), out[lo:hi])

        # Row chunks on several threads: the product and the scatter release the GIL. A few
        # rows (one request) cost less than starting the threads.
        n_rows, workers = profile.shape[0], thread_count()
        if n_rows < _THREADED_ROWS or workers == 1:
            fill((0, n_rows))
            return out
        step = max(1, -(-n_rows // (2 * workers)))
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, [(lo, min(n_rows, lo + step)) for lo in range(0, n_rows, step)]))
        return out

    def similar_items(self, items: npt.ArrayLike, k: int) -> TopK:
        """The k items most similar to each given item (its stored neighbours), best first."""
        item_arr = self._similar_request(items, k)
        # Neighbour lists are the columns of S (target pruning) or its rows (source pruning).
        lists = self.similarity_.T if self.config.prune == "target" else self.similarity_
        rows = csr32(csr32(lists)[item_arr])
        top = topk_rows(dense_scores(rows), k)
        return TopK(*top)


class ItemKNNRecent(ItemKNN):
    """Item-kNN whose profile favours the user's latest events (half-life in events)."""

    name: ClassVar[str] = "itemknn-recent"
    Config: ClassVar[type[GeneratorConfig]] = ItemKNNRecentConfig
    config: ItemKNNRecentConfig


# -- user-kNN -------------------------------------------------------------------------------
class UserKNN(CandidateGenerator):
    """User-based collaborative filtering: the `neighbors` fitted users most similar to the
    requested profile vote for their items, each vote weighted by the similarity."""

    name: ClassVar[str] = "userknn"
    Config: ClassVar[type[GeneratorConfig]] = UserKNNConfig
    config: UserKNNConfig
    history_only_scores: ClassVar[bool] = True

    def _fit(self, dataset: Dataset) -> None:
        values: MatrixValues = "binary" if self.config.fit_binary else "weight"
        self._set_matrix(csr32(dataset.user_item_matrix(values)))

    def _set_matrix(self, matrix: sp.csr_array) -> None:
        self.matrix_ = matrix  # users x items: the rows neighbours vote with
        self.stats_ = term_stats(matrix, self.config.weighting)
        weighted = weigh(matrix, self.stats_, self.config)
        self.items_users_ = csr32(weighted.T)
        self.norms_ = np.sqrt(row_sq_norms(weighted))
        self.support_ = csr32(binary(matrix).T) if self.config.min_support > 1 else None
        self.raters_ = None
        if self.config.neighbourhood == "item":
            self.raters_ = RaterLists.build(matrix, self.config.neighbors)

    def _state(self) -> Arrays:
        mat = self.matrix_
        return {"indptr": mat.indptr, "indices": mat.indices, "data": mat.data}

    def _set_state(self, state: Arrays) -> None:
        shape = (int(state["indptr"].shape[0] - 1), self.n_items_)
        self._set_matrix(sp.csr_array((state["data"], state["indices"], state["indptr"]), shape))

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> F32:
        profile = csr32(profile_matrix(histories, self.config, at))
        n_fitted = self.matrix_.shape[0]
        if self.raters_ is not None:
            out = np.empty((users.size, self.n_items_), dtype=np.float32)
            for lo, hi in blocks(users.size, n_fitted):
                sims = self._similarities(profile[lo:hi], users[lo:hi])
                out[lo:hi] = self.raters_.scores(sims)
            return out
        k = self.config.neighbors
        parts = [
            dense_top_per_row(self._similarities(profile[lo:hi], users[lo:hi]), k)
            for lo, hi in blocks(users.size, n_fitted)
        ]
        # One block (one request): dense_top_per_row's CSR is already float32, no copy needed.
        neighbours = parts[0] if len(parts) == 1 else stack_rows(parts, n_fitted)
        return dense_scores(as_csr(neighbours @ self.matrix_))

    def _similarities(self, profile: sp.csr_array, users: npt.NDArray[np.int32]) -> F32:
        """Dense (rows x fitted users) shrunk cosine similarities of the request profiles."""
        weighted = weigh(profile, self.stats_, self.config)
        norms = np.sqrt(row_sq_norms(weighted))
        sims: F32 = (weighted @ self.items_users_).toarray()
        divide_shrunk(sims, norms, self.norms_, self.config.shrink)
        if self.support_ is not None:
            counts = (binary(profile) @ self.support_).toarray()
            sims[counts < self.config.min_support] = 0.0
        # A fitted user is not their own neighbour (their old row would only echo the history).
        rows = np.flatnonzero((users >= 0) & (users < sims.shape[1]))
        sims[rows, users[rows]] = 0.0
        return sims


KNN_MODELS: dict[str, type[CandidateGenerator]] = {
    cls.name: cls for cls in (ItemKNN, ItemKNNRecent, UserKNN)
}
