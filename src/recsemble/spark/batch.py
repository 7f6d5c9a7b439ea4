"""`recsemble batch`: every user's list from a saved model, on Spark or in this process.

Spark: the users' prepared interactions are grouped per user (one row: the user and their
events), spread over `ceil(users / users_per_partition)` partitions by a hash of the user id,
and scored by a map over each partition: each Python worker loads the model folder ONCE (a
module-level cache keyed by the folder's path and checksum, kept across tasks since Spark
reuses its Python workers) and scores its partition's users in blocks (scoring.BatchScorer),
through `mapInArrow` (Arrow record batches in and out; PySpark needs pandas installed for it).
The folder reaches the executors through `SparkContext.addFile(folder, recursive=True)`: Spark
copies it once to each executor's work directory, so the command works on a cluster whose
nodes share no file system with the driver (a broadcast would hold the bytes in the JVM heap
and need unpacking per worker; a shared path is not there on every cluster).

Local: the same BatchScorer over the same prepared interactions, in this process; it is the
single-machine baseline and the reference the Spark output is tested against.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recsemble.config import RecsembleConfig
from recsemble.errors import ConfigError, DataError
from recsemble.spark.scoring import SCHEMA, BatchScorer, UserEvents
from recsemble.store.precomputed import MODEL_STAMP

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recsemble.spark.evaluate import SparkMetrics
    from recsemble.spark.splits import SparkSplit

#: Users per Spark partition (a task): large enough that the per-task cost is amortised.
USERS_PER_PARTITION = 20_000
#: Spark's type for SCHEMA.
SPARK_SCHEMA = (
    "user string, rank int, item string, score double, explanation string, "
    "history_events long, history_latest long, rerank string"
)
_SCORERS: dict[tuple[str, ...], BatchScorer] = {}  # one per Python worker and model


@dataclass(frozen=True)
class BatchJob:
    """What every partition needs: the model (by its shipped folder name and checksum), k, the
    moment the stages see, and the [rerank] config as JSON (None: the defaults)."""

    folder_name: str
    checksum: str
    k: int
    at: int
    config_json: str | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.checksum, f"{self.k}@{self.at}", self.config_json or "")


def model_checksum(folder: Path) -> str:
    """sha256 over the folder's manifest and ids (they name every file's own checksum)."""
    if not (folder / "manifest.json").is_file():
        raise ConfigError(f"{folder} is not a saved model folder (no manifest.json)")
    digest = hashlib.sha256()
    for name in ("manifest.json", "ids.json"):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def _scorer(path: str, job: BatchJob) -> BatchScorer:
    """This worker's scorer for the job's model: loaded on first use, then reused."""
    key = (path, *job.key)
    cached = _SCORERS.get(key)
    if cached is None:
        config = (
            None
            if job.config_json is None
            else RecsembleConfig.model_validate_json(job.config_json)
        )
        cached = BatchScorer(Path(path), k=job.k, at=job.at, config=config)
        _SCORERS.clear()  # one model per worker at a time: memory stays that of one
        _SCORERS[key] = cached
    return cached


def _score_batches(job: BatchJob, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow's function: grouped users (user_id, events) in, their list rows out."""
    from pyspark import SparkFiles

    scorer = _scorer(SparkFiles.get(job.folder_name), job)
    for batch in batches:
        for lo in range(0, batch.num_rows, scorer.block_users):
            block = _user_events(batch.slice(lo, scorer.block_users))
            yield from scorer.score(block).cast(SCHEMA).to_batches()


def _user_events(batch: pa.RecordBatch) -> UserEvents:
    """UserEvents of a batch of grouped rows, read column-wise from Arrow (no Python rows)."""
    events = batch.column("events")
    offsets = events.offsets.to_numpy().astype(np.int64)
    fields = events.flatten()  # the struct array of this slice's events, in list order
    return UserEvents(
        batch.column("user_id").to_numpy(zero_copy_only=False).astype(object),
        offsets - offsets[0],
        fields.field("item_id").to_numpy(zero_copy_only=False).astype(object),
        fields.field("timestamp").to_numpy(zero_copy_only=False).astype(np.int64),
        fields.field("weight").to_numpy(zero_copy_only=False).astype(np.float32),
    )


