"""A model followed by stages (`Reranked`), the [rerank] config, sweeps and the CLI flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from recsemble.cli import app
from recsemble.config import resolve
from recsemble.data.dataset import Dataset
from recsemble.data.synthetic import SyntheticConfig, generate
from recsemble.errors import ConfigError
from recsemble.evaluation.protocol import prepare
from recsemble.evaluation.sweep import parse_sweep
from recsemble.generators import GENERATORS
from recsemble.generators.history import Histories
from recsemble.rerank import RerankConfig, Reranked, build_stages
from recsemble.rerank.reranked import PoolCache
from recsemble.types import PAD_IDX


@pytest.fixture(scope="module")
def data() -> Dataset:
    inter, items, users = generate(
        SyntheticConfig(seed=5, n_users=120, n_items=80, n_interactions=3_000, n_categories=5)
    )
    # Two event types, so the seen stage's per-type rule has something to tell apart.
    kinds = np.where(np.arange(inter.height) % 3 == 0, "purchase", "view")
    inter = inter.with_columns(pl.Series("event", kinds))
    weights = {"view": 1.0, "purchase": 3.0}
    return prepare(Dataset.from_frames(inter, items, users, event_weights=weights, name="small"))


def _seen(data: Dataset, user: int) -> set[int]:
    matrix = data.user_item_matrix("binary")
    return set(matrix.indices[matrix.indptr[user] : matrix.indptr[user + 1]].tolist())


def test_reranked_lists_are_diverse_subsets_of_the_pool(data: Dataset) -> None:
    base = GENERATORS["itemknn"]().fit(data)
    config = RerankConfig.model_validate({"mmr": {"lambda": 0.2}, "pool": 30})
    model = Reranked(base, build_stages(config, ["mmr"]), pool=30, refit_model=False).fit(data)
    users = np.arange(20)
    top = model.recommend(users, 10)
    pool = base.recommend(users, 30)
    for row in range(users.size):
        got = [i for i in top.items[row].tolist() if i != PAD_IDX]
        assert set(got) <= set(pool.items[row].tolist())
        assert not set(got) & _seen(data, row)
    assert not np.array_equal(top.items, pool.items[:, :10])  # the stage did reorder


def test_seen_stage_decides_what_comes_back(data: Dataset) -> None:
    base = GENERATORS["pop"]().fit(data)
    only = "purchase"  # viewed items may come back, bought ones never
    config = RerankConfig.model_validate({"seen": {"event_types": [only]}})
    model = Reranked(base, build_stages(config, ["seen"]), pool=20, refit_model=False).fit(data)
    top = model.recommend(np.arange(60), 10)
    frame = data.interactions
    came_back = 0
    for user in range(60):
        rows = frame.filter(frame["user_idx"] == user)
        blocked = set(rows.filter(rows["event"] == only)["item_idx"].to_list())
        listed = set(top.items[user].tolist()) - {PAD_IDX}
        assert not listed & blocked
        came_back += len(listed & _seen(data, user))
    assert came_back > 0  # items seen under other event types are allowed again
    assert (top.items != PAD_IDX).all()  # room was made for the dropped seen items


def test_request_time_history_reaches_the_stages(data: Dataset) -> None:
    base = GENERATORS["pop"]().fit(data)
    model = Reranked(base, build_stages(RerankConfig(), ["seen"]), 20, False).fit(data)
    first = model.recommend([0], 5).items[0]
    fresh = Histories.from_lists([[int(first[0])]], data.n_items)
    again = model.recommend([0], 5, histories=fresh).items[0]
    assert first[0] not in again.tolist()


def test_rerank_config_and_sweep_parsing() -> None:
    config = resolve(overrides={"rerank.mmr.lambda": 0.4, "evaluate.rerank": ["diverse"]}).config
    assert config.rerank.mmr.lambda_ == 0.4
    with pytest.raises(ConfigError, match=r"unknown key .rerank\.mmr\.lamda."):
        resolve(overrides={"rerank.mmr.lamda": 0.4})
    with pytest.raises(ConfigError, match="unknown re-ranker 'mmmr'; did you mean 'mmr'"):
        resolve(overrides={"evaluate.rerank": ["mmmr"]})
    with pytest.raises(ConfigError, match="invalid configuration"):
        resolve(overrides={"rerank.dpp.theta": 2})
    sweep = parse_sweep("rerank.mmr.lambda=0:1:0.25", config.rerank)
    assert sweep.values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert parse_sweep("rerank.diverse.lambda=0.1,0.9", config.rerank).values == (0.1, 0.9)
    for bad, message in [
        ("rerank.mmr.lambda=0:2:0.5", "value 1.5 is invalid"),
        ("rerank.mmr.theta=0:1:0.5", "not a setting of mmr"),
        ("rerank.mmr.lambda=1:0:0.1", "start:stop:step"),
        ("mmr.lambda=0:1:0.1", "rerank.<stage>.<key>"),
        ("rerank.mmr.lambda=0:inf:1", "finite"),  # was an OverflowError traceback
        ("rerank.mmr.lambda=nan,1", "finite"),
        ("rerank.mmr.lambda=0:1:1e-9", "values; 1..101 allowed"),  # counted, not built
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_sweep(bad, config.rerank)


def test_stage_names_given_as_one_string_are_refused() -> None:
    # "seen" was read as the stages 's', 'e', 'e', 'n': "unknown re-ranker 's'".
    with pytest.raises(ConfigError, match="a list of names, not the string 'seen'"):
        build_stages(RerankConfig(), "seen")


def test_cli_rerank_and_sweep(tmp_path: Path) -> None:
    runner = CliRunner()
    data_dir = tmp_path / "data"
    synth = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(data_dir),
            "--users",
            "150",
            "--items",
            "90",
            "--interactions",
            "4000",
        ],
    )
    assert synth.exit_code == 0, synth.output
    results = tmp_path / "results.json"
    args = [
        "evaluate", "--dataset", str(data_dir), "--models", "itemknn", "--rerank", "diverse",
        "--sweep", "rerank.mmr.lambda=0:1:0.5", "--json", str(results),
    ]  # fmt: skip
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    names = set(json.loads(results.read_text()))
    assert {"itemknn", "itemknn+diverse", "itemknn+mmr[lambda=0.5]"} <= names
    assert "sweep of lambda" in out.output
    assert (tmp_path / "results.sweep.png").stat().st_size > 10_000
    bad = runner.invoke(app, [*args[:5], "--rerank", "shiny"])
    assert bad.exit_code == 2 and "unknown re-ranker 'shiny'" in bad.output


class CountingModel:
    """Counts how often the model itself is asked (the cache's reason to exist)."""

    def __init__(self, inner: object) -> None:
        self.inner, self.calls = inner, 0

    def recommend(self, users: np.ndarray, k: int, **kwargs: object) -> object:
        self.calls += 1
        return self.inner.recommend(users, k, **kwargs)  # type: ignore[attr-defined]


def test_pool_cache_asks_the_model_once_per_block(data: Dataset) -> None:
    counting = CountingModel(GENERATORS["itemknn"]().fit(data))
    cache = PoolCache(counting)
    variants = [
        Reranked(
            cache,
            build_stages(RerankConfig.model_validate({"mmr": {"lambda": v}}), ["mmr"]),
            30,
            False,
        )
        for v in (0.2, 0.8)
    ]
    for variant in variants:
        variant.fit(data)
    at = np.full(10, 10**10)
    first, second = (v.recommend(np.arange(10), 5, at=at) for v in variants)
    assert counting.calls == 1
    assert not np.array_equal(first.items, second.items)  # same pools, different stages
    fresh = Histories.from_lists([[0]] * 10, data.n_items)
    variants[0].recommend(np.arange(10), 5, histories=fresh)
    assert counting.calls == 2  # request-time histories are never served from the cache
