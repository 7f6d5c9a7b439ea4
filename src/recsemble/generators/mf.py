"""Matrix factorization members through `implicit`: iALS (Hu, Koren & Volinsky 2008) and BPR.

Training learns item factors Y. At request time every user's factors are solved from the
history passed in (fold-in), by the iALS normal equations against the fixed Y:
x_u = (Y^T C_u Y + reg I)^-1 Y^T C_u p_u with C_u = 1 + alpha * w_u on the user's items (implicit's
exact `recalculate_user` solver). So new events and users never seen are answered without a
refit, and recency weighting of the profile (RecencyConfig) shapes the confidences. BPR has no
fold-in of its own: it uses the same least-squares projection onto its learned item factors
(item-bias column included), which also scored higher than its trained user factors.

Defaults were measured on the temporal-user protocol (NDCG@10, ml-100k / ml-latest-small):
iALS 0.223 / 0.129 and BPR 0.225 / 0.136 with half_life_events=3; without recency weighting
0.175 / 0.110 and 0.176 / 0.117 (iALS then at 15 iterations). iALS runs 8 iterations: from 6
to 15 its validation NDCG@10 moved within +-0.002 on both data sets (benchmarks/sweep_member.py),
at half the fit time of 15."""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.recommender_base import ModelFitError
from pydantic import Field
from threadpoolctl import ThreadpoolController

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.generators.config import GeneratorConfig, RecencyConfig
from recsemble.generators.history import Histories, profile_matrix
from recsemble.generators.retrieval import VectorRetrieval
from recsemble.generators.topk import top_similar
from recsemble.types import TopK

Arrays = dict[str, npt.NDArray[Any]]
#: Fitted users are folded in once at fit while their factors take at most this many cells.
_CACHED_CELLS = 50_000_000


class _RetrievalConfig(RecencyConfig):
    # Catalog size from which recommend / similar_items search an HNSW index instead of the
    # dense product (None: never); score and score_catalog stay exact for the ensemble.
    ann_threshold: int | None = Field(100_000, ge=1)
    ann_ef_search: int = Field(128, ge=1)  # HNSW candidates per query: recall against speed


class IALSConfig(_RetrievalConfig):
    # Defaults measured under the temporal-user protocol (see the module docstring).
    half_life_events: float | None = Field(3.0, gt=0)
    binary: bool = True  # w = 1 per (user, item); False: summed event weights
    factors: int = Field(64, ge=1, le=1024)
    regularization: float = Field(50.0, gt=0)
    alpha: float = Field(15.0, ge=0)  # confidence C = 1 + alpha * w on observed items
    iterations: int = Field(8, ge=1, le=1000)  # see the module docstring
    random_state: int = Field(42, ge=0)
    num_threads: int = Field(0, ge=0)  # implicit's threads for fit; 0 = every core


class BPRConfig(_RetrievalConfig):
    half_life_events: float | None = Field(3.0, gt=0)
    binary: bool = True  # BPR samples observed items as positives; w only shapes fold-in
    factors: int = Field(64, ge=1, le=1024)
    learning_rate: float = Field(0.01, gt=0)
    regularization: float = Field(0.01, ge=0)
    iterations: int = Field(50, ge=1, le=10_000)  # BPR overfits: 100+ epochs score lower
    random_state: int = Field(42, ge=0)
    # The fold-in projection's own ridge and confidence (BPR's training has neither).
    fold_in_regularization: float = Field(30.0, gt=0)
    alpha: float = Field(30.0, ge=0)


@cache
def _thread_pools() -> ThreadpoolController:
    """The loaded thread pools, found once: threadpool_limits() rescans every loaded library on
    each call (milliseconds, at every fit and every scored block)."""
    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """A context with BLAS on one thread: implicit parallelises over users itself, and warns
    about (and is slowed by) BLAS threads."""
    return _thread_pools().limit(limits=1, user_api="blas")


def _fold_in_solver(item_factors: npt.NDArray[np.float32], regularization: float) -> Any:
    """An implicit ALS model holding fixed item factors, for its exact per-user solves."""
    with _one_blas_thread():
        solver = AlternatingLeastSquares(
            factors=item_factors.shape[1], regularization=regularization, alpha=1.0
        )
    solver.item_factors = item_factors
    return solver


