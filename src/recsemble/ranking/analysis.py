"""Ensemble analysis: how alike the members are, what each one adds, which ones can go.

For a fitted Ensemble and an evaluation Split (the ensemble fitted on its train part):
overlap of the members' top-k lists (mean Jaccard@k and rank-biased overlap), correlation of
their scores over the candidate union, hits only one member finds, candidate recall per member
and of the union, leave-one-member-out ΔNDCG per history slice, and a greedy forward selection
curve chosen on the validation window (never the test part) that recommends a pruned set.

Members are never refitted: leave-one-out and the curve retrain only the meta-ranker on the
ensemble's stored training set with the member's columns and proposals removed (selection.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.evaluation.metrics import CatalogStats, compute_metrics
from recsemble.evaluation.protocol import Split
from recsemble.evaluation.runner import catalog_stats, truth_matrix
from recsemble.evaluation.slices import ALL, history_slice_labels, slice_order, sliced_summary
from recsemble.ranking.ensemble import Ensemble, RankedBlock
from recsemble.ranking.features import FeatureTable
from recsemble.ranking.metaranker import RankerConfig
from recsemble.ranking.overlap import MemberOverlap, measure_overlap
from recsemble.ranking.selection import (
    RankingPool,
    SelectionStep,
    fit_ranker,
    forward_selection,
    member_latency_ms,
    ndcg_per_row,
    pool_scores,
    prune_line,
    recommended_step,
    top_items,
)
from recsemble.ranking.trainingset import _concat, _labels
from recsemble.types import PAD_IDX

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


# -- the pools the ranker learns from and is measured on ---------------------------------------
def validation_pool(ens: Ensemble) -> RankingPool:
    """The ensemble's stored training set (its validation requests) as a pool."""
    t = ens.training_
    targets = t.target_counts
    if targets is None:  # not recorded: count the targets the candidates reach
        rows = t.candidates.rows
        targets = np.bincount(rows, weights=t.labels, minlength=t.candidates.n_rows)
    return RankingPool(
        t.candidates, t.features, t.labels, t.users, t.history_lengths, targets.astype(np.int64)
    )


def evaluation_pool(
    ens: Ensemble, the_split: Split, users: I32 | None = None
) -> tuple[RankingPool, F32, sp.csr_array]:
    """Test candidates and features of the evaluated users (or of `users`, a subset of them;
    computed once): the whole union, before serving_top; the ensemble's own scores of them,
    and the test truth."""
    users = the_split.evaluated_users if users is None else users
    at = the_split.reference_time[users]
    blocks = list(ens.ranked_blocks(users, at=at, all_candidates=True))
    cands = _concat([b.candidates for b in blocks], [b.lo for b in blocks], users.size)
    values = np.concatenate([b.features.values for b in blocks])
    scores = np.concatenate([b.scores for b in blocks]).astype(np.float32)
    truth = truth_matrix(the_split, users)
    labels = _labels(cands, truth)
    table = FeatureTable(values, tuple(ens.feature_names_))
    lengths = the_split.train.user_history_lengths[users].astype(np.int64)
    targets = np.diff(truth.indptr).astype(np.int64)
    pool = RankingPool(cands, table, labels, users, lengths, targets)
    return pool, scores, truth


# -- the whole analysis ------------------------------------------------------------------------
@dataclass(frozen=True)
class CurvePoint:
    """A forward selection step with the figures the selection did not use."""

    step: SelectionStep
    test_ndcg: float  # for information only: the selection never read it
    latency_ms: float  # summed score_catalog time of the step's members, per user


