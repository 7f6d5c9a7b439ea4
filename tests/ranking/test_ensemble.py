"""The ensemble end to end on small synthetic data: valid lists, stacking, routing, causality."""

from __future__ import annotations

import copy

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import NotFittedError
from recsemble.evaluation.protocol import Split, prepare, split
from recsemble.evaluation.runner import evaluate
from recsemble.generators import GENERATORS
from recsemble.generators.history import Histories
from recsemble.ranking import Ensemble, EnsembleConfig, MemberConfig, RankerConfig, ViewConfig
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.features import FeatureBuilder
from recsemble.ranking.member_fitting import apply_view
from recsemble.ranking.trainingset import validation_source
from recsemble.testing.contract import assert_valid_topk

MEMBERS = ["pop", "pop-trending", "itemknn-recent", "ease-recent", "covisit"]


def _config(**changes: object) -> EnsembleConfig:
    base: dict[str, object] = {
        "members": [{"model": m, "candidates": 30} for m in MEMBERS],
        "ranker": {"max_rounds": 60},
        "validation_folds": 1,
    }
    return EnsembleConfig.model_validate({**base, **changes})


@pytest.fixture(scope="module")
def fitted(small_split: Split) -> Ensemble:
    return Ensemble(_config()).fit(small_split.train)


def test_recommend_gives_valid_lists_without_seen_items(
    fitted: Ensemble, small_split: Split
) -> None:
    users = small_split.evaluated_users
    top = fitted.recommend(users, 10, at=small_split.reference_time[users])
    assert_valid_topk(top, users.size, 10, small_split.train.n_items)
    seen = small_split.train.user_item_matrix("binary")[users]
    for r in range(users.size):
        row = top.items[r][top.items[r] >= 0]
        assert not set(row.tolist()) & set(seen[[r]].indices.tolist())


def test_ensemble_beats_popularity_and_is_deterministic(small_split: Split) -> None:
    models = {"ensemble": Ensemble(_config()), "pop": GENERATORS["pop"]()}
    ev = evaluate(small_split, models)
    again = Ensemble(_config()).fit(small_split.train)
    users = small_split.evaluated_users
    np.testing.assert_array_equal(
        ev.runs["ensemble"].topk.items,
        again.recommend(users, 10, at=small_split.reference_time[users]).items,
    )
    assert ev.summary("ensemble", 10)["ndcg@10"] > ev.summary("pop", 10)["ndcg@10"]


def test_stacking_learns_only_from_the_training_data(small_split: Split) -> None:
    """The ranker's targets come from a validation window cut from train, never from test."""
    ens = Ensemble(_config()).fit(small_split.train)
    inner = split(small_split.train, "temporal-user")
    assert ens.training_.n_targets == inner.test.n_interactions
    assert ens.training_.labels.sum() > 0


def test_unknown_and_cold_users_get_an_answer(fitted: Ensemble, small_split: Split) -> None:
    n_items = small_split.train.n_items
    empty = Histories.from_lists([[]], n_items)
    top = fitted.recommend([10**6], 5, histories=empty)
    assert (top.items[0] >= 0).all()  # the popularity members still propose


def test_routing_skips_members_that_add_nothing_for_cold_users(small_data: Dataset) -> None:
    """temporal-global validation windows hold new users: only popularity serves them."""
    outer = split(small_data, "temporal-global")
    ens = Ensemble(_config(), protocol="temporal-global").fit(outer.train)
    assert ens.routes_ is not None
    assert set(ens.routes_["cold"]) == {"pop", "pop-trending"}
    assert set(ens.routes_["20-99"]) >= {"itemknn-recent", "ease-recent"}
    cold = outer.cold_users
    assert cold.size > 0
    top = ens.recommend(cold, 10, at=outer.reference_time[cold])
    assert (top.items[:, 0] >= 0).all()


def test_request_time_history_changes_the_answer(fitted: Ensemble, small_split: Split) -> None:
    n_items = small_split.train.n_items
    a = fitted.recommend([0], 10, histories=Histories.from_lists([[1, 2, 3]], n_items))
    b = fitted.recommend([0], 10, histories=Histories.from_lists([[50, 60, 70]], n_items))
    assert not np.array_equal(a.items, b.items)
    assert not {1, 2, 3} & set(a.items[0].tolist())


def test_histories_of_another_batch_are_refused(fitted: Ensemble, small_split: Split) -> None:
    # One history for two users answered the second from someone else's rows, silently.
    one = Histories.from_lists([[1, 2, 3]], small_split.train.n_items)
    with pytest.raises(ValueError, match=r"one row per user \(2\).*got 1 rows"):
        fitted.recommend([0, 1], 10, histories=one)


def test_not_fitted_raises() -> None:
    with pytest.raises(NotFittedError):
        Ensemble(_config()).recommend([0], 5)


def test_logistic_fallback_ranks_too(small_split: Split) -> None:
    ens = Ensemble(_config(ranker=RankerConfig(kind="logistic"))).fit(small_split.train)
    users = small_split.evaluated_users[:20]
    top = ens.recommend(users, 5, at=small_split.reference_time[users])
    assert_valid_topk(top, users.size, 5, small_split.train.n_items)
    assert ens.ranker_.kind_ == "logistic"


