"""Ensemble: members propose candidates, a meta-ranker learned on a validation window orders them.

Stacking follows ../shared/benchmark-protocol.md: the training data is split again by the
protocol's rule; members fit on the fit part propose candidates for the validation users, the
ranker learns from the validation targets, and the members are refitted on all the training
data before anything is served. Nothing after the training data's end is ever seen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.errors import NotFittedError
from recsemble.evaluation.slices import HISTORY_SLICES
from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.generators.history import Histories, history_values
from recsemble.ranking.blend import Blend
from recsemble.ranking.calibration import Calibrator, calibrate_ranker, sigmoid
from recsemble.ranking.candidates import Candidates, union
from recsemble.ranking.config import EnsembleConfig, MemberConfig
from recsemble.ranking.diversity import diversified_top_per_row
from recsemble.ranking.features import FeatureBuilder, FeatureTable
from recsemble.ranking.member_fitting import MemberFitter, apply_view, fit_here, one_copy
from recsemble.ranking.metaranker import MetaRanker
from recsemble.ranking.routing import direct_routes, slice_board
from recsemble.ranking.trainingset import (
    TrainingSet,
    _concat,
    _groups_with_positives,
    _labels,
    _nonzero_groups,
    _routes,
    _sample_negatives,
    _slice_positions,
    _stack_training,
    validation_source,
)
from recsemble.types import PAD_IDX, TopK, check_k, moments, user_idx

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RankedBlock:
    """One block of requests: its candidates, their features and the ranker's scores."""

    lo: int
    candidates: Candidates
    features: FeatureTable
    scores: F32


