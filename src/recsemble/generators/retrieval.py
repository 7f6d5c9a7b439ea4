"""Vector retrieval shared by the embedding members (iALS / BPR, two-tower).

These members score a user by the dot product of a user vector with every item vector. Below
`config.ann_threshold` items that dense product is exact and cheap; at or above it, `recommend`
searches an inner-product index instead (generators/ann.py: HNSW, approximate), built on first
use and never saved. FAISS is imported only when an index is needed.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.generators.base import CandidateGenerator
from recsemble.generators.history import Histories
from recsemble.types import TopK, check_k

if TYPE_CHECKING:
    from recsemble.generators.ann import InnerProductIndex

F32 = npt.NDArray[np.float32]


class _AnnSettings(Protocol):
    ann_threshold: int | None
    ann_ef_search: int


class VectorRetrieval(CandidateGenerator):
    """recommend() from an inner-product index on large catalogs; exact dense scores below."""

    _ann_indexes: dict[str, InnerProductIndex]

    @abstractmethod
    def retrieval_items(self) -> F32:
        """(n_items, dim) item vectors that a user vector is dotted with."""

    @abstractmethod
    def retrieval_users(self, histories: Histories, at: npt.NDArray[np.int64]) -> F32:
        """(rows, dim) user vectors of the history rows at their moments."""

    def _retrieval_excluded(self, seen: sp.csr_array | None, n_rows: int) -> sp.csr_array | None:
        """Items never to return besides the seen ones (none by default)."""
        return seen

    def _forget_indexes(self) -> None:
        """Drop the built indexes (the vectors changed)."""
        self._ann_indexes = {}

    def _uses_ann(self) -> bool:
        threshold = cast(_AnnSettings, self.config).ann_threshold
        return threshold is not None and self.retrieval_items().shape[0] >= threshold

    def _ann_index(self, kind: str, vectors: F32) -> InnerProductIndex:
        """The index over `vectors`, one per kind ("user" search, "item" similarity)."""
        from recsemble.generators.ann import InnerProductIndex

        if kind not in self._ann_indexes:
            settings = cast(_AnnSettings, self.config)
            self._ann_indexes[kind] = InnerProductIndex(
                vectors, hnsw_threshold=settings.ann_threshold, ef_search=settings.ann_ef_search
            )
        return self._ann_indexes[kind]

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
    ) -> TopK:
        """Top-k items per user, best first; from an HNSW index on catalogs of ann_threshold
        items or more (approximate: a few of the exact top-k may be missed)."""
        self._check_fitted()
        if not self._uses_ann():
            return super().recommend(
                users, k, exclude_seen=exclude_seen, at=at, histories=histories
            )
        k = check_k(k)
        from recsemble.generators.ann import search_users

        _, at_arr, hist = self._request(users, at, histories)
        index = self._ann_index("user", self.retrieval_items())
        return search_users(
            index, hist, at_arr, k, exclude_seen, self.retrieval_users, self._retrieval_excluded
        )
