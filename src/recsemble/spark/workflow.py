"""`recsemble train / evaluate --engine spark` as library calls.

Data: `--input` (Parquet or a table) is read by Spark; a `--dataset` name or path is read by
the ordinary loader on the driver and handed to Spark. Preparation, id maps, the split and the
members' fits run on Spark; the lists are scored on the driver with the fitted generators
(`recsemble batch --engine spark` scores on Spark); the metrics are computed on Spark, and the
results document is the local path's (evaluation/runner.py, extras.py) with the Spark figures.
The ensemble (`--model ensemble`, `--models ensemble`) fits its members with a Spark form on
Spark and the rest, its features and its ranker on the driver (members.SparkMembers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from recsemble.config import RecsembleConfig
from recsemble.errors import ConfigError
from recsemble.evaluation import extras
from recsemble.evaluation.metrics import MetricResult
from recsemble.evaluation.protocol import Split
from recsemble.evaluation.runner import Evaluation, ModelRun, recommend_for_split, to_results_json
from recsemble.evaluation.slices import history_slice_labels
from recsemble.evaluation.workflow import EvaluationOutcome, evaluated_names
from recsemble.ranking.persistence import Model
from recsemble.ranking.training import ENSEMBLE, fit_model
from recsemble.spark import data as spark_data
from recsemble.spark import splits
from recsemble.spark.evaluate import (
    PER_USER,
    MetricContext,
    SparkMetrics,
    list_metrics,
    metric_context,
)
from recsemble.spark.members import SparkMembers, TrainingData, fit_on_spark
from recsemble.spark.session import spark_session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default log: says nothing."""


def load_source(
    spark: SparkSession, config: RecsembleConfig, input_path: str | Path | None = None
) -> spark_data.SparkSource:
    """`input_path` read by Spark, else the configured dataset loaded and handed to Spark."""
    data = config.data
    if input_path is not None:
        return spark_data.read_source(
            spark, input_path, event_weights=data.event_weights, columns=data.columns or None
        )
    from recsemble.data.loaders import load_dataset

    raw = load_dataset(
        data.dataset,
        data_dir=data.data_dir,
        event_weights=data.event_weights,
        columns=data.columns or None,
    )
    return spark_data.source_from_dataset(spark, raw)


def prepare_on_spark(
    source: spark_data.SparkSource, config: RecsembleConfig, *, for_training: bool = False
) -> splits.PreparedOnSpark:
    """The protocol's preparation and the id maps, on Spark; for_training keeps every user
    and catalog item, as the single-machine `load_training_data` does."""
    prepared = spark_data.prepare(
        source.interactions,
        min_user_interactions=1 if for_training else config.protocol.min_user_interactions,
        min_value=config.data.min_value,
    )
    return splits.index(prepared, source, catalog=for_training)


def training_data(frame: DataFrame, prepared: splits.PreparedOnSpark) -> TrainingData:
    columns = ("user_idx", "item_idx", "timestamp", "weight")
    return TrainingData(frame.select(*columns).cache(), len(prepared.users), len(prepared.items))


# ---------------------------------------------------------------------------- train
@dataclass(frozen=True)
class SparkTraining:
    model: Model
    catalog_data: Any  # a Dataset with the prepared ids and attributes: the Catalog's input
    fit_seconds: float
    summary: str


def train_on_spark(
    config: RecsembleConfig,
    model: str,
    *,
    input_path: str | Path | None = None,
    master: str = "local[2]",
    log: Log = _quiet,
) -> SparkTraining:
    """One member fitted on all the prepared data through its Spark form, or the ensemble:
    its members with a Spark form fitted on Spark (on each validation window's fit part, then
    on all), the others, the features and the ranker on the driver."""
    spark = spark_session(master)
    source = load_source(spark, config, input_path)
    prepared = prepare_on_spark(source, config, for_training=True)
    summary = f"{len(prepared.users):,} users, {len(prepared.items):,} items on Spark ({master})"
    log(f"{source.name or 'input'}: {summary}; training {model} on all of it")
    start = time.perf_counter()
    if model == ENSEMBLE:
        dataset = splits.prepared_dataset(prepared)
        members = SparkMembers(spark)
        try:
            fitted: Model = fit_model(config, ENSEMBLE, dataset, start=log, fit_member=members)
        finally:
            members.release()
        summary += f"; members fitted on Spark: {', '.join(dict.fromkeys(members.on_spark))}"
        return SparkTraining(fitted, dataset, time.perf_counter() - start, summary)
    data = training_data(prepared.interactions, prepared)
    fitted = fit_on_spark(model, config.model_config_for(model), data)
    fit_seconds = time.perf_counter() - start
    return SparkTraining(fitted, splits.catalog_dataset(prepared), fit_seconds, summary)


# ---------------------------------------------------------------------------- evaluate
def run_spark_evaluation(
    config: RecsembleConfig,
    *,
    input_path: str | Path | None = None,
    master: str = "local[2]",
    log: Log = _quiet,
) -> EvaluationOutcome:
    """run_evaluation's work with data preparation, split, fits and metrics on Spark."""
    evaluate = config.evaluate
    if evaluate.rerank or evaluate.sweep:
        raise ConfigError("--engine spark evaluates plain models: drop --rerank / --sweep")
    names = evaluated_names(config)
    spark = spark_session(master)
    prepared = prepare_on_spark(load_source(spark, config, input_path), config)
    spark_split = splits.split(prepared, config.protocol.name, config.protocol.test_fraction)
    marked = spark_split.marked.cache()
    the_split = splits.local_split(spark_split)
    log(
        f"{the_split.train!r} -> {config.protocol.name} on Spark ({master}): "
        f"{the_split.train.n_interactions:,} train, {the_split.test.n_interactions:,} test, "
        f"{the_split.evaluated_users.size:,} users evaluated"
    )
    context = _metric_context(spark, spark_split, the_split)
    data = training_data(spark_split.train, prepared)
    runs: dict[str, ModelRun] = {}
    spark_summaries: dict[str, dict[str, float]] = {}
    for name in names:
        log(f"fit {name} on Spark")
        runs[name], spark_summaries[name] = _run_model(config, name, data, the_split, context)
    marked.unpersist()
    users = the_split.evaluated_users
    labels = history_slice_labels(the_split.train.user_history_lengths[users])
    evaluation = Evaluation(the_split, users, labels, runs, tuple(sorted(set(config.protocol.k))))
    return EvaluationOutcome(evaluation, _results(config, evaluation, spark_summaries, master))


