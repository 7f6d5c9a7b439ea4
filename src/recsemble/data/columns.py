"""The columns `Dataset.from_frames` reads from a caller's frames, checked one by one.

Every bad value is a DataError naming the column (and the first bad row), never an error from
deep inside polars or a NaN that surfaces later as a wrong score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

import polars as pl

from recsemble.data.tables import MISSING_IDS, WHITESPACE
from recsemble.data.timestamps import scaled_numbers, unit_class
from recsemble.errors import DataError

#: Event type given to interactions that come without one.
DEFAULT_EVENT = "interaction"


def as_frame(frame: Any, what: str) -> pl.DataFrame:
    """A polars frame from a polars or pandas one (a pandas frame is converted once)."""
    if isinstance(frame, pl.DataFrame):
        return frame
    if type(frame).__module__.startswith("pandas") and type(frame).__name__ == "DataFrame":
        try:
            return pl.from_pandas(frame, include_index=True)  # a named index is a column
        except (TypeError, ValueError) as exc:  # pyarrow's ArrowInvalid / ArrowTypeError
            raise DataError(
                f"{what}: the pandas frame cannot be converted ({exc}); a column mixing "
                "types (ids as numbers and text) can be made text with .astype(str)"
            ) from None
    raise TypeError(f"{what} must be a polars or pandas DataFrame, not {type(frame).__name__}")


def require_column(frame: pl.DataFrame, column: str, what: str) -> None:
    if column not in frame.columns:
        raise DataError(f"{what} need a {column!r} column; found {frame.columns}", column=column)


def check_no_nulls(frame: pl.DataFrame, columns: list[str], what: str) -> None:
    for col in columns:
        nulls = frame[col].is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0])
            raise DataError(f"{what} has a missing value in row {row}", column=col)


def check_id_text(ids: pl.Series, column: str, what: str) -> pl.Series:
    """Ids as a data file may hold them (what retraining and serving read back): not empty,
    no whitespace at either end, not a missing-value word such as "nan" (what
    `.astype(str)` makes of a pandas NaN)."""
    checks = (
        (ids == "", "is empty"),
        (ids != ids.str.strip_chars(WHITESPACE), "has whitespace at an end"),
        (ids.is_in(MISSING_IDS), "is a word for a missing value (.astype(str) of a NaN)"),
    )
    for bad, problem in checks:
        if bad.any():
            row = int(bad.arg_true()[0])
            raise DataError(f"{what} id {ids[row]!r} in row {row} {problem}", column=column)
    return ids


def numbers(frame: pl.DataFrame, column: str, what: str) -> pl.Series:
    """A numeric column as float32; DataError on text, NaN or infinity (nulls are kept)."""
    series = frame[column]
    if not (series.dtype.is_numeric() or series.dtype == pl.Null):
        raise DataError(f"{what} must be numbers, not {series.dtype}", column=column)
    values = series.cast(pl.Float32)
    bad = ~values.is_finite()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataError(
            f"{what} must be finite (not NaN or infinite), got {values[row]} in row {row}",
            column=column,
        )
    return values


def epoch_seconds(series: pl.Series, column: str) -> pl.Series:
    """Epoch seconds from integer epoch seconds, ms, us or ns (one unit per column, told apart
    by magnitude as in data files), datetimes or dates (UTC)."""
    if series.dtype == pl.Datetime or series.dtype == pl.Date:
        return series.cast(pl.Datetime("us")).dt.epoch("s").cast(pl.Int64)
    if series.dtype == pl.Null:
        return series.cast(pl.Int64)
    if series.dtype.is_integer():
        units = unit_class(series)
        if units is not None and units.drop_nulls().n_unique() > 1:
            raise DataError(
                f"timestamps mix units (values from {series.min()!r} to {series.max()!r} "
                "differ by a factor of 1000 or more); use one unit per column",
                column=column,
            )
        return scaled_numbers(series).alias(series.name)
    raise DataError(
        f"timestamps must be integers (epoch seconds) or datetimes, not {series.dtype}",
        column=column,
    )


def explicit_values(interactions: pl.DataFrame) -> pl.Series:
    """The optional explicit `value` column (e.g. a rating) as float32; null where absent."""
    if "value" not in interactions.columns:
        return pl.Series("value", [None] * interactions.height, dtype=pl.Float32)
    return numbers(interactions, "value", "values").alias("value")


def events_and_weights(
    interactions: pl.DataFrame, event_weights: Mapping[str, float] | None
) -> tuple[pl.Series, pl.Series]:
    """Each interaction's event type and weight (a `weight` column, else the event's weight)."""
    n = interactions.height
    if "event" in interactions.columns:
        check_no_nulls(interactions, ["event"], "interactions")
        events = interactions["event"].cast(pl.String)
    else:
        events = pl.Series("event", [DEFAULT_EVENT] * n, dtype=pl.String)
    if "weight" in interactions.columns:
        check_no_nulls(interactions, ["weight"], "interactions")
        weights = numbers(interactions, "weight", "weights").alias("weight")
        if (weights < 0).any():
            row = int((weights < 0).arg_true()[0])
            raise DataError(f"weights must be non-negative numbers (row {row})", column="weight")
        return events, weights
    table = _weight_table(event_weights)
    unknown = events.unique().filter(~events.unique().is_in(list(table))).to_list()
    if unknown and not event_weights:
        # No weight table at all: every event type counts 1.
        table.update(dict.fromkeys(unknown, 1.0))
    elif unknown:
        raise DataError(
            f"event types {sorted(unknown)} have no weight; configured: {sorted(table)}",
            column="event",
        )
    mapping = pl.DataFrame(
        {"event": list(table), "weight": list(table.values())},
        schema={"event": pl.String, "weight": pl.Float64},
    )
    weights = (
        pl.DataFrame({"event": events})
        .join(mapping, on="event", how="left", maintain_order="left")["weight"]
        .cast(pl.Float32)
    )
    return events, weights


def _weight_table(event_weights: Mapping[str, float] | None) -> dict[str, float]:
    """The event weight table with the default event's weight; each weight a finite number >= 0,
    as a `weight` column's values must be."""
    table: dict[str, float] = {}
    for event, weight in (event_weights or {}).items():
        if not isinstance(weight, Real) or not math.isfinite(weight) or weight < 0:
            raise DataError(
                f"event weight of {event!r} must be a finite number >= 0, got {weight!r}"
            )
        table[str(event)] = float(weight)
    table.setdefault(DEFAULT_EVENT, 1.0)
    return table
