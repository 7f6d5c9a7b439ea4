"""The popularity family: global count, trending (time-decayed or windowed), Bayesian-average
rating, and popularity within a user segment.

Every member can be causal: scores for a user are then computed from the interactions known at
that user's moment of recommendation (`at`), never later ones. The plain `pop` is not causal by
default so that it matches the popularity baseline reported across the literature.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import Field, model_validator

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.config import GeneratorConfig
from recsemble.generators.history import Histories

_DAY = 86_400.0
Count = Literal["users", "events", "weight"]


class PopularityConfig(GeneratorConfig):
    count: Count = "users"  # distinct users, all events, or summed event weights
    causal: bool = False  # True: count only interactions at or before each user's `at`


class TrendingConfig(PopularityConfig):
    causal: bool = True
    half_life_days: float = Field(7.0, gt=0)
    window_days: float | None = Field(None, gt=0)  # set: a hard recent window instead of decay

    @model_validator(mode="after")
    def _one_kind_of_recency(self) -> Self:
        """A window replaces the decay: both set would silently ignore the half-life."""
        if self.window_days is not None and "half_life_days" in self.model_fields_set:
            raise ValueError(
                "set window_days (a hard window) or half_life_days (a decay), not both"
            )
        return self


class RatingPopularityConfig(PopularityConfig):
    prior_count: float = Field(10.0, ge=0)  # strength of the pull towards the global mean

    @model_validator(mode="after")
    def _ratings_are_counted(self) -> Self:
        """Every rating counts once (the average's denominator): `count` would be ignored."""
        if self.count != "users":
            raise ValueError(
                f"pop-rating averages every rating: count = {self.count!r} does not apply to it"
            )
        return self


class SegmentPopularityConfig(PopularityConfig):
    attribute: str | None = None  # required: the user attribute that defines segments
    bins: list[float] | None = None  # cut points for a numeric attribute, e.g. ages
    min_segment_users: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _rising_cut_points(self) -> Self:
        """np.digitize reads NaN or unordered cut points without a word (or fails inside)."""
        bins = self.bins
        if bins is not None and (
            not bins or not np.isfinite(bins).all() or np.any(np.diff(bins) <= 0)
        ):
            raise ValueError(f"bins must be finite cut points in rising order, got {bins}")
        return self


#: Decayed sums are kept at checkpoints of the event log while they hold at most this many
#: cells, so an as-of sum starts from the nearest one instead of the first event.
_CHECKPOINT_CELLS = 2_000_000
_MAX_CHECKPOINTS = 256


class _EventLog:
    """The fitted events, sorted by time, ready for as-of sums."""

    def __init__(
        self, item: npt.NDArray[np.int32], ts: npt.NDArray[np.int64], w: npt.NDArray[np.float64]
    ):
        order = np.argsort(ts, kind="stable")
        self.item, self.ts, self.w = item[order], ts[order], w[order]
        self._checkpoints: dict[tuple[float, int], _Checkpoints] = {}

    def totals(self, n_items: int) -> npt.NDArray[np.float64]:
        return np.bincount(self.item, weights=self.w, minlength=n_items).astype(np.float64)

    def as_of(
        self,
        times: npt.NDArray[np.int64],
        n_items: int,
        half_life_s: float | None = None,
        window_s: float | None = None,
    ) -> npt.NDArray[np.float64]:
        """Rows of per-item sums of events with ts <= t, one row per entry of `times`.

        half_life_s: each event weighs 2^(-(t - ts)/h). window_s: only events with ts > t - w.
        """
        uniq, inverse = np.unique(times, return_inverse=True)
        out = np.zeros((uniq.size, n_items))
        upto = np.searchsorted(self.ts, uniq, side="right")
        marks = self._marks(n_items, half_life_s) if window_s is None else None
        state = np.zeros(n_items)
        prev_t, prev_hi = None, 0
        for row, (t, hi) in enumerate(zip(uniq.tolist(), upto.tolist(), strict=True)):
            if window_s is not None:
                lo = int(np.searchsorted(self.ts, t - window_s, side="right"))
                state = self._sum(lo, hi, n_items)
            else:
                assert marks is not None
                mark = marks.latest_within(prev_hi, hi)
                if mark is not None:  # far from the previous moment: start at a checkpoint
                    state, prev_t, prev_hi = marks.state(mark), marks.times[mark], marks.ends[mark]
                if half_life_s is not None and prev_t is not None:
                    state = state * 2.0 ** (-(t - prev_t) / half_life_s)
                state = state + self._sum(prev_hi, hi, n_items, t, half_life_s)
            out[row] = state
            prev_t, prev_hi = t, hi
        return out[inverse]

    def _marks(self, n_items: int, half_life_s: float | None) -> _Checkpoints:
        key = (half_life_s or 0.0, n_items)
        if key not in self._checkpoints:
            self._checkpoints[key] = _Checkpoints.build(self, n_items, half_life_s)
        return self._checkpoints[key]

    def _sum(
        self, lo: int, hi: int, n_items: int, t: int | None = None, half_life_s: float | None = None
    ) -> npt.NDArray[np.float64]:
        w = self.w[lo:hi]
        if half_life_s is not None and t is not None:
            w = w * 2.0 ** (-(t - self.ts[lo:hi]) / half_life_s)
        return np.bincount(self.item[lo:hi], weights=w, minlength=n_items).astype(np.float64)


class _Checkpoints:
    """(Decayed) per-item sums of the first ends[j] events, as of times[j] (the last one's)."""

    def __init__(self, ends: npt.NDArray[np.int64], times: list[int], states: Any) -> None:
        self.ends, self.times, self.states = ends, times, states

    @classmethod
    def build(cls, log: _EventLog, n_items: int, half_life_s: float | None) -> _Checkpoints:
        n_marks = min(_MAX_CHECKPOINTS, _CHECKPOINT_CELLS // max(1, n_items), log.ts.size)
        if n_marks < 2:
            return cls(np.zeros(0, np.int64), [], np.zeros((0, n_items)))
        ends = np.linspace(0, log.ts.size, n_marks + 1).astype(np.int64)[1:]
        states = np.zeros((ends.size, n_items))
        state, prev_t, prev_end = np.zeros(n_items), None, 0
        for j, end in enumerate(ends.tolist()):
            t = int(log.ts[end - 1])
            if half_life_s is not None and prev_t is not None:
                state = state * 2.0 ** (-(t - prev_t) / half_life_s)
            state = state + log._sum(prev_end, end, n_items, t, half_life_s)
            states[j], prev_t, prev_end = state, t, end
        return cls(ends, [int(log.ts[end - 1]) for end in ends.tolist()], states)

    def latest_within(self, lo: int, hi: int) -> int | None:
        """The last checkpoint with lo < end <= hi (None: none, carry on from lo)."""
        j = int(np.searchsorted(self.ends, hi, side="right")) - 1
        return j if j >= 0 and self.ends[j] > lo else None

    def state(self, j: int) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = self.states[j]
        return out


def _events(dataset: Dataset, count: Count) -> tuple[npt.NDArray[Any], ...]:
    """(user, item, timestamp, weight) arrays of the events that popularity counts."""
    inter = dataset.interactions
    if count == "users":
        # One event per (user, item): the earliest, so a causal count sees it from then on.
        inter = inter.sort("timestamp").unique(["user_idx", "item_idx"], keep="first")
    weights = inter["weight"].to_numpy() if count == "weight" else np.ones(inter.height)
    return (
        inter["user_idx"].to_numpy().astype(np.int64),
        inter["item_idx"].to_numpy().astype(np.int32),
        inter["timestamp"].to_numpy().astype(np.int64),
        weights.astype(np.float64),
    )


def _event_log(dataset: Dataset, count: Count) -> _EventLog:
    _, item, ts, w = _events(dataset, count)
    return _EventLog(item, ts, w)


Arrays = dict[str, npt.NDArray[Any]]


class Popularity(CandidateGenerator):
    """Most popular items first: the baseline every evaluation table carries."""

    name: ClassVar[str] = "pop"
    Config: ClassVar[type[GeneratorConfig]] = PopularityConfig
    config: PopularityConfig

    def _fit(self, dataset: Dataset) -> None:
        self.log_ = _event_log(dataset, self.config.count)
        self.totals_ = self.log_.totals(dataset.n_items)

    def _state(self) -> Arrays:
        return {"item": self.log_.item, "ts": self.log_.ts, "w": self.log_.w}

    def _set_state(self, state: Arrays) -> None:
        self.log_ = _EventLog(state["item"], state["ts"], state["w"])
        self.totals_ = self.log_.totals(self.n_items_)

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        if self.config.causal:
            return self.log_.as_of(at, self.n_items_).astype(np.float32)
        return np.tile(self.totals_.astype(np.float32), (users.size, 1))


class TrendingPopularity(Popularity):
    """Popularity decayed with a half-life (or counted in a recent window) before `at`."""

    name: ClassVar[str] = "pop-trending"
    Config: ClassVar[type[GeneratorConfig]] = TrendingConfig
    config: TrendingConfig

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        if not self.config.causal:
            at = np.full_like(at, int(self.log_.ts.max()) if self.log_.ts.size else 0)
        window = self.config.window_days * _DAY if self.config.window_days else None
        half_life = None if window else self.config.half_life_days * _DAY
        scores = self.log_.as_of(at, self.n_items_, half_life_s=half_life, window_s=window)
        # All-time popularity breaks ties (e.g. items with no recent events at all).
        tiebreak = self.totals_ / (self.totals_.max() + 1.0) if self.totals_.size else 0.0
        return (scores + 1e-6 * tiebreak).astype(np.float32)


class RatingPopularity(Popularity):
    """Bayesian-average rating: (C * global mean + sum of ratings) / (C + number of ratings)."""

    name: ClassVar[str] = "pop-rating"
    Config: ClassVar[type[GeneratorConfig]] = RatingPopularityConfig
    config: RatingPopularityConfig

    def _fit(self, dataset: Dataset) -> None:
        values = dataset.interactions["value"]
        if values.null_count() == dataset.n_interactions:
            raise ConfigError("pop-rating needs explicit values (ratings); this dataset has none")
        super()._fit(dataset)
        rated = dataset.interactions.filter(pl.col("value").is_not_null())
        self._set_ratings(
            rated["item_idx"].to_numpy().astype(np.int32),
            rated["timestamp"].to_numpy().astype(np.int64),
            rated["value"].to_numpy().astype(np.float64),
        )

    def _set_ratings(
        self, item: npt.NDArray[np.int32], ts: npt.NDArray[np.int64], value: npt.NDArray[Any]
    ) -> None:
        self.counts_log_ = _EventLog(item, ts, np.ones(item.size))
        self.sums_log_ = _EventLog(item, ts, value.astype(np.float64))
        self.global_mean_ = float(value.mean())

    def _state(self) -> Arrays:
        log = self.sums_log_
        return {**super()._state(), "rated_item": log.item, "rated_ts": log.ts, "value": log.w}

    def _set_state(self, state: Arrays) -> None:
        super()._set_state(state)
        self._set_ratings(state["rated_item"], state["rated_ts"], state["value"])

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        n_items = self.n_items_
        if self.config.causal:
            counts, sums = self.counts_log_.as_of(at, n_items), self.sums_log_.as_of(at, n_items)
        else:
            counts = np.tile(self.counts_log_.totals(n_items), (users.size, 1))
            sums = np.tile(self.sums_log_.totals(n_items), (users.size, 1))
        prior = self.config.prior_count
        return ((prior * self.global_mean_ + sums) / (prior + counts + 1e-12)).astype(np.float32)


class SegmentPopularity(Popularity):
    """Popularity among users of the same segment (a user attribute), else global."""

    name: ClassVar[str] = "pop-segment"
    Config: ClassVar[type[GeneratorConfig]] = SegmentPopularityConfig
    config: SegmentPopularityConfig

    def _fit(self, dataset: Dataset) -> None:
        super()._fit(dataset)
        segment = self._segments(dataset)
        sizes = np.bincount(segment[segment >= 0], minlength=1)
        small = np.flatnonzero(sizes < self.config.min_segment_users)
        segment[np.isin(segment, small)] = -1  # too small to trust: global popularity
        user, item, ts, w = _events(dataset, self.config.count)
        event_segment = segment[user]
        keep = event_segment >= 0
        self._set_segments(segment, event_segment[keep], item[keep], ts[keep], w[keep])

    def _set_segments(
        self,
        segment: npt.NDArray[Any],
        event_segment: npt.NDArray[Any],
        item: npt.NDArray[Any],
        ts: npt.NDArray[Any],
        w: npt.NDArray[Any],
    ) -> None:
        self.segment_ = segment.astype(np.int64)
        self.seg_events_ = (event_segment, item, ts, w)
        self.logs_ = {
            int(s): _EventLog(
                item[event_segment == s], ts[event_segment == s], w[event_segment == s]
            )
            for s in np.unique(event_segment)
        }

    def _state(self) -> Arrays:
        event_segment, item, ts, w = self.seg_events_
        return {
            **super()._state(),
            "segment": self.segment_,
            "seg_event": event_segment,
            "seg_item": item,
            "seg_ts": ts,
            "seg_w": w,
        }

    def _set_state(self, state: Arrays) -> None:
        super()._set_state(state)
        self._set_segments(
            state["segment"], state["seg_event"], state["seg_item"], state["seg_ts"], state["seg_w"]
        )

    def _segments(self, dataset: Dataset) -> npt.NDArray[np.int64]:
        attr = self.config.attribute
        if attr is None or attr not in dataset.user_attributes.columns:
            problem = (
                "set models.pop-segment.attribute" if attr is None else f"no attribute {attr!r}"
            )
            raise ConfigError(
                f"pop-segment: {problem}; user attributes available: "
                f"{dataset.user_attributes.columns}"
            )
        column = dataset.user_attributes[attr]
        if self.config.bins is not None:
            if not column.dtype.is_numeric():
                raise ConfigError(f"pop-segment: bins need a numeric attribute, {attr!r} is not")
            codes = np.digitize(column.fill_null(np.nan).to_numpy(), self.config.bins)
            codes = np.where(column.is_null().to_numpy(), -1, codes)
            return codes.astype(np.int64)
        labels = column.cast(pl.String)
        codes = labels.rank("dense").fill_null(0).to_numpy().astype(np.int64) - 1
        return codes

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        n_items = self.n_items_
        global_scores = super()._score_block(users, at, histories).astype(np.float64)
        tiebreak = global_scores / (global_scores.max(axis=1, keepdims=True) + 1.0)
        out = global_scores.copy()
        known = (users >= 0) & (users < self.segment_.size)
        seg = np.full(users.size, -1)
        seg[known] = self.segment_[users[known]]
        for s, log in self.logs_.items():
            rows = np.flatnonzero(seg == s)
            if rows.size == 0:
                continue
            counts = log.as_of(at[rows], n_items) if self.config.causal else log.totals(n_items)
            out[rows] = counts + tiebreak[rows]
        return out.astype(np.float32)


POPULARITY_MODELS: dict[str, type[Popularity]] = {
    cls.name: cls for cls in (Popularity, TrendingPopularity, RatingPopularity, SegmentPopularity)
}
