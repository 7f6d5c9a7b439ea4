"""The synthetic generator: determinism, schema, realism, and that CF beats popularity on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pydantic
import pytest
import scipy.sparse as sp

from recsemble.data.synthetic import SyntheticConfig, generate, load_synthetic, write_synthetic

Frames = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]
SMALL = SyntheticConfig(n_users=300, n_items=200, n_interactions=8_000, n_categories=5, seed=7)


@pytest.fixture(scope="module")
def demo() -> Frames:
    return generate(SyntheticConfig())


# ---------------------------------------------------------------------------- basics
def test_same_seed_same_frames_and_bytes(tmp_path: Path) -> None:
    a, b = generate(SMALL), generate(SMALL)
    for x, y in zip(a, b, strict=True):
        assert x.equals(y)
    for fmt in ("parquet", "csv"):
        first = write_synthetic(tmp_path / f"a-{fmt}", SMALL, fmt=fmt)
        second = write_synthetic(tmp_path / f"b-{fmt}", SMALL, fmt=fmt)
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_other_seed_other_data() -> None:
    a = generate(SMALL)[0]
    b = generate(SMALL.model_copy(update={"seed": 8}))[0]
    assert not a.equals(b)


def test_schema_and_disjoint_ids(demo: Frames) -> None:
    inter, items, users = demo
    assert inter.schema == pl.Schema(
        {"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64, "event": pl.String}
    )
    assert items.columns == ["item_id", "title", "text", "categories", "created_at"]
    assert items.schema["categories"] == pl.List(pl.String)
    assert users.columns[:3] == ["user_id", "country", "age_group"]
    assert (items.height, users.height) == (2_000, 5_000)
    assert abs(inter.height - 200_000) < 2_000  # n_interactions is a target
    assert items["item_id"].str.starts_with("i").all() and items["item_id"].is_unique().all()
    assert users["user_id"].str.starts_with("u").all() and users["user_id"].is_unique().all()
    assert inter["user_id"].is_in(users["user_id"].implode()).all()
    assert inter["item_id"].is_in(items["item_id"].implode()).all()
    assert items["text"].str.split(" ").list.len().to_numpy().min() >= 12
    assert items["categories"].list.len().is_between(1, 2).all()
    assert inter.null_count().sum_horizontal().item() == 0


def test_config_is_strict_and_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(n_usres=10)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(funnel_rates=(0.5,))  # three event types need two rates
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(explore_prob=1.5)
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig().seed = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------- realism
def test_no_interaction_before_item_exists_or_outside_period(demo: Frames) -> None:
    inter, items, users = demo
    cfg = SyntheticConfig()
    joined = inter.join(items, on="item_id").join(users, on="user_id")
    assert (joined["timestamp"] >= joined["created_at"]).all()
    assert (joined["timestamp"] >= joined["signup_at"]).all()
    ts = inter["timestamp"].to_numpy()
    assert cfg.start_time <= ts.min() and ts.max() <= cfg.end_time


def test_popularity_is_power_law_like(demo: Frames) -> None:
    counts = np.sort(demo[0]["item_id"].value_counts()["count"].to_numpy())[::-1]
    share_top10 = counts[: len(counts) // 10].sum() / counts.sum()
    assert share_top10 > 0.4
    assert np.median(counts) < counts.mean() / 1.5  # long tail: median far below the mean


def test_funnel_views_carts_purchases(demo: Frames) -> None:
    inter = demo[0]
    n = dict(inter["event"].value_counts().iter_rows())
    assert n["view"] > n["cart"] > n["purchase"] > 0
    # Every purchase follows a cart, every cart a view, of the same user and item.
    firsts = inter.group_by("user_id", "item_id", "event").agg(pl.col("timestamp").min())
    wide = firsts.pivot("event", index=["user_id", "item_id"], values="timestamp")
    carts = wide.filter(pl.col("cart").is_not_null())
    assert (carts["view"] < carts["cart"]).all()
    bought = wide.filter(pl.col("purchase").is_not_null())
    assert (bought["cart"] < bought["purchase"]).all()


def test_sessions_short_gaps_long_tail(demo: Frames) -> None:
    gaps = (
        demo[0]
        .sort("user_id", "timestamp")
        .select(pl.col("timestamp").diff().over("user_id"))
        .drop_nulls()
        .to_series()
        .to_numpy()
    )
    assert np.median(gaps) < 10 * 60
    assert np.percentile(gaps, 95) > 86_400  # sessions are days apart


def test_consecutive_views_are_related(demo: Frames) -> None:
    inter, items, _ = demo
    views = (
        inter.filter(pl.col("event") == "view")
        .sort("user_id", "timestamp")
        .join(items.select("item_id", cat=pl.col("categories").list.first()), on="item_id")
        .sort("user_id", "timestamp")
    )
    user, ts, cat = (views[c].to_numpy() for c in ("user_id", "timestamp", "cat"))
    same_session = (user[1:] == user[:-1]) & (np.diff(ts) < 1_800)
    share = np.mean((cat[1:] == cat[:-1])[same_session])
    cat_share = items["categories"].list.first().value_counts()["count"].to_numpy() / items.height
    chance = float((cat_share**2).sum())
    assert share > 0.5 > 3 * chance


def test_new_users_and_items_arrive_over_time(demo: Frames) -> None:
    inter, items, _ = demo
    cfg = SyntheticConfig()
    later = cfg.start_time + cfg.duration_days * 86_400 // 10
    assert np.mean(items["created_at"].to_numpy() > cfg.start_time) > 0.3
    first_seen = inter.group_by("user_id").agg(pl.col("timestamp").min())["timestamp"]
    assert np.mean(first_seen.to_numpy() > later) > 0.25
    new_items = items.filter(pl.col("created_at") > later)["item_id"].implode()
    assert np.mean(inter["item_id"].is_in(new_items).to_numpy()) > 0.05


def test_new_items_trend_right_after_creation(demo: Frames) -> None:
    inter, items, _ = demo
    cfg = SyntheticConfig()
    per_item = (
        inter.join(items.filter(pl.col("created_at") > cfg.start_time), on="item_id")
        .with_columns(age_days=(pl.col("timestamp") - pl.col("created_at")) / 86_400)
        .group_by("item_id")
        .agg(
            early=(pl.col("age_days") < 14).sum() / 14,
            late=(pl.col("age_days") >= 14).sum()
            / ((cfg.end_time - pl.col("created_at").first()) / 86_400 - 14),
            left=(cfg.end_time - pl.col("created_at").first()) / 86_400,
        )
        .filter(pl.col("left") > 42)
    )
    assert np.mean(per_item["early"].to_numpy()) > 1.2 * np.mean(per_item["late"].to_numpy())


# ---------------------------------------------------------------------------- CF signal
def _temporal_split(inter: pl.DataFrame) -> tuple[sp.csr_array, sp.csr_array]:
    """Protocol split: dedupe (user, item) keeping the earliest, drop users with < 5, last 20%
    of each user (by time, then item id) is test. Returns train and test, users x items."""
    _, u = np.unique(inter["user_id"].to_numpy(), return_inverse=True)
    _, i = np.unique(inter["item_id"].to_numpy(), return_inverse=True)
    t = inter["timestamp"].to_numpy()
    order = np.lexsort((i, t, u))
    u, i = u[order], i[order]
    _, first = np.unique(u.astype(np.int64) * (i.max() + 1) + i, return_index=True)
    first.sort()
    u, i = u[first], i[first]
    n_u = np.bincount(u)[u]
    u, i, n_u = u[n_u >= 5], i[n_u >= 5], n_u[n_u >= 5]
    rank = np.arange(u.size) - np.searchsorted(u, u)
    test = rank >= n_u - np.maximum(1, np.floor(0.2 * n_u))
    shape = (int(u.max()) + 1, int(i.max()) + 1)
    train = sp.csr_array((np.ones(int((~test).sum())), (u[~test], i[~test])), shape=shape)
    held = sp.csr_array((np.ones(int(test.sum())), (u[test], i[test])), shape=shape)
    keep = np.flatnonzero(held.sum(axis=1) > 0)
    return train[keep], held[keep]


def _ndcg_at_10(scores: npt.NDArray[np.float64], train: sp.csr_array, test: sp.csr_array) -> float:
    k = 10
    scores = scores.copy()
    scores[train.nonzero()] = -np.inf  # full catalog ranking, train items excluded
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    rows = np.arange(scores.shape[0])[:, None]
    top = top[rows, np.argsort(-scores[rows, top], axis=1, kind="stable")]
    rel = test.toarray()[rows, top]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    n_rel = np.minimum(np.asarray(test.sum(axis=1)).astype(int), k)
    return float(np.mean((rel * discount).sum(axis=1) / np.cumsum(discount)[n_rel - 1]))


def test_item_knn_clearly_beats_popularity(
    demo: Frames, record_property: Callable[[str, object], None]
) -> None:
    train, test = _temporal_split(demo[0])
    counts = np.asarray(train.sum(axis=0)).ravel()
    pop = np.tile(counts, (train.shape[0], 1)).astype(np.float64)
    norm = np.sqrt(np.maximum(counts, 1.0))
    sim = (train.T @ train).toarray() / norm[:, None] / norm[None, :]  # cosine, binary data
    np.fill_diagonal(sim, 0.0)
    knn = train @ sim
    pop_ndcg, knn_ndcg = _ndcg_at_10(pop, train, test), _ndcg_at_10(knn, train, test)
    record_property("pop_ndcg10", pop_ndcg)
    record_property("item_knn_ndcg10", knn_ndcg)
    print(f"NDCG@10 popularity {pop_ndcg:.4f}, item-kNN {knn_ndcg:.4f}")
    assert pop_ndcg > 0.03  # popularity stays a meaningful baseline
    assert knn_ndcg >= 1.5 * pop_ndcg  # measured: about 2.2x


# ---------------------------------------------------------------------------- files
def test_load_synthetic_in_memory_and_from_files(tmp_path: Path) -> None:
    ds = load_synthetic(config=SMALL)
    assert dict(ds.event_weights) == {"view": 1.0, "cart": 3.0, "purchase": 5.0}
    assert ds.n_users == SMALL.n_users and ds.n_items == SMALL.n_items
    assert "country" in ds.user_attributes.columns
    write_synthetic(tmp_path, SMALL)
    from_files = load_synthetic(tmp_path, SMALL)
    assert from_files.interactions.equals(ds.interactions)
    assert from_files.item_attributes.equals(ds.item_attributes)
    assert load_synthetic(tmp_path).interactions.equals(ds.interactions)  # any config: files
    other = SMALL.model_copy(update={"seed": 99})
    assert not load_synthetic(tmp_path, other).interactions.equals(ds.interactions)


def test_writing_into_a_folder_of_real_data_is_refused(tmp_path: Path) -> None:
    """`data synth --out` naming the user's data folder overwrote its interactions.parquet
    with generated data; generated data now replaces only generated data."""
    from recsemble.errors import DataError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "interactions.parquet").write_bytes(b"the user's events")
    with pytest.raises(DataError, match=r"holds interactions\.parquet, not generated data"):
        write_synthetic(mine, SMALL)
    assert (mine / "interactions.parquet").read_bytes() == b"the user's events"
    assert sorted(p.name for p in mine.iterdir()) == ["interactions.parquet"]
    write_synthetic(tmp_path / "generated", SMALL)
    write_synthetic(tmp_path / "generated", SMALL)  # generated before: regenerated


def test_write_csv_joins_categories(tmp_path: Path) -> None:
    paths = write_synthetic(tmp_path, SMALL, fmt="csv")
    assert [p.name for p in paths[:3]] == ["interactions.csv", "items.csv", "users.csv"]
    items = pl.read_csv(paths[1])
    assert items["categories"].dtype == pl.String
    expected = generate(SMALL)[1]["categories"].list.join("|")
    assert items["categories"].equals(expected)


def test_scales_to_a_million_interactions() -> None:
    cfg = SyntheticConfig(n_users=40_000, n_items=10_000, n_interactions=1_000_000)
    inter, items, _ = generate(cfg)
    assert abs(inter.height - 1_000_000) < 10_000
    assert inter["item_id"].n_unique() > 0.9 * items.height
