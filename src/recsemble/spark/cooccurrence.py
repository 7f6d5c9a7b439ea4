"""Co-visitation and item-kNN on Spark: item pairs counted in Spark SQL, top-k kept per item.

Both give the single machine's sparse item x item matrix (generators/covisit.py, knn.py):

- covisit: transitions d = 1..window time steps apart (a step is one user's events with one
  timestamp) weigh 1 / d^power, same-step pairs `simultaneous_weight`; the counts are
  normalised by source and target totals and each item keeps its `neighbors` best successors.
- item-kNN: BM25 / TF-IDF weighted item vectors over users, shrunk asymmetric cosine
  dot / (|i|^(2 alpha) |j|^(2 (1 - alpha)) + shrink), `neighbors` kept per candidate (target
  pruning) or per history item (source pruning), ties to the lower item idx.

Per-item and per-user vectors (totals, norms, idf) are small: they are gathered, turned into
scales with the same numpy expressions as the single machine, and joined back in. Item-kNN's
dot products are float32 sums in ascending user order, as scipy's float32 product adds them,
so the kept similarities are the same float32 values, not merely close ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import scipy.sparse as sp

from recsemble.generators.covisit import _scale
from recsemble.generators.knn import _MIN_DENOMINATOR

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from recsemble.spark.members import TrainingData


def _vector(frame: DataFrame, key: str, value: str, size: int) -> npt.NDArray[np.float64]:
    """A per-idx column gathered as a dense float64 vector (0 where absent)."""
    table = frame.select(key, value).toArrow()
    out = np.zeros(size, dtype=np.float64)
    out[table.column(key).to_numpy()] = table.column(value).to_numpy()
    return out


def _table(spark: SparkSession, columns: dict[str, npt.NDArray[Any]]) -> DataFrame:
    """Driver arrays as a (small, broadcast) Spark table."""
    from pyspark.sql import functions as F

    return F.broadcast(spark.createDataFrame(pa.table(columns)))


def _top_per_row(
    pairs: DataFrame, row: str, column: str, value: str, k: int, shape: tuple[int, int]
) -> sp.csr_array:
    """The k largest positive `value` per `row` (ties: lower `column`) as float32 CSR."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ranked = Window.partitionBy(row).orderBy(F.col(value).desc(), F.col(column).asc())
    kept = (
        pairs.filter(F.col(value) > 0)
        .withColumn("_rank", F.row_number().over(ranked))
        .filter(F.col("_rank") <= k)
        .select(row, column, value)
        .toArrow()
    )
    out = sp.csr_array(
        (
            kept.column(value).to_numpy().astype(np.float32),
            (kept.column(row).to_numpy(), kept.column(column).to_numpy()),
        ),
        shape=shape,
    )
    out.sort_indices()
    return out