def fold_in(profile: sp.csr_array, solver: Any, alpha: float) -> npt.NDArray[np.float32]:
    """User factors (rows x f) solving the iALS normal equations against fixed item factors.

    profile holds w_ui > 0 for the user's items; C_ui = 1 + alpha * w_ui there, 1 elsewhere,
    and p_ui = 1 on the user's items. Rows with no items come out as zeros.
    """
    n_rows, width = profile.shape[0], solver.item_factors.shape[1]
    conf = sp.csr_matrix(profile, dtype=np.float32, copy=True)
    conf.eliminate_zeros()
    if conf.nnz == 0:
        return np.zeros((n_rows, width), dtype=np.float32)
    conf.data = 1.0 + alpha * conf.data
    # implicit's recalculate_user: a Cholesky solve per user in native, multi-threaded code
    # (about 10x faster than batched numpy for 64-128 factors), exact against the given Y.
    with _one_blas_thread():
        factors = solver.recalculate_user(np.arange(n_rows), conf)
    return np.asarray(factors, dtype=np.float32).reshape(n_rows, width)


class _MatrixFactorization(VectorRetrieval):
    """Shared by the MF members: fold-in scoring, cosine item similarity, save/load."""

    _unstable_hint: ClassVar[str] = "raise regularization"

    config: IALSConfig | BPRConfig
    history_only_scores: ClassVar[bool] = True

    def _fit(self, dataset: Dataset) -> None:
        x = dataset.user_item_matrix("binary" if self.config.binary else "weight")
        if x.nnz == 0 or x.shape[1] == 0:  # nothing to learn: zero factors, empty answers
            self._set_item_factors(np.zeros((x.shape[1], self._width()), dtype=np.float32))
            return
        with _one_blas_thread():
            model = self._implicit_model()
            try:
                model.fit(sp.csr_matrix(self._training_matrix(x)), show_progress=False)
            except ModelFitError as exc:  # implicit's "NaN encountered in factors"
                raise ConfigError(f"{self.name}: {exc}: {self._unstable_hint}") from None
        self._set_item_factors(model.item_factors)

    def _set_item_factors(self, item_factors: npt.NDArray[Any]) -> None:
        self.item_factors_ = np.ascontiguousarray(item_factors, dtype=np.float32)
        self._solver = _fold_in_solver(self.item_factors_, self._fold_in_regularization())
        self._forget_indexes()

    def _implicit_model(self) -> Any:
        raise NotImplementedError

    def _training_matrix(self, x: sp.csr_array) -> sp.csr_array:
        return x.astype(np.float32)

    def _width(self) -> int:
        return self.config.factors

    def _fold_in_regularization(self) -> float:
        raise NotImplementedError

    def _state(self) -> Arrays:
        state = {"item_factors": self.item_factors_}
        cached = getattr(self, "fitted_user_factors_", None)
        if cached is not None:
            state["fitted_user_factors"] = cached
        return state

    def _set_state(self, state: Arrays) -> None:
        self._set_item_factors(state["item_factors"])
        cached = state.get("fitted_user_factors")
        self.fitted_user_factors_: npt.NDArray[np.float32] | None = (
            None if cached is None else cached.astype(np.float32)
        )

    def _after_fit(self) -> None:
        """Fold in every fitted user once, so that a request with the fitted history (no
        fresh events) reads its factors instead of solving: the solve is O(history x f^2),
        the dominant cost of a long history's request. Only when the profile does not depend
        on the moment of the request and the table fits the budget."""
        self.fitted_user_factors_ = None
        n_users = self.histories_.n_rows
        if self.config.half_life_days is not None or n_users * self._width() > _CACHED_CELLS:
            return
        profile = profile_matrix(self.histories_, self.config, None)
        self.fitted_user_factors_ = self._fold_in(profile)

    def user_factors(
        self, histories: Histories, at: npt.NDArray[np.int64] | None = None
    ) -> npt.NDArray[np.float32]:
        """Each history's user factors, solved against the fitted item factors."""
        self._check_fitted()
        cached = getattr(self, "fitted_user_factors_", None)
        if cached is not None and histories.origin is self.histories_:
            assert histories.origin_rows is not None
            rows = histories.origin_rows
            out = np.zeros((rows.size, cached.shape[1]), dtype=np.float32)
            out[rows >= 0] = cached[rows[rows >= 0]]  # unknown users: empty, zeros
            return out
        profile = profile_matrix(histories, self.config, at)
        return self._fold_in(profile)

    def _fold_in(self, profile: sp.csr_array) -> npt.NDArray[np.float32]:
        """fold_in, with implicit's failed solve ("increase the regularization parameter", even
        where none was meant) turned into an error naming this model's settings."""
        try:
            return fold_in(profile, self._solver, self.config.alpha)
        except ValueError as exc:
            largest = float(np.abs(self.item_factors_).max(initial=0.0))
            raise ConfigError(
                f"{self.name}: solving user factors failed ({exc}); the item factors reach "
                f"{largest:.3g} in magnitude: {self._unstable_hint}"
            ) from None

    def retrieval_items(self) -> npt.NDArray[np.float32]:
        return self.item_factors_

    def retrieval_users(
        self, histories: Histories, at: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        return self.user_factors(histories, at)

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        scores = self.user_factors(histories, at) @ self.item_factors_.T
        scores[histories.lengths == 0] = -np.inf  # no history, nothing to fold in
        return np.asarray(scores, dtype=np.float32)

    def _similarity_factors(self) -> npt.NDArray[np.float32]:
        return self.item_factors_

    def similar_items(self, items: npt.ArrayLike, k: int) -> TopK:
        """The k items with the highest cosine similarity of item factors."""
        item_arr = self._similar_request(items, k)
        factors = self._similarity_factors()
        norms = np.linalg.norm(factors, axis=1, keepdims=True)
        unit = np.asarray(factors / np.where(norms > 0, norms, 1.0), dtype=np.float32)
        if not self._uses_ann():
            return top_similar(item_arr, np.asarray(unit[item_arr] @ unit.T, dtype=np.float32), k)
        itself = sp.csr_array(
            (np.ones(item_arr.size), item_arr, np.arange(item_arr.size + 1)),
            shape=(item_arr.size, unit.shape[0]),
        )
        return TopK(*self._ann_index("item", unit).search(unit[item_arr], k, itself))


class IALS(_MatrixFactorization):
    """Implicit-feedback ALS with confidence C = 1 + alpha * w."""

    name: ClassVar[str] = "ials"
    Config: ClassVar[type[GeneratorConfig]] = IALSConfig
    config: IALSConfig

    def _implicit_model(self) -> Any:
        cfg = self.config
        return AlternatingLeastSquares(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=1.0,  # implicit reads the matrix values as C itself: we pass 1 + alpha * w
            iterations=cfg.iterations,
            random_state=cfg.random_state,
            num_threads=cfg.num_threads,
        )

    def _training_matrix(self, x: sp.csr_array) -> sp.csr_array:
        conf = x.astype(np.float32)  # a copy
        conf.data = 1.0 + self.config.alpha * conf.data
        return conf

    def _fold_in_regularization(self) -> float:
        return self.config.regularization


class BPR(_MatrixFactorization):
    """Bayesian personalized ranking; the last factor column is implicit's item bias."""

    _unstable_hint: ClassVar[str] = (
        "the training diverged? lower learning_rate, or raise fold_in_regularization"
    )

    name: ClassVar[str] = "bpr"
    Config: ClassVar[type[GeneratorConfig]] = BPRConfig
    config: BPRConfig

    def _implicit_model(self) -> Any:
        cfg = self.config
        return BayesianPersonalizedRanking(
            factors=cfg.factors,
            learning_rate=cfg.learning_rate,
            regularization=cfg.regularization,
            iterations=cfg.iterations,
            random_state=cfg.random_state,
            num_threads=1,  # Hogwild SGD over several threads would not be reproducible
        )

    def _width(self) -> int:
        return self.config.factors + 1  # implicit appends the item-bias column

    def _fold_in_regularization(self) -> float:
        return self.config.fold_in_regularization

    def _similarity_factors(self) -> npt.NDArray[np.float32]:
        return self.item_factors_[:, :-1]  # the bias column is popularity, not similarity