def test_pruned_members_are_neither_fitted_nor_run(small_split: Split) -> None:
    ens = Ensemble(_config(prune=["covisit", "ease-recent"])).fit(small_split.train)
    assert set(ens.members_) == {"pop", "pop-trending", "itemknn-recent"}
    assert not any(name.startswith(("covisit", "ease-recent")) for name in ens.feature_names_)


def test_serving_top_ranks_only_what_some_member_ranks_high(
    fitted: Ensemble, small_split: Split
) -> None:
    users = small_split.evaluated_users[:30]
    at = small_split.reference_time[users]
    capped = copy.copy(fitted)
    capped.config = fitted.config.model_copy(update={"serving_top": 4})
    every = copy.copy(fitted)
    every.config = fitted.config.model_copy(update={"serving_top": None})
    few = next(iter(capped.ranked_blocks(users, at=at)))
    full = next(iter(every.ranked_blocks(users, at=at)))
    assert few.candidates.best_ranks().max() <= 4 < full.candidates.best_ranks().max()
    # The kept pairs are the full union's, with the same features and ranker scores.

    def key(c: Candidates) -> np.ndarray:
        return c.rows * small_split.train.n_items + c.items

    kept = np.isin(key(full.candidates), key(few.candidates))
    assert kept.sum() == few.candidates.size
    np.testing.assert_array_equal(full.features.values[kept], few.features.values)
    np.testing.assert_array_equal(full.scores[kept], few.scores)
    assert_valid_topk(capped.recommend(users, 4, at=at), users.size, 4, small_split.train.n_items)


def test_config_rejects_mistakes() -> None:
    with pytest.raises(ValidationError, match="unknown member model"):
        EnsembleConfig(members=[MemberConfig(model="nope")])
    with pytest.raises(ValidationError, match="unique"):
        EnsembleConfig(members=[MemberConfig(model="pop"), MemberConfig(model="pop")])
    with pytest.raises(ValidationError, match="prune"):
        EnsembleConfig(prune=["nope"])
    with pytest.raises(ValidationError, match="members is empty"):  # was "prune would remove"
        EnsembleConfig(members=[])
    with pytest.raises(ValidationError, match="extra"):
        EnsembleConfig.model_validate({"rankr": {}})
    with pytest.raises(ValidationError, match="serving_top"):
        EnsembleConfig.model_validate({"serving_top": 0})
    with pytest.raises(ValidationError):  # a member's params are checked against its model
        EnsembleConfig(members=[MemberConfig(model="ease", params={"lambda": 3})])


def test_views_let_one_model_specialise(small_data: Dataset) -> None:
    recent = apply_view(small_data, ViewConfig(window_days=10))
    end = int(small_data.column("timestamp").max())
    assert recent.n_interactions < small_data.n_interactions
    assert recent.column("timestamp").min() > end - 10 * 86_400
    spec = MemberConfig(model="pop", view=ViewConfig(window_days=10))
    assert spec.label == "pop@10d"


def test_features_are_causal(small_data: Dataset, small_split: Split) -> None:
    """Adding events after the moment of recommendation changes no feature."""
    ens = Ensemble(_config()).fit(small_split.train)
    users = small_split.evaluated_users[:30]
    at = small_split.reference_time[users]
    block = next(ens.ranked_blocks(users, at=at))
    later = small_data.interactions.with_columns(pl.col("timestamp") + 10**8)
    more = small_split.train.with_interactions(pl.concat([small_split.train.interactions, later]))
    builder = FeatureBuilder(tuple(ens.config.popularity_windows_days)).fit(more)
    again = builder.build(block.candidates, ens.histories_.rows(users), at)
    np.testing.assert_array_equal(block.features.values, again.values)


def test_light_users_are_served_but_left_out_of_the_validation_windows(
    small_data: Dataset,
) -> None:
    """A model trained for serving keeps users with a single interaction; the ranker learns
    from windows of users with 2 or more (validation_min_interactions), who keep a history."""
    light = pl.DataFrame(
        {"user_id": ["light-1", "light-2"], "item_id": ["i000001", "i000003"],
         "timestamp": [1_704_100_000, 1_704_100_200]}
    )  # fmt: skip
    frames = small_data.external_interactions().select("user_id", "item_id", "timestamp")
    mixed = prepare(
        Dataset.from_frames(pl.concat([frames, light])), min_user_interactions=1, keep_catalog=True
    )
    light_idx = [mixed.users.idx_of(u) for u in ("light-1", "light-2")]
    assert validation_source(small_data, 2) is small_data  # prepared data: unchanged
    source = validation_source(mixed, 2)
    assert source.user_history_lengths[light_idx].tolist() == [0, 0]
    assert source.n_interactions == mixed.n_interactions - 2 and source.users == mixed.users
    ens = Ensemble(_config()).fit(mixed)
    assert not set(ens.training_.users.tolist()) & set(light_idx)
    top = ens.recommend(np.asarray(light_idx, dtype=np.int32), k=5)
    assert (top.items[0] >= 0).all() and mixed.items.idx_of("i000001") not in top.items[0]
