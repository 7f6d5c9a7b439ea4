"""Interactions on Spark: reading them, the protocol's preparation, and id maps.

Every step reproduces its single-machine counterpart exactly (data/loaders.py, data/idmap.py,
evaluation/protocol.py `prepare`), so a Spark run and a local run of the same data agree row for
row. Two conventions make that possible:

- Input row order is (file, position in the file): `_file` (the file's path, or "" for frames
  handed over from the driver) and `_pos` (increasing within a file). Ties the protocol breaks
  "by input row order" are broken by these two columns.
- Ids are compared as strings (Spark compares UTF-8 bytes, which is code point order, as polars
  does), and idx are dense ranks in that order: an IdMap built with `IdMap.from_unsorted`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from recsemble.data.dataset import DEFAULT_EVENT, Dataset
from recsemble.data.idmap import IdMap
from recsemble.data.loaders import INTERACTION_FIELDS, items_frame, resolve_columns, users_frame
from recsemble.data.tables import Table
from recsemble.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

#: Columns of an interactions DataFrame on Spark, in order.
COLUMNS = ("user_id", "item_id", "timestamp", "event", "weight", "value", "_file", "_pos")
#: The input row order (see the module docstring).
ROW_ORDER = ("_file", "_pos")


@dataclass(frozen=True)
class SparkSource:
    """Raw interactions on Spark, and the (small) item and user attribute tables on the driver,
    validated as the local loaders validate them (`items_frame` / `users_frame`)."""

    interactions: DataFrame
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    event_weights: Mapping[str, float] = field(default_factory=dict)
    name: str = ""


# ---------------------------------------------------------------------------- sources
def source_from_dataset(spark: SparkSession, dataset: Dataset) -> SparkSource:
    """A Dataset already on the driver (e.g. a MovieLens release) handed to Spark, its
    interactions in their row order."""
    frame = dataset.external_interactions().with_columns(
        pl.lit("").alias("_file"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_pos")
    )
    interactions = _typed(spark.createDataFrame(frame.to_arrow()))
    # (insert_column works in place: on clones, so that the dataset stays as it was)
    items = dataset.item_attributes.clone().insert_column(
        0, dataset.items.as_series().alias("item_id")
    )
    users = dataset.user_attributes.clone().insert_column(
        0, dataset.users.as_series().alias("user_id")
    )
    return SparkSource(interactions, items, users, dict(dataset.event_weights), dataset.name)


def read_source(
    spark: SparkSession,
    location: str | Path,
    *,
    event_weights: Mapping[str, float] | None = None,
    columns: Mapping[str, str] | None = None,
) -> SparkSource:
    """Interactions from Parquet (a file, a folder of part files, or a folder holding
    interactions.parquet and optionally items.parquet / users.parquet) or a catalog table."""
    path = Path(location).expanduser()
    side: dict[str, pl.DataFrame | None] = {"items": None, "users": None}
    if path.is_dir() and (path / "interactions.parquet").exists():
        for stem in side:
            if (path / f"{stem}.parquet").exists():
                side[stem] = _attribute_table(spark, path / f"{stem}.parquet", stem, columns)
        raw, name = spark.read.parquet(str(path / "interactions.parquet")), path.name
    elif path.exists():
        raw, name = spark.read.parquet(str(path)), path.stem
    else:
        raw, name = spark.table(str(location)), str(location)
    frame = interactions_from(raw, str(location), event_weights, columns)
    return SparkSource(frame, side["items"], side["users"], dict(event_weights or {}), name)


def _attribute_table(
    spark: SparkSession, path: Path, stem: str, columns: Mapping[str, str] | None
) -> pl.DataFrame:
    """An items / users table read by Spark and validated on the driver (it is small)."""
    frame = pl.from_arrow(spark.read.parquet(str(path)).toArrow())
    assert isinstance(frame, pl.DataFrame)
    table = Table(frame, str(path), None)
    mapping = {k: v for k, v in (columns or {}).items() if v in frame.columns}
    return items_frame(table, mapping) if stem == "items" else users_frame(table, mapping)


def interactions_from(
    raw: DataFrame,
    source: str,
    event_weights: Mapping[str, float] | None = None,
    columns: Mapping[str, str] | None = None,
) -> DataFrame:
    """A raw Spark frame as typed interactions (COLUMNS), checked like the local loader does:
    required columns present and without nulls, ids not floating point, weights >= 0."""
    from pyspark.sql import functions as F

    probe = Table(pl.DataFrame(schema=dict.fromkeys(raw.columns, pl.String)), source, None)
    found = resolve_columns(probe, INTERACTION_FIELDS, INTERACTION_FIELDS[:3], columns)
    kinds = dict(raw.dtypes)
    for field_name in ("user_id", "item_id"):
        if kinds[found[field_name]] in ("float", "double") or kinds[found[field_name]].startswith(
            "decimal"
        ):
            raise DataError(f"{field_name} must be strings or integers", source=source)
    event = F.col(found["event"]).cast("string") if "event" in found else F.lit(DEFAULT_EVENT)
    frame = raw.select(
        F.col(found["user_id"]).cast("string").alias("user_id"),
        F.col(found["item_id"]).cast("string").alias("item_id"),
        _seconds(F.col(found["timestamp"]), kinds[found["timestamp"]], source).alias("timestamp"),
        event.alias("event"),
        (F.col(found["weight"]) if "weight" in found else F.lit(None))
        .cast("float")
        .alias("weight"),
        (F.col(found["value"]) if "value" in found else F.lit(None)).cast("float").alias("value"),
        F.input_file_name().alias("_file"),
        F.monotonically_increasing_id().alias("_pos"),
    )
    _check_required(frame, source, has_weight="weight" in found)
    if "weight" not in found:
        frame = frame.withColumn("weight", _event_weight(frame, event_weights, source))
    return _typed(frame)


def _seconds(column: Column, kind: str, source: str) -> Column:
    """Epoch seconds from integer seconds, timestamps or dates."""
    if kind in ("tinyint", "smallint", "int", "bigint"):
        return column.cast("long")
    if kind.startswith("timestamp") or kind == "date":
        return column.cast("timestamp").cast("long")
    raise DataError(
        f"timestamps must be integers (epoch seconds) or timestamps in Parquet, not {kind}",
        source=source,
        column="timestamp",
    )


def _check_required(frame: DataFrame, source: str, *, has_weight: bool) -> None:
    from pyspark.sql import functions as F

    checks = [F.sum(F.col(c).isNull().cast("long")).alias(c) for c in COLUMNS[:4]]
    if has_weight:
        checks.append(F.sum((F.col("weight").isNull() | (F.col("weight") < 0)).cast("long")))
    counts = frame.agg(*checks).first()
    assert counts is not None
    for name, bad in zip([*COLUMNS[:4], "weight"], counts, strict=False):
        if bad:
            what = "missing or negative values" if name == "weight" else "missing values"
            raise DataError(f"interactions have {bad} {what}", source=source, column=name)


def _event_weight(
    frame: DataFrame, event_weights: Mapping[str, float] | None, source: str
) -> Column:
    """Each event type's weight, as Dataset.from_frames assigns it (no table: every type 1)."""
    from pyspark.sql import functions as F

    table = dict(event_weights or {})
    table.setdefault(DEFAULT_EVENT, 1.0)
    events = [row[0] for row in frame.select("event").distinct().collect()]
    unknown = sorted(set(events) - set(table))
    if unknown and event_weights:
        raise DataError(
            f"event types {unknown} have no weight; configured: {sorted(table)}",
            source=source,
            column="event",
        )
    table.update(dict.fromkeys(unknown, 1.0))
    pairs = [part for key, w in table.items() for part in (F.lit(key), F.lit(float(w)))]
    return F.element_at(F.create_map(*pairs), F.col("event")).cast("float")


