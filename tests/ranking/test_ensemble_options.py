"""Ensemble options of issue 4 parts 4 and 8: calibrated probabilities, the blend scorer and
diversity inside recommend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsemble.data.dataset import Dataset
from recsemble.data.synthetic import EVENT_WEIGHTS, SyntheticConfig, generate
from recsemble.errors import ConfigError
from recsemble.evaluation.protocol import Split
from recsemble.ranking.config import EnsembleConfig, MemberConfig, ViewConfig
from recsemble.ranking.ensemble import Ensemble
from recsemble.ranking.metaranker import RankerConfig
from recsemble.ranking.persistence import load_ensemble, save_ensemble

MEMBERS = [MemberConfig(model=m, candidates=30) for m in ("pop", "itemknn", "covisit")]


def _config(**options: object) -> EnsembleConfig:
    return EnsembleConfig(
        members=MEMBERS, ranker=RankerConfig(max_rounds=30), validation_folds=1, **options
    )


@pytest.fixture(scope="module")
def fitted(small_split: Split) -> Ensemble:
    return Ensemble(_config(calibration="isotonic")).fit(small_split.train)


def test_probabilities_are_the_calibrated_scores(fitted: Ensemble, small_split: Split) -> None:
    users = small_split.evaluated_users[:50]
    at = small_split.reference_time[users]
    plain = fitted.recommend(users, 10, at=at)
    probs = fitted.recommend(users, 10, at=at, probabilities=True)
    np.testing.assert_array_equal(probs.items, plain.items)
    assert fitted.calibrator_ is not None
    np.testing.assert_allclose(
        probs.scores, fitted.calibrator_.predict(plain.scores).astype(np.float32)
    )
    assert ((probs.scores >= 0) & (probs.scores <= 1)).all()


def test_diversity_option_changes_lists_and_zero_keeps_them(
    fitted: Ensemble, small_split: Split
) -> None:
    users = small_split.evaluated_users[:50]
    at = small_split.reference_time[users]
    plain = fitted.recommend(users, 10, at=at)
    fitted.config = _config(diversity=1.0, diversity_similarity="category")
    try:
        diverse = fitted.recommend(users, 10, at=at)
    finally:
        fitted.config = _config(calibration="isotonic")
    assert (diverse.items != plain.items).any()
    assert (np.sort(diverse.items, axis=1) >= 0).all()


def test_blend_scorer_and_persistence(small_split: Split, tmp_path: Path) -> None:
    ens = Ensemble(_config(scorer="blend")).fit(small_split.train)
    assert ens.blend_ is not None and ens.calibrator_ is None
    plain = Ensemble(_config()).fit(small_split.train)  # no calibrator unless asked for
    with pytest.raises(ValueError, match="calibrator"):
        plain.recommend(small_split.evaluated_users[:3], 5, probabilities=True)
    users = small_split.evaluated_users[:50]
    at = small_split.reference_time[users]
    top = ens.recommend(users, 10, at=at, probabilities=True)
    assert ((top.scores >= 0) & (top.scores <= 1)).all()
    back = load_ensemble(save_ensemble(ens, tmp_path / "model"))
    again = back.recommend(users, 10, at=at, probabilities=True)
    np.testing.assert_array_equal(again.items, top.items)
    np.testing.assert_allclose(again.scores, top.scores)


def test_calibrator_survives_save_and_load(
    fitted: Ensemble, small_split: Split, tmp_path: Path
) -> None:
    users = small_split.evaluated_users[:20]
    at = small_split.reference_time[users]
    back = load_ensemble(save_ensemble(fitted, tmp_path / "model"))
    want = fitted.recommend(users, 5, at=at, probabilities=True)
    got = back.recommend(users, 5, at=at, probabilities=True)
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_allclose(got.scores, want.scores)


def test_a_view_of_an_event_type_the_data_lacks_is_a_config_error(small_data: Dataset) -> None:
    """Before, the member silently learned from no data at all."""
    config = EnsembleConfig(
        members=[
            MemberConfig(model="pop"),
            MemberConfig(model="itemknn", view=ViewConfig(events=["purchse"])),
        ],
        validation_folds=1,
    )
    with pytest.raises(ConfigError, match=r"no interaction has an event type in \['purchse'\]"):
        Ensemble(config).fit(small_data)
    weighted = Dataset.from_frames(
        *generate(SyntheticConfig(seed=1, n_users=60, n_items=80, n_interactions=900)),
        event_weights=EVENT_WEIGHTS,
    )
    partly = config.model_copy(
        update={"members": [MemberConfig(model="pop", view=ViewConfig(events=["view", "purchse"]))]}
    )
    with pytest.raises(ConfigError, match=r"\['purchse'\] have no weight.*cart, purchase, view"):
        Ensemble(partly).fit(weighted)
