"""The protocol's top-k metrics computed in Spark for dumped lists.

Inputs are tables keyed by `user` and `item` (ids or idx: item order must be idx order, which
holds for both since idx are ranks of the ids in string order):

- lists: user, item, rank (1-based); only ranks <= k are read;
- test: user, item (the relevant items; the users in it are the evaluated users);
- train: user, item (popularity, train users and, for calibration, the histories);
- catalog: item (every catalog item);
- categories (optional): item, category (one row per membership).

Every definition is evaluation/metrics.py's (see its docstring for the edge cases): precision
divides by k, NDCG's ideal and MAP's normaliser use min(|T|, k), novelty / ARP / ILD average
over the items in the list and are NaN (left out of the means) for lists too short to have one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from recsemble.evaluation.distribution import CALIBRATION_ALPHA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: Per-user columns of SparkMetrics.per_user (ild and calibration_kl with categories only).
PER_USER = ("ndcg", "recall", "precision", "map", "mrr", "hit", "novelty", "arp")


@dataclass(frozen=True)
class SparkMetrics:
    """Metrics at k: per user (a Spark table) and their summary (MetricResult.summary's keys
    plus longtail_hit_share@k)."""

    k: int
    per_user: DataFrame  # user, PER_USER..., [ild, calibration_kl], n_hits, n_longtail_hits
    summary: dict[str, float]


@dataclass(frozen=True)
class MetricContext:
    """What the metrics need of the split, computed once for every model and k (cached)."""

    users: DataFrame  # user: the evaluated users
    truth: DataFrame  # user, item, _hit (= 1)
    relevant: DataFrame  # user, _n_rel, _ideal (= min(_n_rel, k) is set per k)
    items: DataFrame  # item, pop, _tail
    n_train_users: int
    n_items: int
    category_sets: DataFrame | None  # item, _c (its categories)
    shares: DataFrame | None  # item, category, _share (1 / its number of categories)
    history_mix: DataFrame | None  # user, category, _p


def metric_context(
    test: DataFrame,
    train: DataFrame,
    catalog: DataFrame,
    *,
    categories: DataFrame | None = None,
    longtail_share: float = 0.2,
) -> MetricContext:
    """The split's side of the metrics (see the module docstring for the tables)."""
    from pyspark.sql import functions as F

    users = test.select("user").distinct().cache()
    truth = test.select("user", "item").distinct().withColumn("_hit", F.lit(1)).cache()
    relevant = truth.groupBy("user").agg(F.count("*").alias("_n_rel")).cache()
    items = _item_stats(train, catalog, longtail_share).cache()
    n_items = items.count()
    n_train_users = train.select("user").distinct().count()
    sets = shares = history_mix = None
    if categories is not None:
        cats = categories.select("item", "category").distinct()
        sets = cats.groupBy("item").agg(F.collect_list("category").alias("_c")).cache()
        sizes = cats.groupBy("item").agg(F.count("*").alias("_n"))
        shares = cats.join(sizes, "item").select(
            "item", "category", (1.0 / F.col("_n")).alias("_share")
        )
        shares = shares.cache()
        history = train.select("user", "item").distinct().join(users, "user")
        history_mix = _category_mix(history, shares, "_p").cache()
    return MetricContext(
        users, truth, relevant, items, n_train_users, n_items, sets, shares, history_mix
    )


def list_metrics(lists: DataFrame, context: MetricContext, k: int) -> SparkMetrics:
    """Every protocol metric at k of `lists` against the context's test part."""
    from pyspark.sql import functions as F

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    spark = lists.sparkSession
    top = lists.filter(F.col("rank") <= k).join(context.users, "user")
    top = top.select("user", "item", "rank").cache()
    discounts = _discounts(spark, k)
    marked = (
        top.join(context.truth, ["user", "item"], "left")
        .withColumn("_hit", F.coalesce(F.col("_hit"), F.lit(0)))
        .join(context.items, "item", "left")
        .join(discounts.select("rank", "_disc"), "rank")
    )
    ideal_dcg = discounts.select(F.col("rank").alias("_ideal"), "_idcg")
    per_user = _accuracy(marked, context, k, ideal_dcg)
    if context.category_sets is not None:
        assert context.shares is not None and context.history_mix is not None
        per_user = per_user.join(_ild(top, context.category_sets), "user", "left")
        calibration = _calibration(top, context.shares, context.history_mix)
        per_user = per_user.join(calibration, "user", "left")
    per_user = per_user.cache()
    with_categories = context.category_sets is not None
    summary = _summary(per_user, top, context.n_items, k, with_categories)
    top.unpersist()
    return SparkMetrics(k, per_user, summary)


