from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError, DataError
from recsemble.evaluation.protocol import prepare, split, validation_split

from .. import reference_protocol as ref

# Users "u1".."u9" and items "i1".."i30": note "i10" < "i2" as strings, which the split must use.
interaction_rows = st.lists(
    st.tuples(
        st.integers(1, 9).map(lambda n: f"u{n}"),
        st.integers(1, 30).map(lambda n: f"i{n}"),
        st.integers(0, 40),  # few distinct timestamps: many ties
    ),
    min_size=1,
    max_size=200,
)


def _dataset(rows: list[tuple[str, str, int]]) -> Dataset:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(frame)


def _rows(dataset: Dataset) -> set[tuple[str, str, int]]:
    ext = dataset.external_interactions()
    return set(zip(ext["user_id"], ext["item_id"], ext["timestamp"], strict=True))


@settings(max_examples=150, deadline=None)
@given(interaction_rows, st.sampled_from(["temporal-user", "temporal-global"]))
def test_split_matches_reference_and_invariants(
    rows: list[tuple[str, str, int]], protocol: str
) -> None:
    prepared_ref = ref.prepare(rows)
    if not prepared_ref:
        return
    prepared = prepare(_dataset(rows))
    assert _rows(prepared) == set(prepared_ref)
    assert prepared.n_items == len({i for _, i, _ in prepared_ref})  # catalog after filtering
    result = split(prepared, protocol)
    reference = ref.temporal_user if protocol == "temporal-user" else ref.temporal_global
    ref_train, ref_test = reference(prepared_ref)
    train, test = _rows(result.train), _rows(result.test)
    assert train == set(ref_train) and test == set(ref_test)
    assert not train & test and train | test == set(prepared_ref)
    if protocol == "temporal-user":
        for user in {u for u, _, _ in prepared_ref}:
            mine = sorted((t, i) for u, i, t in train if u == user)
            held = sorted((t, i) for u, i, t in test if u == user)
            n = len(mine) + len(held)
            assert len(held) == max(1, math.floor(0.2 * n))
            assert not mine or mine[-1] <= held[0]
        assert len(result.evaluated_users) == prepared.n_users
    else:
        assert len(train) == math.floor(0.8 * len(prepared_ref))


def test_prepare_collapses_to_earliest_and_drops_light_users() -> None:
    rows = [
        ("a", "x", 5),
        ("a", "x", 1),
        ("a", "y", 2),
        ("a", "z", 3),
        ("a", "w", 4),
        ("a", "v", 6),
    ]
    rows += [("b", "x", 1), ("b", "y", 2)]  # b has 2 interactions: dropped
    prepared = prepare(_dataset(rows))
    assert list(prepared.users.ids) == ["a"]
    assert ("a", "x", 1) in _rows(prepared) and prepared.n_interactions == 5


def test_reference_time_and_cold_users() -> None:
    rows = [("a", f"i{n}", n) for n in range(20)] + [("b", f"i{n}", 100 + n) for n in range(5)]
    prepared = prepare(_dataset(rows))
    by_user = split(prepared, "temporal-user")
    a = prepared.users.idx_of("a")
    assert by_user.reference_time[a] == 15  # a's last train interaction (16..19 are test)
    globally = split(prepared, "temporal-global")
    assert globally.cold_users.tolist() == [prepared.users.idx_of("b")]
    assert set(globally.reference_time.tolist()) == {19}  # cutoff: last train timestamp


def test_boundary_tie_share_counts_test_items_simultaneous_with_the_split_point() -> None:
    # u1: five events at t=7 (one goes to test by item-id order: a tie); u2: distinct times.
    rows = [("u1", f"i{n}", 7) for n in range(5)] + [("u2", f"i{n}", n) for n in range(10)]
    by_user = split(prepare(_dataset(rows)), "temporal-user")
    assert by_user.test.n_interactions == 3  # u1: 1, u2: 2 (i8, i9 at t=8, 9: no tie)
    assert by_user.boundary_tie_share == pytest.approx(1 / 3)
    untied = [("u2", f"i{n}", n) for n in range(10)]
    assert split(prepare(_dataset(untied)), "temporal-user").boundary_tie_share == 0.0


