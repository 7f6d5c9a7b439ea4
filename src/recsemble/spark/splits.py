"""The protocol's splits on Spark, and their driver-side `Split` for what runs there.

`temporal_user_split` / `temporal_global_split` mark each prepared interaction as train or test
with the rules of evaluation/protocol.py: per user, the last max(1, floor(f * n_u)) by
(timestamp, item id); globally, the first floor((1 - f) * N) by (timestamp, user id, item id)
are train. Ids compare as strings; remaining ties (possible only without `prepare`) go by input
row order, as numpy's stable lexsort does on the single machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from recsemble.data.dataset import Dataset
from recsemble.data.idmap import IdMap
from recsemble.errors import ConfigError
from recsemble.evaluation.protocol import (
    ProtocolName,
    Split,
    decimal_fraction,
    floor_share,
    user_reference_times,
)
from recsemble.spark.data import (
    ROW_ORDER,
    SparkSource,
    collect_id_map,
    global_positions,
    id_table,
    with_idx,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class PreparedOnSpark:
    """Prepared interactions with their idx (user_idx, item_idx) and the two id maps."""

    interactions: DataFrame  # data.COLUMNS + user_idx, item_idx
    users: IdMap
    items: IdMap
    source: SparkSource


@dataclass(frozen=True)
class SparkSplit:
    """A split on Spark: the prepared interactions with an `is_test` column."""

    prepared: PreparedOnSpark
    marked: DataFrame  # prepared.interactions + is_test (boolean)
    protocol: ProtocolName

    @property
    def train(self) -> DataFrame:
        from pyspark.sql import functions as F

        return self.marked.filter(~F.col("is_test")).drop("is_test")

    @property
    def test(self) -> DataFrame:
        from pyspark.sql import functions as F

        return self.marked.filter(F.col("is_test")).drop("is_test")


def index(prepared: DataFrame, source: SparkSource, *, catalog: bool = False) -> PreparedOnSpark:
    """Id tables (IdMap's numbering) for a prepared frame, joined in as user_idx / item_idx;
    catalog: the ids of the source's item and user tables too, with or without interactions
    (as `prepare(keep_catalog=True)` keeps them for a model trained to serve)."""
    prepared = prepared.cache()  # read by both id tables, the split and the driver
    ids = {"user_id": prepared.select("user_id"), "item_id": prepared.select("item_id")}
    if catalog:
        for column, table in (("user_id", source.users), ("item_id", source.items)):
            if table is not None and table.height:
                listed = prepared.sparkSession.createDataFrame(
                    table.select(pl.col(column).cast(pl.String)).to_arrow()
                )
                ids[column] = ids[column].unionByName(listed)
    users, items = id_table(ids["user_id"], "user_id"), id_table(ids["item_id"], "item_id")
    frame = with_idx(prepared, users, items).cache()
    return PreparedOnSpark(frame, collect_id_map(users), collect_id_map(items), source)


def temporal_user_split(prepared: PreparedOnSpark, test_fraction: float = 0.2) -> SparkSplit:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    _check_fraction(test_fraction)
    per_user = Window.partitionBy("user_id")
    ordered = per_user.orderBy("timestamp", "item_id", *ROW_ORDER)
    n_u = F.count(F.lit(1)).over(per_user)
    # Decimal arithmetic, as floor_share: a double 0.35 * 180 floors to 62, not 63.
    exact = F.lit(Decimal(repr(test_fraction))).cast("decimal(20,18)")
    n_test = F.greatest(F.lit(1), F.floor(n_u.cast("decimal(20,0)") * exact).cast("long"))
    marked = (
        prepared.interactions.withColumn("_position", F.row_number().over(ordered) - 1)
        .withColumn("is_test", F.col("_position") >= n_u - n_test)
        .drop("_position")
    )
    return SparkSplit(prepared, marked, "temporal-user")


def temporal_global_split(prepared: PreparedOnSpark, test_fraction: float = 0.2) -> SparkSplit:
    from pyspark.sql import functions as F

    _check_fraction(test_fraction)
    frame = prepared.interactions
    n_train = int(floor_share(1 - decimal_fraction(test_fraction), np.array([frame.count()]))[0])
    order = ["timestamp", "user_id", "item_id", *ROW_ORDER]
    positioned = global_positions(frame, order, "_position")
    marked = positioned.withColumn("is_test", F.col("_position") >= n_train).drop("_position")
    return SparkSplit(prepared, marked, "temporal-global")


def split(prepared: PreparedOnSpark, protocol: str, test_fraction: float = 0.2) -> SparkSplit:
    if protocol == "temporal-user":
        return temporal_user_split(prepared, test_fraction)
    if protocol == "temporal-global":
        return temporal_global_split(prepared, test_fraction)
    raise ConfigError(f"unknown protocol {protocol!r}")


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")


# ---------------------------------------------------------------------------- driver side
def prepared_dataset(prepared: PreparedOnSpark) -> Dataset:
    """The prepared interactions gathered on the driver, in input row order, as the Dataset
    that evaluation.protocol.prepare returns (same id maps, rows and attributes)."""
    return _gather(prepared, prepared.interactions, [])[0]


def _gather(
    prepared: PreparedOnSpark, frame: DataFrame, extra: list[str]
) -> tuple[Dataset, pl.DataFrame]:
    """`frame` on the driver as a Dataset, plus its `extra` columns in the same row order."""
    columns = ["user_id", "item_id", "timestamp", "event", "weight", "value", *extra]
    gathered = pl.from_arrow(frame.orderBy(*ROW_ORDER).select(*columns).toArrow())
    assert isinstance(gathered, pl.DataFrame)
    source = prepared.source
    full = Dataset.from_frames(
        gathered.drop(extra),
        source.items,
        source.users,
        event_weights=dict(source.event_weights),
        name=source.name,
    )
    # Every gathered row's user and item are in the maps: restrict only renumbers.
    dataset = full.restrict(
        full.users.to_idx(prepared.users.ids), full.items.to_idx(prepared.items.ids)
    )
    return dataset, gathered.select(extra)


def local_split(spark_split: SparkSplit) -> Split:
    """The split gathered on the driver as an evaluation.protocol.Split (train, test,
    reference times), for scoring and the results document."""
    dataset, flags = _gather(spark_split.prepared, spark_split.marked, ["is_test"])
    is_test = flags["is_test"]
    inter = dataset.interactions
    train = dataset.with_interactions(inter.filter(~is_test))
    test = dataset.with_interactions(inter.filter(is_test))
    n_users = dataset.n_users
    if spark_split.protocol == "temporal-user":
        ref = user_reference_times(train, test)
    else:
        ts = train.column("timestamp")
        ref = np.full(n_users, int(ts.max()) if ts.size else -1, dtype=np.int64)
    return Split(train, test, spark_split.protocol, ref)


def catalog_dataset(prepared: PreparedOnSpark) -> Dataset:
    """A Dataset with the prepared id maps and attributes but no interactions: what a saved
    model's Catalog needs, without gathering the interactions on the driver."""
    source = prepared.source
    empty = pl.DataFrame(schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64})
    return Dataset.from_frames(
        empty,
        _attributes_of(source.items, "item_id", prepared.items),
        _attributes_of(source.users, "user_id", prepared.users),
        event_weights=dict(source.event_weights),
        name=source.name,
    )


def _attributes_of(frame: pl.DataFrame | None, key: str, ids: IdMap) -> pl.DataFrame:
    """The attribute rows of exactly `ids` (null rows for ids the table lacks)."""
    base = pl.DataFrame({key: ids.as_series()})
    if frame is None:
        return base
    keyed = frame.with_columns(pl.col(key).cast(pl.String))
    return base.join(keyed, on=key, how="left", maintain_order="left")