@dataclass(frozen=True)
class EnsembleAnalysis:
    """Everything `analyze` measured; matrices are (members x members) in `members` order."""

    members: tuple[str, ...]
    k: int
    rbo_p: float
    overlap: MemberOverlap
    slices: dict[str, int]  # slice -> evaluated users
    ensemble_ndcg: dict[str, float]  # slice -> NDCG@k of the fitted ensemble itself
    baseline_ndcg: dict[str, float]  # slice -> NDCG@k, all members, analysis ranker
    leave_one_out: dict[str, dict[str, float]]  # member -> slice -> NDCG@k without it
    curve: list[CurvePoint]
    recommended: tuple[str, ...]
    prune_line: str
    latency_ms: dict[str, float]
    ranker: RankerConfig
    seconds: dict[str, float] = field(default_factory=dict)

    def loo_delta(self, member: str) -> dict[str, float]:
        return {s: v - self.baseline_ndcg[s] for s, v in self.leave_one_out[member].items()}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; NaN becomes null."""
        members = list(self.members)

        def matrix(values: F64) -> dict[str, dict[str, float | None]]:
            rows = (dict(zip(members, map(_num, row), strict=True)) for row in values)
            return dict(zip(members, rows, strict=True))

        return {
            "members": members,
            "k": self.k,
            "rbo_p": self.rbo_p,
            "rbo_kind": "extrapolated",
            "jaccard": matrix(self.overlap.jaccard),
            "rbo": matrix(self.overlap.rbo),
            "score_spearman": matrix(self.overlap.correlation),
            "reach": [{k: _num(v) for k, v in vars(r).items()} for r in self.overlap.reach],
            "union_candidate_recall": self.overlap.union_recall,
            "slices": self.slices,
            "ensemble_ndcg": _nums(self.ensemble_ndcg),
            "baseline_ndcg": _nums(self.baseline_ndcg),
            "leave_one_out_delta": {m: _nums(self.loo_delta(m)) for m in self.leave_one_out},
            "curve": [_curve_json(point) for point in self.curve],
            "recommended": list(self.recommended),
            "prune_line": self.prune_line,
            "latency_ms_per_user": self.latency_ms,
            "analysis_ranker": self.ranker.model_dump(),
            "seconds": self.seconds,
        }


def analyze(
    ens: Ensemble,
    the_split: Split,
    *,
    k: int = 10,
    rbo_p: float = 0.9,
    ranker: RankerConfig | None = None,
    negatives_per_user: int | None = 30,
    latency_users: int = 256,
    progress: Progress | None = None,
    test_pool: tuple[RankingPool, F32, sp.csr_array] | None = None,
) -> EnsembleAnalysis:
    """Analyse `ens`, fitted on the_split.train, on the evaluated users of the_split.

    `ranker` and `negatives_per_user` set the meta-rankers refitted for leave-one-out and the
    selection curve (~M²/2 refits): by default the ensemble's ranker made cheap (analysis_ranker)
    and 30 sampled negatives per request; every comparison is between rankers of this setting.
    `test_pool`: evaluation_pool(ens, the_split) when the caller has it already.
    """
    clock = _Clock()
    report = progress or (lambda stage, done, total: None)
    ranker = ranker or analysis_ranker(ens.config.ranker)
    negatives = negatives_per_user
    report("test candidates", 0, 1)
    test, ens_scores, truth = test_pool or evaluation_pool(ens, the_split)
    train = validation_pool(ens)
    report("test candidates", 1, 1)
    clock.lap("candidates")
    scorer = _SliceScorer.of(test, truth, the_split, k)
    overlap = measure_overlap(test, truth, k, rbo_p, scorer.stats)
    clock.lap("overlap")
    baseline = scorer.ndcg(test, pool_scores(fit_ranker(train, ranker, negatives), test))
    loo = _leave_one_out(train, test, scorer, ranker, negatives, report)
    clock.lap("leave_one_out")
    steps = forward_selection(
        train, ranker, negatives, k, progress=lambda d, t: report("forward selection", d, t)
    )
    clock.lap("selection")
    report("latency", 0, 1)
    latency = _latency(ens, the_split, latency_users)
    report("latency", 1, 1)
    curve = [_curve_point(s, train, test, latency, ranker, negatives, k) for s in steps]
    clock.lap("curve_test")
    chosen = recommended_step(steps).members
    return EnsembleAnalysis(
        members=test.members,
        k=k,
        rbo_p=rbo_p,
        overlap=overlap,
        slices=scorer.sizes(),
        ensemble_ndcg=scorer.of_lists(_served_lists(ens, test, ens_scores, k)),
        baseline_ndcg=baseline,
        leave_one_out=loo,
        curve=curve,
        recommended=chosen,
        prune_line=prune_line([m.label for m in ens.config.members], set(chosen)),
        latency_ms=latency,
        ranker=ranker,
        seconds=clock.laps,
    )


def analysis_ranker(config: RankerConfig, rounds: int = 50) -> RankerConfig:
    """The ensemble's ranker setting made cheap enough to refit once per member subset: fewer
    rounds at a higher learning rate, no early-stopping pass. On ml-100k its all-member test
    NDCG@10 was within 0.002 of a 100-round, 0.05-rate ranker (measured while writing this)."""
    update = {"max_rounds": rounds, "learning_rate": 0.1, "early_stopping_share": 0.0}
    return config.model_copy(update=update)


@dataclass(frozen=True)
class _SliceScorer:
    """NDCG@k of test rankings per history slice, exactly as `recsemble evaluate` counts it."""

    truth: sp.csr_array
    stats: CatalogStats
    labels: npt.NDArray[np.str_]
    k: int

    @classmethod
    def of(cls, test: RankingPool, truth: sp.csr_array, the_split: Split, k: int) -> _SliceScorer:
        lengths = the_split.train.user_history_lengths[test.users]
        return cls(truth, catalog_stats(the_split), history_slice_labels(lengths), k)

    def ndcg(self, pool: RankingPool, scores: F32) -> dict[str, float]:
        return self.of_lists(top_items(pool.candidates, scores, self.k))

    def of_lists(self, top: I32) -> dict[str, float]:
        summary = sliced_summary(compute_metrics(top, self.truth, self.k, self.stats), self.labels)
        return {name: values[f"ndcg@{self.k}"] for name, values in summary.items()}

    def sizes(self) -> dict[str, int]:
        counts = {name: int((self.labels == name).sum()) for name in slice_order(self.labels)}
        return {ALL: int(self.labels.size), **counts}


def _served_lists(ens: Ensemble, pool: RankingPool, scores: F32, k: int) -> I32:
    """The lists the fitted ensemble serves from these candidates: its own pick, so direct
    routes, serving_top and diversity count as in `recommend` (the analysis rankers order by
    score alone)."""
    top = ens.config.serving_top
    if top is not None:  # the pool holds the whole union; the ranker serves only these
        scores = np.where(pool.candidates.best_ranks() <= top, scores, -np.inf).astype(np.float32)
    block = RankedBlock(0, pool.candidates, pool.features, scores)
    rows, slots, items, _ = ens._pick(block, k)
    out = np.full((pool.candidates.n_rows, k), PAD_IDX, dtype=np.int32)
    out[rows, slots] = items
    return out


def _leave_one_out(
    train: RankingPool,
    test: RankingPool,
    scorer: _SliceScorer,
    ranker: RankerConfig,
    negatives: int | None,
    report: Progress,
) -> dict[str, dict[str, float]]:
    """NDCG@k per slice of a ranker retrained without each member in turn (none for a single
    member: an ensemble cannot lose its last one)."""
    out: dict[str, dict[str, float]] = {}
    members = test.members if len(test.members) > 1 else ()
    for i, member in enumerate(members):
        report("leave-one-out", i, len(members))
        others = [m for m in members if m != member]
        sub = test.keep_members(others)
        out[member] = scorer.ndcg(
            sub, pool_scores(fit_ranker(train.keep_members(others), ranker, negatives), sub)
        )
    report("leave-one-out", len(members), len(members))
    return out


def _curve_point(
    step: SelectionStep,
    train: RankingPool,
    test: RankingPool,
    latency: dict[str, float],
    ranker: RankerConfig,
    negatives: int | None,
    k: int,
) -> CurvePoint:
    """The step's test NDCG@k (ranker trained on the whole validation pool) and latency."""
    sub = test.keep_members(step.members)
    scores = pool_scores(fit_ranker(train.keep_members(step.members), ranker, negatives), sub)
    test_ndcg = float(np.nanmean(ndcg_per_row(sub, scores, k)))
    return CurvePoint(step, test_ndcg, sum(latency[m] for m in step.members))