# ---------------------------------------------------------------------------- co-visitation
def fit_covisitation(generator: Any, data: TrainingData) -> None:
    """CoVisitation.transitions_ from Spark (see the module docstring)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cfg = generator.config
    by_time = Window.partitionBy("user_idx").orderBy("timestamp")
    events = (
        data.interactions.select("user_idx", "item_idx", "timestamp")
        .withColumn("step", F.dense_rank().over(by_time))
        .cache()
    )
    counts = _transition_counts(events, cfg).cache()
    n = data.n_items
    row_total = _vector(counts.groupBy("src").agg(F.sum("c").alias("t")), "src", "t", n)
    col_total = _vector(counts.groupBy("dst").agg(F.sum("c").alias("t")), "dst", "t", n)
    scales = _table(
        data.interactions.sparkSession,
        {
            "idx": np.arange(n, dtype=np.int32),
            "scale_row": _scale(row_total, cfg.source_norm),
            "scale_col": _scale(col_total, cfg.target_norm),
        },
    )
    normalized = (
        counts.join(scales.select(F.col("idx").alias("src"), "scale_row"), "src")
        .join(scales.select(F.col("idx").alias("dst"), "scale_col"), "dst")
        .withColumn("v", F.col("c") * (F.col("scale_row") * F.col("scale_col")))
    )
    generator.transitions_ = _top_per_row(normalized, "src", "dst", "v", cfg.neighbors, (n, n))
    counts.unpersist()
    events.unpersist()


def _transition_counts(events: DataFrame, cfg: Any) -> DataFrame:
    """(src, dst, c): covisit.transition_counts (plus the backward direction when undirected)
    from (user_idx, item_idx, step) events; a step d later is the same user's step + d."""
    from pyspark.sql import functions as F

    # The weight of each distance, computed here exactly as covisit.transition_counts does.
    distances = _table(
        events.sparkSession,
        {
            "d": np.arange(1, cfg.window + 1, dtype=np.int64),
            "w": np.array([1.0 / d**cfg.power for d in range(1, cfg.window + 1)]),
        },
    )
    src = events.select("user_idx", F.col("item_idx").alias("src"), "step")
    dst = events.select("user_idx", F.col("item_idx").alias("dst"), F.col("step").alias("_to"))
    pairs = (
        src.crossJoin(distances)
        .withColumn("_to", F.col("step") + F.col("d"))
        .join(dst, ["user_idx", "_to"])
        .select("src", "dst", "w")
    )
    if cfg.simultaneous_weight > 0:
        same = src.join(dst.withColumnRenamed("_to", "step"), ["user_idx", "step"])
        pairs = pairs.unionByName(
            same.select("src", "dst", F.lit(float(cfg.simultaneous_weight)).alias("w"))
        )
    # Revisits of one item say nothing about where users go next.
    moves = pairs.filter(F.col("src") != F.col("dst"))
    counts = moves.groupBy("src", "dst").agg(F.sum("w").alias("c"))
    if cfg.directed or cfg.backward_weight <= 0:
        return counts
    backward = counts.select(
        F.col("dst").alias("src"),
        F.col("src").alias("dst"),
        (F.col("c") * F.lit(float(cfg.backward_weight))).alias("c"),
    )
    return counts.unionByName(backward).groupBy("src", "dst").agg(F.sum("c").alias("c"))


# ---------------------------------------------------------------------------- item-kNN
def _f32(column: Column) -> Column:
    return column.cast("float")


def _idf(df: npt.NDArray[np.float64], n_docs: int, weighting: str) -> npt.NDArray[np.float64]:
    """knn._term_stats' idf for document frequencies `df` (documents: items; terms: users)."""
    if weighting == "bm25":
        out: npt.NDArray[np.float64] = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        return out
    if weighting == "tfidf":
        return np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    return np.ones_like(df)


def _weighted(data: TrainingData, cfg: Any) -> DataFrame:
    """(item_idx, user_idx, w): knn._weigh of the items x users matrix, float32 values."""
    from pyspark.sql import functions as F

    spark = data.interactions.sparkSession
    tf = F.max(F.lit(1.0)) if cfg.fit_binary else F.sum("weight").cast("double")
    docs = data.interactions.groupBy("item_idx", "user_idx").agg(_f32(tf).alias("tf")).cache()
    if cfg.weighting == "none":
        return docs.select("item_idx", "user_idx", F.col("tf").alias("w"))
    df = _vector(docs.groupBy("user_idx").count(), "user_idx", "count", data.n_users)
    n_docs = max(docs.select("item_idx").distinct().count(), 1)
    idf = _table(
        spark,
        {
            "user_idx": np.arange(data.n_users, dtype=np.int32),
            "idf": _idf(df, n_docs, cfg.weighting),
        },
    )
    frame = docs.join(idf, "user_idx")
    tf_col = F.col("tf").cast("double")
    if cfg.weighting == "tfidf":
        return frame.select("item_idx", "user_idx", _f32(F.sqrt(tf_col) * F.col("idf")).alias("w"))
    lengths = _vector(
        docs.groupBy("item_idx").agg(F.sum("tf").alias("n")), "item_idx", "n", data.n_items
    )
    # float32 lengths and a float32 mean, as knn._term_stats has them (scipy sums float32
    # rows into float32; numpy's mean of float32 adds in float32).
    lengths32 = lengths.astype(np.float32)
    avg_len = float(lengths32[lengths32 > 0].mean()) if np.any(lengths32 > 0) else 1.0
    lengths = lengths32.astype(np.float64)
    norm = _table(
        spark,
        {
            "item_idx": np.arange(data.n_items, dtype=np.int32),
            "doc_norm": 1.0 - cfg.bm25_b + cfg.bm25_b * lengths / avg_len,
        },
    )
    k1 = float(cfg.bm25_k1)
    saturated = tf_col * F.lit(k1 + 1.0) / (tf_col + F.lit(k1) * F.col("doc_norm"))
    return frame.join(norm, "item_idx").select(
        "item_idx", "user_idx", _f32(saturated * F.col("idf")).alias("w")
    )