def _discounts(spark: object, k: int) -> DataFrame:
    """rank, 1 / log2(rank + 1) and the ideal DCG of rank relevant items (metrics._accuracy's
    own numpy values)."""
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    table = pa.table(
        {
            "rank": np.arange(1, k + 1, dtype=np.int32),
            "_disc": discount,
            "_idcg": np.cumsum(discount),
        }
    )
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    assert isinstance(spark, SparkSession)
    return F.broadcast(spark.createDataFrame(table))


def _item_stats(train: DataFrame, catalog: DataFrame, share: float) -> DataFrame:
    """item, pop (distinct train users) and _tail (1 for long-tail items, ties: lower item)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    pop = train.select("user", "item").distinct().groupBy("item").agg(F.count("*").alias("pop"))
    items = catalog.select("item").distinct().join(pop, "item", "left")
    items = items.withColumn("pop", F.coalesce(F.col("pop"), F.lit(0)))
    n_head = math.ceil(share * items.count())
    by_pop = Window.orderBy(F.col("pop").desc(), F.col("item").asc())  # catalog-sized
    ranked = items.withColumn("_pos", F.row_number().over(by_pop))
    return ranked.select("item", "pop", (F.col("_pos") > n_head).cast("int").alias("_tail"))


def _accuracy(marked: DataFrame, context: MetricContext, k: int, ideal_dcg: DataFrame) -> DataFrame:
    """Per evaluated user: the accuracy metrics, hit counts, novelty and ARP."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    running = Window.partitionBy("user").orderBy("rank")
    hits_so_far = F.sum("_hit").over(running)
    share = F.greatest(F.col("pop").cast("double"), F.lit(1.0)) / F.lit(context.n_train_users)
    novelty = -F.log2(share)
    per_list = (
        marked.withColumn("_prec", F.when(F.col("_hit") == 1, hits_so_far / F.col("rank")))
        .groupBy("user")
        .agg(
            F.sum("_hit").alias("n_hits"),
            F.sum(F.col("_hit") * F.col("_disc")).alias("_dcg"),
            F.min(F.when(F.col("_hit") == 1, F.col("rank"))).alias("_first"),
            F.sum(F.coalesce(F.col("_prec"), F.lit(0.0))).alias("_ap"),
            F.sum(F.col("_hit") * F.col("_tail")).alias("n_longtail_hits"),
            F.avg(novelty).alias("novelty"),
            F.avg(F.col("pop").cast("double")).alias("arp"),
        )
    )
    ideal = F.least(F.col("_n_rel"), F.lit(k)).cast("int")
    n_rel = context.relevant.withColumn("_ideal", ideal)
    frame = context.users.join(n_rel, "user").join(per_list, "user", "left")
    frame = frame.join(ideal_dcg, "_ideal")
    frame = frame.fillna(0, ["n_hits", "n_longtail_hits", "_dcg", "_ap"])
    return frame.select(
        "user",
        (F.col("_dcg") / F.col("_idcg")).alias("ndcg"),
        (F.col("n_hits") / F.col("_n_rel")).alias("recall"),
        (F.col("n_hits") / F.lit(float(k))).alias("precision"),
        (F.col("_ap") / F.col("_ideal")).alias("map"),
        F.coalesce(1.0 / F.col("_first"), F.lit(0.0)).alias("mrr"),
        (F.col("n_hits") > 0).cast("double").alias("hit"),
        "novelty",
        "arp",
        F.col("n_hits").cast("long"),
        F.col("n_longtail_hits").cast("long"),
    )


