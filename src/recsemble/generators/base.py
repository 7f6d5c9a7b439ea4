"""CandidateGenerator: the small interface every ensemble member implements.

Batch-first: `recommend` and `score` take arrays of user idx. Config is one typed, frozen
pydantic model per generator that rejects unknown keys.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from recsemble.data.dataset import Dataset
from recsemble.errors import NotFittedError
from recsemble.types import PAD_IDX, TopK

#: Dense score blocks are kept under this many cells (float32: 64 MB).
_BLOCK_CELLS = 16_000_000


class GeneratorConfig(BaseModel):
    """Base of every generator's config: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CandidateGenerator(ABC):
    """fit(dataset) -> self; batch recommend / score over user idx.

    `at` gives, per requested user, the moment of the recommendation (epoch seconds); members
    that use time (trending, recency) only count what was known then. None means "now": the
    latest timestamp seen in fit. Users the model never saw (idx outside the fitted range) get
    the model's fallback answer, never an exception.
    """

    name: ClassVar[str]
    Config: ClassVar[type[GeneratorConfig]]

    def __init__(self, config: GeneratorConfig | None = None, **overrides: Any) -> None:
        if config is not None and not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}")
        base = config if config is not None else self.Config()
        self.config = (
            self.Config.model_validate({**base.model_dump(), **overrides}) if overrides else base
        )

    # -- to implement -------------------------------------------------------------------
    @abstractmethod
    def fit(self, dataset: Dataset) -> Self:
        """Learn from `dataset`; returns self."""

    @abstractmethod
    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Dense scores (len(users), n_items) for a block of users; -inf = cannot recommend."""

    # -- shared behaviour ---------------------------------------------------------------
    def _fitted_dataset(self) -> Dataset:
        dataset: Dataset | None = getattr(self, "dataset_", None)
        if dataset is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(dataset) first")
        return dataset

    def _resolve_at(
        self, users: npt.NDArray[np.int32], at: npt.ArrayLike | None
    ) -> npt.NDArray[np.int64]:
        if at is None:
            ts = self._fitted_dataset().column("timestamp")
            now = int(ts.max()) if ts.size else 0
            return np.full(users.shape[0], now, dtype=np.int64)
        arr = np.broadcast_to(np.asarray(at, dtype=np.int64), users.shape)
        return np.ascontiguousarray(arr)

    def score(
        self,
        users: npt.ArrayLike,
        items: npt.ArrayLike,
        *,
        at: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.float32]:
        """Scores (len(users), len(items)) of the given candidate items for each user."""
        user_arr = np.asarray(users, dtype=np.int32)
        item_arr = np.asarray(items, dtype=np.intp)
        at_arr = self._resolve_at(user_arr, at)
        out = np.empty((user_arr.size, item_arr.size), dtype=np.float32)
        for lo, hi in self._blocks(user_arr.size):
            out[lo:hi] = self._score_block(user_arr[lo:hi], at_arr[lo:hi])[:, item_arr]
        return out

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
    ) -> TopK:
        """Top-k items per user, best first; ties go to the lower item idx."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        dataset = self._fitted_dataset()
        user_arr = np.asarray(users, dtype=np.int32)
        at_arr = self._resolve_at(user_arr, at)
        seen = dataset.user_item_matrix("binary") if exclude_seen else None
        items = np.full((user_arr.size, k), PAD_IDX, dtype=np.int32)
        scores = np.full((user_arr.size, k), -np.inf, dtype=np.float32)
        for lo, hi in self._blocks(user_arr.size):
            block_users = user_arr[lo:hi]
            block = self._score_block(block_users, at_arr[lo:hi])
            if seen is not None:
                _mask_seen(block, block_users, seen)
            items[lo:hi], scores[lo:hi] = topk_rows(block, k)
        return TopK(items, scores)

    def _blocks(self, n: int) -> list[tuple[int, int]]:
        n_items = max(1, self._fitted_dataset().n_items)
        step = max(1, _BLOCK_CELLS // n_items)
        return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _mask_seen(
    block: npt.NDArray[np.float32], users: npt.NDArray[np.int32], seen: sp.csr_array
) -> None:
    known = (users >= 0) & (users < seen.shape[0])
    rows = np.flatnonzero(known)
    sub = seen[users[rows]]
    counts = np.diff(sub.indptr)
    block[np.repeat(rows, counts), sub.indices] = -np.inf


def topk_rows(
    scores: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Row-wise top-k by (score desc, column asc), deterministic; -inf entries become padding."""
    n_rows, n_cols = scores.shape
    kk = min(k, n_cols)
    items = np.full((n_rows, k), PAD_IDX, dtype=np.int32)
    vals = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if n_rows == 0 or kk == 0:
        return items, vals
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    kth = scores[np.arange(n_rows)[:, None], part].min(axis=1)
    # Strictly better than the k-th value: always in. Equal to it: lowest columns fill the rest.
    gt_rows, gt_cols = np.nonzero(scores > kth[:, None])
    need = kk - np.bincount(gt_rows, minlength=n_rows)
    eq_rows, eq_cols = np.nonzero(scores == kth[:, None])
    eq_rank = np.arange(eq_rows.size) - np.searchsorted(eq_rows, eq_rows)
    take = eq_rank < need[eq_rows]
    rows = np.concatenate([gt_rows, eq_rows[take]])
    cols = np.concatenate([gt_cols, eq_cols[take]])
    picked = scores[rows, cols]
    order = np.lexsort((cols, -picked, rows))
    rows, cols, picked = rows[order], cols[order], picked[order]
    slot = np.arange(rows.size) - np.searchsorted(rows, rows)
    items[rows, slot] = cols
    vals[rows, slot] = picked
    padding = ~np.isfinite(vals)
    items[padding] = PAD_IDX
    vals[padding] = -np.inf
    return items, vals
