"""Ensemble analysis: overlap measures, member reach, leave-one-out, forward selection, pruning."""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import polars as pl
import pytest

from recsemble.evaluation.metrics import CatalogStats, compute_metrics
from recsemble.evaluation.protocol import Split
from recsemble.evaluation.runner import catalog_stats
from recsemble.generators import GENERATORS
from recsemble.ranking import Ensemble, EnsembleConfig, MemberConfig, RankerConfig
from recsemble.ranking.analysis import (
    EnsembleAnalysis,
    _served_lists,
    analyze,
    evaluation_pool,
    validation_pool,
)
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.features import FeatureTable
from recsemble.ranking.overlap import (
    jaccard_at_k,
    member_reach,
    member_top_lists,
    rank_biased_overlap,
    score_correlation,
)
from recsemble.ranking.selection import (
    RankingPool,
    SelectionStep,
    forward_selection,
    ndcg_per_row,
    top_items,
)
from recsemble.types import PAD_IDX

P = PAD_IDX
MEMBERS = ("pop", "itemknn", "covisit")
FAST_RANKER = RankerConfig(max_rounds=10, early_stopping_share=0.0)


def _lists(*rows: list[int]) -> np.ndarray:
    return np.array(rows, dtype=np.int32)


# -- overlap measures on lists known by hand ---------------------------------------------------
def test_jaccard_on_known_lists() -> None:
    a = _lists([1, 2, 3], [1, 2, 3], [1, 2, 3], [1, P, P], [P, P, P])
    b = _lists([2, 3, 4], [3, 1, 2], [4, 5, 6], [1, 2, P], [P, P, P])
    got = jaccard_at_k(a, b)
    np.testing.assert_allclose(got[:4], [2 / 4, 1.0, 0.0, 1 / 2])
    assert np.isnan(got[4])  # nothing to compare


def test_rbo_matches_hand_computed_values() -> None:
    p = 0.9
    a = _lists([1, 2, 3], [1, 2, 3], [1, 2, 3])
    b = _lists([1, 2, 3], [4, 5, 6], [3, 2, 1])
    # reversed: X_1 = 0, X_2 = 1, X_3 = 3
    reversed_value = (3 / 3) * p**3 + (1 - p) / p * (0 / 1 * p + 1 / 2 * p**2 + 3 / 3 * p**3)
    np.testing.assert_allclose(rank_biased_overlap(a, b, p), [1.0, 0.0, reversed_value])
    assert reversed_value == pytest.approx(0.855)
    # X = 1, 1, 2, 2 at depths 1..4
    four = rank_biased_overlap(_lists([1, 2, 3, 4]), _lists([1, 5, 2, 6]), p)
    expected = 2 / 4 * p**4 + (1 - p) / p * (1 * p + 1 / 2 * p**2 + 2 / 3 * p**3 + 2 / 4 * p**4)
    np.testing.assert_allclose(four, [expected])


def test_rbo_of_short_lists_reads_the_depth_both_reach() -> None:
    a = _lists([1, P, P], [1, 2, 3], [P, P, P])
    b = _lists([1, P, P], [2, 1, P], [1, 2, 3])
    got = rank_biased_overlap(a, b)  # depths 1, 2 and none
    # [1, 2] vs [2, 1]: X_1 = 0, X_2 = 2
    at_two = 2 / 2 * 0.81 + (0.1 / 0.9) * (0 * 0.9 + 2 / 2 * 0.81)
    np.testing.assert_allclose(got[:2], [1.0, at_two])
    assert np.isnan(got[2])


