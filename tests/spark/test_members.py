"""Members fitted on Spark: the single machine's state and recommendations, saved artifacts
that load without Spark, and clear errors where a member has no Spark form."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.evaluation import protocol
from recsemble.evaluation.metrics import compute_metrics
from recsemble.evaluation.runner import catalog_stats, recommend_for_split, truth_matrix
from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.generators.history import Histories
from recsemble.ranking.ids import Catalog
from recsemble.ranking.persistence import save_model
from recsemble.spark import data as spark_data
from recsemble.spark import members, splits
from recsemble.types import TopK
from tests.spark.conftest import lists_without_spark

#: iALS on MLlib against `implicit`: another solver (MLlib scales the regularisation by each
#: row's interactions, ALS-WR; its own random start and blocking), so other item factors; users
#: are folded in the same way. Measured NDCG@10 gaps: 0.007 on this log (429 train users; seeds
#: move either solver by under 0.004) and 0.001 on ml-100k. A wrong mapping (say, regParam not
#: divided by the mean history length) costs far more than the 0.02 allowed.
ALS_NDCG_TOLERANCE = 0.02


@dataclass(frozen=True)
class Fixture:
    split: protocol.Split  # the single machine's
    data: members.TrainingData  # the same train part on Spark


@pytest.fixture(scope="module")
def prepared(spark: Any, synthetic: Dataset) -> Fixture:
    source = spark_data.source_from_dataset(spark, synthetic)
    on_spark = splits.index(spark_data.prepare(source.interactions), source)
    spark_split = splits.split(on_spark, "temporal-user")
    train = spark_split.train.select("user_idx", "item_idx", "timestamp", "weight").cache()
    data = members.TrainingData(train, len(on_spark.users), len(on_spark.items))
    return Fixture(protocol.split(protocol.prepare(synthetic), "temporal-user"), data)


def _lists(model: CandidateGenerator, split: protocol.Split) -> TopK:
    return recommend_for_split(model, split, split.evaluated_users, 10)


def _summary(topk: TopK, split: protocol.Split) -> dict[str, float]:
    users = split.evaluated_users
    result = compute_metrics(topk.items, truth_matrix(split, users), 10, catalog_stats(split))
    return result.summary()


def _both(name: str, fixture: Fixture, **overrides: Any) -> tuple[Any, Any]:
    config = GENERATORS[name].Config.model_validate(overrides)
    local = GENERATORS[name](config).fit(fixture.split.train)
    return local, members.fit_on_spark(name, config, fixture.data)


def _same_lists(local: Any, remote: Any, split: protocol.Split) -> None:
    mine, theirs = _lists(remote, split), _lists(local, split)
    assert np.array_equal(mine.items, theirs.items)
    np.testing.assert_allclose(mine.scores, theirs.scores, rtol=1e-6)
    a, b = _summary(mine, split), _summary(theirs, split)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-6, nan_ok=True), key


def _same_sparse(a: sp.csr_array, b: sp.csr_array) -> None:
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-6)


@pytest.mark.parametrize("name", ["pop", "pop-trending"])
def test_popularity_counts(prepared: Fixture, name: str) -> None:
    local, remote = _both(name, prepared)
    np.testing.assert_array_equal(remote.totals_, local.totals_)
    assert remote.histories_.timestamps.tolist() == local.histories_.timestamps.tolist()
    assert remote.now_ == local.now_
    _same_lists(local, remote, prepared.split)


@pytest.mark.parametrize(
    "overrides", [{}, {"directed": False, "backward_weight": 0.5, "window": 3, "neighbors": 5}]
)
def test_covisitation(prepared: Fixture, overrides: dict[str, Any]) -> None:
    local, remote = _both("covisit", prepared, **overrides)
    _same_sparse(remote.transitions_, local.transitions_)
    _same_lists(local, remote, prepared.split)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("itemknn", {}),
        ("itemknn", {"weighting": "bm25", "prune": "source", "min_support": 2, "neighbors": 7}),
        ("itemknn-recent", {"weighting": "none", "alpha": 0.7, "shrink": 0.0, "neighbors": 3}),
    ],
)
def test_item_knn_similarities_match(
    prepared: Fixture, name: str, overrides: dict[str, Any]
) -> None:
    local, remote = _both(name, prepared, **overrides)
    # Partitions' float32 sums added in float64: the same pairs kept, values to float32 rounding.
    _same_sparse(remote.similarity_, local.similarity_)
    _same_lists(local, remote, prepared.split)


def test_item_knn_partial_products_over_many_partitions_and_blocks(
    prepared: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many user partitions and item blocks of a few pairs give the one-partition sums."""
    from recsemble.spark import cooccurrence

    config = GENERATORS["itemknn"].Config(min_support=2, neighbors=12)
    whole = members.fit_on_spark("itemknn", config, prepared.data).similarity_
    monkeypatch.setattr(cooccurrence, "EVENTS_PER_PARTITION", 1_000)
    monkeypatch.setattr(cooccurrence, "GRAM_BLOCK_PAIRS", 500)
    split = members.fit_on_spark("itemknn", config, prepared.data).similarity_
    _same_sparse(split, whole)
    assert whole.nnz > 1_000


def test_ease_on_the_driver(prepared: Fixture, monkeypatch: pytest.MonkeyPatch) -> None:
    local, remote = _both("ease", prepared, device="cpu")
    np.testing.assert_allclose(remote.weights_, local.weights_, rtol=1e-4, atol=1e-6)
    _same_lists(local, remote, prepared.split)
    monkeypatch.setattr(members, "MAX_DRIVER_ITEMS", 10)
    with pytest.raises(ConfigError, match="up to 10 items"):
        members.fit_on_spark("ease", GENERATORS["ease"].Config(), prepared.data)


def test_ials_through_mllib_is_within_tolerance(prepared: Fixture) -> None:
    local, remote = _both("ials", prepared, factors=16, iterations=10)
    assert remote.item_factors_.shape == local.item_factors_.shape
    # The fitted users' factor table, as CandidateGenerator.fit leaves it, solved once.
    assert remote.fitted_user_factors_ is not None
    fitted = remote.histories_.rows(np.arange(30, dtype=np.int32))
    fresh = Histories(
        fitted.indptr, fitted.items, fitted.timestamps, fitted.weights, fitted.n_items
    )
    np.testing.assert_allclose(
        remote.user_factors(fitted), remote.user_factors(fresh), rtol=1e-5, atol=1e-6
    )
    mine = _summary(_lists(remote, prepared.split), prepared.split)["ndcg@10"]
    theirs = _summary(_lists(local, prepared.split), prepared.split)["ndcg@10"]
    assert theirs > 0.05  # a model that learned something, so the comparison means something
    assert abs(mine - theirs) <= ALS_NDCG_TOLERANCE, (mine, theirs)


def test_members_without_a_spark_form_say_so(prepared: Fixture) -> None:
    with pytest.raises(ConfigError, match="no Spark form"):
        members.fit_on_spark("userknn", GENERATORS["userknn"].Config(), prepared.data)


@pytest.mark.parametrize("name", ["covisit", "ials"])
def test_artifacts_load_and_serve_without_spark(
    prepared: Fixture, spark: Any, synthetic: Dataset, tmp_path: Path, name: str
) -> None:
    config = GENERATORS[name].Config()
    model = members.fit_on_spark(name, config, prepared.data)
    catalog = Catalog.from_dataset(prepared.split.train)
    folder = save_model(model, tmp_path / name, catalog)
    assert lists_without_spark(folder) == model.recommend(list(range(20)), 10).items.tolist()