class Ensemble:
    """fit(dataset) -> self; recommend(users, k) like any member, candidates ranked jointly."""

    name: ClassVar[str] = "ensemble"

    def __init__(
        self,
        config: EnsembleConfig | None = None,
        model_params: Mapping[str, Mapping[str, Any]] | None = None,
        protocol: str = "temporal-user",
        fit_member: MemberFitter = fit_here,
    ) -> None:
        self.config = config or EnsembleConfig()
        self.model_params = {k: dict(v) for k, v in (model_params or {}).items()}
        self.protocol = protocol
        self.fit_member = fit_member
        self.calibrator_: Calibrator | None = None  # fitted (or loaded) with the ranker
        self.blend_: Blend | None = None  # only when config.scorer == "blend"

    # -- members ----------------------------------------------------------------------------
    @property
    def serving_members(self) -> list[MemberConfig]:
        pruned = set(self.config.prune)
        return [m for m in self.config.members if m.label not in pruned]

    def build_member(self, spec: MemberConfig) -> CandidateGenerator:
        kind = GENERATORS[spec.model]
        return kind(kind.Config.model_validate(spec.settings(self.model_params)))

    def fit_members(
        self, dataset: Dataset, specs: list[MemberConfig]
    ) -> dict[str, CandidateGenerator]:
        out = {}
        for spec in specs:
            start = time.perf_counter()
            member = self.build_member(spec)
            out[spec.label] = one_copy(self.fit_member(member, apply_view(dataset, spec.view)))
            self.fit_seconds_[spec.label] = time.perf_counter() - start
        return out

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> Self:
        """Learn the ranker on a validation window of `dataset`, then refit the members on all."""
        from recsemble.evaluation.protocol import split

        self.fit_seconds_: dict[str, float] = {}
        self.routes_: dict[str, list[str]] | None = None  # every member runs while learning
        protocol = self.protocol if self.config.validation == "auto" else self.config.validation
        specs = self.serving_members
        folds, data, least = [], dataset, self.config.validation_min_interactions
        for _ in range(self.config.validation_folds):
            inner = split(validation_source(data, least), protocol, self.config.window_fraction)
            folds.append(self.training_set(inner, self.fit_members(inner.train, specs), specs))
            data = inner.train
        self.training_ = _stack_training(folds)
        self.routes_ = _routes(self.training_, [spec.label for spec in specs])
        keep = _groups_with_positives(self.training_) & _sample_negatives(
            self.training_, self.config.negatives_per_user, self.config.ranker.seed
        )
        train = self.training_.candidates.take(keep)
        self.feature_names_ = self.training_.features.names
        self.ranker_ = MetaRanker(self.config.ranker).fit(
            self.training_.features.values[keep],
            self.training_.labels[keep],
            _nonzero_groups(train),
        )
        self.direct_: dict[str, str] = {}
        if self.config.routing and self.config.scorer == "ranker":
            self._learn_direct_routes()
        self.calibrator_ = self.blend_ = None
        if self.config.scorer == "blend":  # a logistic blend is its own probability
            self.blend_ = Blend().fit(self.training_.candidates, self.training_.labels)
        elif self.config.calibration is not None:
            self.calibrator_ = calibrate_ranker(
                self.training_, self.config, self.config.calibration, self.config.calibration_folds
            ).calibrator
        self.members_ = self.fit_members(dataset, specs)
        self.features_ = self._feature_builder().fit(dataset)
        self.histories_ = Histories.from_dataset(dataset)
        self.history_values_ = history_values(dataset)  # kept for retraining (ratings)
        self.n_items_ = dataset.n_items
        self.n_users_ = dataset.n_users
        ts = dataset.column("timestamp")
        self.now_ = int(ts.max()) if ts.size else 0
        return self

    def _learn_direct_routes(self) -> None:
        """Serve a slice by one member alone where it beat the ranker (out of fold) on
        validation; only that member then runs for the slice."""
        from recsemble.ranking.calibration import out_of_fold_scores

        training = self.training_
        if training.target_counts is None:
            return
        if np.unique(training.users).size < self.config.routing_folds:
            return  # too few validation users to score out of fold: no evidence to route on
        oof, _, _ = out_of_fold_scores(training, self.config, self.config.routing_folds)
        self.slice_board_ = slice_board(
            training.candidates.rows,
            training.labels,
            training.target_counts,
            training.history_lengths,
            oof,
            training.candidates.ranks,
            list(training.candidates.members),
        )
        self.direct_ = direct_routes(
            self.slice_board_, self.config.routing_min_users, self.config.routing_min_gain_se
        )
        assert self.routes_ is not None
        for slice_name, member in self.direct_.items():
            self.routes_[slice_name] = [member]

    def _feature_builder(self) -> FeatureBuilder:
        return FeatureBuilder(tuple(self.config.popularity_windows_days))

    def training_set(
        self, inner: Any, members: dict[str, CandidateGenerator], specs: list[MemberConfig]
    ) -> TrainingSet:
        """Candidates and features of the validation users of `inner` (a Split), with targets."""
        users = inner.evaluated_users
        cap = self.config.max_validation_users
        if cap is not None and users.size > cap:  # a sample teaches the ranker as well
            rng = np.random.default_rng(self.config.ranker.seed)
            users = np.sort(rng.choice(users, size=cap, replace=False)).astype(np.int32)
        builder = self._feature_builder().fit(inner.train)
        hist = Histories.from_dataset(inner.train).rows(users)
        at = inner.reference_time[users]
        blocks = list(self._ranked_blocks(members, specs, builder, users, at, hist, True, None))
        cands = _concat([b.candidates for b in blocks], [b.lo for b in blocks], users.size)
        values = np.concatenate([b.features.values for b in blocks])
        names = blocks[0].features.names if blocks else builder.feature_names(())
        truth = sp.csr_array(inner.test.user_item_matrix("binary")[users])
        labels = _labels(cands, truth)
        targets = np.diff(truth.indptr).astype(np.int64)
        return TrainingSet(
            cands,
            FeatureTable(values, names),
            labels,
            users,
            hist.lengths,
            int(truth.nnz),
            targets,
        )

    # -- answering -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if getattr(self, "ranker_", None) is None:
            raise NotFittedError("Ensemble is not fitted; call fit(dataset) first")

    def ranked_blocks(
        self,
        users: npt.ArrayLike,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
        all_candidates: bool = False,
    ) -> Iterator[RankedBlock]:
        """Candidates, features and ranker scores, one block of requests at a time.

        all_candidates: score the whole union, including the pairs serving_top keeps from the
        ranker (for analyses of what the members propose)."""
        self._check_fitted()
        user_arr = user_idx(users)
        at_arr = moments(at, user_arr.size, self.now_)
        if histories is not None:  # a short batch answered the other users from its rows
            histories.check_batch(user_arr.size, self.n_items_)
        hist = self.histories_.rows(user_arr) if histories is None else histories
        yield from self._ranked_blocks(
            self.members_,
            self.serving_members,
            self.features_,
            user_arr,
            at_arr,
            hist,
            exclude_seen,
            self.blend_ or self.ranker_,
            histories is not None,
            None if all_candidates else self.config.serving_top,
        )

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
        probabilities: bool = False,
    ) -> TopK:
        """Top-k per user by the meta-ranker's score over the members' candidate union.

        probabilities: the scores returned are calibrated P(interaction), not ranker scores."""
        k = check_k(k)
        if probabilities and self.blend_ is None and self.calibrator_ is None:
            raise ValueError("probabilities need a calibrator: set ensemble.calibration")
        n = np.atleast_1d(np.asarray(users)).size
        items = np.full((n, k), PAD_IDX, dtype=np.int32)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        for block in self.ranked_blocks(
            users, exclude_seen=exclude_seen, at=at, histories=histories
        ):
            rows, slots, top_items, top_scores = self._pick(block, k)
            items[block.lo + rows, slots] = top_items
            scores[block.lo + rows, slots] = top_scores
        if probabilities:
            finite = np.isfinite(scores)
            scores[finite] = self.probability(scores[finite])
        return TopK(items, scores)

    def _pick(self, block: RankedBlock, k: int) -> tuple[I64, I64, I32, F32]:
        """Each request's k best candidates, diversified when the config asks for it."""
        if self.config.diversity == 0:
            return _top_per_row(block.candidates, block.scores, k)
        return diversified_top_per_row(
            block.candidates,
            block.scores,
            k,
            self.config.diversity,
            item_categories=self.features_.categories_,
            similarity=self.config.diversity_similarity,
            pool_size=max(k, self.config.diversity_pool),
        )

    def probability(self, scores: F32) -> F32:
        """Ranker scores -> calibrated P(interaction) (needs ensemble.calibration or the blend)."""
        if self.blend_ is None and self.calibrator_ is None:
            raise ValueError("probabilities need a calibrator: set ensemble.calibration")
        if self.blend_ is not None:
            return sigmoid(scores).astype(np.float32)
        assert self.calibrator_ is not None
        return self.calibrator_.predict(scores).astype(np.float32)

    def _route(self, label: str, slices: I64) -> npt.NDArray[np.bool_]:
        """Which rows (by slice position) the member runs for."""
        routes = getattr(self, "routes_", None)
        if routes is None:
            return np.ones(slices.size, dtype=bool)
        runs = np.array([label in routes[name] for name in HISTORY_SLICES])
        out: npt.NDArray[np.bool_] = runs[slices]
        return out

    def _member_block(
        self,
        member: CandidateGenerator,
        rows: npt.NDArray[np.bool_],
        users: I32,
        at: I64,
        histories: Histories | None,
        exclude_seen: bool,
    ) -> F32:
        """The member's dense scores for the routed rows; -inf (nothing) for the others."""
        if rows.all():
            return member.score_catalog(
                users, exclude_seen=exclude_seen, at=at, histories=histories
            )
        block = np.full((users.size, member.n_items_), -np.inf, dtype=np.float32)
        if rows.any():
            block[rows] = member.score_catalog(
                users[rows],
                exclude_seen=exclude_seen,
                at=at[rows],
                histories=None if histories is None else histories.rows(np.flatnonzero(rows)),
            )
        return block

    def _ranked_blocks(
        self,
        members: Mapping[str, CandidateGenerator],
        specs: list[MemberConfig],
        builder: FeatureBuilder,
        users: I32,
        at: I64,
        hist: Histories,
        exclude_seen: bool,
        ranker: MetaRanker | Blend | None,
        pass_histories: bool = False,
        serving_top: int | None = None,
    ) -> Iterator[RankedBlock]:
        n_items = max(1, builder.timeline_.n_items)
        step = max(1, self.config.max_block_cells // (n_items * max(1, len(specs))))
        labels = tuple(spec.label for spec in specs)
        for lo in range(0, users.size, step):
            hi = min(users.size, lo + step)
            block_hist = hist.rows(range(lo, hi))
            slices = _slice_positions(block_hist.lengths)
            dense = [
                self._member_block(
                    members[label],
                    self._route(label, slices),
                    users[lo:hi],
                    at[lo:hi],
                    block_hist if pass_histories else None,
                    False,  # seen items are masked once below, for all members
                )
                for label in labels
            ]
            if exclude_seen:  # once for all members (a view member saw less: mask all we know)
                block_hist.mask_seen(*dense)
            cands = union(dense, labels, [spec.candidates for spec in specs])
            del dense
            if serving_top is not None:
                cands = cands.take(cands.best_ranks() <= serving_top)
            table = builder.build(cands, block_hist, at[lo:hi])
            if isinstance(ranker, Blend):
                scores = ranker.rank(cands)
            elif ranker is not None:
                scores = ranker.predict(table.values)
            else:
                scores = np.zeros(0, np.float32)
            if ranker is not None and getattr(self, "direct_", None):
                scores = self._direct_scores(cands, slices, scores)
            yield RankedBlock(lo, cands, table, scores)

    def _direct_scores(self, cands: Candidates, slices: I64, scores: F32) -> F32:
        """Rows of a directly routed slice take that member's own order (-inf: not proposed)."""
        out = scores.copy()
        for slice_name, member in self.direct_.items():
            rows = slices[cands.rows] == HISTORY_SLICES.index(slice_name)
            ranks = cands.ranks[rows, cands.members.index(member)]
            out[rows] = np.where(np.isfinite(ranks), -ranks, -np.inf)
        return out


def _top_per_row(cands: Candidates, scores: F32, k: int) -> tuple[I64, I64, I32, F32]:
    """(row, slot, item, score) of each row's k best candidates; ties go to the lower item."""
    usable = np.flatnonzero(np.isfinite(scores))  # -inf: routed away from this candidate
    order = usable[np.lexsort((cands.items[usable], -scores[usable], cands.rows[usable]))]
    rows = cands.rows[order]
    slot = np.arange(rows.size) - np.searchsorted(rows, rows)
    keep = slot < k
    return rows[keep], slot[keep], cands.items[order][keep], scores[order][keep]
