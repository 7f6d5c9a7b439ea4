"""How an ensemble member is fitted: on its view of the data (a recent window, some event
types), here by default or wherever a `MemberFitter` fits it (spark.members.SparkMembers
fits the members with a Spark form on Spark)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
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
        _check_event_types(dataset, view.events)
        inter = inter.filter(pl.col("event").is_in(view.events))
        if inter.height == 0 and dataset.n_interactions:
            raise ConfigError(
                f"ensemble member view: no interaction has an event type in {view.events}"
                f"{_window_note(view)}; the data's event types: {_known_types(dataset)}"
            )
    return dataset.with_interactions(inter)


def _check_event_types(dataset: Dataset, wanted: list[str]) -> None:
    """A type outside the weight table is a typo (its member would learn from nothing); the
    data alone cannot tell, because collapsing duplicates keeps only each pair's first event."""
    if not dataset.event_weights:
        return
    unknown = sorted(set(wanted) - set(dataset.event_weights))
    if unknown:
        raise ConfigError(
            f"ensemble member view: event types {unknown} have no weight; "
            f"the data's event types: {_known_types(dataset)}"
        )


def _known_types(dataset: Dataset) -> str:
    present = set(dataset.interactions["event"].unique().to_list())
    return ", ".join(sorted(present | set(dataset.event_weights)))


def _window_note(view: ViewConfig) -> str:
    return "" if view.window_days is None else f" within its {view.window_days:g}-day window"


def fit_here(generator: CandidateGenerator, dataset: Dataset) -> CandidateGenerator:
    return generator.fit(dataset)


def one_copy(member: CandidateGenerator) -> CandidateGenerator:
    """A member without its own copy of the events' explicit values: the ensemble keeps the
    one copy retraining reads (histories.npz), not one per member."""
    member.history_values_ = None
    return member
