"""Ensemble members fitted on Spark, handed back as ordinary recsemble generators.

Each function computes on Spark what the member learns (counts, co-occurrences, factors) and
sets it on the same generator class the single machine uses, with the same numpy state, so
`save` writes an ordinary artifact that loads and serves without Spark. What every artifact
also holds (the users' histories, their sizes, the latest timestamp) is gathered once per
training set (`TrainingData.histories`).

Distributed forms: pop and pop-trending (counts per item and timestamp), covisit, itemknn and
itemknn-recent (co-occurrence in Spark SQL, see cooccurrence.py), ials (MLlib ALS). EASE needs
the item x item matrix on one node: its users x items matrix is gathered and solved on the
driver while the catalog has at most MAX_DRIVER_ITEMS items.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.generators import GENERATORS, CandidateGenerator
from recsemble.generators.config import GeneratorConfig
from recsemble.generators.history import Histories

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: EASE's item x item inverse is dense on the driver: up to this many items (20k: 1.6 GB).
MAX_DRIVER_ITEMS = 20_000
Arrays = dict[str, npt.NDArray[Any]]


@dataclass
class TrainingData:
    """A training set on Spark: interactions with user_idx, item_idx, timestamp, weight (idx
    from the prepared data's id maps) and the sizes of those maps."""

    interactions: DataFrame
    n_users: int
    n_items: int
    _histories: Histories | None = field(default=None, repr=False)

    @property
    def histories(self) -> Histories:
        """Every user's events on the driver, as Histories.from_dataset lays them out."""
        if self._histories is None:
            arrow = self.interactions.select("user_idx", "item_idx", "timestamp", "weight")
            table = arrow.toArrow()
            users = table.column("user_idx").to_numpy().astype(np.int64)
            items = table.column("item_idx").to_numpy().astype(np.int32)
            ts = table.column("timestamp").to_numpy().astype(np.int64)
            weights = table.column("weight").to_numpy().astype(np.float32)
            order = np.lexsort((items, ts, users))
            counts = np.bincount(users, minlength=self.n_users)
            indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
            self._histories = Histories(
                indptr, items[order], ts[order], weights[order], self.n_items
            )
        return self._histories


def _fitters() -> dict[str, Callable[[Any, TrainingData], None]]:
    """The members with a distributed form, and the function that fits each."""
    from recsemble.spark import cooccurrence

    return {
        "pop": _fit_popularity,
        "pop-trending": _fit_popularity,
        "covisit": cooccurrence.fit_covisitation,
        "itemknn": cooccurrence.fit_item_knn,
        "itemknn-recent": cooccurrence.fit_item_knn,
        "ials": _fit_ials,
        "ease": _fit_ease,
        "ease-recent": _fit_ease,
    }


def fit_on_spark(name: str, config: GeneratorConfig, data: TrainingData) -> CandidateGenerator:
    """The generator `name` fitted on `data` through its distributed form."""
    fitters = _fitters()
    if name not in fitters:
        raise ConfigError(
            f"{name!r} has no Spark form; --engine spark trains {', '.join(fitters)} "
            "alone (use --engine local for the others, or --model ensemble)"
        )
    generator = GENERATORS[name](config)
    fitters[name](generator, data)
    return finish(generator, data)


class SparkMembers:
    """`Ensemble(fit_member=SparkMembers(spark))`: the members with a Spark form are fitted on
    Spark from the dataset they are given (its events shipped to Spark once per dataset), the
    others here on the driver, which holds the events anyway (every artifact keeps the users'
    histories). `on_spark` / `on_driver` name the generators fitted each way, in order."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self.on_spark: list[str] = []
        self.on_driver: list[str] = []
        self._shipped: tuple[Dataset, TrainingData] | None = None

    def __call__(self, generator: CandidateGenerator, dataset: Dataset) -> CandidateGenerator:
        fitters = _fitters()
        if generator.name not in fitters:
            self.on_driver.append(generator.name)
            return generator.fit(dataset)
        data = self._data(dataset)
        fitters[generator.name](generator, data)
        self.on_spark.append(generator.name)
        return finish(generator, data)

    def _data(self, dataset: Dataset) -> TrainingData:
        if self._shipped is not None and self._shipped[0] is dataset:
            return self._shipped[1]
        self.release()
        data = shipped(self.spark, dataset)
        self._shipped = (dataset, data)
        return data

    def release(self) -> None:
        """Drop the cached Spark copy of the last dataset."""
        if self._shipped is not None:
            self._shipped[1].interactions.unpersist()
            self._shipped = None


def shipped(spark: SparkSession, dataset: Dataset) -> TrainingData:
    """A driver dataset's events as TrainingData on Spark (histories taken from the dataset)."""
    inter = dataset.interactions
    table = pa.table(
        {
            "user_idx": inter["user_idx"].cast(pl.Int32).to_arrow(),
            "item_idx": inter["item_idx"].cast(pl.Int32).to_arrow(),
            "timestamp": inter["timestamp"].cast(pl.Int64).to_arrow(),
            "weight": inter["weight"].cast(pl.Float64).to_arrow(),
        }
    )
    frame = spark.createDataFrame(table).cache()
    return TrainingData(
        frame, dataset.n_users, dataset.n_items, _histories=Histories.from_dataset(dataset)
    )


def finish(generator: CandidateGenerator, data: TrainingData) -> CandidateGenerator:
    """What CandidateGenerator.fit sets after `_fit`: sizes, `now` and the histories."""
    histories = data.histories
    generator.n_users_ = data.n_users
    generator.n_items_ = data.n_items
    generator.now_ = int(histories.timestamps.max()) if histories.timestamps.size else 0
    generator.histories_ = histories
    generator._finish_fit()
    return generator


# ---------------------------------------------------------------------------- popularity
def _fit_popularity(generator: Any, data: TrainingData) -> None:
    """pop / pop-trending: the event log they count from, summed per (item, timestamp).

    As-of sums (with or without a half-life) over that log equal the sums over every event,
    so the scores are the single machine's while the log shrinks to distinct (item, second).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from recsemble.generators.popularity import _EventLog

    count = generator.config.count
    frame = data.interactions
    if count == "users":  # one event per (user, item): its earliest, as popularity._events
        first = Window.partitionBy("user_idx", "item_idx").orderBy("timestamp")
        frame = frame.withColumn("_n", F.row_number().over(first)).filter(F.col("_n") == 1)
    weight = F.col("weight").cast("double") if count == "weight" else F.lit(1.0)
    summed = (
        frame.groupBy("item_idx", "timestamp")
        .agg(F.sum(weight).alias("w"))
        .orderBy("timestamp", "item_idx")
        .toArrow()
    )
    log = _EventLog(
        summed.column("item_idx").to_numpy().astype(np.int32),
        summed.column("timestamp").to_numpy().astype(np.int64),
        summed.column("w").to_numpy().astype(np.float64),
    )
    generator.log_ = log
    generator.totals_ = log.totals(data.n_items)


# ---------------------------------------------------------------------------- iALS
def _fit_ials(generator: Any, data: TrainingData) -> None:
    """Item factors from MLlib's ALS with implicit preferences; users are folded in at request
    time against them, as the single-machine iALS does (its user factors are never used).

    Mapping: factors -> rank, iterations -> maxIter, alpha -> alpha (MLlib's confidence is
    1 + alpha * r, r = 1 per pair or the summed weight), regularization -> regParam divided by
    the mean number of items per user: MLlib scales regParam by each user's (and item's)
    number of interactions (ALS-WR), `implicit` does not, so this keeps the average penalty.
    """
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    cfg = generator.config
    value = F.max(F.lit(1.0)) if cfg.binary else F.sum("weight").cast("double")
    ratings = data.interactions.groupBy("user_idx", "item_idx").agg(value.alias("r")).cache()
    n_pairs, n_users = ratings.count(), ratings.select("user_idx").distinct().count()
    if n_pairs == 0:
        generator._set_item_factors(np.zeros((data.n_items, cfg.factors), dtype=np.float32))
        return
    blocks = max(1, ratings.sparkSession.sparkContext.defaultParallelism)
    als = ALS(
        rank=cfg.factors,
        maxIter=cfg.iterations,
        regParam=cfg.regularization / (n_pairs / max(n_users, 1)),
        alpha=cfg.alpha,
        implicitPrefs=True,
        seed=cfg.random_state,
        userCol="user_idx",
        itemCol="item_idx",
        ratingCol="r",
        coldStartStrategy="drop",
        # One block per core: the default 10 x 10 blocks mean many tiny tasks per iteration.
        numUserBlocks=blocks,
        numItemBlocks=blocks,
    )
    model = als.fit(ratings)
    factors = model.itemFactors.orderBy("id").toArrow()
    item_factors = np.zeros((data.n_items, cfg.factors), dtype=np.float32)
    ids = factors.column("id").to_numpy()
    if ids.size:
        item_factors[ids] = np.stack(factors.column("features").to_numpy(zero_copy_only=False))
    ratings.unpersist()
    generator._set_item_factors(item_factors)


# ---------------------------------------------------------------------------- EASE
def _fit_ease(generator: Any, data: TrainingData) -> None:
    """EASE on the driver: the users x items matrix is gathered, B solved there."""
    from pyspark.sql import functions as F

    from recsemble.generators.ease import _resolve_device, ease_weights, ease_weights_torch

    if data.n_items > MAX_DRIVER_ITEMS:
        raise ConfigError(
            f"{generator.name} solves a dense {data.n_items:,} x {data.n_items:,} item matrix "
            f"on the driver; --engine spark allows it up to {MAX_DRIVER_ITEMS:,} items. Use "
            "itemknn or ials for larger catalogs (or filter the catalog)"
        )
    cfg = generator.config
    value = F.max(F.lit(1.0)) if cfg.binary else F.sum("weight").cast("double")
    table = data.interactions.groupBy("user_idx", "item_idx").agg(value.alias("x")).toArrow()
    x = sp.csr_array(
        (
            table.column("x").to_numpy().astype(np.float32),
            (table.column("user_idx").to_numpy(), table.column("item_idx").to_numpy()),
        ),
        shape=(data.n_users, data.n_items),
    )
    device = _resolve_device(cfg.device)
    if device is None:
        generator._set_weights(ease_weights(x, cfg.l2), None)
    else:
        generator._set_weights(ease_weights_torch(x, cfg.l2, device), device)
