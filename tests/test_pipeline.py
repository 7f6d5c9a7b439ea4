"""The serving Recommender on a small saved ensemble: filters, real time, cold start, sessions,
similar items and explanations, checked against the members' own scores."""

from __future__ import annotations

import gc
import json
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recsemble.config import RecsembleConfig
from recsemble.data.dataset import Dataset
from recsemble.data.synthetic import EVENT_WEIGHTS, SyntheticConfig, generate
from recsemble.errors import ConfigError
from recsemble.evaluation.protocol import prepare
from recsemble.generators import GENERATORS
from recsemble.generators.history import Histories
from recsemble.pipeline import Answer, Recommender, RequestOptions
from recsemble.ranking import Ensemble, EnsembleConfig, MemberConfig, RankerConfig
from recsemble.ranking.ids import Catalog
from recsemble.ranking.persistence import load_model, save_ensemble, save_model
from recsemble.store.base import Event, Record

MEMBERS = [
    MemberConfig(model="pop"),
    MemberConfig(model="pop-trending"),
    MemberConfig(model="pop-segment", params={"attribute": "country", "min_segment_users": 5}),
    MemberConfig(model="itemknn", candidates=30),
    MemberConfig(model="covisit", candidates=30),
    MemberConfig(model="ease", candidates=30),
]


@pytest.fixture(scope="module")
def data() -> Dataset:
    frames = generate(
        SyntheticConfig(seed=7, n_users=300, n_items=120, n_interactions=9_000, n_categories=6)
    )
    return prepare(Dataset.from_frames(*frames, event_weights=EVENT_WEIGHTS, name="small"))


@pytest.fixture(scope="module")
def ensemble(data: Dataset) -> Ensemble:
    config = EnsembleConfig(
        members=MEMBERS,
        validation_folds=1,
        routing=False,  # every user's list is ordered by the ranker (explained by SHAP)
        ranker=RankerConfig(max_rounds=30, early_stopping_share=0),
    )
    return Ensemble(config).fit(data)