def _metric_context(
    spark: SparkSession, spark_split: splits.SparkSplit, the_split: Split
) -> MetricContext:
    """The split's side of the metrics on Spark (idx for ids; categories when items have any)."""
    from pyspark.sql import functions as F

    def pairs(frame: DataFrame) -> DataFrame:
        return frame.select(F.col("user_idx").alias("user"), F.col("item_idx").alias("item"))

    n_items = the_split.train.n_items
    catalog = spark.range(n_items).select(F.col("id").cast("int").alias("item"))
    matrix, names = the_split.train.item_categories()
    categories = None
    if len(names):
        coo = matrix.tocoo()
        table = pa.table({"item": coo.row.astype(np.int32), "category": names.ids[coo.col]})
        categories = spark.createDataFrame(table)
    return metric_context(
        pairs(spark_split.test), pairs(spark_split.train), catalog, categories=categories
    )


def _run_model(
    config: RecsembleConfig,
    name: str,
    data: TrainingData,
    the_split: Split,
    context: MetricContext,
) -> tuple[ModelRun, dict[str, float]]:
    """Fit on Spark, score on the driver, measure on Spark at every k."""
    spark = data.interactions.sparkSession
    start = time.perf_counter()
    if name == ENSEMBLE:
        members = SparkMembers(spark)
        try:
            generator: Model = fit_model(config, ENSEMBLE, the_split.train, fit_member=members)
        finally:
            members.release()
    else:
        generator = fit_on_spark(name, config.model_config_for(name), data)
    fitted = time.perf_counter()
    users = the_split.evaluated_users
    ks = sorted(set(config.protocol.k))
    topk = recommend_for_split(generator, the_split, users, max(ks))
    ranked = time.perf_counter()
    lists = _lists_table(spark, users, topk.items)
    metrics: dict[int, MetricResult] = {}
    summary: dict[str, float] = {}
    for k in ks:
        measured = list_metrics(lists, context, k)
        metrics[k] = _metric_result(measured, users, topk.items, the_split.train.n_items)
        summary.update(measured.summary)
        measured.per_user.unpersist()
    lists.unpersist()
    return ModelRun(name, topk, metrics, fitted - start, ranked - fitted), summary


def _lists_table(spark: SparkSession, users: np.ndarray, items: np.ndarray) -> DataFrame:
    """(user, item, rank) rows of the top-k lists, padding left out."""
    n, width = items.shape
    rows = np.repeat(users.astype(np.int32), width)
    ranks = np.tile(np.arange(1, width + 1, dtype=np.int32), n)
    flat = items.ravel()
    real = flat >= 0
    table = pa.table({"user": rows[real], "item": flat[real].astype(np.int32), "rank": ranks[real]})
    return spark.createDataFrame(table).cache()


def _metric_result(
    measured: SparkMetrics, users: np.ndarray, items: np.ndarray, n_items: int
) -> MetricResult:
    """The per-user metrics gathered from Spark as a MetricResult (rows: evaluated users)."""
    table = measured.per_user.orderBy("user").toArrow()
    gathered = table.column("user").to_numpy()
    if not np.array_equal(gathered, users):
        raise RuntimeError("Spark measured other users than the split's evaluated users")

    def column(name: str) -> np.ndarray:
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    names = table.column_names
    return MetricResult(
        k=measured.k,
        n_items=n_items,
        top=items[:, : measured.k].astype(np.int64),
        **{name: column(name) for name in PER_USER},
        ild=column("ild") if "ild" in names else None,
        n_hits=column("n_hits").astype(np.int64),
        n_longtail_hits=column("n_longtail_hits").astype(np.int64),
        calibration_kl=column("calibration_kl") if "calibration_kl" in names else None,
    )


def _results(
    config: RecsembleConfig,
    evaluation: Evaluation,
    spark_summaries: dict[str, dict[str, float]],
    master: str,
) -> dict[str, Any]:
    """The local results document; each model's summary figures are Spark's."""
    meta = {
        "dataset": config.data.dataset,
        "protocol": config.protocol.name,
        "test_fraction": config.protocol.test_fraction,
        "min_user_interactions": config.protocol.min_user_interactions,
        "min_value": config.data.min_value,
        "k": list(config.protocol.k),
        "bootstrap_resamples": config.protocol.bootstrap_resamples,
        "seed": config.protocol.seed,
        "split_sha256": evaluation.split.fingerprint,
        "engine": "spark",
        "spark_master": master,
    }
    results = to_results_json(evaluation, meta)
    for name, summary in spark_summaries.items():
        results[name].update(summary)
    baseline = config.evaluate.baseline
    extras.add_roles(results, baseline, [])
    extras.add_item_slices(results, evaluation)
    protocol = config.protocol
    extras.add_comparisons(
        results, evaluation, baseline, n_resamples=protocol.bootstrap_resamples, seed=protocol.seed
    )
    extras.add_decisions(results, config.protocol.k[0])
    return results
