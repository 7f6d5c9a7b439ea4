"""The Spark preparation and splits equal the single machine's row for row (external ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from recsemble.data.dataset import Dataset
from recsemble.data.loaders import load_dataset
from recsemble.evaluation import protocol
from recsemble.spark import data as spark_data
from recsemble.spark import splits
from tests.spark.conftest import external

PROTOCOLS = ("temporal-user", "temporal-global")


def _tricky_rows() -> pl.DataFrame:
    """Users 100-104 and items 900-906 plus "1000" (which sorts before "900" as a string).

    Duplicate pairs share their earliest timestamp (row order decides, the larger weight is
    kept), users have simultaneous events (item id decides) and several users act in the same
    second (user id decides the global order).
    """
    rows = [
        ("100", "900", 10, "view", 1.0),
        ("100", "901", 10, "view", 1.0),
        ("100", "1000", 10, "cart", 3.0),
        ("100", "900", 10, "purchase", 5.0),  # duplicate, same time: the first row wins
        ("100", "902", 20, "view", 1.0),
        ("100", "903", 30, "view", 1.0),
        ("101", "902", 20, "view", 1.0),
        ("101", "900", 20, "view", 1.0),
        ("101", "1000", 5, "view", 1.0),
        ("101", "1000", 3, "cart", 3.0),  # duplicate, earlier: this row wins, weight 3
        ("101", "904", 40, "view", 1.0),
        ("102", "905", 20, "view", 1.0),
        ("102", "906", 20, "view", 1.0),
        ("102", "900", 20, "view", 1.0),
        ("103", "900", 1, "view", 1.0),  # one pair only: filtered out
        ("104", "903", 30, "view", 1.0),
        ("104", "901", 30, "cart", 3.0),
        ("104", "906", 10, "view", 1.0),
        ("104", "906", 50, "purchase", 5.0),
    ]
    return pl.DataFrame(
        rows, schema=["user_id", "item_id", "timestamp", "event", "weight"], orient="row"
    )


def _compare(spark_split: splits.SparkSplit, reference: protocol.Split) -> None:
    mine = splits.local_split(spark_split)
    for part in ("train", "test"):
        assert external(getattr(mine, part)).equals(external(getattr(reference, part))), part
    assert mine.train.users == reference.train.users
    assert mine.train.items == reference.train.items
    assert np.array_equal(mine.reference_time, reference.reference_time)
    assert mine.train.item_attributes.equals(reference.train.item_attributes)
    assert mine.train.user_attributes.equals(reference.train.user_attributes)
    # The idx Spark joined in are the id maps' (not only after gathering on the driver).
    pairs = spark_split.marked.select("user_id", "user_idx", "item_id", "item_idx").toArrow()
    users, items = spark_split.prepared.users, spark_split.prepared.items
    assert np.array_equal(users.to_idx(pairs.column("user_id").to_pylist()), pairs["user_idx"])
    assert np.array_equal(items.to_idx(pairs.column("item_id").to_pylist()), pairs["item_idx"])


@pytest.mark.parametrize("name", PROTOCOLS)
def test_parquet_input_splits_like_the_single_machine(
    spark: Any, tmp_path: Path, name: str
) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    _tricky_rows().write_parquet(folder / "interactions.parquet")
    local = protocol.prepare(load_dataset(folder), min_user_interactions=2)
    source = spark_data.read_source(spark, folder)
    prepared = splits.index(
        spark_data.prepare(source.interactions, min_user_interactions=2), source
    )
    assert "103" not in prepared.users and prepared.items.ids[0] == "1000"
    _compare(splits.split(prepared, name, 0.3), protocol.split(local, name, 0.3))


@pytest.mark.parametrize("name", PROTOCOLS)
def test_synthetic_log_splits_like_the_single_machine(
    spark: Any, synthetic: Dataset, name: str
) -> None:
    source = spark_data.source_from_dataset(spark, synthetic)
    prepared = splits.index(spark_data.prepare(source.interactions), source)
    local = protocol.prepare(synthetic)
    assert splits.prepared_dataset(prepared).interactions.equals(local.interactions)
    _compare(splits.split(prepared, name), protocol.split(local, name))


def test_min_value_filter_and_catalog_dataset(spark: Any, synthetic: Dataset) -> None:
    rated = synthetic.with_interactions(
        synthetic.interactions.with_columns(
            value=(pl.col("timestamp") % 5).cast(pl.Float32)  # a rating of 0..4
        )
    )
    source = spark_data.source_from_dataset(spark, rated)
    prepared = splits.index(spark_data.prepare(source.interactions, min_value=2.0), source)
    local = protocol.prepare(rated, min_value=2.0)
    assert splits.prepared_dataset(prepared).interactions.equals(local.interactions)
    catalog = splits.catalog_dataset(prepared)
    assert catalog.users == local.users and catalog.items == local.items
    assert catalog.item_attributes.equals(local.item_attributes)
    assert catalog.n_interactions == 0


@pytest.mark.parametrize(("name", "fraction"), [("temporal-user", 0.35), ("temporal-global", 0.3)])
def test_decimal_fractions_split_exactly_like_the_single_machine(
    spark: Any, name: str, fraction: float
) -> None:
    """Sizes where a double product lands just under a whole number (0.35 * 180, 0.7 * 90)."""
    n_users, per_user = (1, 180) if name == "temporal-user" else (10, 9)
    rows = [(f"u{u}", f"i{n}", u * per_user + n) for u in range(n_users) for n in range(per_user)]
    local = protocol.prepare(
        Dataset.from_frames(
            pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
        )
    )
    source = spark_data.source_from_dataset(spark, local)
    prepared = splits.index(spark_data.prepare(source.interactions), source)
    expected = protocol.split(local, name, fraction)
    assert expected.test.n_interactions == (63 if name == "temporal-user" else 27)
    _compare(splits.split(prepared, name, fraction), expected)
