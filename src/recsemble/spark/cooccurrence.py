"""Co-visitation and item-kNN on Spark: item pairs counted per user partition, summed and
pruned to the top-k per item by Spark.

Both give the single machine's sparse item x item matrix (generators/covisit.py, knn.py):

- covisit: transitions d = 1..window time steps apart (a step is one user's events with one
  timestamp) weigh 1 / d^power, same-step pairs `simultaneous_weight`; the counts are
  normalised by source and target totals and each item keeps its `neighbors` best successors.
- item-kNN: BM25 / TF-IDF weighted item vectors over users, shrunk asymmetric cosine
  dot / (|i|^(2 alpha) |j|^(2 (1 - alpha)) + shrink), `neighbors` kept per candidate (target
  pruning) or per history item (source pruning), ties to the lower item idx.

Per-item and per-user vectors (totals, norms, idf) are small: they are gathered, turned into
scales with the same numpy expressions as the single machine, and joined back in. The
co-visitation counts of each user partition are covisit.transition_counts on its users (a
transition never crosses users). Item-kNN's dot products are partial Gram matrices: the
weighted events are partitioned by user, each partition's items x items sums are computed by
scipy on its own users (in item blocks, so a Python worker holds a bounded number of pairs),
and Spark adds the partitions' sums up. Work and shuffle are linear in the events per
partition, not in sum(n_u^2) rows of a self-join. The similarities equal the single machine's
up to float32 rounding (it adds all users' products in one float32 sum; here each partition's
float32 sum is added in float64).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import scipy.sparse as sp

from recsemble.generators.cosine import MIN_DENOMINATOR
from recsemble.generators.covisit import _scale, transition_counts
from recsemble.generators.history import Histories

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from recsemble.spark.members import TrainingData


#: Events per Spark partition (co-visitation's counts, item-kNN's partial products), and pairs
#: per item block that one Python worker computes at a time (a few hundred MB at most).
EVENTS_PER_PARTITION = 2_000_000
GRAM_BLOCK_PAIRS = 4_000_000
_GRAM_SCHEMA = "a int, c int, dot double, n int"


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
    from pyspark.sql import functions as F

    cfg = generator.config
    counts = _transition_counts(data, cfg).cache()
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


def _transition_counts(data: TrainingData, cfg: Any) -> DataFrame:
    """(src, dst, c): covisit.transition_counts (plus the backward direction when undirected),
    computed by the single machine's function on each user partition and summed by Spark (a
    transition never crosses users, so the partitions' counts add up to the whole log's)."""
    from pyspark.sql import functions as F

    events = data.interactions.select("user_idx", "item_idx", "timestamp")
    count = partial(
        _transition_batches,
        n_items=data.n_items,
        window=cfg.window,
        power=cfg.power,
        simultaneous_weight=cfg.simultaneous_weight,
    )
    counts = (
        events.repartition(_partitions(events), "user_idx")
        .mapInArrow(count, "src int, dst int, c double")
        .groupBy("src", "dst")
        .agg(F.sum("c").alias("c"))
    )
    if cfg.directed or cfg.backward_weight <= 0:
        return counts
    backward = counts.select(
        F.col("dst").alias("src"),
        F.col("src").alias("dst"),
        (F.col("c") * F.lit(float(cfg.backward_weight))).alias("c"),
    )
    return counts.unionByName(backward).groupBy("src", "dst").agg(F.sum("c").alias("c"))


def _partitions(events: DataFrame) -> int:
    """User partitions of at most EVENTS_PER_PARTITION events (one per core at least)."""
    parallelism = events.sparkSession.sparkContext.defaultParallelism
    return int(max(parallelism, -(-events.count() // EVENTS_PER_PARTITION)))


def _transition_batches(
    batches: Iterator[pa.RecordBatch],
    *,
    n_items: int,
    window: int,
    power: float,
    simultaneous_weight: float,
) -> Iterator[pa.RecordBatch]:
    """One partition's users: their histories, then covisit.transition_counts over them."""
    table = pa.Table.from_batches(list(batches))
    if table.num_rows == 0:
        return
    users = table.column("user_idx").to_numpy()
    items = table.column("item_idx").to_numpy()
    ts = table.column("timestamp").to_numpy()
    order = np.lexsort((items, ts, users))  # Histories.from_dataset's order
    _, sizes = np.unique(users[order], return_counts=True)
    histories = Histories(
        np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
        items[order],
        ts[order],
        np.ones(order.size, dtype=np.float32),
        n_items,
    )
    counts = transition_counts(histories, window, power, simultaneous_weight).tocoo()
    yield pa.RecordBatch.from_arrays(
        [pa.array(counts.row.astype(np.int32)), pa.array(counts.col.astype(np.int32)),
         pa.array(counts.data.astype(np.float64))],
        names=["src", "dst", "c"],
    )  # fmt: skip


# ---------------------------------------------------------------------------- item-kNN
def _f32(column: Column) -> Column:
    return column.cast("float")


def _idf(df: npt.NDArray[np.float64], n_docs: int, weighting: str) -> npt.NDArray[np.float64]:
    """cosine.term_stats' idf for document frequencies `df` (documents: items; terms: users)."""
    if weighting == "bm25":
        out: npt.NDArray[np.float64] = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        return out
    if weighting == "tfidf":
        return np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    return np.ones_like(df)