def grouped_users(interactions: DataFrame) -> DataFrame:
    """One row per user: user_id and their events (timestamp, item_id, weight) in time order."""
    from pyspark.sql import functions as F

    event = F.struct("timestamp", "item_id", "weight")
    return interactions.groupBy("user_id").agg(F.sort_array(F.collect_list(event)).alias("events"))


def score_on_spark(
    interactions: DataFrame,
    folder: Path,
    *,
    k: int,
    at: int | None = None,
    config: RecsembleConfig | None = None,
    users_per_partition: int = USERS_PER_PARTITION,
) -> DataFrame:
    """The batch table (scoring.SCHEMA) of every user in `interactions` (user_id, item_id,
    timestamp, weight: prepared as for training) whom the model knows; lazy until written."""
    if users_per_partition < 1:
        raise ConfigError(f"--users-per-partition must be >= 1, got {users_per_partition}")
    folder = folder.resolve()
    job = BatchJob(
        folder.name,
        model_checksum(folder),
        k,
        int(time.time()) if at is None else at,
        None if config is None else config.model_dump_json(),
    )
    spark = interactions.sparkSession
    _add_folder(spark.sparkContext, folder)
    grouped = grouped_users(interactions).cache()
    parts = max(1, math.ceil(grouped.count() / users_per_partition))
    spread = grouped.repartition(parts, "user_id")
    # Arrow batches both ways: the events arrive as columns and the lists leave as the
    # scorer's own Arrow table, with no Python object per row.
    return spread.mapInArrow(lambda batches: _score_batches(job, batches), SPARK_SCHEMA)


def _add_folder(context: object, folder: Path) -> None:
    """SparkContext.addFile, once per folder and session (a second add of it is refused)."""
    added: set[str] = getattr(context, "_recsemble_files", set())
    if str(folder) in added:
        return
    context.addFile(str(folder), recursive=True)  # type: ignore[attr-defined]
    added.add(str(folder))
    context._recsemble_files = added  # type: ignore[attr-defined]


