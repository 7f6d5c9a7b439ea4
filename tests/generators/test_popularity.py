from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError, NotFittedError
from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.generators.popularity import (
    Popularity,
    RatingPopularity,
    SegmentPopularity,
    TrendingPopularity,
    _EventLog,
)

DAY = 86_400


def _data(rows: list[tuple[str, str, int, float]], users: pl.DataFrame | None = None) -> Dataset:
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp", "value"], orient="row")
    return Dataset.from_frames(frame, users=users)


# Items i1..i4; users u1..u5. i1 has 3 users, i2 two, i3 and i4 one each.
ROWS = [
    ("u1", "i1", 1 * DAY, 5.0),
    ("u2", "i1", 2 * DAY, 4.0),
    ("u3", "i1", 3 * DAY, 1.0),
    ("u1", "i2", 4 * DAY, 5.0),
    ("u4", "i2", 9 * DAY, 5.0),
    ("u5", "i3", 10 * DAY, 3.0),
    ("u5", "i4", 10 * DAY, 2.0),
]


def _ids(data: Dataset, items: np.ndarray) -> list[str]:
    return [data.items.id_of(i) for i in items if i >= 0]


def test_pop_ranks_by_distinct_users_and_excludes_seen() -> None:
    data = _data(ROWS)
    model = Popularity().fit(data)
    u1, u5 = data.users.idx_of("u1"), data.users.idx_of("u5")
    top = model.recommend([u1, u5], k=4)
    assert _ids(data, top.items[0]) == ["i3", "i4"]  # i1, i2 seen; tie i3/i4 -> lower idx first
    assert _ids(data, top.items[1]) == ["i1", "i2"]
    assert top.items[0, 2:].tolist() == [-1, -1]  # padded: nothing left to recommend
    unseen = model.recommend([u1], k=2, exclude_seen=False)
    assert _ids(data, unseen.items[0]) == ["i1", "i2"]
    assert top.scores[1].tolist()[:2] == [3.0, 2.0]


def test_unknown_users_get_the_fallback_list() -> None:
    data = _data(ROWS)
    top = Popularity().fit(data).recommend([data.n_users + 7, -1], k=2)
    assert _ids(data, top.items[0]) == ["i1", "i2"] == _ids(data, top.items[1])


def test_causal_pop_counts_only_the_past() -> None:
    data = _data(ROWS)
    model = Popularity(causal=True).fit(data)
    u5 = data.users.idx_of("u5")
    scores = model.score(
        [u5, u5], [data.items.idx_of("i1"), data.items.idx_of("i2")], at=[2 * DAY, 9 * DAY]
    )
    assert scores.tolist() == [[2.0, 0.0], [3.0, 2.0]]


def test_trending_decays_with_half_life() -> None:
    data = _data(ROWS)
    model = TrendingPopularity(half_life_days=1.0).fit(data)
    i1, i2 = data.items.idx_of("i1"), data.items.idx_of("i2")
    got = model.score([0], [i1, i2], at=[10 * DAY])[0]
    want_i1 = 2.0**-9 + 2.0**-8 + 2.0**-7
    want_i2 = 2.0**-6 + 2.0**-1
    assert got == pytest.approx([want_i1, want_i2], rel=1e-4)
    windowed = TrendingPopularity(window_days=2.0).fit(data).score([0], [i1, i2], at=[10 * DAY])[0]
    assert windowed == pytest.approx([0.0, 1.0], abs=1e-5)  # only u4's i2 on day 9 is recent


def test_the_moment_may_be_a_datetime_and_is_checked() -> None:
    data = _data(ROWS)
    model = TrendingPopularity(window_days=2.0).fit(data)
    items = np.arange(data.n_items)
    seconds = model.score([0], items, at=[10 * DAY])
    as_datetime = np.array([10 * DAY], dtype="datetime64[s]").astype("datetime64[D]")
    np.testing.assert_array_equal(model.score([0], items, at=as_datetime), seconds)  # was day 10
    np.testing.assert_array_equal(model.score([0], items, at=10.0 * DAY + 0.5), seconds)
    with pytest.raises(ValueError, match=r"one moment or one per user \(2\), got shape \(3,\)"):
        model.recommend([0, 1], 2, at=[1, 2, 3])  # failed inside numpy's broadcast
    with pytest.raises(TypeError, match="at must be epoch seconds"):
        model.recommend([0], 2, at=["2020-01-01"])  # int('2020-01-01') inside numpy