def _denominators(
    weighted: DataFrame, cfg: Any, n_items: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(row, column) float32 factors of the shrunk cosine: rows are the pruned side."""
    from pyspark.sql import functions as F

    squares = weighted.groupBy("item_idx").agg(F.sum(F.col("w").cast("double") ** 2).alias("sq"))
    sq = _vector(squares, "item_idx", "sq", n_items)
    alpha = cfg.alpha
    row_exp, col_exp = (1.0 - alpha, alpha) if cfg.prune == "target" else (alpha, 1.0 - alpha)
    return (sq**row_exp).astype(np.float32), (sq**col_exp).astype(np.float32)


def fit_item_knn(generator: Any, data: TrainingData) -> None:
    """ItemKNN.similarity_ from Spark (see the module docstring)."""
    from pyspark.sql import functions as F

    cfg = generator.config
    spark = data.interactions.sparkSession
    weighted = _weighted(data, cfg).cache()
    row_den, col_den = _denominators(weighted, cfg, data.n_items)
    a = weighted.select(F.col("item_idx").alias("a"), "user_idx", F.col("w").alias("wa"))
    c = weighted.select(F.col("item_idx").alias("c"), "user_idx", F.col("w").alias("wc"))
    # float32 products, added in float32 in ascending user order: scipy's float32 matmul.
    products = a.join(c, "user_idx").filter(F.col("a") != F.col("c"))
    terms = F.struct("user_idx", _f32(F.col("wa") * F.col("wc")).alias("p"))
    dots = products.groupBy("a", "c").agg(F.array_sort(F.collect_list(terms)).alias("t"))
    float_sum = F.aggregate("t", F.lit(0.0).cast("float"), lambda acc, term: _f32(acc + term["p"]))
    dens = _table(
        spark,
        {"idx": np.arange(data.n_items, dtype=np.int32), "rd": row_den, "cd": col_den},
    )
    den = _f32(_f32(F.col("rd") * F.col("cd")) + F.lit(float(np.float32(cfg.shrink))).cast("float"))
    if cfg.shrink < _MIN_DENOMINATOR:
        den = F.greatest(den, F.lit(float(np.float32(_MIN_DENOMINATOR))).cast("float"))
    sims = (
        dots.filter(F.size("t") >= cfg.min_support)
        .join(dens.select(F.col("idx").alias("a"), "rd"), "a")
        .join(dens.select(F.col("idx").alias("c"), "cd"), "c")
        .withColumn("s", _f32(float_sum.cast("double") / den.cast("double")))
    )
    n = data.n_items
    pruned = _top_per_row(sims, "a", "c", "s", cfg.neighbors, (n, n))
    # Target pruning kept each candidate's best history items: S's columns are candidates.
    similarity = sp.csr_array(pruned.T.tocsr()) if cfg.prune == "target" else pruned
    similarity.sort_indices()
    generator.similarity_ = similarity
    weighted.unpersist()