def score_locally(
    interactions: pl.DataFrame,
    folder: Path,
    *,
    k: int,
    at: int | None = None,
    config: RecsembleConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> pa.Table:
    """The same table computed in this process (rows by user id, then rank);
    on_progress(users done, users) as blocks of users are scored."""
    scorer = BatchScorer(folder, k=k, at=int(time.time()) if at is None else at, config=config)
    return scorer.score(UserEvents.from_frame(interactions), on_progress)


def check_output_folder(out: Path) -> None:
    """Refuse, before any work, a path the lists cannot or must not replace: a file, or a
    folder holding anything but an earlier batch's part files (Spark's overwrite would
    delete all of it)."""
    if out.exists() and not out.is_dir():
        raise DataError("is a file, not a folder to write the lists to", source=str(out))
    if out.is_dir():
        others = sorted(p.name for p in out.iterdir() if not _is_part_file(p.name))
        if others:
            raise DataError(
                f"folder holds other files ({', '.join(others[:3])}); not overwriting it: "
                "pass a new folder or one an earlier batch wrote",
                source=str(out),
            )


def _is_part_file(name: str) -> bool:
    """A file Spark or write_table leaves in a Parquet folder (and Spark's checksums)."""
    plain = name[1:-4] if name.startswith(".") and name.endswith(".crc") else name
    return plain.endswith(".parquet") or plain in ("_SUCCESS", MODEL_STAMP)


def write_table(table: pa.Table, out: Path) -> Path:
    """A local batch table as a Parquet folder (one part file), the form Spark writes."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    pq.write_table(table.cast(SCHEMA), out / "part-00000.parquet")
    return out


# ---------------------------------------------------------------------------- evaluation
def evaluate_lists(lists: DataFrame, spark_split: SparkSplit, k: int) -> SparkMetrics:
    """The protocol's metrics at k of batch lists (user, item, rank: external ids) against a
    split computed on Spark, all in Spark (spark/evaluate.py; ids order as idx do). For lists
    that evaluate a model, score the split's train part with a model fitted on it: every
    user's list is then made at their train history's end, as the protocol asks."""
    from pyspark.sql import functions as F

    from recsemble.spark.evaluate import list_metrics, metric_context

    def pairs(frame: DataFrame) -> DataFrame:
        return frame.select(F.col("user_id").alias("user"), F.col("item_id").alias("item"))

    interactions = spark_split.prepared.interactions
    catalog = interactions.select(F.col("item_id").alias("item")).distinct()
    context = metric_context(pairs(spark_split.test), pairs(spark_split.train), catalog)
    return list_metrics(lists.select("user", "item", "rank"), context, k)


# ---------------------------------------------------------------------------- the command
@dataclass(frozen=True)
class BatchRun:
    users: int  # users in the input (after preparation)
    scored: int  # users with a list (the model knows them)
    rows: int
    seconds: float
    out: Path


def run_batch(
    config: RecsembleConfig,
    folder: Path,
    out: Path,
    *,
    engine: str,
    input_path: Path | None = None,
    k: int = 10,
    users_per_partition: int = USERS_PER_PARTITION,
    on_progress: Callable[[int, int], None] | None = None,
) -> BatchRun:
    """Read and prepare the interactions (as training does), score every user, write Parquet.
    on_progress(users done, users): the local engine's progress (Spark shows its own)."""
    check_output_folder(out)
    config = _with_model_weights(config, folder)
    start = time.perf_counter()
    at = int(time.time())
    if engine == "spark":
        from recsemble.spark.session import spark_session

        interactions = _prepared_on_spark(spark_session(), config, input_path)
        lists = score_on_spark(
            interactions, folder, k=k, at=at, config=config, users_per_partition=users_per_partition
        )
        lists.write.mode("overwrite").parquet(str(out))
        written = lists.sparkSession.read.parquet(str(out))
        scored = written.select("user").distinct().count()
        users = interactions.select("user_id").distinct().count()
        rows = written.count() if scored else 0
    else:
        frame = _prepared_locally(config, input_path)
        table = score_locally(frame, folder, k=k, at=at, config=config, on_progress=on_progress)
        write_table(table, out)
        users, scored = frame["user_id"].n_unique(), len(set(table.column("user").to_pylist()))
        rows = table.num_rows
    return BatchRun(users, scored, rows, time.perf_counter() - start, out)


def _with_model_weights(config: RecsembleConfig, folder: Path) -> RecsembleConfig:
    """The config with the model's own event weight table when it names none: the server
    weighs a user's events by that table (a purchase 20, say), so the lists must too, or the
    precomputed cache would serve lists the API would not give."""
    from recsemble.ranking.ids import saved_event_weights

    if config.data.event_weights is not None:
        return config
    weights = saved_event_weights(folder)
    if not weights:
        return config
    data = config.data.model_copy(update={"event_weights": weights})
    return config.model_copy(update={"data": data})


def _prepared_on_spark(
    spark: SparkSession, config: RecsembleConfig, input_path: Path | None
) -> DataFrame:
    from recsemble.spark import data as spark_data
    from recsemble.spark.workflow import load_source

    source = load_source(spark, config, input_path)
    prepared = spark_data.prepare(  # as training for serving: every user kept, as the API does
        source.interactions, min_user_interactions=1, min_value=config.data.min_value
    )
    return prepared.select("user_id", "item_id", "timestamp", "weight")


def _prepared_locally(config: RecsembleConfig, input_path: Path | None) -> pl.DataFrame:
    from recsemble.evaluation.workflow import load_training_data

    if input_path is not None:
        data = config.data.model_copy(update={"dataset": str(input_path)})
        config = config.model_copy(update={"data": data})
    # As training for serving prepares them: a user with fewer interactions than the
    # protocol's evaluation minimum is still one the API answers, so the batch lists them too.
    return load_training_data(config).external_interactions()
