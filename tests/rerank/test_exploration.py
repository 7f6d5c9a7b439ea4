"""Exploration slots: epsilon-greedy and Thompson sampling, propensities and their log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.rerank.base import SECONDS_PER_DAY, Query
from recsemble.rerank.exploration import Exploration, ExploreConfig, ItemStats
from recsemble.types import ItemList

NOW = 1_700_000_000
# Per item i900 + j: (impressions, clicks, days since creation at NOW).
SPEC = [
    *[(500, 50, 400)] * 4,  # 0-3: well known, click rate 0.1
    (20, 2, 400),  # 4-7: uncertain, click rates 0.1 .. 0.5
    (20, 5, 400),
    (20, 8, 400),
    (20, 10, 400),
    *[(3, 1, 5)] * 4,  # 8-11: new and uncertain
    (200, 100, 400),  # 12: known good
    (200, 4, 400),  # 13: known bad
]
N_ITEMS = len(SPEC)
WELL_KNOWN, UNCERTAIN, NEW, GOOD, BAD = [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], 12, 13


def _catalog(spec: list[tuple[int, int, int]], impression: str = "impression") -> Dataset:
    rows = [
        (f"u{100 + n % 37}", f"i{900 + j}", start + n, event)
        for j, (impressions, clicks, _) in enumerate(spec)
        for count, start, event in (
            (impressions, NOW - 1_000, impression),
            (clicks, NOW - 500, "click"),
        )
        for n in range(count)
    ]
    interactions = pl.DataFrame(
        rows, schema=["user_id", "item_id", "timestamp", "event"], orient="row"
    )
    items = pl.DataFrame(
        {
            "item_id": [f"i{900 + j}" for j in range(len(spec))],
            "created_at": [NOW - int(days * SECONDS_PER_DAY) for *_, days in spec],
        }
    )
    return Dataset.from_frames(interactions, items)


CATALOG = _catalog(SPEC)


def _items(positions: list[int]) -> ItemList:
    scores = np.linspace(1.0, 0.0, len(positions))
    rank = np.arange(len(positions), dtype=np.float32)
    return ItemList(np.array(positions, dtype=np.int32), scores, {"rank": rank})


def _explore(**config: object) -> Exploration:
    return Exploration(ExploreConfig.model_validate(config)).fit(CATALOG)


def test_item_ids_map_to_the_spec_order() -> None:
    assert [CATALOG.items.idx_of(f"i{900 + j}") for j in range(N_ITEMS)] == list(range(N_ITEMS))


# ------------------------------------------------------------------ properties
configs = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["epsilon", "thompson"]),
        "slots": st.lists(st.integers(0, 12), max_size=4),
        "epsilon": st.floats(0.0, 1.0),
        "eligible": st.sampled_from(["new", "uncertain", "any"]),
        "propensity_samples": st.just(32),
        "seed": st.integers(0, 5),
    }
)


@settings(max_examples=120, deadline=None)
@given(
    config=configs,
    positions=st.lists(st.integers(0, N_ITEMS - 1), unique=True, max_size=N_ITEMS),
    k=st.integers(1, 12),
    user=st.integers(-1, 50),
    days_later=st.integers(0, 60),
)
def test_list_properties(
    config: dict[str, object], positions: list[int], k: int, user: int, days_later: int
) -> None:
    stage = _explore(**config)
    items = _items(positions)
    query = Query(user=user, at=NOW + days_later * 86_400)
    out, records = stage.rerank_with_records(query, items, k)
    shown = out.items.tolist()
    assert len(out) == min(k, len(items))
    assert set(shown) <= set(positions)
    assert len(set(shown)) == len(shown)
    propensity = out.features["propensity"]
    assert propensity.dtype == np.float32
    assert ((propensity > 0) & (propensity <= 1)).all()
    reserved = set(stage.config.slots)
    assert all(propensity[p] == 1.0 for p in range(len(out)) if p not in reserved)
    np.testing.assert_array_equal(out.scores, items.scores[[positions.index(i) for i in shown]])
    explored = [r["item_idx"] for r in records if r["explored"]]
    assert all(r["position"] in reserved for r in records if r["explored"])
    assert set(explored) <= set(np.asarray(positions)[stage.eligible_mask(query, items)].tolist())
    # Without the explored items the list is the input's order.
    rest = [i for i in shown if i not in explored]
    assert rest == [i for i in positions if i not in explored][: len(rest)]
    again = stage.rerank(query, items, k)
    np.testing.assert_array_equal(again.items, out.items)
    np.testing.assert_array_equal(again.features["propensity"], propensity)


def test_epsilon_zero_never_explores() -> None:
    stage = _explore(method="epsilon", epsilon=0.0, slots=[0, 2, 4], eligible="any")
    items = _items([0, 4, 8, 12, 1, 5, 9, 13])
    for user in range(30):
        out = stage.rerank(Query(user=user, at=NOW + user), items, 6)
        assert out.items.tolist() == items.items[:6].tolist()
        np.testing.assert_array_equal(out.features["propensity"], np.ones(6, dtype=np.float32))


def test_epsilon_one_explores_every_reserved_slot() -> None:
    stage = _explore(method="epsilon", epsilon=1.0, slots=[0, 2, 3, 7], eligible="uncertain")
    items = _items([*WELL_KNOWN, 12, 13, 4, 5])  # only the last two are uncertain
    for user in range(30):
        out, records = stage.rerank_with_records(Query(user=user), items, 5)
        assert [r["explored"] for r in records] == [True, False, True, False, False]
        assert set(out.items[[0, 2]].tolist()) == {4, 5}
        assert out.items[[1, 3, 4]].tolist() == WELL_KNOWN[:3]
        # With no eligible item left, slot 3 exploits.
        assert out.features["propensity"].tolist() == [0.5, 1.0, 1.0, 1.0, 1.0]


def test_last_position_can_be_reserved_and_positions_past_the_list_are_ignored() -> None:
    stage = _explore(method="epsilon", epsilon=1.0, slots=[2, 4], eligible="uncertain")
    out, records = stage.rerank_with_records(Query(), _items([0, 1, 2, 4]), 3)
    assert out.items.tolist() == [0, 1, 4]
    assert [r["explored"] for r in records] == [False, False, True]
    out = stage.rerank(Query(), _items([0, 1, 2, 3]), 10)  # nothing eligible: plain top-k
    assert out.items.tolist() == [0, 1, 2, 3]


def test_users_and_moments_explore_differently() -> None:
    stage = _explore(method="epsilon", epsilon=1.0, slots=[0], eligible="any")
    items = _items(list(range(N_ITEMS)))
    by_user = {int(stage.rerank(Query(user=u, at=NOW), items, 3).items[0]) for u in range(40)}
    by_moment = {int(stage.rerank(Query(user=1, at=NOW + t), items, 3).items[0]) for t in range(40)}
    assert len(by_user) > 5 and len(by_moment) > 5


def test_thompson_favours_a_high_click_rate() -> None:
    stage = _explore(slots=[0], eligible="any")
    items = _items([BAD, GOOD])
    first = [int(stage.rerank(Query(user=u), items, 2).items[0]) for u in range(300)]
    assert first.count(GOOD) >= 0.95 * len(first)


def _slot_zero_frequencies(
    stage: Exploration, items: ItemList, n_requests: int
) -> dict[str, dict[int, float]]:
    shown, propensity = [], []
    for t in range(n_requests):
        out = stage.rerank(Query(user=t % 7, at=NOW + t), items, 3)
        shown.append(int(out.items[0]))
        propensity.append(float(out.features["propensity"][0]))
    freq = {i: shown.count(i) / n_requests for i in set(shown)}
    logged = {
        i: float(np.mean([p for s, p in zip(shown, propensity, strict=True) if s == i]))
        for i in freq
    }
    ips = {
        i: sum(1 / p for s, p in zip(shown, propensity, strict=True) if s == i) / n_requests
        for i in freq
    }
    return {"freq": freq, "logged": logged, "ips": ips}


def test_thompson_propensity_matches_empirical_frequency() -> None:
    stage = _explore(slots=[0], eligible="uncertain", propensity_samples=256)
    items = _items([WELL_KNOWN[0], WELL_KNOWN[1], *UNCERTAIN])
    stats = _slot_zero_frequencies(stage, items, 2_000)
    assert set(stats["freq"]) <= {WELL_KNOWN[0], *UNCERTAIN}
    assert len(stats["freq"]) >= 4
    for item, freq in stats["freq"].items():
        assert stats["logged"][item] == pytest.approx(freq, abs=0.04)
        if freq > 0.05:  # inverse-propensity weights of each shown item average to 1
            assert stats["ips"][item] == pytest.approx(1.0, abs=0.25)


def test_epsilon_propensity_is_exact_and_matches_frequency() -> None:
    stage = _explore(method="epsilon", epsilon=0.4, slots=[0], eligible="uncertain")
    items = _items([UNCERTAIN[0], WELL_KNOWN[0], UNCERTAIN[1], UNCERTAIN[2]])
    stats = _slot_zero_frequencies(stage, items, 2_000)
    exact = {UNCERTAIN[0]: 0.6 + 0.4 / 3, UNCERTAIN[1]: 0.4 / 3, UNCERTAIN[2]: 0.4 / 3}
    assert set(stats["freq"]) == set(exact)
    for item, probability in exact.items():
        assert stats["logged"][item] == pytest.approx(probability, rel=1e-6)
        assert stats["freq"][item] == pytest.approx(probability, abs=0.04)


def test_log_has_one_line_per_shown_item(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "exposure.jsonl"
    stage = _explore(slots=[1, 3], eligible="any", log_path=str(log))
    items = _items([0, 4, 8, 12, 1, 5, 9, 13])
    outs = [stage.rerank_with_records(Query(user=u, at=NOW + u), items, 5) for u in range(3)]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 15
    expected = [record for _, records in outs for record in records]
    assert lines == expected
    for u, (out, _) in enumerate(outs):
        mine = [line for line in lines if line["user"] == u]
        assert [line["item_idx"] for line in mine] == out.items.tolist()
        assert [line["position"] for line in mine] == list(range(5))
        assert {line["at"] for line in mine} == {NOW + u}
        assert {line["policy"] for line in mine} == {"thompson"}
        np.testing.assert_allclose(
            [line["propensity"] for line in mine], out.features["propensity"], rtol=1e-6
        )


def test_new_items_are_eligible_only_while_young() -> None:
    stage = _explore(method="epsilon", epsilon=1.0, slots=[0], eligible="new", new_days=30)
    items = _items([0, 1, 8, 9])
    young = stage.rerank(Query(user=1, at=NOW + 10 * 86_400), items, 2)
    assert int(young.items[0]) in (8, 9)
    old = stage.rerank(Query(user=1, at=NOW + 40 * 86_400), items, 2)
    assert old.items.tolist() == [0, 1]


def test_live_feedback_updates_eligibility_and_posteriors() -> None:
    stage = _explore(eligible="uncertain", max_impressions=100)
    items = _items([NEW[0], GOOD])
    assert stage.eligible_mask(Query(), items).tolist() == [True, False]
    stage.stats_.update([NEW[0]] * 120, [False] * 120)
    assert stage.eligible_mask(Query(), items).tolist() == [False, False]
    assert stage.stats_.impressions[NEW[0]] == 123
    assert stage.stats_.clicks[NEW[0]] == 1
    stage.stats_.update([GOOD, GOOD], [True, False])
    assert (stage.stats_.impressions[GOOD], stage.stats_.clicks[GOOD]) == (202, 101)
    with pytest.raises(ValueError, match="clicked"):
        stage.stats_.update([GOOD], [True, False])


def test_counts_from_events() -> None:
    stats = ItemStats.from_dataset(CATALOG, "impression", None)
    np.testing.assert_array_equal(stats.impressions, [s[0] for s in SPEC])
    np.testing.assert_array_equal(stats.clicks, [s[1] for s in SPEC])
    alpha, beta = stats.posterior(np.array([GOOD]), 1.0, 2.0)
    assert (alpha[0], beta[0]) == (101.0, 102.0)


def test_without_impression_events_impressions_are_interactions() -> None:
    views = _catalog(SPEC[:3], impression="view")
    stats = ItemStats.from_dataset(views, "impression", None)
    np.testing.assert_array_equal(stats.impressions, [550] * 3)
    np.testing.assert_array_equal(stats.clicks, stats.impressions)
    only_clicks = ItemStats.from_dataset(views, "impression", ["click"])
    np.testing.assert_array_equal(only_clicks.clicks, [50] * 3)


def test_unknown_click_event_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="purchase"):
        _explore(click_events=["purchase"])


@pytest.mark.parametrize(
    "config",
    [
        {"slots": [-1]},
        {"epsilon": 1.5},
        {"prior_alpha": 0},
        {"propensity_samples": 0},
        {"method": "ucb"},
        {"seed": -1},
    ],
)
def test_bad_config_is_rejected(config: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ExploreConfig.model_validate(config)


def test_slots_are_sorted_and_distinct() -> None:
    assert ExploreConfig(slots=[5, 2, 5]).slots == [2, 5]


def test_a_log_path_that_cannot_be_written_is_a_config_error(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(ValidationError, match="is a folder"):
        ExploreConfig(log_path=str(tmp_path))
    with pytest.raises(ValidationError, match=r"is a file, not a folder to put x\.jsonl in"):
        ExploreConfig(log_path=str(a_file / "x.jsonl"))
    assert ExploreConfig(log_path=str(tmp_path / "new" / "p.jsonl")).log_path is not None


def test_live_events_are_counted_as_the_fitted_ones() -> None:
    stage = _explore(method="thompson")
    impressions, clicks = stage.stats_.impressions.copy(), stage.stats_.clicks.copy()
    items = np.array([4, 4, 5, -1], dtype=np.intp)  # -1: an item the stage does not know
    stage.observe(items, ["impression", "click", "click", "click"])
    assert stage.stats_.impressions[4] == impressions[4] + 1  # nothing learnt live before
    assert stage.stats_.clicks[4] == clicks[4] + 1 and stage.stats_.clicks[5] == clicks[5] + 1
    assert stage.stats_.impressions[5] == impressions[5]  # impressions are logged: not a click
    no_impressions = Exploration(ExploreConfig()).fit(_catalog(SPEC, impression="view"))
    before = no_impressions.stats_.impressions[3]
    no_impressions.observe(np.array([3], dtype=np.intp), ["view"])
    assert no_impressions.stats_.impressions[3] == before + 1  # a click is its impression


def test_the_serving_stages_learn_from_live_events() -> None:
    from recsemble.recommender.stages import Stages
    from recsemble.rerank import RerankConfig
    from recsemble.store.base import Event

    stages = Stages(RerankConfig.model_validate({"stages": ["explore"]}), CATALOG)
    stage = stages.fitted["explore"]
    assert isinstance(stage, Exploration)
    before = stage.stats_.clicks[GOOD]
    events = [Event("e1", "u100", f"i{900 + GOOD}", "click"), Event("e2", "u100", "new", "click")]
    stages.observe(
        events, lambda item_id: CATALOG.items.idx_of(item_id) if item_id != "new" else None
    )
    assert stage.stats_.clicks[GOOD] == before + 1
