"""Re-ranking stages on a served model follow item PUTs: business rules, expiry, caps and the
other stages reading item attributes apply to the catalog as it is now, not as it was loaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsemble.config import RecsembleConfig
from recsemble.data.dataset import Dataset
from recsemble.data.synthetic import EVENT_WEIGHTS, SyntheticConfig, generate
from recsemble.errors import NotRecommendableError
from recsemble.evaluation.protocol import prepare
from recsemble.generators import GENERATORS
from recsemble.pipeline import Recommender, RequestOptions
from recsemble.ranking.ids import Catalog
from recsemble.ranking.persistence import load_model, save_model
from recsemble.rerank.exploration import Exploration
from recsemble.rerank.filters import QualityFilter
from recsemble.rerank.transforms import FreshnessBoost
from recsemble.store.base import Event, Record

STAGES = {
    "stages": ["rules", "available"],
    "rules": {"include": [{"attribute": "price", "op": "<", "value": 20}]},
    "cap": {"max_per_category": 1},
}


@pytest.fixture(scope="module")
def data() -> Dataset:
    interactions, items, users = generate(
        SyntheticConfig(seed=5, n_users=150, n_items=80, n_interactions=4_000, n_categories=5)
    )
    items = items.with_columns(
        price=pl.lit(10.0), quality=pl.lit(0.9), expires_at=pl.lit(None, dtype=pl.Int64)
    )
    return prepare(Dataset.from_frames(interactions, items, users, event_weights=EVENT_WEIGHTS))


@pytest.fixture(scope="module")
def saved(data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    knn = GENERATORS["itemknn"]().fit(data)
    folder = tmp_path_factory.mktemp("live-catalog") / "knn"
    return save_model(knn, folder, Catalog.from_dataset(data))


@pytest.fixture()
def rec(saved: Path) -> Iterator[Recommender]:
    recommender = Recommender(load_model(saved), config=RecsembleConfig(rerank=STAGES))
    recommender.warm()
    yield recommender
    recommender.close()


def _ids(rec: Recommender, user: str, **options: object) -> list[str]:
    return [r.item_id for r in rec.recommend(user, RequestOptions(**options)).items]  # type: ignore[arg-type]


def _put(rec: Recommender, item: str, **attributes: object) -> None:
    """A PUT /items/{id} as the API stores it: the standard fields and free `attributes`."""
    title = rec.items.titles[rec.items.idx(item) or 0]
    rec.upsert_items([Record(item, {"title": title, "attributes": attributes})])


def test_a_rule_on_a_free_attribute_follows_a_put(rec: Recommender, data: Dataset) -> None:
    user = data.users.id_of(4)
    first = _ids(rec, user, k=5)[0]
    _put(rec, first, price=50)  # price < 20 no longer holds
    assert first not in _ids(rec, user, k=5)
    assert first not in _ids(rec, user, k=5, rerank=("rules",))
    _put(rec, first, price=15)
    assert _ids(rec, user, k=5)[0] == first


def test_an_expiry_put_in_the_past_hides_the_item(rec: Recommender, data: Dataset) -> None:
    user = data.users.id_of(6)
    first = _ids(rec, user, k=5)[0]
    _put(rec, first, price=5, expires_at=1_000_000_000)
    assert first not in _ids(rec, user, k=5)
    _put(rec, first, price=5, expires_at=4_000_000_000)  # expires in 2096: shown again
    assert _ids(rec, user, k=5)[0] == first


def test_a_value_of_the_wrong_type_reads_as_missing(rec: Recommender, data: Dataset) -> None:
    user = data.users.id_of(8)
    first = _ids(rec, user, k=5)[0]
    _put(rec, first, price="cheap")  # text in a numeric column: no price, so not < 20
    assert first not in _ids(rec, user, k=5)
    assert rec.items.attributes["price"].dtype == pl.Float64


def test_a_stage_asked_for_later_and_the_cap_see_the_new_categories(
    rec: Recommender, data: Dataset
) -> None:
    user = data.users.id_of(10)
    top = _ids(rec, user, k=2, rerank=())
    for item in top:  # both in one new category: the cap keeps one of them
        rec.upsert_items([Record(item, {"categories": ["limited"], "attributes": {"price": 1}})])
    capped = _ids(rec, user, k=2, rerank=("cap",))
    assert capped[0] == top[0] and top[1] not in capped


def test_exploration_keeps_its_live_counts_through_a_put(saved: Path, data: Dataset) -> None:
    config = RecsembleConfig(rerank={"stages": ["explore"], "explore": {"slots": [2]}})
    rec = Recommender(load_model(saved), config=config)
    item = data.items.id_of(3)
    rec.observe([Event(f"e{n}", data.users.id_of(1), item, "view", 1) for n in range(5)])
    stage = rec.stages.fitted["explore"]
    assert isinstance(stage, Exploration)
    clicks = float(stage.stats_.clicks[3])
    rec.upsert_items([Record(data.items.id_of(4), {"created_at": 1_900_000_000})])
    after = rec.stages.fitted["explore"]
    assert isinstance(after, Exploration) and after is not stage
    assert float(after.stats_.clicks[3]) == clicks
    assert after.born_[4] == 1_900_000_000 and np.isfinite(stage.born_[4])
    rec.close()


def test_no_explanation_for_an_item_the_user_can_never_get(rec: Recommender, data: Dataset) -> None:
    user = data.users.id_of(12)
    fitted = data.items.id_of(
        int(data.interactions.filter(pl.col("user_idx") == 12)["item_idx"][0])
    )
    with pytest.raises(NotRecommendableError, match=f"{fitted}.* history of user"):
        rec.explain(user, fitted)
    shown = _ids(rec, user, k=3)
    assert rec.explain(user, shown[0]).members  # a listed item is explained
    rec.observe([Event("seen-1", user, shown[0], "view", 1_900_000_000)])
    with pytest.raises(NotRecommendableError, match="history"):
        rec.explain(user, shown[0])
    rec.upsert_items([Record(shown[1], {"available": False})])
    with pytest.raises(NotRecommendableError, match="unavailable"):
        rec.explain(user, shown[1])
    assert rec.explain("someone-new", shown[0]).text  # nobody else has seen it
    rec.upsert_items([Record("added", {"title": "new"}), Record("hidden", {"available": False})])
    assert rec.explain(user, "added").text.startswith("New item")
    rec.observe([Event("seen-2", user, "added", "view", 1_900_000_000)])
    with pytest.raises(NotRecommendableError, match="history"):
        rec.explain(user, "added")
    with pytest.raises(NotRecommendableError, match="unavailable"):
        rec.explain(user, "hidden")


def test_items_added_after_training_meet_the_filter_stages_too(
    rec: Recommender, data: Dataset
) -> None:
    """The new-item slot (an item PUT after training, close in content to the history) is
    judged by the request's filter stages as the model's items are: rules and expiry."""
    user = data.users.id_of(14)
    last = int(data.interactions.filter(pl.col("user_idx") == 14).sort("timestamp")["item_idx"][-1])
    like = {"title": rec.items.titles[last], "categories": ["c"]}
    for price, expires, shown in ((50, None, False), (5, 1_000_000_000, False), (5, None, True)):
        free = {"price": price} if expires is None else {"price": price, "expires_at": expires}
        rec.upsert_items([Record("added", {**like, "attributes": free})])
        assert (_ids(rec, user, k=5)[-1] == "added") is shown, (price, expires)
        assert ("added" in _ids(rec, user, k=5, rerank=())) is True  # no stage judges it
        session = rec.recommend_session([data.items.id_of(last)], RequestOptions(k=5))
        assert (session.items[-1].item_id == "added") is shown


def test_only_stages_reading_attributes_are_refitted_by_a_put(saved: Path) -> None:
    """Category similarity follows the catalog; content vectors (seconds to fit on a large
    catalog), a quality scorer (a function of the item idx) and the long tail (from the
    interactions) are kept as they are."""
    stages = {"stages": ["mmr", "dpp", "quality", "fair"], "dpp": {"similarity": "content"}}
    rec = Recommender(load_model(saved), config=RecsembleConfig(rerank=stages))
    before = dict(rec.stages.fitted)
    rec.upsert_items([Record(rec.items.ids.id_of(0), {"categories": ["new"]})])
    after = rec.stages.fitted
    assert after["mmr"] is not before["mmr"] and after["quality"] is not before["quality"]
    assert after["dpp"] is before["dpp"] and after["fair"] is before["fair"]  # the long tail
    scored = QualityFilter(scorer=lambda items: np.ones(len(items))).fit(rec.stages.dataset)
    assert scored.refit_catalog(rec.stages.dataset) is scored
    rec.close()


@pytest.mark.parametrize("name", ["fresh", "explore"])
def test_a_put_reads_created_at_again_but_not_every_interaction(
    saved: Path, data: Dataset, name: str
) -> None:
    """Item ages follow a PUT of created_at; the first interactions (a pass over every
    interaction: seconds on a large log) are the same and are not read again."""
    rec = Recommender(load_model(saved), config=RecsembleConfig(rerank={"stages": [name]}))
    stage = rec.stages.fitted[name]
    assert isinstance(stage, FreshnessBoost | Exploration)
    changed = rec.stages.dataset.item_attributes.with_columns(created_at=pl.lit(None, pl.Int64))
    changed[0, "created_at"] = 1_900_000_000
    no_log = data.with_interactions(data.interactions.clear())  # what a re-read would see
    catalog = Dataset(users=no_log.users, items=no_log.items, interactions=no_log.interactions,
                      item_attributes=changed, user_attributes=no_log.user_attributes,
                      event_weights=no_log.event_weights)  # fmt: skip
    after = stage.refit_catalog(catalog)
    assert isinstance(after, FreshnessBoost | Exploration)
    assert after.born_[0] == 1_900_000_000
    assert np.isfinite(after.born_[1:]).all()  # from the first interactions, kept
    rec.close()


def test_an_expiry_put_in_seconds_on_a_datetime_column_is_that_moment(
    data: Dataset, tmp_path: Path
) -> None:
    """A catalog may hold expires_at as datetimes; the API sends epoch seconds (or ISO text),
    which mean that moment, not microseconds after 1970 (an expiry long past)."""
    attributes = data.item_attributes.with_columns(expires_at=pl.lit(None, pl.Datetime("us")))
    catalog = Dataset(users=data.users, items=data.items, interactions=data.interactions,
                      item_attributes=attributes, user_attributes=data.user_attributes,
                      event_weights=data.event_weights)  # fmt: skip
    knn = GENERATORS["itemknn"]().fit(data)
    folder = save_model(knn, tmp_path / "knn", Catalog.from_dataset(catalog))
    rec = Recommender(load_model(folder), config=RecsembleConfig(rerank={"stages": ["available"]}))
    user = data.users.id_of(16)
    first = _ids(rec, user, k=5)[0]
    for expires, shown in ((4_000_000_000, True), ("2096-10-02T07:06:40", True), (1e9, False)):
        rec.upsert_items([Record(first, {"attributes": {"expires_at": expires}})])
        assert (first in _ids(rec, user, k=5)) is shown, expires
    rec.close()


def test_a_configured_stage_the_catalog_could_not_support_joins_once_a_put_can(
    saved: Path, data: Dataset
) -> None:
    """A rule on an attribute no item had is skipped (and reported) at load; once a PUT gives
    an item that attribute, the configured rule applies; until then it stays reported."""
    rules = {"include": [{"attribute": "colour", "op": "==", "value": "red"}]}
    rec = Recommender(
        load_model(saved), config=RecsembleConfig(rerank={"stages": ["rules"], "rules": rules})
    )
    user = data.users.id_of(18)
    top = _ids(rec, user, k=3)
    assert rec.stages.default == () and "colour" in rec.stages.unusable["rules"]
    rec.upsert_items([Record(top[1], {"title": "x", "attributes": {"price": 1}})])
    assert "rules" in rec.stages.unusable  # still no colour: still reported
    rec.upsert_items([Record(top[1], {"title": "x", "attributes": {"colour": "red"}})])
    assert rec.stages.default == ("rules",) and not rec.stages.unusable
    assert _ids(rec, user, k=3) == [top[1]]  # the only red item
    rec.close()


def test_a_put_of_an_item_outside_the_model_refits_no_stage(rec: Recommender) -> None:
    """Items added after training are not in the table the stages read: nothing to refit."""
    rec.upsert_items([Record(rec.items.ids.id_of(0), {"title": "changed"})])
    before = dict(rec.stages.fitted)
    rec.upsert_items([Record("brand-new", {"title": "x"})])
    assert all(rec.stages.fitted[name] is stage for name, stage in before.items())


def test_similar_items_leave_out_what_the_catalog_filters_drop(
    rec: Recommender, data: Dataset
) -> None:
    """/similar applied no stage: an item PUT with an expiry in the past, or a price the
    `price < 20` rule excludes, was still listed as similar."""
    anchor = data.items.id_of(0)
    neighbours = [r.item_id for r in rec.similar(anchor, 5).items]
    expired, pricey = neighbours[0], neighbours[1]
    _put(rec, expired, expires_at=1_000_000_000)
    _put(rec, pricey, price=50)
    now = [r.item_id for r in rec.similar(anchor, 5).items]
    assert expired not in now and pricey not in now and len(now) == 5
    assert now[:3] == neighbours[2:5]  # the rest keep their order