def _latency(ens: Ensemble, the_split: Split, n_users: int) -> dict[str, float]:
    users = the_split.evaluated_users
    pick = np.linspace(0, users.size - 1, min(n_users, users.size)).astype(np.int64)
    sample = users[np.unique(pick)]
    return member_latency_ms(ens.members_, sample, the_split.reference_time[sample])


def _curve_json(point: CurvePoint) -> dict[str, Any]:
    return {
        "members": list(point.step.members),
        "added": point.step.added,
        "validation_ndcg": _num(point.step.validation_ndcg),
        "validation_gain": _num(point.step.gain),
        "validation_gain_se": _num(point.step.gain_se),
        "test_ndcg": _num(point.test_ndcg),
        "latency_ms_per_user": point.latency_ms,
    }


def _num(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def _nums(values: dict[str, float]) -> dict[str, float | None]:
    return {key: _num(value) for key, value in values.items()}


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def plot_curve(analysis: EnsembleAnalysis, path: Path) -> Path:
    """The forward selection curve as a PNG: NDCG@k (validation, and test for information) and
    serving latency against the number of members, the recommended set marked."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    sizes = np.arange(1, len(analysis.curve) + 1)
    validation = [p.step.validation_ndcg for p in analysis.curve]
    test = [p.test_ndcg for p in analysis.curve]
    fig, quality = plt.subplots(figsize=(8, 4.5))
    quality.plot(sizes, validation, "o-", label=f"validation NDCG@{analysis.k} (selects)")
    quality.plot(sizes, test, "s--", alpha=0.7, label=f"test NDCG@{analysis.k} (information)")
    for size, value, point in zip(sizes, validation, analysis.curve, strict=True):
        label = f"+{point.step.added}"
        quality.annotate(label, (size, value), (3, 6), textcoords="offset points", fontsize=7)
    quality.axvline(len(analysis.recommended), color="green", linestyle=":", label="recommended")
    quality.set_xlabel("members (greedy forward selection)")
    quality.set_ylabel(f"NDCG@{analysis.k}")
    quality.set_xticks(sizes)
    latency = quality.twinx()
    latency.bar(sizes, [p.latency_ms for p in analysis.curve], alpha=0.15, color="grey")
    latency.set_ylabel("member scoring, ms per user (bars)")
    quality.set_zorder(latency.get_zorder() + 1)  # lines over the latency bars
    quality.patch.set_visible(False)
    quality.legend(loc="best", fontsize=8)
    quality.set_title("Ensemble pruning curve")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