@pytest.fixture(scope="module")
def saved(ensemble: Ensemble, data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline") / "model"
    return save_ensemble(ensemble, folder, catalog=Catalog.from_dataset(data))


@pytest.fixture()
def rec(saved: Path) -> Iterator[Recommender]:
    recommender = Recommender.load(saved, version="v1")
    recommender.warm()
    yield recommender
    recommender.close()


def _ids(answer: Answer) -> list[str]:
    return [r.item_id for r in answer.items]


def _history_ids(data: Dataset, user: int) -> set[str]:
    seen = data.user_item_matrix("binary")[[user]].indices
    return {str(i) for i in data.items.to_ids(seen)}


def _top_ids(data: Dataset, scores: np.ndarray, k: int) -> list[str]:
    order = np.lexsort((np.arange(scores.size), -scores))[:k]
    return [str(i) for i in data.items.to_ids(order)]


def test_known_user_answer_excludes_seen_items_and_a_removed_item(
    rec: Recommender, data: Dataset
) -> None:
    user = data.users.id_of(3)
    answer = rec.recommend(user, RequestOptions(k=10))
    assert (answer.source, answer.user_known, answer.model_version) == ("model", True, "v1")
    assert len(set(_ids(answer))) == 10
    assert not set(_ids(answer)) & _history_ids(data, 3)
    assert len(rec.recommend(user, RequestOptions(k=np.int64(3))).items) == 3  # numpy's k
    removed = answer.items[0].item_id
    rec.remove_item(removed)
    assert removed not in _ids(rec.recommend(user, RequestOptions(k=10)))
    for other in range(0, data.n_users, 7):
        assert removed not in _ids(rec.recommend(data.users.id_of(other), RequestOptions(k=20)))
    assert removed not in _ids(rec.recommend("someone-new", RequestOptions(k=50)))
    assert removed not in _ids(rec.similar(answer.items[1].item_id, 50))
    with pytest.raises(KeyError, match=removed):
        rec.similar(removed, 5)
    rec.upsert_items([Record(removed, {"title": "back again"})])  # an upsert brings it back
    assert rec.similar(removed, 3).items


def test_an_observed_event_drops_its_item_at_once_and_the_pool_is_refreshed(
    rec: Recommender, data: Dataset
) -> None:
    busiest = int(np.argmax(data.user_history_lengths))  # the most history to leak back
    user = data.users.id_of(busiest)
    before = _ids(rec.recommend(user, RequestOptions(k=10)))
    clicked = before[0]
    rec.observe([Event("ev-1", user, clicked, "view", 1_900_000_000)])
    after = rec.recommend(user, RequestOptions(k=10))
    assert clicked not in _ids(after) and len(after.items) == 10
    assert not set(_ids(after)) & _history_ids(data, busiest)  # the session mix neither
    deadline = time.monotonic() + 20
    while rec.stats()["refresh_done"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rec.refreshed[user].version == 1  # the new history was folded into the pool
    assert clicked not in rec.refreshed[user].items.tolist()
    assert clicked not in _ids(rec.recommend(user, RequestOptions(k=10)))


def _refreshed(rec: Recommender, done: int) -> None:
    deadline = time.monotonic() + 20
    while rec.stats()["refresh_done"] < done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rec.stats()["refresh_done"] >= done


def test_a_viewed_item_may_return_after_the_refresh_too(saved: Path, data: Dataset) -> None:
    """[rerank] seen counting purchases only: a viewed item stays a candidate, before the
    background refresh (the live seen rule) and after it (the refreshed pool)."""
    config = RecsembleConfig.model_validate({"rerank": {"seen": {"event_types": ["purchase"]}}})
    rec = Recommender.load(saved, config=config)
    rec.warm()
    user = data.users.id_of(int(np.argmax(data.user_history_lengths)))
    viewed, bought = _ids(rec.recommend(user, RequestOptions(k=20)))[:2]
    rec.observe([Event("v-1", user, viewed, "view", 1_900_000_000),
                 Event("b-1", user, bought, "purchase", 1_900_000_001)])  # fmt: skip
    before = _ids(rec.recommend(user, RequestOptions(k=20)))
    _refreshed(rec, 1)
    after = _ids(rec.recommend(user, RequestOptions(k=20)))
    assert viewed in before and viewed in after
    assert bought not in before and bought not in after
    pool = rec.refreshed[user].items.tolist()  # no room taken by what may not return
    assert data.items.idx_of(viewed) in pool and data.items.idx_of(bought) not in pool
    rec.close()


def test_unknown_users_get_the_marked_cold_chain(
    rec: Recommender, ensemble: Ensemble, data: Dataset
) -> None:
    unknown = np.array([-1], np.int32)
    answer = rec.recommend("nobody", RequestOptions(k=5))
    assert (answer.source, answer.user_known) == ("cold:trending", False)
    trending = ensemble.members_["pop-trending"].score_catalog(unknown, exclude_seen=False)[0]
    assert _ids(answer) == _top_ids(data, trending, 5)

    countries = data.user_attributes["country"].to_numpy()
    values, counts = np.unique(countries, return_counts=True)
    country = str(values[np.argmax(counts)])
    rec.upsert_users([Record("nobody", {"country": country})])
    answer = rec.recommend("nobody", RequestOptions(k=5))
    assert answer.source == "cold:segment"
    member = np.flatnonzero(countries == country)[:1].astype(np.int32)
    segment = ensemble.members_["pop-segment"].score_catalog(member, exclude_seen=False)[0]
    assert _ids(answer) == _top_ids(data, segment, 5)
    rec.upsert_users([Record("nobody", {"country": "Atlantis"})])
    assert rec.recommend("nobody", RequestOptions(k=5)).source == "cold:trending"


def test_sessions_follow_their_items(rec: Recommender, ensemble: Ensemble, data: Dataset) -> None:
    transitions = ensemble.members_["covisit"].transitions_  # type: ignore[attr-defined]
    busiest = np.argsort(-np.diff(transitions.indptr), kind="stable")[:2]
    session = [str(i) for i in data.items.to_ids(busiest)]
    answer = rec.recommend_session(session, RequestOptions(k=5))
    assert answer.source == "session" and not answer.user_known
    assert len(answer.items) == 5 and not set(session) & set(_ids(answer))
    reached = transitions[busiest].toarray().sum(axis=0)
    for item in data.items.to_idx(_ids(answer)):
        assert reached[item] > 0, "a session item nobody went to from the session's items"

    rec.observe([Event("s-1", "fresh-user", session[0], "view", 1_900_000_000)])
    fresh = rec.recommend("fresh-user", RequestOptions(k=5))
    assert fresh.user_known and session[0] not in _ids(fresh)
    assert fresh.source in ("session", "model")  # "model" once its pool was refreshed


def test_similar_items_for_a_catalog_item_and_a_new_one(
    rec: Recommender, ensemble: Ensemble, data: Dataset
) -> None:
    item = data.items.id_of(5)
    answer = rec.similar(item, 5)
    assert answer.source == "model" and item not in _ids(answer)
    expected = ensemble.members_["itemknn"].similar_items([5], 5)
    assert _ids(answer) == [str(i) for i in data.items.to_ids(expected.items[0])]

    twin = data.item_attributes.select("title", "text", "categories").row(5, named=True)
    rec.upsert_items([Record("brand-new", twin)])  # not in the model: found by its content
    new = rec.similar("brand-new", 3)
    assert new.source == "content" and _ids(new)[0] == item  # its twin comes first
    with pytest.raises(KeyError, match="no-such-item"):
        rec.similar("no-such-item", 3)


def test_similar_items_before_warm_are_the_models_neighbours(
    saved: Path, ensemble: Ensemble, data: Dataset
) -> None:
    cold = Recommender.load(saved)  # no warm(): a library user asking right away
    item = data.items.id_of(5)
    answer = cold.similar(item, 5)  # was content similarity, not the model's neighbours
    expected = ensemble.members_["itemknn"].similar_items([5], 5)
    assert answer.source == "model"
    assert _ids(answer) == [str(i) for i in data.items.to_ids(expected.items[0])]
    cold.close()


def test_one_string_where_a_tuple_belongs_is_refused(rec: Recommender, data: Dataset) -> None:
    item = data.items.id_of(5)
    for field in ("exclude", "categories", "rerank"):
        with pytest.raises(TypeError, match=f"{field} takes a tuple"):
            RequestOptions(k=5, **{field: item})  # each character was an entry
    with pytest.raises(TypeError, match="single id"):
        rec.recommend_session(item, RequestOptions(k=5))  # type: ignore[arg-type]


def _without(histories: Histories, item: int) -> Histories:
    keep = histories.items != item
    return Histories(
        np.array([0, int(keep.sum())]),
        histories.items[keep],
        histories.timestamps[keep],
        histories.weights[keep],
        histories.n_items,
    )


def test_explanations_name_the_members_and_history_items_behind_the_scores(
    rec: Recommender, ensemble: Ensemble, data: Dataset
) -> None:
    user = 20
    answer = rec.recommend(data.users.id_of(user), RequestOptions(k=5, explain=True))
    candidates = {spec.label: spec.candidates for spec in ensemble.config.members}
    for entry in answer.items:
        explanation = entry.explanation
        assert explanation is not None and explanation.item_id == entry.item_id
        assert explanation.members, "a pool item that no member proposed"
        item = data.items.idx_of(entry.item_id)
        for label in explanation.members:  # proposed: in the member's own top-N, at that rank
            top = ensemble.members_[label].recommend([user], candidates[label]).items[0]
            assert item in top.tolist()
            assert f"{label} (rank {top.tolist().index(item) + 1})" in explanation.text
        for label in set(candidates) - set(explanation.members):
            top = ensemble.members_[label].recommend([user], candidates[label]).items[0]
            assert item not in top.tolist()
        # "because": removing a history item lowers the member's score by exactly its weight
        label = next(m for m in ("itemknn", "ease", "covisit") if m in explanation.members)
        member = ensemble.members_[label]
        history = member.histories_.rows([user])
        full = member.score([user], [item], histories=history)[0, 0]
        drop = {  # what each history item adds to the member's score for the item
            str(data.items.id_of(j)): full
            - member.score([user], [item], histories=_without(history, j))[0, 0]
            for j in np.unique(history.items)
        }
        weights = [weight for _, weight in explanation.because]
        assert weights and weights == sorted(weights, reverse=True) and weights[-1] > 0
        for history_id, weight in explanation.because:
            assert drop[history_id] == pytest.approx(weight, rel=1e-4, abs=1e-6)
        named = {history_id for history_id, _ in explanation.because}
        assert max(v for k, v in drop.items() if k not in named) <= weights[-1] + 1e-6
    single = rec.explain(data.users.id_of(user), answer.items[0].item_id)
    assert single == answer.items[0].explanation


def test_explanations_fold_in_events_the_pool_refresh_has_not_reached(
    saved: Path, data: Dataset
) -> None:
    """The answer follows an event at once (the session signal); its explanation must too,
    not wait for the background refresh: the same explanation before and after it."""
    slow = Recommender(load_model(saved), refresh_per_second=0.05)  # 20 s between refreshes
    fast = Recommender(load_model(saved))
    user = data.users.id_of(20)
    fresh = [str(i) for i in data.items.ids if str(i) not in _history_ids(data, 20)][:3]
    events = [Event(f"x-{n}", user, item, "purchase", 1_900_000_000 + n) for n, item in
              enumerate(fresh)]  # fmt: skip
    slow.observe([Event("busy", data.users.id_of(1), fresh[0], "view", 1_900_000_000)])
    _refreshed(slow, 1)  # its worker now waits 20 s before the next refresh
    for recommender in (slow, fast):
        recommender.warm()
        recommender.observe(events)
    _refreshed(fast, 1)
    assert slow.stats()["refresh_pending"] == 1 and fast.refreshed[user].version == 3
    listed = _ids(fast.recommend(user, RequestOptions(k=5)))
    explained = [slow.explain(user, item) for item in listed]
    assert explained == [fast.explain(user, item) for item in listed]
    assert any(set(fresh) & {item for item, _ in e.because} for e in explained)
    slow.close()
    fast.close()


def test_the_explanation_of_an_item_is_the_one_its_answer_gave(
    rec: Recommender, data: Dataset
) -> None:
    """GET .../explanation and explain=true word an item alike, cold users' items too."""
    for user in ("never-seen-user", data.users.id_of(20)):
        answer = rec.recommend(user, RequestOptions(k=60, explain=True))
        for entry in answer.items:
            assert rec.explain(user, entry.item_id) == entry.explanation, (user, entry.item_id)


def test_request_options_filter_and_bad_requests_fail_clearly(
    rec: Recommender, data: Dataset
) -> None:
    user = data.users.id_of(4)
    first = _ids(rec.recommend(user, RequestOptions(k=5)))
    assert first[0] not in _ids(rec.recommend(user, RequestOptions(k=5, exclude=(first[0],))))
    homes = rec.recommend(user, RequestOptions(k=8, categories=("home",)))
    assert len(homes.items) == 8
    categories = data.item_attributes["categories"]
    for item in data.items.to_idx(_ids(homes)):
        assert "home" in categories[int(item)].to_list()
    for k in (0, -3, 1001, True):
        with pytest.raises(ValueError, match="k must be"):
            rec.recommend(user, RequestOptions(k=k))
    with pytest.raises(ValueError, match="k must be"):
        rec.similar(first[0], 0)
    with pytest.raises(ConfigError, match="unknown re-ranker 'nope'"):
        rec.recommend(user, RequestOptions(rerank=("nope",)))
    with pytest.raises(KeyError, match="not-an-item"):
        rec.explain(user, "not-an-item")


def test_configured_stages_run_on_the_cached_pool(saved: Path, data: Dataset) -> None:
    config = RecsembleConfig.model_validate(
        {"rerank": {"stages": ["cap"], "cap": {"max_per_category": 2}}}
    )
    rec = Recommender.load(saved, config=config)  # not warmed: pools computed on demand
    answer = rec.recommend(data.users.id_of(7), RequestOptions(k=6))
    assert answer.items and max(_category_counts(data, answer).values()) <= 2
    plain = rec.recommend(data.users.id_of(7), RequestOptions(k=6, rerank=()))
    assert max(_category_counts(data, plain).values()) > 2  # the cap did the work


def _category_counts(data: Dataset, answer: Answer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in data.items.to_idx(_ids(answer)):
        for category in data.item_attributes["categories"][int(item)].to_list():
            counts[category] = counts.get(category, 0) + 1
    return counts


def test_attribute_tables_are_saved_with_checksums_and_old_folders_still_load(
    saved: Path, data: Dataset, tmp_path: Path
) -> None:
    files = json.loads((saved / "manifest.json").read_text())["files"]
    assert {"items.parquet", "users.parquet"} <= set(files)
    old = tmp_path / "old"
    shutil.copytree(saved, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for name in ("items.parquet", "users.parquet"):
        (old / name).unlink()
        del manifest["files"][name]
    (old / "manifest.json").write_text(json.dumps(manifest))
    rec = Recommender.load(old)
    answer = rec.recommend(data.users.id_of(3), RequestOptions(k=5))
    assert len(answer.items) == 5 and answer.items[0].title is not None  # titles: ids.json
    assert rec.recommend("nobody", RequestOptions(k=3)).source == "cold:trending"


def test_a_single_generator_folder_serves_too(data: Dataset, tmp_path: Path) -> None:
    knn = GENERATORS["itemknn"]().fit(data)
    folder = save_model(knn, tmp_path / "knn", Catalog.from_dataset(data))
    rec = Recommender.load(folder)
    rec.warm()
    answer = rec.recommend(data.users.id_of(2), RequestOptions(k=4, explain=True))
    expected = knn.recommend([2], 4).items[0]
    assert answer.source == "model" and _ids(answer) == [
        str(i) for i in data.items.to_ids(expected)
    ]
    first = answer.items[0].explanation
    assert first is not None and first.members == {"itemknn": pytest.approx(answer.items[0].score)}
    assert "itemknn (rank 1)" in first.text


def test_a_known_user_without_history_gets_the_cold_chain(data: Dataset, tmp_path: Path) -> None:
    """A user of the users table with no interaction yet is in the model's ids (training for
    serving keeps them) but has nothing to score from: the answer is the cold chain's."""
    user = 2
    fitted = data.with_interactions(data.interactions.filter(pl.col("user_idx") != user))
    knn = GENERATORS["itemknn"]().fit(fitted)
    folder = save_model(knn, tmp_path / "knn", Catalog.from_dataset(fitted))
    rec = Recommender.load(folder)
    rec.warm()
    answer = rec.recommend(data.users.id_of(user), RequestOptions(k=4))
    assert answer.user_known and answer.source.startswith("cold:") and len(answer.items) == 4
    rec.close()


def test_concurrent_reads_and_events_do_not_interfere(rec: Recommender, data: Dataset) -> None:
    users = [data.users.id_of(u) for u in range(40)]
    items = [str(i) for i in data.items.ids[:60]]

    def read(n: int) -> int:
        answer = rec.recommend(users[n % len(users)], RequestOptions(k=10))
        return len(answer.items)

    def write(n: int) -> None:
        rec.observe([Event(f"c-{n}", users[n % len(users)], items[n % len(items)], "view", 0)])

    with ThreadPoolExecutor(4) as pool:
        writes = pool.map(write, range(200))
        lengths = list(pool.map(read, range(800)))
        list(writes)
    assert lengths == [10] * 800
    for n in range(200):  # every observed item is gone from its user's answer
        user, item = users[n % len(users)], items[n % len(items)]
        assert item not in _ids(rec.recommend(user, RequestOptions(k=10)))


def test_item_upserts_change_categories_and_availability_at_once(
    rec: Recommender, data: Dataset
) -> None:
    user = data.users.id_of(9)
    unseen = _ids(rec.recommend(user, RequestOptions(k=20)))
    tagged, hidden = unseen[5], unseen[0]
    rec.upsert_items([Record(tagged, {"categories": ["limited-edition"]})])
    only = rec.recommend(user, RequestOptions(k=5, categories=("limited-edition",)))
    assert _ids(only) == [tagged]
    old_category = data.item_attributes["categories"][data.items.idx_of(tagged)].to_list()[0]
    again = rec.recommend(user, RequestOptions(k=50, categories=(old_category,)))
    assert tagged not in _ids(again) and again.items
    rec.upsert_items([Record(hidden, {"available": False})])
    assert hidden not in _ids(rec.recommend(user, RequestOptions(k=20)))
    rec.upsert_items([Record(hidden, {"available": True})])
    assert hidden in _ids(rec.recommend(user, RequestOptions(k=20)))


def test_an_item_made_available_again_passes_the_available_stage(
    data: Dataset, tmp_path: Path
) -> None:
    """An item unavailable in the trained catalog and PUT available later is shown at once,
    with the `available` stage in the chain too (it checks expiry; availability is live)."""
    knn = GENERATORS["itemknn"]().fit(data)
    user = data.users.id_of(2)
    item = data.items.id_of(int(knn.recommend([2], 1).items[0][0]))
    attributes = data.item_attributes.with_columns(
        available=pl.Series([i != item for i in data.items.to_ids(np.arange(data.n_items))])
    )
    catalog = Dataset(users=data.users, items=data.items, interactions=data.interactions,
                      item_attributes=attributes, user_attributes=data.user_attributes,
                      event_weights=data.event_weights)  # fmt: skip
    config = RecsembleConfig.model_validate({"rerank": {"stages": ["available"]}})
    rec = Recommender(load_model(save_model(knn, tmp_path / "knn", Catalog.from_dataset(catalog))),
                      config=config)  # fmt: skip
    rec.warm()
    assert item not in _ids(rec.recommend(user, RequestOptions(k=5)))
    rec.upsert_items([Record(item, {"available": True})])
    assert _ids(rec.recommend(user, RequestOptions(k=5)))[0] == item
    assert _ids(rec.recommend(user, RequestOptions(k=5, rerank=("available",))))[0] == item
    rec.upsert_items([Record(item, {"available": False})])
    assert item not in _ids(rec.recommend(user, RequestOptions(k=5, rerank=())))
    rec.close()


def test_a_replaced_recommender_stops_its_refresh_worker(saved: Path, data: Dataset) -> None:
    def workers() -> int:
        return sum(t.name == "recsemble-refresh" and t.is_alive() for t in threading.enumerate())

    before = workers()
    old = Recommender.load(saved)
    old.observe([Event("w-1", data.users.id_of(1), data.items.id_of(1), "view", 0)])
    assert workers() == before + 1
    deadline = time.monotonic() + 10
    while old.stats()["refresh_done"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker is idle now, waiting for more work
    del old  # a hot swap drops it without close()
    gc.collect()
    deadline = time.monotonic() + 10
    while workers() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers() == before


def test_warm_cache_is_reused_and_a_damaged_one_recomputed(
    saved: Path, data: Dataset, tmp_path: Path
) -> None:
    users = [str(u) for u in data.users.ids[:3]]
    cache = tmp_path / "warm" / "v1.npz"
    first = Recommender.load(saved, version="v1")
    first.warm(cache)
    assert cache.is_file()
    second = Recommender.load(saved, version="v1")
    second.warm(cache)
    try:
        for user in users:
            options = RequestOptions(k=5)
            assert _ids(first.recommend(user, options)) == _ids(second.recommend(user, options))
        cache.write_bytes(cache.read_bytes()[:100])  # damaged: recomputed, then rewritten
        third = Recommender.load(saved, version="v1")
        third.warm(cache)
        assert _ids(third.recommend(users[0], RequestOptions(k=5))) == _ids(
            first.recommend(users[0], RequestOptions(k=5))
        )
        assert np.load(cache)["pool_items"].shape[0] == data.n_users  # rewritten whole
        third.close()
    finally:
        first.close()
        second.close()


def test_blend_explanations_belong_to_their_own_items(data: Dataset, tmp_path: Path) -> None:
    # With the blend scorer an item's score is its members' weighted calibrated votes plus an
    # intercept, so the contributions of each listed item must add up in the list's own order
    # (the list is sorted by score): contributions read for other items break that order.
    config = EnsembleConfig(members=MEMBERS, validation_folds=1, routing=False, scorer="blend")
    blend = Ensemble(config).fit(data)
    assert blend.blend_ is not None
    folder = save_ensemble(blend, tmp_path / "blend", catalog=Catalog.from_dataset(data))
    recommender = Recommender.load(folder, version="b1")
    try:
        for user in (3, 20, 41):
            answer = recommender.recommend(
                data.users.id_of(user), RequestOptions(k=8, explain=True)
            )
            totals = []
            for entry in answer.items:
                assert entry.explanation is not None
                totals.append(sum(entry.explanation.members.values()) + blend.blend_.intercept_)
            np.testing.assert_allclose(totals, [e.score for e in answer.items], rtol=1e-4)
    finally:
        recommender.close()


def test_the_refresh_queue_does_not_starve_the_users_waiting_longest() -> None:
    """Newest first only: under a stream of writes beyond the refresh rate, a user queued
    early was never refreshed (each refresh here queues a newcomer, as a busy server does)."""
    from recsemble.recommender.users import RefreshQueue

    order: list[str] = []
    finished = threading.Event()

    def compute(user_id: str) -> None:
        order.append(user_id)
        if len(order) >= 20:
            finished.set()
            return
        queue.push([f"new{len(order)}", f"newer{len(order)}"])

    queue = RefreshQueue(compute, rate=1000.0)
    queue.push([f"early{i}" for i in range(3)])
    assert finished.wait(20)
    queue.close()
    assert {"early0", "early1", "early2"} <= set(order[:8]), order


def test_an_event_the_model_was_trained_with_is_not_counted_again(
    rec: Recommender, data: Dataset
) -> None:
    """A model trained offline on files that the store also holds replays the store's events
    at start-up: each was folded in again, so the user's history showed it twice."""
    row = data.interactions.row(0, named=True)
    user, item = data.users.id_of(row["user_idx"]), data.items.id_of(row["item_idx"])
    rec.observe([Event("again", user, item, "view", int(row["timestamp"]))])
    assert rec.live.get(user) is None and rec.stats()["events_observed"] == 0
    rec.observe([Event("later", user, item, "view", int(row["timestamp"]) + 1)])
    live = rec.live.get(user)
    assert live is not None and live.items.tolist() == [row["item_idx"]]
