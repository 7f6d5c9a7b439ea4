"""Calibrators, reliability/ECE, honest out-of-fold ranker scores, member calibrators and Blend."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsemble.ranking.blend import Blend, nonnegative_logistic
from recsemble.ranking.calibration import (
    Calibrator,
    MemberCalibrators,
    calibrate_ranker,
    expected_calibration_error,
    reliability,
    user_folds,
)
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.config import EnsembleConfig, MemberConfig
from recsemble.ranking.features import FeatureTable
from recsemble.ranking.metaranker import RankerConfig
from recsemble.ranking.trainingset import TrainingSet


def _bernoulli(p: np.ndarray, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(p.size) < p).astype(np.int8)


# -- reliability / ECE -------------------------------------------------------------------------
def test_perfectly_calibrated_probabilities_have_ece_near_zero() -> None:
    p = np.random.default_rng(1).random(200_000)
    assert expected_calibration_error(p, _bernoulli(p)) < 0.01


def test_ece_of_a_constant_overconfident_guess_is_the_gap() -> None:
    labels = np.array([1, 0, 0, 0] * 25)  # observed rate 0.25
    assert expected_calibration_error(np.full(100, 0.85), labels) == pytest.approx(0.60)


def test_reliability_bins_weight_by_count() -> None:
    p = np.array([0.05, 0.05, 0.05, 0.95, 1.0])
    y = np.array([0, 0, 1, 1, 1])
    table = reliability(p, y, bins=10)
    assert table.count.tolist() == [3, 0, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 lands in the last bin
    assert table.observed[0] == pytest.approx(1 / 3)
    assert table.mean_predicted[9] == pytest.approx(0.975)
    expected = (3 * abs(0.05 - 1 / 3) + 2 * abs(0.975 - 1.0)) / 5
    assert table.ece == pytest.approx(expected)
    assert np.isnan(table.rows()[1][2])  # an empty bin has no mean


def test_quantile_bins_hold_equal_shares() -> None:
    p = np.arange(1, 101) / 200.0  # 0.005 .. 0.5, all in the first two equal-width bins
    y = np.zeros(100)
    table = reliability(p, y, bins=4, strategy="quantile")
    assert table.count.tolist() == [25, 25, 25, 25]
    assert table.edges[0] == 0.0 and table.edges[-1] == 1.0
    assert table.ece == pytest.approx(p.mean())  # every bin observes 0


def test_reliability_rejects_values_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability(np.array([1.5]), np.array([1]))


# -- calibrators --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_calibrator_repairs_a_miscalibrated_score(kind: str) -> None:
    rng = np.random.default_rng(2)
    score = rng.normal(size=50_000)
    truth = 1 / (1 + np.exp(-(2 * score - 1)))  # true P(y | score)
    labels = _bernoulli(truth, 3)
    raw = 1 / (1 + np.exp(-score))  # the score's own sigmoid is off
    cal = Calibrator(kind).fit(score, labels)  # type: ignore[arg-type]
    before = expected_calibration_error(raw, labels)
    after = expected_calibration_error(cal.predict(score), labels)
    assert before > 0.05
    assert after < 0.02


def test_isotonic_output_is_monotone_and_clipped() -> None:
    rng = np.random.default_rng(4)
    score = rng.normal(size=5_000)
    cal = Calibrator("isotonic").fit(score, _bernoulli(1 / (1 + np.exp(-3 * score)), 5))
    grid = np.linspace(-10, 10, 2_001)
    out = cal.predict(grid)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0 and out.max() <= 1
    assert out[0] == cal.predict(np.array([score.min()]))[0]  # clipped below the data


def test_platt_on_separable_data_orders_and_stays_finite() -> None:
    score = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    cal = Calibrator("platt").fit(score, labels)
    out = cal.predict(score)
    assert np.isfinite(cal.slope_) and cal.slope_ > 0
    assert (out[labels == 1] > 0.5).all() and (out[labels == 0] < 0.5).all()
    assert out.max() < 1.0  # smoothed targets: never certain


def test_nan_scores_get_the_rate_of_their_group() -> None:
    score = np.array([np.nan, np.nan, np.nan, np.nan, 0.0, 1.0])
    labels = np.array([1, 0, 0, 0, 0, 1])
    cal = Calibrator("isotonic").fit(score, labels)
    assert cal.predict(np.array([np.nan]))[0] == pytest.approx(0.25)
    assert cal.predict(np.array([1.0]))[0] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_calibrator_round_trips_through_json(kind: str) -> None:
    rng = np.random.default_rng(6)
    score = np.append(rng.normal(size=500), np.nan)
    cal = Calibrator(kind).fit(score, _bernoulli(1 / (1 + np.exp(-np.nan_to_num(score))), 7))  # type: ignore[arg-type]
    back = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    probe = np.append(rng.normal(scale=3, size=100), np.nan)
    np.testing.assert_array_equal(back.predict(probe), cal.predict(probe))


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown calibrator"):
        Calibrator("beta")  # type: ignore[arg-type]


# -- members and blend -------------------------------------------------------------------------
def _candidates(
    n_rows: int = 300, per_row: int = 20, seed: int = 8
) -> tuple[Candidates, np.ndarray]:
    """Three members: 'good' ranks the positives first, 'noise' is random, 'sparse' proposes
    only half the pairs; labels ~ a logistic in the good member's rank."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_rows), per_row).astype(np.int64)
    items = np.tile(np.arange(per_row), n_rows).astype(np.int32)
    good = np.tile(np.arange(1, per_row + 1), n_rows).astype(np.float32)
    noise = rng.permuted(good.reshape(n_rows, per_row), axis=1).ravel()
    sparse = np.where(rng.random(good.size) < 0.5, good, np.nan).astype(np.float32)
    ranks = np.stack([good, noise, sparse], axis=1)
    labels = _bernoulli(1 / (1 + np.exp(0.5 * (good - 4))), seed)
    cands = Candidates(rows, items, -ranks, ranks, -ranks, ("good", "noise", "sparse"), n_rows)
    return cands, labels