def _ild(top: DataFrame, sets: DataFrame) -> DataFrame:
    """user, ild: mean over the list's item pairs of 1 - Jaccard of their category sets."""
    from pyspark.sql import functions as F

    listed = top.join(sets, "item", "left").withColumn(
        "_c", F.coalesce(F.col("_c"), F.array().cast("array<string>"))
    )
    a = listed.select("user", F.col("rank").alias("_ra"), F.col("_c").alias("_ca"))
    b = listed.select("user", F.col("rank").alias("_rb"), F.col("_c").alias("_cb"))
    inter = F.size(F.array_intersect("_ca", "_cb"))
    union = F.size(F.array_union("_ca", "_cb"))
    jaccard = F.when(union > 0, inter / union).otherwise(F.lit(0.0))
    pairs = a.join(b, "user").filter(F.col("_ra") < F.col("_rb"))
    return pairs.groupBy("user").agg(F.avg(1.0 - jaccard).alias("ild"))


def _category_mix(pairs: DataFrame, shares: DataFrame, name: str) -> DataFrame:
    """user, category, `name`: the pairs' category shares summed and scaled to sum to 1."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    summed = pairs.join(shares, "item").groupBy("user", "category").agg(F.sum("_share").alias("_s"))
    total = F.sum("_s").over(Window.partitionBy("user"))
    return summed.select("user", "category", (F.col("_s") / total).alias(name))


def _calibration(top: DataFrame, shares: DataFrame, history_mix: DataFrame) -> DataFrame:
    """user, calibration_kl: KL(p || (1 - a) q + a p), p the history's category mix, q the
    list's (distribution.calibration_kl); null (NaN) where the history has no categories."""
    from pyspark.sql import functions as F

    p = history_mix
    q = _category_mix(top.select("user", "item").distinct(), shares, "_q")
    alpha = CALIBRATION_ALPHA
    blended = F.lit(1.0 - alpha) * F.coalesce(F.col("_q"), F.lit(0.0)) + F.lit(alpha) * F.col("_p")
    terms = p.join(q, ["user", "category"], "left").filter(F.col("_p") > 0)
    return terms.groupBy("user").agg(
        F.sum(F.col("_p") * F.log(F.col("_p") / blended)).alias("calibration_kl")
    )


def _summary(
    per_user: DataFrame, top: DataFrame, n_items: int, k: int, with_categories: bool
) -> dict[str, float]:
    """Means over users (NaN-skipping where metrics are), coverage, Gini and long-tail share."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = [*PER_USER, *(("ild", "calibration_kl") if with_categories else ())]
    row = per_user.agg(
        *(F.avg(name).alias(name) for name in names),
        F.sum("n_hits").alias("_hits"),
        F.sum("n_longtail_hits").alias("_tail_hits"),
        F.count("*").alias("_users"),
    ).first()
    assert row is not None
    exposure = top.groupBy("item").agg(F.count("*").alias("_c"))
    # Gini over every catalog item: the unshown ones count 0 and take the lowest ranks, so a
    # shown item's rank is (n_items - shown) + its rank among the shown ones.
    ranked = exposure.withColumn("_r", F.row_number().over(Window.orderBy("_c", "item")))
    shown = F.count("*").over(Window.partitionBy())
    gini_row = (
        ranked.withColumn("_r", F.col("_r") + F.lit(n_items) - shown)
        .agg(
            F.sum((2 * F.col("_r") - n_items - 1) * F.col("_c")).alias("_g"),
            F.sum("_c").alias("_t"),
            F.count("*").alias("_shown"),
        )
        .first()
    )
    assert gini_row is not None
    shown_items = int(gini_row["_shown"])

    def value(name: str) -> float:
        return math.nan if row[name] is None else float(row[name])

    out = {f"{name}@{k}": value(name) for name in PER_USER[:6]}
    users = int(row["_users"])
    out[f"coverage@{k}"] = shown_items / n_items if users else math.nan
    total = gini_row["_t"]
    out[f"gini@{k}"] = float(gini_row["_g"]) / (n_items * float(total)) if total else math.nan
    out.update({f"{name}@{k}": value(name) for name in (*PER_USER[6:], *names[8:])})
    hits = int(row["_hits"] or 0)
    out[f"longtail_hit_share@{k}"] = int(row["_tail_hits"] or 0) / hits if hits else math.nan
    return out