def _typed(frame: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    types = ("string", "string", "long", "string", "float", "float", "string", "long")
    return frame.select(*(F.col(c).cast(t).alias(c) for c, t in zip(COLUMNS, types, strict=True)))


# ---------------------------------------------------------------------------- preparation
def prepare(
    interactions: DataFrame, *, min_user_interactions: int = 5, min_value: float | None = None
) -> DataFrame:
    """evaluation.protocol.prepare on Spark: same rows, same values (COLUMNS kept).

    1. optionally keep value >= min_value; 2. one row per (user, item): the EARLIEST timestamp's
    (ties: input row order), with the pair's largest weight; 3. drop users with fewer than
    `min_user_interactions` pairs.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    frame = interactions
    if min_value is not None:
        frame = frame.filter(F.col("value") >= F.lit(min_value))
    pair = Window.partitionBy("user_id", "item_id")
    first = pair.orderBy("timestamp", *ROW_ORDER)
    collapsed = (
        frame.withColumn("_rank", F.row_number().over(first))
        .withColumn("_max_weight", F.max("weight").over(pair))
        .filter(F.col("_rank") == 1)
        .withColumn("weight", F.col("_max_weight"))
    )
    per_user = Window.partitionBy("user_id")
    kept = collapsed.withColumn("_n", F.count(F.lit(1)).over(per_user)).filter(
        F.col("_n") >= min_user_interactions
    )
    return kept.select(*COLUMNS)


# ---------------------------------------------------------------------------- id maps
def global_positions(frame: DataFrame, order: list[str], name: str = "_index") -> DataFrame:
    """`frame` with a 0-based position in `order` (a total order), computed without gathering
    the rows on one partition: a range partitioning, a row number within each partition and
    the sizes of the partitions before it (a tiny table).

    The numbered rows are checkpointed before their partition sizes are counted: the range
    bounds come from a sample, which a second evaluation could draw differently.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    parts = max(1, frame.sparkSession.sparkContext.defaultParallelism)
    ranged = frame.repartitionByRange(parts, *order).withColumn("_part", F.spark_partition_id())
    numbered = ranged.withColumn(
        "_local", F.row_number().over(Window.partitionBy("_part").orderBy(*order)) - 1
    ).localCheckpoint(eager=True)
    sizes = numbered.groupBy("_part").count().collect()
    offsets, total = [], 0
    for row in sorted(sizes, key=lambda r: int(r["_part"])):
        offsets.append((int(row["_part"]), total))
        total += int(row["count"])
    spark = frame.sparkSession
    offset_table = spark.createDataFrame(offsets or [(0, 0)], "_part int, _offset long")
    joined = numbered.join(F.broadcast(offset_table), "_part")
    return joined.withColumn(name, (F.col("_offset") + F.col("_local")).cast("long")).drop(
        "_part", "_local", "_offset"
    )


def id_table(interactions: DataFrame, column: str) -> DataFrame:
    """(id, idx) for the distinct values of `column`, idx in string order: IdMap's numbering."""
    from pyspark.sql import functions as F

    ids = interactions.select(F.col(column).alias("id")).distinct()
    return global_positions(ids, ["id"], "idx").withColumn("idx", F.col("idx").cast("int"))


def collect_id_map(table: DataFrame) -> IdMap:
    """The IdMap of an id_table (the ids gathered on the driver, in idx order)."""
    arrow = table.orderBy("idx").select("id").toArrow()
    ids = pl.Series("id", arrow.column("id") if arrow.num_rows else pa.array([], pa.string()))
    return IdMap(ids.cast(pl.String))


def with_idx(interactions: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """interactions with user_idx and item_idx from the two id tables (inner joins)."""
    from pyspark.sql import functions as F

    by_user = users.select(F.col("id").alias("user_id"), F.col("idx").alias("user_idx"))
    by_item = items.select(F.col("id").alias("item_id"), F.col("idx").alias("item_idx"))
    return interactions.join(by_user, "user_id").join(by_item, "item_id")