def test_member_calibrators_follow_the_rank_and_round_trip() -> None:
    cands, labels = _candidates()
    cals = MemberCalibrators("rank").fit(cands, labels)
    probs = cals.predict(cands)
    good_first = probs[(cands.ranks[:, 0] == 1), 0].mean()
    good_last = probs[(cands.ranks[:, 0] == 20), 0].mean()
    assert good_first > 0.8 > 0.05 > good_last
    unproposed = np.isnan(cands.ranks[:, 2])
    assert probs[unproposed, 2] == pytest.approx(labels[unproposed].mean())
    back = MemberCalibrators.from_dict(json.loads(json.dumps(cals.to_dict())))
    np.testing.assert_array_equal(back.predict(cands), probs)


def test_nonnegative_logistic_clamps_a_harmful_feature() -> None:
    rng = np.random.default_rng(9)
    x = rng.random((5_000, 2))
    labels = _bernoulli(1 / (1 + np.exp(-(4 * x[:, 0] - 3 * x[:, 1]))), 10)
    weights, _ = nonnegative_logistic(x, labels)
    assert weights[0] > 1.0
    assert weights[1] == 0.0  # unconstrained it would be about -3


def test_blend_weights_the_informative_member_and_ranks_by_it() -> None:
    cands, labels = _candidates()
    blend = Blend("rank").fit(cands, labels)
    weights = blend.weights
    assert min(weights.values()) >= 0
    assert weights["good"] > 5 * max(weights["noise"], 1e-9)
    scores = blend.rank(cands)
    per_row = scores.reshape(cands.n_rows, -1)
    assert (per_row.argmax(axis=1) == 0).mean() > 0.95  # the good member's first item
    back = Blend.from_dict(json.loads(json.dumps(blend.to_dict())))
    np.testing.assert_array_equal(back.rank(cands), scores)


# -- honest ranker scores ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def training() -> TrainingSet:
    """400 requests of 200 users (each user twice, as with two validation folds), 40 candidates
    each, two informative features: what Ensemble.fit hands the ranker, without the fit."""
    n_rows, per_row = 400, 40
    cands, _ = _candidates(n_rows, per_row, seed=11)
    rng = np.random.default_rng(12)
    features = rng.normal(size=(cands.size, 2)).astype(np.float32)
    labels = _bernoulli(1 / (1 + np.exp(-(2 * features[:, 0] + features[:, 1] - 4))), 13)
    users = np.tile(np.arange(n_rows // 2), 2).astype(np.int32)
    table = FeatureTable(features, ("a", "b"))
    return TrainingSet(
        candidates=cands,
        features=table,
        labels=labels,
        users=users,
        history_lengths=np.full(n_rows, 10, dtype=np.int64),
        n_targets=int(labels.sum()),
    )


def test_user_folds_keep_a_user_in_one_fold(training: TrainingSet) -> None:
    fold = user_folds(training, 3)
    user_of_pair = training.users[training.candidates.rows]
    for user in np.unique(user_of_pair):
        assert np.unique(fold[user_of_pair == user]).size == 1
    assert set(np.unique(fold)) == {0, 1, 2}


@pytest.mark.parametrize("kind", ["lightgbm", "logistic"])
def test_calibrate_ranker_lowers_the_ece_of_a_biased_ranker(
    training: TrainingSet, kind: str
) -> None:
    config = EnsembleConfig(
        members=[MemberConfig(model="pop")],
        ranker=RankerConfig(kind=kind, max_rounds=30),  # type: ignore[arg-type]
        negatives_per_user=3,  # a biased sample of negatives: the raw ranker over-predicts
    )
    result = calibrate_ranker(training, config, "isotonic", folds=3)
    assert int(result.before.count.sum()) == int(result.after.count.sum()) == training.labels.size
    assert result.before.ece > 0.1
    assert result.after.ece < 0.03
    out = result.calibrator.predict(np.linspace(-5, 5, 50))
    assert ((out >= 0) & (out <= 1)).all()