def test_prepare_for_serving_keeps_every_user_and_item() -> None:
    rows = [("a", f"i{n}", n) for n in range(6)] + [("b", "i1", 9), ("b", "i1", 3)]
    items = pl.DataFrame({"item_id": ["i0", "i99"], "title": ["zero", "never seen"]})
    raw = Dataset.from_frames(
        pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row"), items
    )
    protocol = prepare(raw)
    assert list(protocol.users.ids) == ["a"] and "i99" not in list(protocol.items.ids)
    serving = prepare(raw, min_user_interactions=1, keep_catalog=True)
    assert serving.users == raw.users and serving.items == raw.items
    b_rows = serving.interactions.filter(pl.col("user_idx") == serving.users.idx_of("b"))
    assert b_rows["timestamp"].to_list() == [3]  # duplicates still collapse to the earliest


def test_validation_window_uses_train_only() -> None:
    rows = [("a", f"i{n}", n) for n in range(20)]
    outer = split(prepare(_dataset(rows)), "temporal-user")
    inner = validation_split(outer)
    assert _rows(inner.train) | _rows(inner.test) == _rows(outer.train)
    assert max(t for _, _, t in _rows(inner.test)) < min(t for _, _, t in _rows(outer.test))


def test_unknown_protocol_rejected() -> None:
    with pytest.raises(ConfigError, match="temporal-user"):
        split(prepare(_dataset([("a", f"i{n}", n) for n in range(5)])), "random")


def test_min_value_filter() -> None:
    frame = pl.DataFrame(
        {
            "user_id": ["a"] * 6,
            "item_id": [f"i{n}" for n in range(6)],
            "timestamp": list(range(6)),
            "value": [5.0, 4.0, 1.0, 5.0, 5.0, 5.0],
        }
    )
    assert prepare(Dataset.from_frames(frame), min_value=4.0).n_interactions == 5
    assert prepare(Dataset.from_frames(frame), min_value=5.0).n_users == 0
    assert np.all(prepare(Dataset.from_frames(frame)).column("value") >= 1.0)


def test_min_value_on_data_without_values_is_named() -> None:
    """It dropped every row, and the error then blamed users with too few interactions."""
    with pytest.raises(DataError, match="min_value = 4 keeps interactions by their explicit"):
        prepare(_dataset([("a", f"i{n}", n) for n in range(6)]), min_value=4.0)


def test_a_user_with_no_train_interaction_is_served_before_their_first_test_one() -> None:
    """With min_user_interactions=1 a one-event user is all test under temporal-user: their
    moment was -1, so a causal popularity counted nothing and listed the lowest item ids."""
    from recsemble.generators import GENERATORS

    rows = [(f"u{u}", f"i{u % 3 + 2}", 10 + u) for u in range(6)] + [("solo", "i9", 50)]
    rows += [(f"u{u}", f"i{n}", 1 + n) for u in range(6) for n in (5, 6)]
    prepared = prepare(_dataset(rows), min_user_interactions=1)
    the_split = split(prepared, "temporal-user")
    solo = prepared.users.idx_of("solo")
    assert the_split.cold_users.tolist() == [solo]
    assert the_split.reference_time[solo] == 49
    pop = GENERATORS["pop"](causal=True).fit(the_split.train)
    top = pop.recommend([solo], 1, at=the_split.reference_time[[solo]]).items[0, 0]
    assert prepared.items.to_ids([top])[0] in {"i5", "i6"}  # popular before 50, not "i2"


def test_split_sizes_are_exact_for_decimal_fractions() -> None:
    """In floats 0.35 * 180 is 62.99999999999999 and (1 - 0.3) * 90 is 62.99999999999999:
    the split held out 62 of 180 (not 63) and trained on 62 of 90 (not 63)."""
    rows = [("a", f"i{n}", n) for n in range(180)]
    assert split(prepare(_dataset(rows)), "temporal-user", 0.35).test.n_interactions == 63
    rows = [(f"u{u}", f"i{n}", u * 9 + n) for u in range(10) for n in range(9)]
    assert split(prepare(_dataset(rows)), "temporal-global", 0.3).train.n_interactions == 63
