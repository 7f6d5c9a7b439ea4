"""How an ensemble member is fitted: on its view of the data (a recent window, some event
types), here by default or wherever a `MemberFitter` fits it (spark.members.SparkMembers
fits the members with a Spark form on Spark)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from recsemble.data.dataset import Dataset
from recsemble.generators import CandidateGenerator
from recsemble.ranking.config import ViewConfig

MemberFitter = Callable[[CandidateGenerator, Dataset], CandidateGenerator]
_DAY = 86_400


def apply_view(dataset: Dataset, view: ViewConfig | None) -> Dataset:
    """The member's slice of the data: a recent window and/or some event types."""
    if view is None:
        return dataset
    inter = dataset.interactions
    if view.window_days is not None and inter.height:
        end = int(inter["timestamp"].max())  # type: ignore[arg-type]
        inter = inter.filter(pl.col("timestamp") > end - int(view.window_days * _DAY))
    if view.events:
        inter = inter.filter(pl.col("event").is_in(view.events))
    return dataset.with_interactions(inter)


def fit_here(generator: CandidateGenerator, dataset: Dataset) -> CandidateGenerator:
    return generator.fit(dataset)