def test_rbo_agrees_with_a_set_based_reference() -> None:
    rng = np.random.default_rng(3)
    a = np.stack([rng.permutation(15)[:10] for _ in range(50)]).astype(np.int32)
    b = np.stack([rng.permutation(15)[:10] for _ in range(50)]).astype(np.int32)

    def reference(x: list[int], y: list[int], p: float = 0.9) -> float:
        k = len(x)
        agreement = [len(set(x[:d]) & set(y[:d])) / d for d in range(1, k + 1)]
        tail = sum(agreement[d - 1] * p**d for d in range(1, k + 1))
        return agreement[-1] * p**k + (1 - p) / p * tail

    expected = [reference(list(x), list(y)) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(rank_biased_overlap(a, b), expected)


def test_score_correlation_is_spearman_with_pairwise_nan_exclusion() -> None:
    x = np.linspace(0, 1, 50, dtype=np.float32)
    noisy = np.where(np.arange(50) % 7 == 0, np.nan, np.exp(3 * x)).astype(np.float32)
    scores = np.column_stack([x, -x, noisy, np.full(50, np.nan)]).astype(np.float32)
    corr = score_correlation(scores)
    assert corr[0, 1] == pytest.approx(-1.0)
    assert corr[0, 2] == pytest.approx(1.0)  # monotone, NaNs left out of that pair only
    assert np.isnan(corr[0, 3]) and np.allclose(np.diag(corr), 1.0)


# -- what members reach, on a candidate set built by hand --------------------------------------
def _hand_candidates() -> tuple[Candidates, np.ndarray, Any]:
    import scipy.sparse as sp

    nan = np.nan
    ranks = np.array([[1, nan], [2, 1], [nan, 2]], dtype=np.float32)  # items 0, 1, 2 of row 0
    scores = np.nan_to_num(-ranks, nan=-9).astype(np.float32)
    cands = Candidates(
        np.zeros(3, np.int64), np.array([0, 1, 2], np.int32), scores, ranks, scores, ("m0", "m1"), 1
    )
    truth = sp.csr_array((np.ones(4), ([0, 0, 0, 0], [0, 1, 2, 5])), shape=(1, 6))
    labels = np.ones(3, np.int8)  # every candidate is a target; target 5 is unreachable
    return cands, labels, truth


def test_member_top_lists_and_reach_on_known_candidates() -> None:
    cands, labels, truth = _hand_candidates()
    lists = member_top_lists(cands, 2)
    np.testing.assert_array_equal(lists[:, 0], [[0, 1], [1, 2]])
    no_features = FeatureTable(np.zeros((3, 0), np.float32), ())
    one = np.zeros(1, np.int64)
    pool = RankingPool(cands, no_features, labels, one.astype(np.int32), one, np.array([4]))
    stats = CatalogStats(np.ones(6, np.int64), 1, 6)
    reach, union_recall = member_reach(pool, lists, truth, 2, stats)
    assert [(r.hits, r.unique_hits, r.candidate_recall) for r in reach] == [
        (2, 1, 0.5),
        (2, 1, 0.5),
    ]
    assert union_recall == 0.75
    top1 = member_reach(pool, member_top_lists(cands, 1), truth, 1, stats)[0]
    assert [(r.hits, r.unique_hits) for r in top1] == [(1, 1), (1, 1)]


# -- the analysis of a small fitted ensemble ---------------------------------------------------
@dataclass(frozen=True)
class Fitted:
    ensemble: Ensemble
    split: Split
    analysis: EnsembleAnalysis


def _config(prune: list[str] | None = None) -> EnsembleConfig:
    return EnsembleConfig(
        members=[MemberConfig(model=m, candidates=30) for m in MEMBERS],
        ranker=FAST_RANKER,
        validation_folds=2,
        prune=prune or [],
    )


@pytest.fixture(scope="module")
def fitted(small_split: Split) -> Fitted:
    ens = Ensemble(_config()).fit(small_split.train)
    return Fitted(ens, small_split, analyze(ens, small_split, ranker=FAST_RANKER))


def test_validation_pool_counts_every_target_reachable_or_not(fitted: Fitted) -> None:
    pool = validation_pool(fitted.ensemble)
    training = fitted.ensemble.training_
    assert pool.targets.shape == training.users.shape and pool.targets.sum() == training.n_targets
    reachable = np.bincount(training.candidates.rows, weights=training.labels)
    assert np.all(pool.targets >= reachable) and pool.targets.sum() > reachable.sum()


def test_keeping_every_member_reproduces_the_stored_features(fitted: Fitted) -> None:
    pool = validation_pool(fitted.ensemble)
    same = pool.keep_members(pool.members)
    np.testing.assert_array_equal(same.features.values, pool.features.values)
    fewer = pool.keep_members(["pop", "covisit"])
    assert not any(name.startswith("itemknn:") for name in fewer.features.names)
    proposed = np.isfinite(fewer.candidates.ranks)
    assert proposed.any(axis=1).all() and fewer.labels.size < pool.labels.size
    np.testing.assert_array_equal(fewer.features.column("n_proposed"), proposed.sum(axis=1))


def test_validation_ndcg_counts_like_the_protocol(fitted: Fitted) -> None:
    test, scores, truth = evaluation_pool(fitted.ensemble, fitted.split)
    top = top_items(test.candidates, scores, 10)
    protocol = compute_metrics(top, truth, 10, catalog_stats(fitted.split))
    np.testing.assert_allclose(ndcg_per_row(test, scores, 10), protocol.ndcg)


def test_the_pool_is_the_whole_union_and_the_served_lists_respect_serving_top(
    fitted: Fitted,
) -> None:
    capped = copy.copy(fitted.ensemble)
    capped.config = fitted.ensemble.config.model_copy(update={"serving_top": 3})
    pool, scores, _ = evaluation_pool(capped, fitted.split)
    whole, _, _ = evaluation_pool(fitted.ensemble, fitted.split)
    np.testing.assert_array_equal(pool.candidates.items, whole.candidates.items)
    assert np.nanmax(pool.candidates.ranks) > 3  # members' reach is measured on all of it
    users = fitted.split.evaluated_users
    served = capped.recommend(users, 10, at=fitted.split.reference_time[users]).items
    np.testing.assert_array_equal(_served_lists(capped, pool, scores, 10), served)


def test_leave_one_out_has_one_row_per_member_and_every_slice(fitted: Fitted) -> None:
    a = fitted.analysis
    assert list(a.leave_one_out) == list(MEMBERS)
    for member in MEMBERS:
        assert set(a.loo_delta(member)) == set(a.slices)
    # the last curve step is every member under the same ranker setting: the LOO baseline
    assert a.curve[-1].test_ndcg == pytest.approx(a.baseline_ndcg["all"])


def test_selection_curve_adds_one_member_per_step(fitted: Fitted) -> None:
    a = fitted.analysis
    sizes = [len(p.step.members) for p in a.curve]
    assert sizes == list(range(1, len(MEMBERS) + 1))
    for before, after in pairwise(a.curve):
        assert after.step.members[:-1] == before.step.members
        assert after.latency_ms > before.latency_ms
    assert sorted(a.curve[-1].step.members) == sorted(MEMBERS)
    best = max(p.step.validation_ndcg for p in a.curve)
    chosen = next(p for p in a.curve if p.step.members == a.recommended)
    assert chosen.step.validation_ndcg >= best * 0.995
    assert all(p.step.validation_ndcg < best * 0.995 for p in a.curve[: len(a.recommended) - 1])


def _key(step: SelectionStep) -> tuple[Any, ...]:
    """A step with NaN spelled None, so that equal steps compare equal."""
    values = (step.validation_ndcg, step.gain, step.gain_se)
    return (step.members, step.added, *(None if np.isnan(v) else v for v in values))


def test_selection_never_reads_the_test_part(fitted: Fitted) -> None:
    """Replacing the test part changes the test figures but not the curve or the pruned set."""
    s = fitted.split
    shuffled = s.test.interactions.with_columns(pl.col("item_idx").shuffle(seed=1))
    other = Split(s.train, s.test.with_interactions(shuffled), s.protocol, s.reference_time)
    again = analyze(fitted.ensemble, other, ranker=FAST_RANKER)
    a = fitted.analysis
    assert again.recommended == a.recommended and again.prune_line == a.prune_line
    assert [_key(p.step) for p in again.curve] == [_key(p.step) for p in a.curve]
    assert [p.test_ndcg for p in again.curve] != [p.test_ndcg for p in a.curve]


def test_forward_selection_is_deterministic_on_the_validation_pool(fitted: Fitted) -> None:
    pool = validation_pool(fitted.ensemble)
    steps = forward_selection(pool, FAST_RANKER, 30)
    assert [_key(s) for s in steps] == [_key(p.step) for p in fitted.analysis.curve]
    assert np.isnan(steps[0].gain) and all(np.isfinite(s.gain_se) for s in steps[1:])
    for before, after in pairwise(steps):
        assert after.gain == pytest.approx(after.validation_ndcg - before.validation_ndcg)


def test_the_prune_line_is_a_config_that_serves_the_recommended_set(fitted: Fitted) -> None:
    a = fitted.analysis
    prune = tomllib.loads(f"[ensemble]\n{a.prune_line}")["ensemble"]["prune"]
    config = _config(prune)
    assert [m.label for m in Ensemble(config).serving_members] == [
        m for m in MEMBERS if m in a.recommended
    ]
    assert a.to_json()["prune_line"] == a.prune_line


# -- pruning is a real switch ------------------------------------------------------------------
def test_a_pruned_member_is_never_fitted_nor_run(
    small_split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"fit": 0, "score": 0}
    kind = GENERATORS["itemknn"]
    real_fit, real_score = kind.fit, kind.score_catalog

    def counting_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["fit"] += 1
        return real_fit(self, *args, **kwargs)

    def counting_score(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["score"] += 1
        return real_score(self, *args, **kwargs)

    monkeypatch.setattr(kind, "fit", counting_fit)
    monkeypatch.setattr(kind, "score_catalog", counting_score)
    users = small_split.evaluated_users[:20]
    pruned = Ensemble(_config(["itemknn"])).fit(small_split.train)
    pruned.recommend(users, 10, at=small_split.reference_time[users])
    assert calls == {"fit": 0, "score": 0}
    assert "itemknn" not in pruned.members_ and "itemknn" not in pruned.fit_seconds_
    assert not any(name.startswith("itemknn:") for name in pruned.feature_names_)
    full = Ensemble(_config()).fit(small_split.train)  # the same counters do see a served member
    full.recommend(users, 10, at=small_split.reference_time[users])
    assert calls["fit"] > 0 and calls["score"] > 0


def test_a_single_member_ensemble_has_nothing_to_leave_out(small_split: Split) -> None:
    config = EnsembleConfig(
        members=[MemberConfig(model="itemknn", candidates=30)], ranker=FAST_RANKER
    )
    ens = Ensemble(config).fit(small_split.train)
    a = analyze(ens, small_split, ranker=FAST_RANKER)
    assert a.leave_one_out == {} and a.recommended == ("itemknn",)
    assert [p.step.members for p in a.curve] == [("itemknn",)] and a.prune_line == "prune = []"
    assert a.overlap.jaccard.tolist() == [[1.0]]