def _weighted(data: TrainingData, cfg: Any) -> DataFrame:
    """(item_idx, user_idx, w): cosine.weigh of the items x users matrix, float32 values."""
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
    # float32 lengths and a float32 mean, as cosine.term_stats has them (scipy sums float32
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
    dots = partial_products(weighted, data.n_items, with_support=cfg.min_support > 1)
    if cfg.min_support > 1:
        dots = dots.filter(F.col("n") >= cfg.min_support)
    dens = _table(
        spark,
        {"idx": np.arange(data.n_items, dtype=np.int32), "rd": row_den, "cd": col_den},
    )
    den = _f32(_f32(F.col("rd") * F.col("cd")) + F.lit(float(np.float32(cfg.shrink))).cast("float"))
    if cfg.shrink < MIN_DENOMINATOR:
        den = F.greatest(den, F.lit(float(np.float32(MIN_DENOMINATOR))).cast("float"))
    sims = (
        dots.join(dens.select(F.col("idx").alias("a"), "rd"), "a")
        .join(dens.select(F.col("idx").alias("c"), "cd"), "c")
        .withColumn("s", _f32(_f32(F.col("dot")).cast("double") / den.cast("double")))
    )
    n = data.n_items
    pruned = _top_per_row(sims, "a", "c", "s", cfg.neighbors, (n, n))
    # Target pruning kept each candidate's best history items: S's columns are candidates.
    similarity = sp.csr_array(pruned.T.tocsr()) if cfg.prune == "target" else pruned
    similarity.sort_indices()
    generator.similarity_ = similarity
    weighted.unpersist()


def partial_products(weighted: DataFrame, n_items: int, *, with_support: bool) -> DataFrame:
    """(a, c, dot, n) for items a != c sharing a user: dot = sum over users of w[a] * w[c],
    n = how many users (0 unless `with_support`), from (item_idx, user_idx, w) rows."""
    from pyspark.sql import functions as F

    parts = _partitions(weighted)
    # Read here, on the driver: the Python workers import this module afresh.
    gram = partial(
        _gram_batches, n_items=n_items, with_support=with_support, block=GRAM_BLOCK_PAIRS
    )
    return (
        weighted.select("item_idx", "user_idx", "w")
        .repartition(parts, "user_idx")
        .mapInArrow(gram, _GRAM_SCHEMA)
        .groupBy("a", "c")
        .agg(F.sum("dot").alias("dot"), F.sum("n").cast("int").alias("n"))
    )


def _gram_batches(
    batches: Iterator[pa.RecordBatch], *, n_items: int, with_support: bool, block: int
) -> Iterator[pa.RecordBatch]:
    """One partition's users: X^T X of their weighted items, block of item rows by block."""
    table = pa.Table.from_batches(list(batches))
    if table.num_rows == 0:
        return
    _, rows = np.unique(table.column("user_idx").to_numpy(), return_inverse=True)
    x = sp.csr_array(
        (
            table.column("w").to_numpy().astype(np.float32),
            (rows.ravel(), table.column("item_idx").to_numpy()),
        ),
        shape=(int(rows.max()) + 1, n_items),
    )
    xt = sp.csr_array(x.T.tocsr())  # items x users
    support = None
    if with_support:
        ones = sp.csr_array((np.ones_like(x.data), x.indices, x.indptr), shape=x.shape)
        support = (sp.csr_array(ones.T.tocsr()), ones)
    # Pairs an item row can produce: the items of its users, summed (an upper bound).
    bound = xt @ np.diff(x.indptr).astype(np.float64)
    for lo, hi in _item_blocks(bound, block):
        yield _gram_block((xt, x), support, lo, hi)


def _item_blocks(pairs: npt.NDArray[np.float64], budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive item ranges whose `pairs` add up to at most `budget` (one item at least)."""
    lo, n = 0, pairs.size
    ends = np.cumsum(pairs)
    while lo < n:
        base = ends[lo - 1] if lo else 0.0
        hi = max(lo + 1, int(np.searchsorted(ends, base + budget, side="right")))
        yield lo, min(hi, n)
        lo = hi


def _gram_block(
    weighted: tuple[sp.csr_array, sp.csr_array],
    support: tuple[sp.csr_array, sp.csr_array] | None,
    lo: int,
    hi: int,
) -> pa.RecordBatch:
    """Rows lo:hi of X^T X (and of the co-occurrence counts) as (a, c, dot, n), a != c."""
    dots = _product(weighted[0][lo:hi], weighted[1])
    counts = np.zeros(dots.nnz, dtype=np.int32)
    if support is not None:
        shared = _product(support[0][lo:hi], support[1])
        # Positive weights: both products store the same pairs (sorted, in the same order).
        if not np.array_equal(shared.indices, dots.indices):
            raise RuntimeError("item-kNN: the weighted and the binary products differ in shape")
        counts = shared.data.astype(np.int32)
    a = (np.repeat(np.arange(lo, hi), np.diff(dots.indptr))).astype(np.int32)
    c = dots.indices.astype(np.int32)
    off_diagonal = a != c
    return pa.RecordBatch.from_arrays(
        [
            pa.array(a[off_diagonal]),
            pa.array(c[off_diagonal]),
            pa.array(dots.data[off_diagonal].astype(np.float64)),
            pa.array(counts[off_diagonal]),
        ],
        names=["a", "c", "dot", "n"],
    )


def _product(left: sp.csr_array, right: sp.csr_array) -> sp.csr_array:
    out = sp.csr_array(left @ right)
    out.sort_indices()
    return out
