"""Timestamps in data files: epoch seconds from epoch s/ms/us/ns numbers, compact YYYYMMDD
dates, ISO-8601 strings or datetime columns, one unit per column."""

from __future__ import annotations

from typing import cast

import polars as pl

from recsemble.data.tables import Table, blank_to_null

_TIMES = ("%H:%M:%S", "%H:%M:%S%.f", "%H:%M", "%H:%M:%S%.f%#z")
_ISO_FORMATS = (*(f"%Y-%m-%d{sep}{t}" for t in _TIMES for sep in "T "), "%Y-%m-%d")


def parse_timestamps(table: Table, column: str, field: str, *, required: bool) -> pl.Series:
    """Epoch seconds (Int64) from epoch s/ms/us/ns numbers, ISO-8601 strings or datetimes."""
    series = blank_to_null(table.frame[column])
    if required:
        table.check(series.is_null(), column, lambda r: f"missing {field}")
    seconds = _epoch_seconds(series)
    if seconds is None:
        raise table.error(f"{field} cannot be read from {series.dtype} values", None, column)
    units = unit_class(series)
    if units is not None and units.drop_nulls().n_unique() > 1:  # one scale would misread some
        usual = units.drop_nulls().mode().sort()[-1]
        table.check(
            units.is_not_null() & (units != usual),
            column,
            lambda r: (
                f"{field} {series[r]!r} looks like {_UNIT_NAMES[units[r]]}, the column's other "
                f"values like {_UNIT_NAMES[usual]}: the column mixes units (values differ by a "
                "factor of 1000 or more); use one unit per column"
            ),
        )
    table.check(
        seconds.is_null() & series.is_not_null(),
        column,
        lambda r: (
            f"cannot parse {field} {series[r]!r}: expected epoch seconds or milliseconds, "
            "or an ISO-8601 date/time such as 2024-05-01T12:30:00Z"
        ),
    )
    return seconds.alias(field)


def _epoch_seconds(series: pl.Series) -> pl.Series | None:
    dtype = series.dtype
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return series.dt.epoch("s")
    if dtype.is_numeric() or dtype == pl.String:
        dates = _compact_dates(series) if not dtype.is_float() else None
        if dates is not None:
            return dates
    if dtype.is_numeric():
        return scaled_numbers(series)
    if dtype != pl.String:
        return None
    numbers = scaled_numbers(series)
    if numbers.null_count() == series.null_count():
        return numbers
    return pl.select(pl.coalesce(numbers, _iso_seconds(series))).to_series()


def _iso_seconds(text: pl.Series) -> pl.Series:
    """Each format parses only what the previous ones left (the plain ones are the fast ones)."""
    text = text.str.strip_suffix("Z")  # UTC designator: naive UTC
    out = pl.Series(text.name, [None] * text.len(), dtype=pl.Int64)
    for fmt in _ISO_FORMATS:
        todo = out.is_null() & text.is_not_null()
        if not todo.any():
            break
        stamp = text.filter(todo).str.to_datetime(fmt, strict=False, time_unit="us")
        if cast(pl.Datetime, stamp.dtype).time_zone is not None:
            stamp = stamp.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        out = out.scatter(todo.arg_true(), stamp.dt.epoch("s"))
    return out


_UNIT_NAMES = ("seconds", "milliseconds", "microseconds", "nanoseconds")


def unit_class(series: pl.Series) -> pl.Series | None:
    """0..3 per epoch number: the magnitude of a date since 1973 in seconds, ms, us or ns;
    null for smaller numbers, which read right in any unit (None: not numbers)."""
    if not (series.dtype.is_numeric() or series.dtype == pl.String):
        return None
    size = series.cast(pl.Float64, strict=False).abs()
    size = size.set(~size.is_finite(), None)  # NaN compares above every number: no unit
    units = (size > 1e11).cast(pl.Int8) + (size > 1e14).cast(pl.Int8) + (size > 1e17).cast(pl.Int8)
    return units.set(size < 1e8, None)


def _compact_dates(series: pl.Series) -> pl.Series | None:
    """YYYYMMDD integers (20240501) as epoch seconds at midnight UTC, when every value is one;
    as epoch seconds they would all fall in 1970-1973, which no log means."""
    ints = series.cast(pl.Int64, strict=False)
    known = ints.drop_nulls()
    if known.len() == 0 or ints.null_count() != series.null_count():
        return None
    if known.min() < 19000101 or known.max() > 21991231:  # type: ignore[operator]
        return None
    dates = ints.cast(pl.String).str.to_date("%Y%m%d", strict=False)
    if dates.null_count() != series.null_count():
        return None
    return dates.cast(pl.Datetime("us")).dt.epoch("s")


def scaled_numbers(series: pl.Series) -> pl.Series:
    """Epoch numbers to seconds: magnitudes beyond 1e11 / 1e14 / 1e17 are ms / us / ns."""
    floats = series.cast(pl.Float64, strict=False)
    floats = floats.set(~floats.is_finite(), None)
    top = floats.abs().max()
    scale = 1
    for threshold, unit in ((1e11, 1_000), (1e14, 1_000_000), (1e17, 1_000_000_000)):
        if isinstance(top, float) and top > threshold:
            scale = unit
    from_floats = (floats / scale).floor().cast(pl.Int64, strict=False)
    if series.dtype.is_float():
        return from_floats
    # Integers divide exactly (floats lose digits of ns stamps); "1.5e12" falls back to floats.
    ints = series.cast(pl.Int64, strict=False) // scale
    return pl.select(pl.coalesce(ints, from_floats)).to_series()
