"""Top-k inner-product search over item vectors through FAISS: exact or approximate (HNSW).

Embedding members score a user by the dot product of its vector with every item vector. On a
large catalog that dense product is most of a request's cost; an HNSW graph visits only a few
thousand items per query. Below `hnsw_threshold` items the index is exact (IndexFlatIP).

Seen items are never returned: each query over-fetches k + (its batch's largest number of
excluded items), drops the excluded ones, and rows the graph still leaves short of k are
answered again by exact search. The graph is built on one thread: FAISS inserts points in
parallel in a nondeterministic order, and the graph (so the answers) would vary between builds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.generators.history import Histories
from recsemble.generators.topk import mask_seen, topk_rows
from recsemble.types import PAD_IDX, TopK

#: Users per block of index searches (bounds the query and exclusion matrices).
ANN_BLOCK_USERS = 4096
UserVectors = Callable[[Histories, npt.NDArray[np.int64]], npt.NDArray[np.float32]]
Exclusion = Callable[[sp.csr_array | None, int], sp.csr_array | None]

Hits = tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]


@contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    """FAISS's OpenMP thread count set to n inside the block, restored after."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class InnerProductIndex:
    """Top-k items by inner product with a query; HNSW from `hnsw_threshold` items on.

    hnsw_threshold None: always exact. ef_search: HNSW's candidate list per query (higher is
    slower and closer to exact); hnsw_m and ef_construction shape the graph at build.
    """

    def __init__(
        self,
        vectors: npt.ArrayLike,
        *,
        hnsw_threshold: int | None = 100_000,
        ef_search: int = 128,
        hnsw_m: int = 32,
        ef_construction: int = 100,
    ) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-d (n_items x d), got {self.vectors.shape}")
        n_items, width = self.vectors.shape
        self.approximate = hnsw_threshold is not None and n_items >= hnsw_threshold
        index: Any
        if self.approximate:
            index = faiss.IndexHNSWFlat(width, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        else:
            index = faiss.IndexFlatIP(width)
        if n_items:
            with _omp_threads(1):  # a deterministic graph (see the module docstring)
                index.add(self.vectors)
        self._index = index

    @property
    def n_items(self) -> int:
        return int(self.vectors.shape[0])

    def search(self, queries: npt.ArrayLike, k: int, exclude: sp.csr_array | None = None) -> Hits:
        """(items, scores), each (n_queries, k), best first; PAD_IDX / -inf pad short rows.

        exclude: a CSR (n_queries x n_items) whose row r lists items never to return to row r.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        query_arr = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n_queries = query_arr.shape[0]
        n_excluded = (
            np.diff(exclude.indptr) if exclude is not None else np.zeros(n_queries, np.int64)
        )
        items = np.full((n_queries, k), PAD_IDX, dtype=np.int32)
        scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
        if n_queries == 0 or self.n_items == 0:
            return items, scores
        fetch = min(self.n_items, k + int(n_excluded.max()))
        found_scores, found = self._index.search(query_arr, fetch)
        if exclude is not None:
            found = _drop_excluded(found, exclude)
        found_scores[found < 0] = -np.inf
        kept, kept_scores = _first_valid(found, found_scores, k)
        items[:], scores[:] = kept, kept_scores
        # A row is short when fewer than k items came back though more were allowed.
        wanted = np.minimum(k, self.n_items - n_excluded)
        short = np.flatnonzero((items != PAD_IDX).sum(axis=1) < wanted)
        if short.size:
            rows = exclude[short] if exclude is not None else None
            items[short], scores[short] = self.exact(query_arr[short], k, rows)
        return items, scores

    def exact(self, queries: npt.NDArray[np.float32], k: int, exclude: sp.csr_array | None) -> Hits:
        """The exact answer by a dense product (ties to the lower item idx)."""
        block = np.asarray(queries @ self.vectors.T, dtype=np.float32)
        if exclude is not None:
            mask_seen(block, exclude)
        return topk_rows(block, k)


def _drop_excluded(found: npt.NDArray[np.int64], exclude: sp.csr_array) -> npt.NDArray[np.int64]:
    """found with every excluded (row, item) hit replaced by -1."""
    width = np.int64(exclude.shape[1]) + 1  # + 1: a -1 hit's key stays inside its own row
    rows = np.arange(found.shape[0], dtype=np.int64)[:, None]
    banned_rows = np.repeat(np.arange(exclude.shape[0], dtype=np.int64), np.diff(exclude.indptr))
    banned = np.isin(rows * width + found, banned_rows * width + exclude.indices)
    return np.where(banned, -1, found)


def _first_valid(
    found: npt.NDArray[np.int64], found_scores: npt.NDArray[np.float32], k: int
) -> Hits:
    """Per row, the first k hits that are not -1, in their (best-first) order."""
    valid = found >= 0
    # A stable sort on "is invalid" moves valid hits to the front, keeping their order.
    order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    items = np.take_along_axis(found, order, axis=1)
    scores = np.take_along_axis(found_scores, order, axis=1)
    short = ~np.take_along_axis(valid, order, axis=1)
    items[short], scores[short] = PAD_IDX, -np.inf
    if items.shape[1] < k:  # fewer items in the catalog than k
        pad = k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=PAD_IDX)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items.astype(np.int32), scores.astype(np.float32)


def search_users(
    index: InnerProductIndex,
    hist: Histories,
    at: npt.NDArray[np.int64],
    k: int,
    exclude_seen: bool,
    user_vectors: UserVectors,
    also_exclude: Exclusion | None = None,
) -> TopK:
    """Top-k per row of `hist` from `index`, block by block, from `user_vectors(block, at)`;
    `also_exclude(seen, rows)` adds items never to return. Rows with no history get no answer,
    as in the members' dense path."""
    n = hist.lengths.size
    items = np.full((n, k), PAD_IDX, dtype=np.int32)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    for lo in range(0, n, ANN_BLOCK_USERS):
        hi = min(n, lo + ANN_BLOCK_USERS)
        block = hist.rows(range(lo, hi))
        excluded = block.seen_matrix() if exclude_seen else None
        if also_exclude is not None:
            excluded = also_exclude(excluded, hi - lo)
        items[lo:hi], scores[lo:hi] = index.search(user_vectors(block, at[lo:hi]), k, excluded)
    no_history = hist.lengths == 0
    items[no_history], scores[no_history] = PAD_IDX, -np.inf
    return TopK(items, scores)