def test_bayesian_rating_popularity() -> None:
    data = _data(ROWS)
    model = RatingPopularity(prior_count=2.0).fit(data)
    mean = sum(r[3] for r in ROWS) / len(ROWS)
    i1 = data.items.idx_of("i1")
    assert model.score([0], [i1])[0, 0] == pytest.approx((2 * mean + 10.0) / (2 + 3), rel=1e-6)
    no_values = Dataset.from_frames(
        pl.DataFrame({"user_id": ["a"], "item_id": ["b"], "timestamp": [1]})
    )
    with pytest.raises(ConfigError, match="explicit values"):
        RatingPopularity().fit(no_values)


def test_rating_popularity_refuses_a_count_it_would_ignore(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="count = 'weight' does not apply"):
        RatingPopularity(count="weight")
    model = RatingPopularity(prior_count=2.0).fit(_data(ROWS))  # its saved config loads back
    assert isinstance(CandidateGenerator.load(model.save(tmp_path / "m")), RatingPopularity)


def test_segment_popularity_with_fallback() -> None:
    users = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5", "u6"],
            "country": ["fr", "fr", "de", "de", "de", None],
        }
    )
    rows = [*ROWS, ("u3", "i4", 11 * DAY, 1.0), ("u4", "i4", 11 * DAY, 1.0)]
    rows.append(("u6", "i3", 12 * DAY, 1.0))
    data = _data(rows, users)
    model = SegmentPopularity(attribute="country", min_segment_users=2).fit(data)
    de_user, fr_user, nobody = (data.users.idx_of(u) for u in ("u5", "u2", "u6"))
    top = model.recommend([de_user, fr_user, nobody], k=2, exclude_seen=False)
    assert _ids(data, top.items[0]) == ["i4", "i1"]  # de: i4 by 3 users (u3, u4, u5)
    assert _ids(data, top.items[1]) == [
        "i1",
        "i2",
    ]  # fr: i1 and i2 by 2 users each, global breaks tie
    assert _ids(data, top.items[2]) == ["i1", "i4"]  # no country: global popularity
    with pytest.raises(ConfigError, match="available"):
        SegmentPopularity(attribute="planet").fit(data)


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="half_lfe"):
        TrendingPopularity(half_lfe=3)
    with pytest.raises(ValidationError):
        TrendingPopularity(half_life_days=-1)


@pytest.mark.parametrize("bins", [[50.0, 18.0], [18.0, 50.0, 30.0], [float("nan")], []])
def test_segment_bins_must_be_rising_cut_points(bins: list[float]) -> None:
    # NaN or falling cut points were used as given; [18, 50, 30] failed inside np.digitize.
    with pytest.raises(ValidationError, match="finite cut points in rising order"):
        SegmentPopularity(attribute="age", bins=bins)


def test_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        Popularity().recommend([0], k=1)


def test_popularity_generators_are_registered_under_their_names() -> None:
    for name in ("pop", "pop-trending", "pop-rating", "pop-segment"):
        assert GENERATORS[name].name == name


@pytest.mark.parametrize("half_life", [None, 3 * DAY])
def test_as_of_sums_from_checkpoints_equal_the_direct_sums(half_life: float | None) -> None:
    rng = np.random.default_rng(7)
    ts = rng.integers(0, 200 * DAY, size=3000)
    item = rng.integers(0, 40, size=ts.size).astype(np.int32)
    w = rng.random(ts.size)
    log = _EventLog(item, ts, w)
    # Single moments (served alone: they start from a checkpoint) and one sorted batch.
    times = np.array([-5, 0, 17 * DAY, int(ts.max()), 90 * DAY + 1, 150 * DAY, 400 * DAY])
    batch = log.as_of(times, 40, half_life_s=half_life)
    for row, t in enumerate(times.tolist()):
        known = ts <= t
        decay = 1.0 if half_life is None else 2.0 ** (-(t - ts[known]) / half_life)
        direct = np.bincount(item[known], weights=w[known] * decay, minlength=40)
        alone = log.as_of(np.array([t]), 40, half_life_s=half_life)[0]
        np.testing.assert_allclose(alone, direct, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(batch[row], direct, rtol=1e-9, atol=1e-12)
    assert len(log._checkpoints) == 1  # built once, kept for later requests


def test_trending_takes_a_window_or_a_half_life_not_both() -> None:
    """Before, the window silently won and half_life_days was ignored."""
    config = GENERATORS["pop-trending"].Config
    with pytest.raises(ValidationError, match="not both"):
        config.model_validate({"window_days": 3, "half_life_days": 2})
    assert config.model_validate({"window_days": 3}).window_days == 3
